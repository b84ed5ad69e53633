"""Segment your own videos with STCN.

    python eval_generic.py --data_path <folder> --output <dir>

<folder>/JPEGImages/<video>/<frame>.jpg holds the frames and <folder>/Annotations/<video>/<frame>.png
a mask for each frame where objects first appear (an indexed PNG, one index per object; colour
masks are accepted when their colours are unambiguous). Every frame is written to
<output>/<video>/<frame>.png at the video's size, in the palette of its annotations.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dataset.test_datasets import EVAL_SHORT_SIDE, GenericTestDataset
from inference_core.run_video import add_common_args, build_core, report_errors, run_dataset


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="STCN on a folder of videos")
    parser.add_argument("--data_path", required=True, help="folder with JPEGImages/<video>/ and Annotations/<video>/")
    parser.add_argument("--size", type=int, default=EVAL_SHORT_SIDE,
                        help="shorter side the frames are resized to for the network (-1: native size)")
    add_common_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body() -> int:
        dataset = GenericTestDataset(args.data_path, short_side=None if args.size <= 0 else args.size)
        core = build_core(args)
        output = Path(args.output)
        stats = run_dataset(core, dataset.videos, lambda v: output / v.name)
        stats.print()
        return 0

    return report_errors(body)


if __name__ == "__main__":
    sys.exit(main())
