"""Frames for the network: ImageNet normalisation and the one frame resize rule.

Every path that feeds frames to the network (evaluation, the Python API, training) normalises with
the ImageNet statistics of the encoders' backbones and, at inference, resizes the *normalised* float
frame with `resize_frame` to `resized_shape(h, w, short_side)` (shorter side `short_side`, the longer
one truncated). Keeping the order (normalise, then resize) and the interpolation in one place keeps
every path's masks identical.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

# the evaluation size and the network's smallest shorter side (the reasoning is in `util.defaults`)
from util.defaults import EVAL_SHORT_SIDE, MIN_FEATURE_CELLS, MIN_SHORT_SIDE  # noqa: F401

# ImageNet statistics of the torchvision ResNet backbones (the encoders are ImageNet pre-trained).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)



def _stats(x: Tensor) -> tuple[Tensor, Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return mean, std


def im_normalization(x: Tensor) -> Tensor:
    """Normalise a float image in [0, 1] of shape (..., 3, H, W) with the ImageNet statistics."""
    mean, std = _stats(x)
    return (x - mean) / std


def im_denormalization(x: Tensor) -> Tensor:
    """Inverse of `im_normalization` (e.g. to show training frames in TensorBoard), clamped to [0, 1]."""
    mean, std = _stats(x)
    return (x * std + mean).clamp(0, 1)


def normalise(img: Image.Image | np.ndarray | Tensor) -> Tensor:
    """RGB frame (a PIL image, or an H, W, 3 uint8 array or tensor) -> 3, H, W float tensor
    normalised with the ImageNet statistics (on the tensor's device; numpy and PIL: the CPU)."""
    if isinstance(img, Tensor):
        x = img.permute(2, 0, 1).float().div_(255)
    else:
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
    return im_normalization(x)


def resize_frame(x: Tensor, size: tuple[int, int], antialias: bool = False) -> Tensor:
    """Normalised frame (..., 3, H, W) float -> the same at `size` (H', W'): the paper's frame resize.

    Plain bicubic interpolation, `F.interpolate(mode="bicubic", align_corners=False)`: output pixel
    i samples the source at (i + 0.5) * H / H' - 0.5 with torch's cubic kernel (a = -0.75, 4 taps
    whatever the scale). That is torchvision 0.9.1's tensor `Resize(480, BICUBIC)`
    as the original STCN applied it after normalising, the setting of the published numbers.
    antialias=True: what the same code does under torchvision >= 0.17, whose tensor `Resize`
    antialiases by default (torch's antialiased bicubic: Keys' a = -0.5, the kernel stretched by
    the scale factor when shrinking, as PIL).
    Not clamped: the normalised float has no range to clamp to, and neither torchvision version
    clamps a float tensor (only uint8), so overshoot at edges reaches the network as in the paper.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    batch = x.reshape(-1, *x.shape[-3:])
    out = F.interpolate(batch, size=tuple(size), mode="bicubic", align_corners=False, antialias=antialias)
    return out.reshape(*x.shape[:-2], *out.shape[-2:])


def resize_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """(H, W) integer label map -> long label map at `size` (H', W'), nearest neighbour (the annotations' resize)."""
    if tuple(labels.shape) == tuple(size):
        return labels.long()
    return F.interpolate(labels[None, None].float(), size=tuple(size), mode="nearest")[0, 0].long()
