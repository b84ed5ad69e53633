"""Evaluate STCN on DAVIS 2017 val or test-dev (semi-supervised, first-frame masks given).

    python eval_davis.py --output ../output/d17 [--split val|testdev] [--davis_path ../DAVIS/2017]

Masks go to <output>/<video>/<frame>.png. On val, where the ground truth covers every frame, the
results are then scored (J, F, J&F; CSV files in <output>) unless --no_score.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from evaluation.flags import add_antialias_arg, add_common_args, add_video_batch_arg
from util import layouts
from util.outputs import prepare_output_dir

if TYPE_CHECKING:
    from evaluation.sharding import Shard

SPLITS = {  # split -> (folder under --davis_path, video list under ImageSets)
    "val": (layouts.sub_path("davis17_trainval", "davis17"), "2017/val.txt"),
    "testdev": (layouts.sub_path("davis17_testdev", "davis17"), "2017/test-dev.txt"),
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="STCN evaluation on DAVIS 2017", add_help=True)
    parser.add_argument("--davis_path", default=layouts.default_path("davis17"),
                        help=f"folder holding {SPLITS['val'][0]}/ and {SPLITS['testdev'][0]}/")
    parser.add_argument("--split", choices=tuple(SPLITS), default="val")
    parser.add_argument("--no_score", action="store_true", help="do not score the val results")
    add_common_args(parser)
    add_video_batch_arg(parser)
    add_antialias_arg(parser, native=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    # the network's modules (torch) only once the flags are read: `--help` and a mistyped flag answer at once
    from evaluation.datasets import DAVISEvalDataset
    from evaluation.davis_scoring import score
    from evaluation.ensembles import weight_inputs
    from evaluation.run_video import build_core, check_videos
    from evaluation.sharding import run_sharded

    def body(shard: Shard) -> int:
        folder, imset = SPLITS[args.split]
        davis_root = Path(args.davis_path) / folder
        inputs = [args.davis_path, *weight_inputs(args)]
        out = shard.on_main(prepare_output_dir, args.output, "--output", inputs, args.overwrite)
        # layout errors before loading the network
        dataset = DAVISEvalDataset(davis_root, imset=imset, antialias=args.antialias)
        check_videos(dataset.videos)  # and every first-frame annotation
        core = build_core(args)
        with shard.writing(out) as out:
            output = out.path
            stats = shard.run_dataset(core, dataset.videos, lambda v: output / v.name, output=out,
                                      video_batch=args.video_batch)
        if not shard.is_main:  # rank 0 reports and scores for every rank
            return 0
        stats.print()
        if args.split == "val" and not args.no_score:
            score(output, davis_root, "val", year="2017")
        return 0

    return run_sharded(body, args.local_rank)


if __name__ == "__main__":
    sys.exit(main())
