"""Evaluate interactive STCN (MiVOS-STCN) on the DAVIS-interactive benchmark, DAVIS 2017 val.

    python eval_interactive_davis.py --output ../output/d17_interactive [--davis_path ../DAVIS/2017]

Each sample (a val video and one of its first scribbles, <davis>/trainval/Scribbles/<video>/NNN.json)
starts from the human scribble; the scribble-to-mask network turns each scribble into a mask, STCN
propagates it and the fusion network merges it with the earlier interactions on MiVOS's schedule
(interactions 3, 6 and 8 propagate; the others refine the interacted frame only), a robot answers with the
next scribble, up to 8 interactions or 30 s per object per interaction. Writes <output>/report.csv (one
row per sample, interaction, object and frame) and <output>/summary.json (AUC and J&F@60s, as the
davisinteractive package writes them); --save_mask adds the masks of every interaction in
<output>/masks/<video>/<NNN>/<interaction>/<frame>.png. docs/interactive.md explains the benchmark.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from evaluation.flags import add_option_blocks, add_output_args, evaluate_at_native_size
from util import layouts
from util.cli import HelpFormatter
from util.outputs import OutputDir, wrote_line

if TYPE_CHECKING:
    from evaluation.sharding import Shard

TRAINVAL = layouts.sub_path("davis17_trainval", "davis17")
VAL_LIST = "2017/val.txt"
MAX_INTERACTIONS = 8  # the benchmark's, as MiVOS-STCN runs it


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--model", default="saves/stcn.pth", help="STCN weights (released format): the propagation")
    parser.add_argument("--s2m_model", default="saves/s2m.pth",
                        help="scribble-to-mask weights (download_model.py --model s2m)")
    parser.add_argument("--fusion_model", default="saves/fusion_stcn.pth",
                        help="difference-aware fusion weights for STCN (download_model.py --model fusion_stcn)")
    parser.add_argument("--davis_path", default=layouts.default_path("davis17"),
                        help=f"folder holding {TRAINVAL}/ with its Scribbles/ (download_datasets.py --only davis17 "
                             "davis17_scribbles)")
    add_output_args(parser, "folder for report.csv, summary.json and the masks")
    parser.add_argument("--save_mask", action="store_true",
                        help="also write the masks of every interaction: masks/<video>/<NNN>/<interaction>/")
    parser.add_argument("--propagate_every_interaction", action="store_true",
                        help="propagate and fuse after every interaction (default: MiVOS's schedule, interactions "
                             "3, 6 and 8; the others refine the interacted frame only)")
    parser.add_argument("--max_interactions", type=int, default=MAX_INTERACTIONS,
                        help="interactions per sample (the benchmark's figure uses 8; fewer for a quick run, the "
                             "time budget shrinking with it: 30 s per object per interaction)")
    add_option_blocks(parser, ["long"])
    evaluate_at_native_size(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    # torch only once the flags are read: `--help` and a mistyped flag answer at once
    from evaluation.datasets import DAVISEvalDataset
    from evaluation.interactive import metrics
    from evaluation.interactive.benchmark import (
        MASKS_DIR,
        MivosMethod,
        check_scribbles,
        merge_results,
        report_paths,
        run_samples,
        sample_weights,
    )
    from evaluation.interactive.session import Session
    from evaluation.run_video import build_predictor
    from evaluation.sharding import balanced_split, run_sharded
    from model.fusion import load_fusion
    from model.s2m import load_s2m
    from util.io import DataError

    args.models = [args.model]  # one network (options_from_args)

    def body(shard: Shard) -> int:
        if args.max_interactions < 1:
            raise DataError("--max_interactions", f"must be at least 1 (got {args.max_interactions})",
                            "pass 1..8 (the benchmark uses 8)")
        root = Path(args.davis_path) / TRAINVAL
        inputs = [args.davis_path, args.model, args.s2m_model, args.fusion_model]
        out = shard.on_main(OutputDir, args.output, "--output", inputs, args.overwrite)
        # the data's errors before loading the networks
        dataset = DAVISEvalDataset(root, imset=VAL_LIST)
        videos = {v.name: v for v in dataset.videos}
        session = Session.from_davis(root, list(videos), max_interactions=args.max_interactions)
        check_scribbles(session.specs, videos)
        predictor = build_predictor(args)
        s2m = load_s2m(args.s2m_model, predictor.device)
        fusion = load_fusion(args.fusion_model, predictor.device)
        specs = session.specs
        order, weights = sample_weights(specs, {name: len(v.frames) for name, v in videos.items()})
        mine = {order[i] for i in balanced_split(weights, shard.world)[shard.rank]}
        session.specs = [s for s in specs if s.sequence in mine]

        def make_method(frames, num_objects: int) -> MivosMethod:
            return MivosMethod(predictor, frames, num_objects, s2m, fusion, args.propagate_every_interaction)

        with shard.writing(out) as out:
            current: list = [None]
            with shard.failing(current):
                run_samples(session, videos, make_method, out=out, save_masks=args.save_mask,
                            log=print if shard.is_main else None, current=current)
            parts = shard.gather((session.rows, session.infos, session.dropped))
            if not shard.is_main:
                return 0
            rows, infos = merge_results([(r, i) for r, i, _ in parts], specs)
            dropped = sum(d for _, _, d in parts)
            summary = metrics.summary(rows, infos, session.max_interactions, session.time_per_object,
                                      session.threshold)
            report, summary_path = report_paths(out.path)
            metrics.write_report(rows, report)
            metrics.write_summary(summary, summary_path)
        if dropped:
            print(f"note: {dropped} answer(s) came after their sample's time budget and were dropped", file=sys.stderr)
        at = summary["metric_at_threshold"]
        print(f"AUC-J&F {100 * summary['auc']:.1f}, J&F@{at['threshold']}s {100 * at[metrics.METRIC]:.1f} "
              f"({len(infos)} samples)")
        written = [("the report", report), ("the summary", summary_path)]
        if args.save_mask:
            written.append(("the masks", out.path / MASKS_DIR))
        print(wrote_line(*written))
        return 0

    return run_sharded(body, args.local_rank)


if __name__ == "__main__":
    sys.exit(main())
