"""Segment your own videos with STCN.

    python eval_generic.py --data_path <folder> --output <dir>

<folder>/JPEGImages/<video>/<frame>.jpg holds the frames and <folder>/Annotations/<video>/<frame>.png
a mask for each frame where objects first appear (an indexed PNG, one index per object; colour
masks are accepted when their colours are unambiguous). Every frame is written to
<output>/<video>/<frame>.png at the video's size, in the palette of its annotations.
--overlay <dir> also writes <dir>/<video>.mp4 (masks blended over the frames); --binary_masks <dir>
writes <dir>/<video>/<object label>/<frame>.png (0/255). Video files: segment_video.py.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from evaluation.flags import (
    add_bidirectional_arg,
    add_common_args,
    add_size_arg,
    add_video_batch_arg,
    options_from_args,
)
from util.io import DataError
from util.outputs import OutputDir, check_distinct, wrote_line

if TYPE_CHECKING:
    from evaluation.sharding import Shard


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="STCN on a folder of videos")
    parser.add_argument("--data_path", required=True, help="folder with JPEGImages/<video>/ and Annotations/<video>/")
    add_size_arg(parser)
    add_bidirectional_arg(parser)
    parser.add_argument("--overlay", default=None, help="also write <dir>/<video>.mp4 with the masks over the frames")
    parser.add_argument("--overlay_fps", type=float, default=None, help="frame rate of the overlays (default 24)")
    parser.add_argument("--binary_masks", default=None,
                        help="also write <dir>/<video>/<object label>/<frame>.png (0/255)")
    add_common_args(parser)
    add_video_batch_arg(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    # the network's modules (torch) only once the flags are read: `--help` and a mistyped flag answer at once
    from evaluation.datasets import GenericEvalDataset
    from evaluation.flags import weight_inputs
    from evaluation.loop import check_videos
    from evaluation.run_video import build_predictor
    from evaluation.sharding import run_sharded
    from evaluation.sinks import BinaryMaskSink, OverlaySink

    def body(shard: Shard) -> int:
        if args.overlay_fps is not None and not args.overlay_fps > 0:
            raise DataError("--overlay_fps", f"{args.overlay_fps} frames per second", "pass a positive frame rate")
        inputs = [args.data_path, *weight_inputs(args)]
        outputs = [(args.output, "--output"), (args.overlay, "--overlay"), (args.binary_masks, "--binary_masks")]
        check_distinct(outputs, entries=[p.name for p in Path(args.data_path, "JPEGImages").glob("*")])
        folders = shard.on_main(lambda: {flag: OutputDir(path, flag, inputs, args.overwrite)
                                         for path, flag in outputs if path})
        dataset = GenericEvalDataset(args.data_path, short_side=options_from_args(args).size)
        check_videos(dataset.videos)  # every video's masks and size before loading the network
        predictor = build_predictor(args)
        with shard.writing(folders) as folders:
            out = folders["--output"]
            sinks = []
            if "--overlay" in folders:
                overlays = folders["--overlay"].path
                sinks.append(OverlaySink(lambda v: overlays / f"{v.name}.mp4", fps=args.overlay_fps))
            if "--binary_masks" in folders:
                binary = folders["--binary_masks"]
                sinks.append(BinaryMaskSink(lambda v: binary.path / v.name, output=binary))
            stats = shard.run_dataset(predictor, dataset.videos, lambda v: out.path / v.name, sinks=sinks, output=out,
                                      bidirectional=args.bidirectional, video_batch=args.video_batch)
        if not shard.is_main:  # rank 0 reports for every rank
            return 0
        stats.print()
        extras = [("overlay videos", folders["--overlay"].path)] if "--overlay" in folders else []
        extras += [("binary masks", folders["--binary_masks"].path)] if "--binary_masks" in folders else []
        print(wrote_line((stats.written(), out.path), *extras))
        return 0

    return run_sharded(body, args.local_rank)


if __name__ == "__main__":
    sys.exit(main())
