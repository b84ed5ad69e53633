"""Memory coverage of one or more models on DAVIS 2017 (section 4.1, Figure 4 of the paper).

    python scripts/memory_coverage.py --model saves/dot.pth --model saves/l2.pth \
        --label "Dot product" --label "L2 similarity" --davis_path ../DAVIS/2017 --output ../output/coverage

For every memory node (every position of every memory frame of every video) the largest weight it
contributed to any query during its lifetime. Writes into --output
coverage_curve.csv (nodes above each threshold t in [0, 1], one column per model), coverage.png
(the curves, as Figure 4) and coverage_summary.csv, and prints per model the Gini coefficient and
the shares of nodes never above 1% and 10%. The evaluation flags (--top, --mem_every, --device, ...)
are those of eval_davis.py; each model reads its memory as its checkpoint says.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python scripts/memory_coverage.py` puts scripts/ first on the path
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from evaluation.flags import add_common_args, evaluate_at_native_size  # noqa: E402
from util import layouts  # noqa: E402
from util.io import DataError  # noqa: E402
from util.outputs import OutputDir  # noqa: E402

DEFAULT_MODEL = "saves/stcn.pth"
DEFAULT_OUTPUT = "../output/memory_coverage"
CURVE_CSV, SUMMARY_CSV, PLOT_PNG = "coverage_curve.csv", "coverage_summary.csv", "coverage.png"


def get_args_parser() -> argparse.ArgumentParser:
    # "resolve": the common --model / --output are replaced by this script's own below
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], conflict_handler="resolve")
    parser.add_argument("--davis_path", default=layouts.default_path("davis17"),
                        help=f"folder holding {layouts.sub_path('davis17_trainval', 'davis17')}/ (as eval_davis.py)")
    parser.add_argument("--imset", default="2017/val.txt",
                        help="video list, relative to <davis>/trainval/ImageSets or a path (default: val, the paper's)")
    add_common_args(parser)
    evaluate_at_native_size(parser)
    parser.add_argument("--model", action="append", default=None,
                        help=f"network weights; repeat for several models, one curve each (default {DEFAULT_MODEL})")
    parser.add_argument("--label", action="append", default=None,
                        help="legend name of each --model, in order (default: the file names)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help=f"folder for the csv files and the plot (default {DEFAULT_OUTPUT})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    models = args.model or [DEFAULT_MODEL]
    # the network's modules (torch) only once the flags are read: `--help` and a mistyped flag answer at once
    from evaluation.coverage import (
        PAPER_GINI,
        exceedance_curve,
        plot_curves,
        record_video,
        summary,
        thresholds,
        unique_labels,
        write_curve_csv,
        write_summary_csv,
    )
    from evaluation.datasets import DAVISEvalDataset
    from evaluation.loop import check_videos
    from evaluation.run_video import build_predictor, report_errors

    def body() -> int:
        if args.label is not None and len(args.label) != len(models):
            raise DataError("--label", f"{len(args.label)} labels for {len(models)} models",
                            "give one --label per --model, or none")
        labels = unique_labels(models, args.label)
        davis_root = Path(args.davis_path) / layouts.sub_path("davis17_trainval", "davis17")
        out = OutputDir(args.output, "--output", [args.davis_path, *models, args.onnx_dir], args.overwrite)
        videos = DAVISEvalDataset(davis_root, imset=args.imset).videos
        check_videos(videos)  # every first-frame annotation, before any network is loaded
        notes: set[str] = set()  # the --amp note once, not once per model
        streams = {label: build_predictor(_with_model(args, path), notes).new_stream(start_only=True)
                   for label, path in zip(labels, models)}

        levels = thresholds()
        curves, rows = {}, {}
        for label, stream in streams.items():
            per_video = []
            for i, video in enumerate(videos):
                print(f"{label}: video {i + 1}/{len(videos)} {video.name}", file=sys.stderr, flush=True)
                per_video.append(record_video(stream, video))
            maxima = np.concatenate(per_video)
            curves[label] = exceedance_curve(maxima, levels)
            rows[label] = summary(maxima)
            print_summary(label, rows[label])
        with out:
            write_curve_csv(out.path / CURVE_CSV, levels, curves)
            write_summary_csv(out.path / SUMMARY_CSV, rows, dict(zip(labels, models)))
            plot_curves(out.path / PLOT_PNG, levels, curves)
        print(f"(the paper, DAVIS 2017 val: Gini coefficient {PAPER_GINI['dot']} with dot product, "
              f"{PAPER_GINI['l2']} with L2 similarity)")
        print(f"wrote {out.path / CURVE_CSV}, {out.path / SUMMARY_CSV} and {out.path / PLOT_PNG}")
        return 0

    return report_errors(body)


def _with_model(args: argparse.Namespace, path: str) -> argparse.Namespace:
    """The flags of one model, as build_predictor reads them."""
    one = copy.copy(args)
    one.model, one.models = path, [path]
    return one


def print_summary(label: str, row: dict[str, float]) -> None:
    from evaluation.coverage import PAPER_LEVELS

    print(f"{label}: {int(row['nodes'])} memory nodes; Gini coefficient {row['gini']:.1f}")
    for level in PAPER_LEVELS:
        print(f"{label}: never above {100 * level:g}%: {row[f'never_above_{100 * level:g}pct']:.2f}% of the nodes")


if __name__ == "__main__":
    sys.exit(main())
