"""Evaluate STCN on YouTube-VOS 2018 or 2019 valid/test (the version is the folder given).

    python eval_youtube.py --output ../output/yv19 [--yv_path ../YouTube]        # 2019
    python eval_youtube.py --output ../output/yv18 --yv_path ../YouTube2018      # 2018

Frames are read from <yv_path>/all_frames/<split>_all_frames (every frame is processed for the
memory); only the frames listed in <yv_path>/<split>/meta.json are written, unless --output_all.
Frames are resized to --size (480) on the shorter side as for the paper: normalised, then plain
bicubic (--antialias: the antialiased resize the original code gives under torchvision >= 0.17).
Results: <output>/Annotations/<video>/<frame>.png and <output>.zip (holding Annotations/...),
ready for the evaluation server.
"""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from evaluation.flags import add_common_args, add_size_arg, add_video_batch_arg, options_from_args
from evaluation.server_zip import make_zip, prepare_zip, upload_hint
from util import layouts
from util.outputs import OutputDir, wrote_line

if TYPE_CHECKING:
    from evaluation.sharding import Shard

RESULT_FOLDER = "Annotations"  # the server expects Annotations/<video>/<frame>.png in the zip


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="STCN evaluation on YouTube-VOS")
    parser.add_argument("--yv_path", default=layouts.default_path("youtube"),
                        help=f"YouTube-VOS 2019 ({layouts.default_path('youtube')}) "
                             f"or 2018 ({layouts.default_path('youtube18')}) folder")
    parser.add_argument("--split", choices=("valid", "test"), default="valid")
    parser.add_argument("--output_all", action="store_true", help="write every frame, not only those in meta.json")
    add_size_arg(parser)
    add_common_args(parser)
    add_video_batch_arg(parser)
    return parser


def prepare_outputs(args: argparse.Namespace, inputs: list) -> OutputDir:
    """The checked output folder, and its zip (listed in the folder's marker)."""
    out = OutputDir(args.output, "--output", inputs, args.overwrite)
    prepare_zip(out)
    return out


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    # the network's modules (torch) only once the flags are read: `--help` and a mistyped flag answer at once
    from evaluation.datasets import YouTubeVOSEvalDataset
    from evaluation.flags import weight_inputs
    from evaluation.loop import check_videos
    from evaluation.run_video import build_predictor
    from evaluation.sharding import run_sharded

    def body(shard: Shard) -> int:
        dataset = YouTubeVOSEvalDataset(
            args.yv_path, split=args.split, short_side=options_from_args(args).size, output_all=args.output_all,
        )
        if not dataset.uses_all_frames:
            print(f"note: {dataset.image_dir.parent.parent / 'all_frames'} not found; "
                  "using the annotated subset of frames", file=sys.stderr)
        check_videos(dataset.videos)  # every annotation before loading the network
        inputs = [args.yv_path, *weight_inputs(args)]
        out = shard.on_main(prepare_outputs, args, inputs)
        predictor = build_predictor(args)
        with shard.writing(out) as out:
            output = out.path
            stats = shard.run_dataset(predictor, dataset.videos, lambda v: output / RESULT_FOLDER / v.name, output=out,
                                      video_batch=args.video_batch)
            if not shard.is_main:  # rank 0 zips and reports for every rank
                return 0
            zipped = make_zip(output, output / RESULT_FOLDER, RESULT_FOLDER)
        stats.print()
        print(f"{wrote_line((stats.written(), output / RESULT_FOLDER), ('their zip', zipped))}; "
              f"{upload_hint(f'YouTube-VOS {args.split}')}")
        return 0

    return run_sharded(body, args.local_rank)


if __name__ == "__main__":
    sys.exit(main())
