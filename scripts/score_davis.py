"""Score an existing folder of DAVIS results against the ground truth (official toolkit definitions).

    python scripts/score_davis.py --results output/d17 --davis_path ../DAVIS/2017/trainval --split val
    python scripts/score_davis.py --results output/d16 --davis_path ../DAVIS/2016 --year 2016
    python scripts/score_davis.py --results output/mine --data_path ../my_videos

--data_path: a generic layout, the folder eval_generic.py reads (JPEGImages/<video>/ and
Annotations/<video>/) with a ground-truth mask for every frame, named as the frame; every video of
its Annotations/ is scored (or --sequences / --imset / --from_results), by the same rules as DAVIS.
Writes global_results-<split>.csv and per-sequence_results-<split>.csv (the toolkit's fractions)
into the results folder (or --output) and prints the summary table in percent, as the paper's tables.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python scripts/score_davis.py` puts scripts/ first on the path
    sys.path.insert(0, str(ROOT))

from evaluation.davis_scoring import (  # noqa: E402
    GLOBAL_COLUMNS,
    SEQUENCE_COLUMNS,
    csv_paths,
    evaluate_davis,
    paper_line,
    sequences_in_results,
)
from util import layouts  # noqa: E402
from util.cli import HelpFormatter  # noqa: E402
from util.outputs import OutputDir, prepare_output_file, run_command, wrote_line  # noqa: E402

DEFAULT_DAVIS_PATH = {"2017": layouts.default_path("davis17_trainval"), "2016": layouts.default_path("davis16")}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    parser.add_argument("--results", required=True, help="folder with <video>/<frame>.png result masks")
    root = parser.add_mutually_exclusive_group()
    root.add_argument(
        "--davis_path",
        default=None,
        help=f"dataset root with Annotations/480p (default {DEFAULT_DAVIS_PATH['2017']}, "
             f"or {DEFAULT_DAVIS_PATH['2016']} with --year 2016)",
    )
    root.add_argument("--data_path", default=None,
                      help="instead of --davis_path: a generic layout (eval_generic.py's --data_path) with "
                           "Annotations/<video>/<frame>.png for every frame of JPEGImages/<video>/")
    parser.add_argument("--split", default="val",
                        help="split whose ImageSets list is scored (default val); with --data_path it only names "
                             "the csv files")
    parser.add_argument(
        "--year", default="2017", choices=["2017", "2016"], help="2016: single object, non-zero = object"
    )
    parser.add_argument("--imset", default=None, help="explicit sequence list file (one video name a line)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--sequences", nargs="+", default=None, help="score only these videos")
    group.add_argument("--from_results", action="store_true", help="score the videos present in --results")
    parser.add_argument("--output", default=None, help="folder for the csv files (default: --results)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing csv files of these names that are not score files of this project")
    parser.add_argument("--workers", type=int, default=0, help="processes for scoring (0/1: no pool)")
    parser.add_argument("--no_per_sequence", action="store_true", help="print only the global row")
    return parser


def is_score_csv(path: Path) -> bool:
    """A csv file this scorer wrote before (its first line is one of our headers)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            first = handle.readline().strip()
    except OSError:
        return False
    return first in (",".join(GLOBAL_COLUMNS), ",".join(SEQUENCE_COLUMNS))


def check_csv_targets(args: argparse.Namespace, davis_path: str) -> None:
    """The output contract for the two csv files, checked before any scoring."""
    out = Path(args.output if args.output is not None else args.results)
    inputs = [davis_path, args.imset]
    if args.output is not None:
        inputs.append(args.results)  # a separate --output keeps the results folder untouched
        OutputDir(out, "--output", inputs, overwrite=True)  # only the csv files are written
    for name in (f"global_results-{args.split}.csv", f"per-sequence_results-{args.split}.csv"):
        target = out / name
        prepare_output_file(target, "--output", inputs, overwrite=args.overwrite or is_score_csv(target))


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error(f"--workers {args.workers}: must be 0 or more (0/1: no pool)")
    layout = "generic" if args.data_path is not None else "davis"
    davis_path = args.data_path or args.davis_path or DEFAULT_DAVIS_PATH[args.year]

    def body() -> int:
        check_csv_targets(args, davis_path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                sequences = sequences_in_results(args.results) if args.from_results else args.sequences
                scores = evaluate_davis(
                    args.results,
                    davis_path,
                    split=args.split,
                    year=args.year,
                    out_dir=args.output,
                    sequences=sequences,
                    imset=args.imset,
                    workers=args.workers,
                    print_table=True,
                    per_sequence=not args.no_per_sequence,
                    layout=layout,
                )
            finally:
                _print_warnings(caught)
        print(paper_line(scores))
        print(wrote_line(("the scores", csv_paths(args.output if args.output is not None else args.results,
                                                  args.split))))
        return 0

    return run_command(body)


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    for item in caught:
        print(f"warning: {item.message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
