"""The evaluation commands' shared command-line pieces: the `--video_batch` flag, the predictor the flags
ask for (`build_predictor`: `Predictor.from_checkpoint` with `options_from_args`) and the error reporting
of a command's body (`report_errors`). The evaluation loop itself is `evaluation.loop`.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from evaluation.flags import options_from_args
from inference_core.predictor import Predictor, PredictorError
from util.io import DataError
from util.outputs import run_command


# ------------------------------------------------------------------------ shared CLI pieces
def video_batch_option(args: argparse.Namespace) -> int:
    """The `--video_batch` flag (1 where a script has none); DataError when below 1 or with an exported backend.

    The exported ONNX graphs have a fixed batch of one frame.
    """
    n = getattr(args, "video_batch", 1)
    if n < 1:
        raise DataError("--video_batch", f"must be at least 1 (got {n})", "pass a positive number of videos")
    if n > 1 and getattr(args, "backend", "pytorch") != "pytorch":
        raise DataError("--video_batch", f"--backend {args.backend} runs exported graphs of batch 1 (one frame)",
                        "leave --video_batch out or use --backend pytorch")
    if n > 1 and getattr(args, "bidirectional", False):
        raise DataError("--video_batch", "runs videos forward side by side; --bidirectional runs each video twice",
                        "leave out --video_batch or --bidirectional")
    if n > 1 and (getattr(args, "scales", None) is not None or getattr(args, "flip", False)
                  or len(getattr(args, "models", None) or ()) > 1):
        raise DataError("--video_batch", "batches single cores, not the variants of --scales/--flip/several --model",
                        "leave --video_batch out with an ensemble")
    return n


def build_predictor(args: argparse.Namespace, notes: set[str] | None = None) -> Predictor:
    """The predictor the flags ask for: `Predictor.from_checkpoint(--model, options_from_args(args))`
    (an ensemble for several --model, --scales or --flip); user mistakes raise UserError naming the flag.

    notes: the precision notes already printed, shared by the predictors of one command so that each
    note is printed once (it is added)."""
    options = options_from_args(args)
    video_batch_option(args)
    try:
        predictor = Predictor.from_checkpoint(options.models, options)
    except PredictorError as exc:
        raise exc.on_command_line() from None
    notes = set() if notes is None else notes
    if predictor.note and predictor.note not in notes:
        print(predictor.note, file=sys.stderr)
        notes.add(predictor.note)
    return predictor


def report_errors(fn: Callable[[], int], tool: str | None = None) -> int:
    """Run a script body: a user mistake or a write error becomes one `error:` line on stderr and exit
    code 1, SIGINT / SIGTERM one `interrupted by ...` line and 130 / 143 (`run_command`)."""
    return run_command(fn, resume_hint="rerun the same command to redo the unfinished videos", tool=tool)
