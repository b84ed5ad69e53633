"""Evaluate STCN on DAVIS 2017 val or test-dev (semi-supervised, first-frame masks given).

    python eval_davis.py --output ../output/d17 [--split val|testdev] [--davis_path ../DAVIS/2017]

Masks go to <output>/<video>/<frame>.png. On val, where the ground truth covers every frame, the
results are then scored (J, F, J&F; CSV files in <output>) unless --no_score.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dataset.test_datasets import DAVISTestDataset
from inference_core.run_video import add_common_args, build_core, check_videos
from inference_core.sharding import Shard, run_sharded
from util.davis_scoring import evaluate_davis
from util.io import DataError
from util.outputs import prepare_output_dir

SPLITS = {  # split -> (folder under --davis_path, video list under ImageSets)
    "val": ("trainval", "2017/val.txt"),
    "testdev": ("test-dev", "2017/test-dev.txt"),
}
SCORE_KEYS = ("J&F-Mean", "J-Mean", "F-Mean")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="STCN evaluation on DAVIS 2017", add_help=True)
    parser.add_argument("--davis_path", default="../DAVIS/2017", help="folder holding trainval/ and test-dev/")
    parser.add_argument("--split", choices=tuple(SPLITS), default="val")
    parser.add_argument("--no_score", action="store_true", help="do not score the val results")
    add_common_args(parser)
    return parser


def find_score(result: dict, key: str):
    """`key` in the scorer's result, at the top level or one level down."""
    if key in result:
        return result[key]
    for value in result.values():
        if isinstance(value, dict) and key in value:
            return value[key]
    return None


def score(output: Path, davis_root: Path, split: str, year: str) -> None:
    """Score finished results against the ground truth and print the means."""
    print(f"Scoring {output} against {davis_root} ...")
    try:
        result = evaluate_davis(output, davis_root, split, year=year, out_dir=output)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise DataError(
            output, f"scoring failed ({type(exc).__name__}: {exc})",
            "the masks are complete; fix the ground truth and run python scripts/score_davis.py",
        ) from None
    for key in SCORE_KEYS:
        value = find_score(result, key)
        if value is not None:
            print(f"{key}: {float(value):.4f}")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    def body(shard: Shard) -> int:
        folder, imset = SPLITS[args.split]
        davis_root = Path(args.davis_path) / folder
        out = shard.on_main(prepare_output_dir, args.output, "--output", [args.davis_path, args.model], args.overwrite)
        dataset = DAVISTestDataset(davis_root, imset=imset)  # layout errors before loading the network
        check_videos(dataset.videos)  # and every first-frame annotation
        core = build_core(args)
        with shard.writing(out) as out:
            output = out.path
            stats = shard.run_dataset(core, dataset.videos, lambda v: output / v.name, output=out)
        if not shard.is_main:  # rank 0 reports and scores for every rank
            return 0
        stats.print()
        if args.split == "val" and not args.no_score:
            score(output, davis_root, "val", year="2017")
        return 0

    return run_sharded(body, args.local_rank)


if __name__ == "__main__":
    sys.exit(main())
