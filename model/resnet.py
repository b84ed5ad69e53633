"""Backbones: torchvision ResNet-50 (key encoder) and a biased-conv ResNet-18 (value encoder).

Both stop at layer3 (res4, stride 16) as in STM/STCN (section 3.1). ImageNet weights come from
torchvision's weights API; the value encoder's extra mask input channels are initialised
orthogonally. `pad_input_channels` is the only place where a first convolution is widened, for
ImageNet initialisation and for turning a stage-0 (single object) checkpoint into a multi-object one.
"""
from __future__ import annotations

import urllib.error
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models

from util.defaults import KEY_BACKBONES  # ResNet-50, WideResNet-50, with or without ASPP
from util.errors import UserError

RESNET18_BLOCKS = (2, 2, 2)  # BasicBlocks in layer1..layer3 of ResNet-18


class WeightsUnavailableError(UserError, RuntimeError):
    """ImageNet weights could not be fetched (offline machine, blocked host)."""


def pad_input_channels(weight: Tensor, in_channels: int, mode: str) -> Tensor:
    """Widen a conv weight (O, I, kh, kw) to (O, in_channels, kh, kw) by appending new input channels.

    mode="zeros": the new channels contribute nothing (a stage-0 network evaluated as multi-object
    behaves exactly as the single-object one). mode="orthogonal": orthogonally initialised channels, the start of
    further training (the mask channels of the ImageNet value encoder, stage 0 -> 1/2/3).
    """
    out_ch, have, kh, kw = weight.shape
    if in_channels < have:
        raise ValueError(f"cannot shrink a conv from {have} to {in_channels} input channels")
    if in_channels == have:
        return weight
    pad = torch.zeros(out_ch, in_channels - have, kh, kw, dtype=weight.dtype, device=weight.device)
    if mode == "orthogonal":
        nn.init.orthogonal_(pad)
    elif mode != "zeros":
        raise ValueError(f"unknown padding mode {mode!r}")
    return torch.cat([weight, pad], dim=1)


def imagenet_state_dict(weights: models.WeightsEnum) -> dict[str, Tensor]:
    """Fetch (or read from the torch hub cache) torchvision ImageNet weights, with a clear offline error."""
    try:
        return weights.get_state_dict(progress=True)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise WeightsUnavailableError(
            cached, f"could not fetch ImageNet weights {weights.url} ({exc})",
            "place that file there or build the network with pretrained=False (e.g. when loading a checkpoint)",
        ) from exc


DEFAULT_KEY_BACKBONE = "resnet50"  # the paper's (and the released weights')


def resnet50_trunk(
    pretrained: bool, backbone: str = DEFAULT_KEY_BACKBONE, dilate_layer4: bool = False
) -> models.ResNet:
    """torchvision ResNet-50 (or WideResNet-50-2 for the "wrn50*" backbones); only conv1/bn1/layer1..layer3
    are used by the key encoder. dilate_layer4: layer4 keeps stride 16 with dilation 2 instead of striding to
    32 (DeepLab's output stride 16, the scribble-to-mask network's backbone); the weights are the same."""
    if backbone not in KEY_BACKBONES:
        raise ValueError(f"unknown key-encoder backbone {backbone!r} (choose {', '.join(KEY_BACKBONES)})")
    build = models.resnet50 if backbone == DEFAULT_KEY_BACKBONE else models.wide_resnet50_2
    net = build(weights=None, replace_stride_with_dilation=[False, False, dilate_layer4])
    if pretrained:
        net.load_state_dict(imagenet_state_dict(key_backbone_weights(backbone)))
    return net


def key_backbone_weights(backbone: str = DEFAULT_KEY_BACKBONE) -> models.WeightsEnum:
    """torchvision's ImageNet weights of a key-encoder backbone."""
    if backbone == DEFAULT_KEY_BACKBONE:
        return models.ResNet50_Weights.IMAGENET1K_V1
    return models.Wide_ResNet50_2_Weights.IMAGENET1K_V1


def imagenet_files(backbone: str = DEFAULT_KEY_BACKBONE) -> dict[str, Path]:
    """URL -> file in the torch hub cache, of every ImageNet weights file an ImageNet-initialised STCN
    reads: its key encoder's backbone and the value encoder's ResNet-18."""
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    urls = (key_backbone_weights(backbone).url, models.ResNet18_Weights.IMAGENET1K_V1.url)
    return {url: cache / Path(url).name for url in urls}


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    # the released value encoder has a bias on every convolution
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1)


class BasicBlock(nn.Module):
    """ResNet BasicBlock with biased convolutions (parameter names as torchvision's)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Trunk(nn.Module):
    """ResNet-18 up to layer3 (256 channels, stride 16) taking RGB plus `extra_in` mask channels."""

    def __init__(self, extra_in: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3 + extra_in, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths = (64, 128, 256)
        in_ch = 64
        for i, (width, blocks) in enumerate(zip(widths, RESNET18_BLOCKS)):
            stride = 1 if i == 0 else 2
            layer = [BasicBlock(in_ch, width, stride)] + [BasicBlock(width, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            in_ch = width

    def load_imagenet(self) -> None:
        """Copy torchvision's ImageNet ResNet-18 weights; biases start at zero, mask channels orthogonal."""
        source = imagenet_state_dict(models.ResNet18_Weights.IMAGENET1K_V1)
        own = self.state_dict()
        for key, value in source.items():
            if key not in own:
                continue  # layer4 and fc are not used
            if key == "conv1.weight":
                value = pad_input_channels(value, own[key].shape[1], "orthogonal")
            own[key] = value
        for key in own:
            if key.endswith(".bias") and key not in source:
                own[key] = torch.zeros_like(own[key])
        self.load_state_dict(own)
