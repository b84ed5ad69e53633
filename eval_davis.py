"""Evaluate STCN on DAVIS 2017 val or test-dev (semi-supervised, first-frame masks given).

    python eval_davis.py --output ../output/d17 [--split val|testdev] [--davis_path ../DAVIS/2017]

Masks go to <output>/<video>/<frame>.png. On val, where the ground truth covers every frame, the
results are then scored (J&F, J, F printed in percent as the paper's tables; the toolkit's CSV files,
in fractions, in <output>) unless --no_score. test-dev's ground truth is not public: it is scored by
the DAVIS evaluation server, and <output>.zip (the videos' folders at its top) is the file to upload.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from evaluation.flags import add_antialias_arg, add_common_args, add_video_batch_arg, evaluate_at_native_size
from evaluation.server_zip import make_zip, prepare_zip, upload_hint
from util import layouts
from util.outputs import OutputDir, wrote_line

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
    parser.add_argument("--no_score", action="store_true",
                        help="do not score the val results (test-dev is scored by the server: <output>.zip)")
    add_common_args(parser)
    evaluate_at_native_size(parser)
    add_video_batch_arg(parser)
    add_antialias_arg(parser, native=True)
    return parser


def prepare_outputs(args: argparse.Namespace, inputs: list) -> OutputDir:
    """The checked output folder, and on test-dev its zip (listed in the folder's marker)."""
    out = OutputDir(args.output, "--output", inputs, args.overwrite)
    if args.split == "testdev":
        prepare_zip(out)
    return out


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
        folder, imset = SPLITS[args.split]
        davis_root = Path(args.davis_path) / folder
        inputs = [args.davis_path, *weight_inputs(args)]
        out = shard.on_main(prepare_outputs, args, inputs)
        # layout errors before loading the network
        dataset = DAVISEvalDataset(davis_root, imset=imset)
        check_videos(dataset.videos)  # and every first-frame annotation
        predictor = build_predictor(args)
        with shard.writing(out) as out:
            output = out.path
            stats = shard.run_dataset(predictor, dataset.videos, lambda v: output / v.name, output=out,
                                      video_batch=args.video_batch)
            if not shard.is_main:  # rank 0 zips, reports and scores for every rank
                return 0
            zipped = make_zip(output, output) if args.split == "testdev" else None
        stats.print()
        if zipped is not None:
            print(f"{wrote_line((stats.written(), output), ('their zip', zipped))}; "
                  f"{upload_hint('DAVIS 2017 test-dev')}")
        elif not args.no_score:
            csvs = score(output, davis_root, "val", year="2017")
            print(wrote_line((stats.written(), output), ("the scores", csvs)))
        else:
            print(wrote_line((stats.written(), output)))
        return 0

    return run_sharded(body, args.local_rank)


if __name__ == "__main__":
    sys.exit(main())
