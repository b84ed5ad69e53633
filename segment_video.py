"""Segment a video file (e.g. .mp4) from the masks of its first frame(s).

    python segment_video.py --video clip.mp4 --mask first.png --output results/clip
    python segment_video.py --video clip.mp4 --mask_dir masks/ --output results/clip \
        --overlay results/clip.mp4 --binary_masks results/clip_objects

Frames are decoded one at a time (PyAV), resized so their shorter side is --size for the network
(normalised, then plain bicubic as for the paper; --antialias: torchvision >= 0.17's), and each
mask is written as soon as it is ready: <output>/<frame index>.png (00000.png, ...) at the video's
size, in the palette of the given mask. --overlay writes a video of the frames with
the masks blended in; --binary_masks writes <dir>/<object label>/<frame index>.png (0/255).
--mask is the first frame's indexed PNG; --mask_dir holds <frame index>.png for every frame where
objects first appear. Long videos: see --max_mem_frames / --max_mem_mb (README, "Long videos").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dataset.video_file import VideoFileVideo, annotations_by_frame
from inference_core.outputs import BinaryMaskSink, OverlaySink
from inference_core.run_video import (
    add_common_args,
    add_size_arg,
    build_core,
    check_videos,
    report_errors,
    run_dataset,
    short_side,
)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="STCN on a video file",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--video", required=True, help="video file (anything FFmpeg decodes: .mp4, .mov, .avi, ...)")
    parser.add_argument("--mask", default=None, help="indexed PNG of the first frame's objects")
    parser.add_argument("--mask_dir", default=None, help="folder of <frame index>.png where objects first appear")
    add_size_arg(parser)
    parser.add_argument("--overlay", default=None, help="also write this video (.mp4, .mkv, ...) of masks over the frames")
    parser.add_argument("--binary_masks", default=None, help="also write <dir>/<object label>/<frame>.png (0/255)")
    add_common_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> int:
        masks = annotations_by_frame(args.mask, args.mask_dir)
        video = VideoFileVideo(args.video, masks, short_side=short_side(args), antialias=args.antialias)
        check_videos([video])  # masks and size before loading the network
        sinks = []
        if args.overlay:
            sinks.append(OverlaySink(lambda v: Path(args.overlay)))
        if args.binary_masks:
            sinks.append(BinaryMaskSink(lambda v: Path(args.binary_masks)))
        core = build_core(args)
        stats = run_dataset(core, [video], lambda v: Path(args.output), sinks=sinks)
        stats.print()
        return 0

    return report_errors(body)


if __name__ == "__main__":
    sys.exit(main())
