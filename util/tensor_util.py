"""Padding frames to a multiple of the network stride and undoing it."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from util.defaults import STRIDE  # res4's


def pad_divide_by(x: Tensor, d: int = STRIDE) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two dims of x to multiples of d, split evenly between both sides.

    Returns the padded tensor and the padding (left, right, top, bottom) for `unpad`.
    """
    h, w = x.shape[-2:]
    ph = (d - h % d) % d
    pw = (d - w % d) % d
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph == 0 and pw == 0:
        return x, pad
    return F.pad(x, pad), pad


def unpad(x: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    """Remove the padding added by pad_divide_by."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
