"""Convolutional Block Attention Module (Woo et al., ECCV 2018), default setting.

Used once, inside the value encoder's feature fusion block (supplementary F.2). The attribute names
(`ChannelGate.mlp.1`, `SpatialGate.spatial.conv`) are those of the released checkpoint.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CBAM_REDUCTION = 16  # channel-gate bottleneck ratio (CBAM default)
CBAM_SPATIAL_KERNEL = 7  # spatial-gate kernel (CBAM default)


class _Conv(nn.Module):
    """A bare convolution kept in a wrapper so the parameter path reads `spatial.conv.*`."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=(kernel - 1) // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class ChannelGate(nn.Module):
    """Scales each channel by sigmoid(MLP(avg-pool) + MLP(max-pool))."""

    def __init__(self, channels: int, reduction: int = CBAM_REDUCTION) -> None:
        super().__init__()
        # index 0 is the flatten so that the linear layers sit at mlp.1 and mlp.3
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels, channels // reduction),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(avg + mx)[:, :, None, None]


class SpatialGate(nn.Module):
    """Scales each position by sigmoid(conv([max over channels, mean over channels]))."""

    def __init__(self, kernel: int = CBAM_SPATIAL_KERNEL) -> None:
        super().__init__()
        self.spatial = _Conv(2, 1, kernel)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """Channel gate followed by spatial gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ChannelGate = ChannelGate(channels)
        self.SpatialGate = SpatialGate()

    def forward(self, x: Tensor) -> Tensor:
        return self.SpatialGate(self.ChannelGate(x))
