r"""Segment a video file (e.g. .mp4) from the masks of its first frame(s).

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
import contextlib
import sys

from evaluation.flags import add_bidirectional_arg, add_common_args, add_size_arg, options_from_args
from util.outputs import OutputDir, check_distinct, wrote_line


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="STCN on a video file",
                                     epilog=__doc__)
    parser.add_argument("--video", required=True, help="video file (anything FFmpeg decodes: .mp4, .mov, .avi, ...)")
    parser.add_argument("--mask", default=None, help="indexed PNG of the first frame's objects")
    parser.add_argument("--mask_dir", default=None, help="folder of <frame index>.png where objects first appear")
    add_size_arg(parser)
    add_bidirectional_arg(parser)
    parser.add_argument("--overlay", default=None,
                        help="also write this video (.mp4, .mkv, ...) of masks over the frames")
    parser.add_argument("--binary_masks", default=None, help="also write <dir>/<object label>/<frame>.png (0/255)")
    add_common_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    # the network's modules (torch) only once the flags are read: `--help` and a mistyped flag answer at once
    from evaluation.flags import weight_inputs
    from evaluation.loop import check_videos, run_dataset
    from evaluation.run_video import build_predictor, report_errors
    from evaluation.sinks import BinaryMaskSink, OverlaySink
    from evaluation.video_file import VideoFileVideo, annotations_by_frame

    def body() -> int:
        inputs = [args.video, args.mask, args.mask_dir, *weight_inputs(args)]
        check_distinct([(args.output, "--output"), (args.overlay, "--overlay"), (args.binary_masks, "--binary_masks")])
        out = OutputDir(args.output, "--output", inputs, args.overwrite)
        binary = OutputDir(args.binary_masks, "--binary_masks", inputs, args.overwrite) if args.binary_masks else None
        overlay = out.file(args.overlay, "--overlay") if args.overlay else None
        masks = annotations_by_frame(args.mask, args.mask_dir)
        video = VideoFileVideo(args.video, masks, short_side=options_from_args(args).size)
        check_videos([video])  # masks and size before loading the network
        sinks = []
        if overlay is not None:
            sinks.append(OverlaySink(lambda v: overlay))
        if binary is not None:
            sinks.append(BinaryMaskSink(lambda v: binary.path, output=binary))
        predictor = build_predictor(args)
        with contextlib.ExitStack() as stack:
            for folder in (out, binary):
                if folder is not None:
                    stack.enter_context(folder)
            stats = run_dataset(predictor, [video], lambda v: out.path, sinks=sinks, output=out,
                                bidirectional=args.bidirectional)
        stats.print()
        extras = [("the overlay", overlay)] if overlay is not None else []
        extras += [("binary masks", binary.path)] if binary is not None else []
        print(wrote_line((stats.written(videos=False), out.path), *extras))
        return 0

    return report_errors(body)


if __name__ == "__main__":
    sys.exit(main())
