"""The scribble-to-mask network (S2M) of interactive STCN (MiVOS: Cheng, Tai and Tang, CVPR 2021).

DeepLabV3+ (Chen et al., ECCV 2018) on a ResNet-50 whose first convolution reads six channels, one
object at a time:

    channel 0..2  the frame, ImageNet-normalised RGB (`util.frames.im_normalization`)
    channel 3     that object's current hard mask (1 where the frame's label map is this object)
    channel 4     positive scribbles: this object's strokes
    channel 5     negative scribbles: every other label's strokes, background strokes included
                  (pixels under no stroke are 0 in both maps)

The scribble maps are the rasterised strokes dilated by a 3x3 square (`util.scribbles.s2m_maps`). The
output is one logit map at the input's size; a sigmoid gives the object's probability, and the
objects of a frame are then combined with the background by soft aggregation (`model.aggregate`;
MiVOS uses the "hard" variant, logits x 1000, for a scribble's mask).

The released weights (`saves/s2m.pth`) were trained on frames padded to a multiple of 16 on each
side (zeros around the normalised image, the mask and the scribble maps; `util.tensor_util`), and
that is how they should be fed. The backbone keeps output stride 16: layer4 trades its stride for
dilation 2; ASPP samples at rates 6, 12 and 18 around a 1x1 branch and an image-level branch; the
decoder joins the ASPP output, upsampled to stride 4, with layer1's 256 channels reduced to 48.

Parameter names (`backbone.layer4...`, `classifier.aspp.convs.4.1...`) are those of the released
file, so it loads with strict=True; `load_s2m` checks it first against its contract (368 tensors,
39,822,974 values; the tests hold the list in tests/fixtures/s2m-state-dict.tsv).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from model.checkpoint import load_released
from model.resnet import resnet50_trunk

S2M_IN_CHANNELS = 6  # RGB, the object's mask, positive and negative scribbles
ASPP_RATES = (6, 12, 18)  # the atrous rates at output stride 16
ASPP_DROPOUT = 0.1  # before the decoder (training only: eval mode skips it)
LOW_LEVEL_IN, LOW_LEVEL_OUT = 256, 48  # layer1's channels, reduced before the decoder joins them
HIGH_LEVEL_IN, HEAD_WIDTH = 2048, 256  # layer4's channels; ASPP's and the decoder's width


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    """A bias-free convolution (same padding), batch norm and ReLU: indices 0, 1, 2 of the released keys."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
    )


class DilatedResNet50(nn.Module):
    """ResNet-50 with a six-channel stem, layer4 dilated (stride 16); returns (layer1, layer4) features."""

    def __init__(self, in_channels: int = S2M_IN_CHANNELS) -> None:
        super().__init__()
        trunk = resnet50_trunk(pretrained=False, dilate_layer4=True)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1, self.relu, self.maxpool = trunk.bn1, trunk.relu, trunk.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)  # stride 4, 256 channels
        return low, self.layer4(self.layer3(self.layer2(low)))  # stride 16, 2048 channels


class DeepLabV3PlusHead(nn.Module):
    """ASPP on the stride-16 features, upsampled and joined with the reduced stride-4 features, then
    a 3x3 conv block and a 1x1 classifier (one channel: the object's logit)."""

    def __init__(self) -> None:
        super().__init__()
        self.project = conv_bn_relu(LOW_LEVEL_IN, LOW_LEVEL_OUT, 1)
        self.aspp = ASPP(HIGH_LEVEL_IN, list(ASPP_RATES), HEAD_WIDTH)
        self.aspp.project[-1].p = ASPP_DROPOUT
        self.classifier = nn.Sequential(
            *conv_bn_relu(LOW_LEVEL_OUT + HEAD_WIDTH, HEAD_WIDTH, 3), nn.Conv2d(HEAD_WIDTH, 1, kernel_size=1)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        low = self.project(low)
        high = F.interpolate(self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(torch.cat([low, high], dim=1))


class S2M(nn.Module):
    """Scribble-to-mask: B, 6, H, W (see the module docstring for the channels) -> B, 1, H, W logits."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = DilatedResNet50()
        self.classifier = DeepLabV3PlusHead()

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != S2M_IN_CHANNELS:
            raise ValueError(f"S2M takes B, {S2M_IN_CHANNELS}, H, W (RGB, mask, positive, negative), got "
                             f"{tuple(x.shape)}")
        logits = self.classifier(*self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def load_s2m(path: str | os.PathLike, device: str | torch.device = "cpu") -> S2M:
    """The released scribble-to-mask network from `path` (strict), in eval mode on `device`.

    Anything else (a missing or unreadable file, STCN's or the fusion network's weights, a ResNet, other
    shapes) raises `CheckpointError` naming the file, what it looks like and the fix.
    """
    return load_released(path, S2M, "s2m", device)
