"""The evaluation commands' shared command-line pieces: the checked flags (`--size`, `--video_batch`),
the core they ask for (`build_core`) and the error reporting of a command's body (`report_errors`).
The evaluation loop itself is evaluation/loop.py.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from evaluation.datasets import EVAL_SHORT_SIDE
from evaluation.ensembles import ensemble_from_args
from inference_core.core import InferenceCore
from inference_core.predictor import Predictor, PredictorError
from util.defaults import NATIVE_SIZE  # `--size -1`: frames at their own size
from util.device import DeviceError, resolve_device
from util.frames import MIN_FEATURE_CELLS, MIN_SHORT_SIDE  # the network's smallest shorter side
from util.io import DataError
from util.outputs import run_command
from util.tensor_util import STRIDE


# ------------------------------------------------------------------------ shared CLI pieces
def video_batch_option(args: argparse.Namespace) -> int:
    """The `--video_batch` flag (1 where a script has none); DataError when below 1 or with an exported backend.

    The exported ONNX graphs (model/export.py) have a fixed batch of one frame.
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
    return n


def short_side(args: argparse.Namespace) -> int | None:
    """The `--size` flag as a dataset's `short_side` (None: native size); DataError below MIN_SHORT_SIDE."""
    if args.size == NATIVE_SIZE:
        return None
    if args.size < MIN_SHORT_SIDE:
        raise DataError(
            "--size", f"{args.size} is below the network's minimum shorter side of {MIN_SHORT_SIDE} pixels "
            f"({MIN_FEATURE_CELLS} cells of its stride-{STRIDE} features)",
            f"pass --size {MIN_SHORT_SIDE} or more ({EVAL_SHORT_SIDE} as the paper), "
            f"or {NATIVE_SIZE} for the native size",
        )
    return args.size


def build_core(args: argparse.Namespace, notes: set[str] | None = None) -> InferenceCore:
    """Device, network and core from the common flags; user mistakes raise UserError (util/errors.py).

    notes: the precision notes already printed, shared by the networks of one command so that an
    ensemble (or any caller building several cores) prints each note once."""
    notes = set() if notes is None else notes
    # --scales/--flip/several --model; None: one core
    ensemble = ensemble_from_args(args, lambda one: build_core(one, notes))
    if ensemble is not None:
        return ensemble
    try:
        device = resolve_device(args.device)
    except DeviceError as exc:  # a CUDA device on a machine without CUDA
        raise DataError("--device", exc.problem, "use --device cpu or auto") from None
    except RuntimeError:  # a device string torch does not know
        raise DataError("--device", f"unknown device {args.device!r}", "choose auto, cpu, cuda or cuda:i") from None
    for flag in ("top", "mem_every"):
        if getattr(args, flag) < 1:
            raise DataError(f"--{flag}", f"must be at least 1 (got {getattr(args, flag)})", "pass a positive value")
    for flag in ("max_mem_frames", "chunk_size", "object_batch"):
        if isinstance(getattr(args, flag), int) and getattr(args, flag) < 1:
            raise DataError(f"--{flag}", "must be at least 1", "pass a positive value or leave it out")
    if args.max_mem_mb is not None and not args.max_mem_mb > 0:
        raise DataError("--max_mem_mb", "must be positive", "pass a positive budget in MiB or leave it out")
    device = check_backend_args(args, device)
    video_batch_option(args)
    predictor = predictor_from_args(args, device, notes)
    check_similarity_flag(args, predictor.similarity)
    return predictor.new_core()


# the Predictor's argument -> the evaluation scripts' flag (for its errors)
FLAG_OF_ARGUMENT = {"top_k": "--top", "device": "--device", "amp": "--amp", "amp_dtype": "--amp_dtype",
                    "backend": "--backend", "onnx_dir": "--onnx_dir", "compile": "--compile"}


def core_options(args: argparse.Namespace) -> dict:
    """The InferenceCore options of the common flags (a new core option: one more entry here)."""
    return dict(top_k=args.top, mem_every=args.mem_every, include_last=args.include_last,
                max_mem_frames=args.max_mem_frames, max_mem_mb=args.max_mem_mb,
                chunk_size=args.chunk_size, object_batch=args.object_batch,
                kernel_sigma=getattr(args, "kernel_sigma", None))


def predictor_from_args(args: argparse.Namespace, device: torch.device, notes: set[str] | None = None) -> Predictor:
    """`Predictor.from_checkpoint` with the common flags (the datasets resize the frames themselves);
    its argument errors become DataErrors naming the flag; the precision note goes to stderr unless
    it is in `notes` (those already printed; it is added)."""
    try:
        predictor = Predictor.from_checkpoint(
            args.model, device=device, amp=args.amp, size=None, amp_dtype=args.amp_dtype,
            backend=args.backend, onnx_dir=args.onnx_dir, compile=args.compile, **core_options(args),
        )
    except PredictorError as exc:
        raise DataError(FLAG_OF_ARGUMENT.get(exc.where, f"--{exc.where}"), exc.problem, exc.fix) from None
    notes = set() if notes is None else notes
    if predictor.note and predictor.note not in notes:
        print(predictor.note, file=sys.stderr)
        notes.add(predictor.note)
    return predictor


def check_similarity_flag(args: argparse.Namespace, trained: str) -> None:
    """DataError if `--similarity` names another similarity than the one the weights were trained with
    (`trained`; weights trained for one similarity give wrong masks with another)."""
    wanted = getattr(args, "similarity", None)
    if wanted is not None and wanted != trained:
        raise DataError(
            "--similarity", f"{wanted} contradicts {args.model}, which was trained with {trained} "
            "similarity", f"leave --similarity out or pass --similarity {trained}",
        )


def check_backend_args(args: argparse.Namespace, device: torch.device) -> torch.device:
    """The device for `--backend` (exported backends: the CPU, also under --device auto); DataError on conflicts."""
    if args.backend == "pytorch":
        if args.onnx_dir is not None:
            raise DataError("--onnx_dir", "is read by the exported backends only",
                            "add --backend onnxruntime or openvino, or leave --onnx_dir out")
        return device
    if args.compile:
        raise DataError("--compile", f"applies to the pytorch backend, not {args.backend}",
                        "leave --compile out or use --backend pytorch")
    if args.amp and args.backend == "onnxruntime":
        raise DataError("--amp", "onnxruntime runs the exported networks in fp32 only",
                        "leave --amp out, or use --backend openvino (bf16) or pytorch")
    if args.device in (None, "", "auto"):
        return torch.device("cpu")
    if device.type != "cpu":
        raise DataError("--device", f"--backend {args.backend} runs on the CPU", "use --device cpu or auto")
    return device


def report_errors(fn: Callable[[], int], tool: str | None = None) -> int:
    """Run a script body: a user mistake or a write error becomes one `error:` line on stderr and exit
    code 1, SIGINT / SIGTERM one `interrupted by ...` line and 130 / 143 (util/outputs.py run_command)."""
    return run_command(fn, resume_hint="rerun the same command to redo the unfinished videos", tool=tool)
