"""The difference-aware fusion network of interactive STCN (MiVOS: Cheng, Tai and Tang, CVPR 2021).

A frame ti that lies between two interacted frames has two propagated masks of each object: the one
stored from the earlier interaction at tc and the one just propagated from the current interaction at
tr. The network decides per pixel which to trust, from nine input channels in this order (the order the
released `fusion_stcn.pth` was trained with):

    0..2  the frame ti, ImageNet-normalised RGB
    3     `stored`: the object's probability already stored at ti (from tc's pass)
    4     `new`: the object's probability newly propagated from tr
    5     positive difference at tr (the new interaction added the object there), carried to ti
    6     negative difference at tr (the interaction removed it), carried to ti
    7     nc = |tc - ti| / |tc - tr|
    8     nr = |tr - ti| / |tc - tr|

The difference maps are clamp(new - old, 0, 1) and clamp(old - new, 0, 1) of the probabilities at tr,
carried to ti by the key affinity between the two frames (the interactive core computes them). The body
is a 3x3 conv 9 -> 32 with ReLU, two residual blocks (conv, ReLU, conv, added to their input, then ReLU)
and a 3x3 conv 32 -> 1: the object's logit. A sigmoid and soft aggregation with the background follow.

Parameter names (`conv1.0`, `conv2.0`, `conv2.2`, `conv3.*`, `final_conv`) are the released file's;
`load_fusion` checks it first against its contract (12 tensors, 39,905 values; the tests hold the list
in tests/fixtures/fusion-stcn-state-dict.tsv). MiVOS's STM version (`fusion.pth`) has the same layout,
so it cannot be told apart by its shapes; it was trained with STM's masks, not STCN's.
"""
from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from model.checkpoint import load_released

FUSION_IN_CHANNELS = 9  # RGB, stored, new, positive and negative difference, nc, nr
FUSION_WIDTH = 32


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1)


def residual_branch() -> nn.Sequential:
    """conv, ReLU, conv (keys 0 and 2): the branch of a residual block."""
    return nn.Sequential(conv3x3(FUSION_WIDTH, FUSION_WIDTH), nn.ReLU(), conv3x3(FUSION_WIDTH, FUSION_WIDTH))


class FusionNet(nn.Module):
    """Difference-aware fusion: per object, stored and new masks at frame ti -> one logit map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(conv3x3(FUSION_IN_CHANNELS, FUSION_WIDTH), nn.ReLU())
        self.conv2 = residual_branch()
        self.conv3 = residual_branch()
        self.relu = nn.ReLU()
        self.final_conv = conv3x3(FUSION_WIDTH, 1)

    def forward(self, image: Tensor, stored: Tensor, new: Tensor, diff: Tensor, time: Tensor) -> Tensor:
        """image B,3,H,W; stored, new B,1,H,W probabilities; diff B,2,H,W (positive, negative);
        time B,2,H,W or B,2 (nc, nr: spread over the frame). Returns B,1,H,W logits."""
        if time.dim() == 2:
            time = time[:, :, None, None].expand(-1, -1, *image.shape[-2:])
        x = torch.cat([image, stored, new, diff, time], dim=1)
        if x.shape[1] != FUSION_IN_CHANNELS:
            raise ValueError(f"the fusion inputs have {x.shape[1]} channels together, not {FUSION_IN_CHANNELS} "
                             "(image 3, stored 1, new 1, diff 2, time 2)")
        x = self.conv1(x)
        x = self.relu(x + self.conv2(x))
        x = self.relu(x + self.conv3(x))
        return self.final_conv(x)


def load_fusion(path: str | os.PathLike, device: str | torch.device = "cpu") -> FusionNet:
    """The released fusion network for STCN from `path` (strict), in eval mode on `device`.

    Anything else (a missing or unreadable file, STCN's or the scribble-to-mask network's weights, a
    ResNet, other shapes) raises `CheckpointError` naming the file, what it looks like and the fix.
    """
    return load_released(path, FusionNet, "fusion_stcn", device)
