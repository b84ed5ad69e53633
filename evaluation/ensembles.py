"""Multi-scale, flip, kernelized reading and model ensembles from the command line (supplementary E).

    --model a.pth b.pth c.pth    an ensemble: every network propagates with its own memory
    --scales 480 600             every network at each shorter side (resized from the original frame)
    --flip                       every one of those also on the mirrored video
    --kernel_sigma [S]           kernelized memory reading (default sigma 7) for the variants above 480p

The variants are every combination network x scale x flip; their probabilities are averaged at the
frame's original size before the argmax (inference_core/ensemble.py). One network, no --scales and
no --flip is the ordinary single core, untouched; `--scales 480` on its own (where 480 is the video's
network size) and `--model x.pth` on their own give today's masks bit for bit. The timing lines count
every frame once, whatever the number of variants: the time is that of all variants together.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import torch

from evaluation.datasets import EVAL_SHORT_SIDE, EvalVideo
from inference_core.core import InferenceCore
from inference_core.ensemble import EnsembleCore, ScaledFrame, Variant, variant_core
from util.defaults import KERNEL_ABOVE_SIDE, KERNEL_SIGMA, MIN_SHORT_SIDE
from util.io import DataError

TABLE10_SCALES = (480, 600)  # supplementary E: "480p/600p and original/flipped images"


def model_paths(args: argparse.Namespace) -> list[str]:
    """Every `--model` path (the default one when the flag is not given)."""
    return list(getattr(args, "models", None) or [args.model])


def weight_inputs(args: argparse.Namespace) -> list[str | None]:
    """What the networks are read from, inputs that no output may touch (util/outputs.py): every
    `--model` path and `--onnx_dir` (None when not given)."""
    return [*model_paths(args), getattr(args, "onnx_dir", None)]


def check_ensemble_args(args: argparse.Namespace) -> None:
    """The ensemble flags' user mistakes as DataError (one `error:` line), before any network is loaded."""
    scales = getattr(args, "scales", None)
    sigma = getattr(args, "kernel_sigma", None)
    if scales is not None:
        low = [s for s in scales if s < MIN_SHORT_SIDE]
        if low:
            raise DataError("--scales", f"{low[0]} is below the network's minimum shorter side of {MIN_SHORT_SIDE}",
                            f"pass shorter sides of {MIN_SHORT_SIDE} pixels or more (480 600 as Table 10)")
        if len(set(scales)) != len(scales):
            raise DataError("--scales", f"a scale is given twice ({' '.join(map(str, scales))})",
                            "give each shorter side once")
        size = getattr(args, "size", EVAL_SHORT_SIDE)
        if size != EVAL_SHORT_SIDE and size not in scales:  # --size: the network size; --scales: the variants'
            raise DataError("--size", f"--size {size} is not one of --scales {' '.join(map(str, scales))}",
                            "pass the sizes in --scales only (or include --size among them)")
    if sigma is not None:
        if not sigma > 0:
            raise DataError("--kernel_sigma", f"must be positive (got {sigma:g})",
                            f"pass a standard deviation in stride-16 cells ({KERNEL_SIGMA:g} as KMN) or leave it out")
        if not any(s > KERNEL_ABOVE_SIDE for s in scales or ()):
            raise DataError("--kernel_sigma", f"applies to the scales above {KERNEL_ABOVE_SIDE}p and none is given",
                            "add --scales 480 600 (Table 10), or leave --kernel_sigma out")
    if not is_ensemble(args):
        return
    if len(model_paths(args)) > 1 and getattr(args, "onnx_dir", None) is not None:
        raise DataError("--onnx_dir", "holds the export of one network, and several --model are given",
                        "leave --onnx_dir out (each network is exported into the cache)")
    if (getattr(args, "video_batch", None) or 1) > 1:
        raise DataError("--video_batch", "batches single cores, not the variants of --scales/--flip/several --model",
                        "leave --video_batch out with an ensemble")


def is_ensemble(args: argparse.Namespace) -> bool:
    """Whether the flags ask for more than the single core of today (any --scales, --flip, several --model)."""
    return getattr(args, "scales", None) is not None or getattr(args, "flip", False) or len(model_paths(args)) > 1


def variants_from_args(args: argparse.Namespace) -> list[Variant]:
    """Every network x scale x flip, in that order (the order of the average)."""
    sides = args.scales or [None]
    flips = (False, True) if args.flip else (False,)
    sigma = args.kernel_sigma
    return [
        Variant(model, side, flip, sigma if side is not None and side > KERNEL_ABOVE_SIDE else None)
        for model in model_paths(args) for side in sides for flip in flips
    ]


def ensemble_from_args(
    args: argparse.Namespace, build_one: Callable[[argparse.Namespace], InferenceCore]
) -> EnsembleCore | None:
    """The ensemble the flags ask for, or None for the single core of today (after checking the flags).

    build_one: builds the core of one network from flags like `args` (evaluation/run_video.py
    build_core); it is called once per network, and every variant of that network is a core on the
    same network with its own memory (`variant_core`).
    """
    check_ensemble_args(args)
    if not is_ensemble(args):
        return None
    variants = variants_from_args(args)
    cores: dict[str, InferenceCore] = {}
    for model in dict.fromkeys(v.model for v in variants):
        single = {**vars(args), "model": model, "models": [model], "scales": None, "flip": False, "kernel_sigma": None}
        cores[model] = build_one(argparse.Namespace(**single))
    return EnsembleCore([variant_core(cores[v.model], v.kernel_sigma) for v in variants], variants)


# ------------------------------------------------------------------------- inputs of the loop
def frame_input(core: InferenceCore | EnsembleCore, video: EvalVideo, index: int) -> torch.Tensor | ScaledFrame:
    """Frame `index` as `core.step` takes it, on the core's device: at the network size for a core, at
    every side of an ensemble (read once, resized from the original) with the original size."""
    if not isinstance(core, EnsembleCore):
        return video.load_image(index).to(core.device)
    images = video.load_images(index, core.sides)
    return ScaledFrame({side: x.to(core.device) for side, x in images.items()}, video.size)


def annotation_input(
    core: InferenceCore | EnsembleCore, video: EvalVideo, index: int, mask: torch.Tensor, start: Sequence[int]
) -> torch.Tensor | dict:
    """The annotation `core.step` takes: `mask` (the objects `start` at the network size) for a core;
    for an ensemble, the same objects' annotation at each of its sides (resized from the original)."""
    if not isinstance(core, EnsembleCore):
        return mask
    keep = torch.tensor(list(start), dtype=torch.long)
    return {side: torch.where(torch.isin(m, keep), m, torch.zeros_like(m)).to(core.device)
            for side, m in video.load_masks(index, core.sides).items()}
