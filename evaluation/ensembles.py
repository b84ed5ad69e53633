"""Multi-scale, flip, kernelized reading and model ensembles from the command line (supplementary E): the
inputs of the loop for an EnsembleCore (`Predictor.new_core` builds it from the options).

    --model a.pth b.pth c.pth    an ensemble: every network propagates with its own memory
    --scales 480 600             every network at each shorter side (resized from the original frame)
    --flip                       every one of those also on the mirrored video
    --kernel_sigma [S]           kernelized memory reading (default sigma 7) for the variants above 480p

The variants are every combination network x scale x flip; their probabilities are averaged at the
frame's original size before the argmax (`EnsembleCore`). One network, no --scales and
no --flip is the ordinary single core, untouched; `--scales 480` on its own (where 480 is the video's
network size) and `--model x.pth` on their own give the single core's masks bit for bit. The timing lines count
every frame once, whatever the number of variants: the time is that of all variants together.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from evaluation.datasets import EvalVideo
from inference_core.core import InferenceCore
from inference_core.ensemble import EnsembleCore, ScaledFrame


def model_paths(args: argparse.Namespace) -> list[str]:
    """Every `--model` path (the default one when the flag is not given)."""
    return list(getattr(args, "models", None) or [args.model])


def weight_inputs(args: argparse.Namespace) -> list[str | None]:
    """What the networks are read from, inputs that no output may touch: every
    `--model` path and `--onnx_dir` (None when not given)."""
    return [*model_paths(args), getattr(args, "onnx_dir", None)]


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
