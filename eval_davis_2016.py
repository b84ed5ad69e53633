"""Evaluate STCN on DAVIS 2016 val (one object per video, 255 in the ground truth).

    python eval_davis_2016.py --output ../output/d16 [--davis_path ../DAVIS/2016]

DAVIS 2016 has no ImageSets/2016/val.txt of its own; the list is read from the DAVIS 2017 trainval
folder, `<davis17_path>/ImageSets/2016/val.txt`, with --davis17_path defaulting to
`<davis_path>/../2017/trainval` (the layout of the original README). If that file is absent,
`<davis_path>/ImageSets/2016/val.txt` and then DAVIS 2016's own `ImageSets/480p/val.txt` are used.
Masks are written with the ground truth's values (object = 255 for the greyscale DAVIS 2016 files)
and then scored (J&F, J, F printed in percent as the paper's tables; the toolkit's CSV files, in
fractions, in <output>) unless --no_score.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from evaluation.flags import add_antialias_arg, add_common_args, add_video_batch_arg, evaluate_at_native_size
from util import layouts
from util.io import DataError
from util.outputs import OutputDir, wrote_line

if TYPE_CHECKING:
    from evaluation.sharding import Shard

VAL_LIST = Path("ImageSets") / "2016" / "val.txt"
DAVIS16_OWN_LIST = Path("ImageSets") / "480p" / "val.txt"
DAVIS17_FROM_16 = layouts.sub_path("davis17_trainval", "davis16")  # ../2017/trainval


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="STCN evaluation on DAVIS 2016 val")
    parser.add_argument("--davis_path", default=layouts.default_path("davis16"),
                        help="DAVIS 2016 folder (JPEGImages/480p, Annotations/480p)")
    parser.add_argument("--davis17_path", default=None,
                        help="DAVIS 2017 trainval folder holding ImageSets/2016/val.txt "
                             f"(default: <davis_path>/{DAVIS17_FROM_16})")
    parser.add_argument("--no_score", action="store_true", help="do not score the results")
    add_common_args(parser)
    evaluate_at_native_size(parser)
    add_video_batch_arg(parser)
    add_antialias_arg(parser, native=True)
    return parser


def find_video_list(davis_path: Path, davis17_path: Path | None) -> Path:
    """The DAVIS 2016 val list (see the module docstring for the order)."""
    if not davis_path.is_dir():
        raise DataError(davis_path, "no such folder (DAVIS 2016 root)", "point --davis_path at the DAVIS 2016 folder")
    primary = (davis17_path or davis_path / DAVIS17_FROM_16) / VAL_LIST
    candidates = [primary] if davis17_path else [primary, davis_path / VAL_LIST, davis_path / DAVIS16_OWN_LIST]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(primary, "DAVIS 2016 val list not found",
                    "pass --davis17_path <DAVIS/2017/trainval> (its ImageSets/2016/val.txt lists the 20 videos)")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    # the network's modules (torch) only once the flags are read: `--help` and a mistyped flag answer at once
    from evaluation.datasets import DAVISEvalDataset
    from evaluation.davis_scoring import score
    from evaluation.flags import weight_inputs
    from evaluation.loop import check_videos
    from evaluation.run_video import build_predictor
    from evaluation.sharding import run_sharded

    def body(shard: Shard) -> int:
        davis_root = Path(args.davis_path)
        imset = find_video_list(davis_root, Path(args.davis17_path) if args.davis17_path else None)
        out = shard.on_main(OutputDir, args.output, "--output",
                            [davis_root, args.davis17_path, imset, *weight_inputs(args)], args.overwrite)
        dataset = DAVISEvalDataset(davis_root, imset=imset.resolve(), single_object=True)
        check_videos(dataset.videos)  # every annotation before loading the network
        predictor = build_predictor(args)
        with shard.writing(out) as out:
            output = out.path
            stats = shard.run_dataset(predictor, dataset.videos, lambda v: output / v.name, output=out,
                                      video_batch=args.video_batch)
        if not shard.is_main:  # rank 0 reports and scores for every rank
            return 0
        stats.print()
        if args.no_score:
            print(wrote_line((stats.written(), output)))
        else:
            csvs = score(output, davis_root, "val", year="2016")
            print(wrote_line((stats.written(), output), ("the scores", csvs)))
        return 0

    return run_sharded(body, args.local_rank)


if __name__ == "__main__":
    sys.exit(main())
