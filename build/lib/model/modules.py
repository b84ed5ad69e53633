"""The boxes of STCN's figure 1: key encoder, value encoder with feature fusion, projections, decoder.

Glossary (stride suffixes as in the field):
    f16, f8, f4   key-encoder features at stride 16 (1024 ch), 8 (512 ch), 4 (256 ch)
    k16           key, stride 16, C_k = 64 channels
    v16 / qv16    query value: key_comp(f16), 512 channels, concatenated to the memory readout
    mv16          memory value from the value encoder, C_v = 512 channels
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.cbam import CBAM
from model.resnet import DEFAULT_KEY_BACKBONE, ResNet18Trunk, resnet50_trunk

KEY_DIM = 64  # C_k (section 4.1: C_k = 64 in all experiments)
VALUE_DIM = 512  # C_v (section 3.1, following STM)
F16_DIM = 1024  # ResNet-50 res4 channels
VALUE_TRUNK_DIM = 256  # ResNet-18 layer3 channels


def freeze_batchnorm(module: nn.Module) -> None:
    """Keep every BatchNorm in eval mode: running statistics never update (supplementary F.1).

    Affine parameters still receive gradients; only the statistics are frozen.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class ResBlock(nn.Module):
    """Pre-activation BasicBlock without normalisation: x + conv(relu(conv(relu(x)))).

    A 3x3 `downsample` conv maps the shortcut when the channel count changes.
    """

    def __init__(self, in_ch: int, out_ch: int | None = None) -> None:
        super().__init__()
        out_ch = in_ch if out_ch is None else out_ch
        self.downsample = None if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        r = self.conv2(F.relu(self.conv1(F.relu(x))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return shortcut + r

    def forward_cat(self, x: Tensor, shared: Tensor, owners: Tensor | None = None) -> Tensor:
        """`self(cat[x, shared])` where `shared` (batch 1) is the same for every entry of x (batch N),
        or, with `owners` (N indices into shared's batch B), entry n pairs with `shared[owners[n]]`.

        A convolution over concatenated channels is the sum of convolutions over each part, and
        relu acts channel-wise, so the `shared` half of conv1 and of the shortcut conv is computed
        once per entry of `shared` and broadcast (or gathered by `owners`) over the N entries. Same
        result up to float summation order.
        """
        if owners is None and (shared.shape[0] == x.shape[0] or self.downsample is None):
            return self(torch.cat([x, shared.expand(x.shape[0], *shared.shape[1:])], dim=1))
        if owners is None and shared.shape[0] != 1:
            raise ValueError(f"shared features must have batch 1 or {x.shape[0]}, got {shared.shape[0]}")
        if self.downsample is None:
            return self(torch.cat([x, shared[owners]], dim=1))

        def take(t: Tensor) -> Tensor:
            return t if owners is None else t[owners]

        split = x.shape[1]
        w1, wd = self.conv1.weight, self.downsample.weight
        h = F.conv2d(F.relu(x), w1[:, :split], self.conv1.bias, padding=1)
        h = h + take(F.conv2d(F.relu(shared), w1[:, split:], padding=1))
        shortcut = F.conv2d(x, wd[:, :split], self.downsample.bias, padding=1)
        shortcut = shortcut + take(F.conv2d(shared, wd[:, split:], padding=1))
        return shortcut + self.conv2(F.relu(h))


class FeatureFusionBlock(nn.Module):
    """Feature reuse (section 3.1, supplementary F.2): value-trunk features ++ key f16, then
    ResBlock(1280 -> 512), CBAM (added residually), ResBlock(512)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.block1 = ResBlock(in_ch, out_ch)
        self.attention = CBAM(out_ch)
        self.block2 = ResBlock(out_ch, out_ch)

    def forward(self, x: Tensor, f16: Tensor) -> Tensor:
        """x: N, 256, h, w value-trunk features; f16: N or 1 (shared by all N objects), 1024, h, w."""
        x = self.block1.forward_cat(x, f16)
        return self.block2(x + self.attention(x))


ASPP_RATES = (6, 12, 18)  # DeepLabv3's atrous rates at output stride 16 (Chen et al. 2017, the paper's [88])
ASPP_DIM = 256  # channels of each ASPP branch (DeepLabv3's)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling on f16, for supplementary E's "WideResNet-50 + ASPP" variant.

    Branches as DeepLabv3: a 1x1 conv, three 3x3 convs dilated by ASPP_RATES, and image-level pooling
    (global average -> 1x1 conv -> broadcast), each ASPP_DIM channels with ReLU; their concatenation
    is projected back to the input's channels and added to it:
        f16' = f16 + P(relu([b_1(f16), b_6(f16), b_12(f16), b_18(f16), pool(f16)])).
    The paper names ASPP but not its place or width; these are this project's choices: after res4,
    residual so that everything downstream keeps its 1024 channels, biased convolutions instead of
    BatchNorm (BatchNorm is frozen in training, supplementary F.1, so new statistics would never be
    learnt), and P initialised to zero so that training starts from the backbone's own features.
    """

    def __init__(self, channels: int, width: int = ASPP_DIM, rates: tuple[int, ...] = ASPP_RATES) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Conv2d(channels, width, 1)]
            + [nn.Conv2d(channels, width, 3, padding=r, dilation=r) for r in rates]
        )
        self.pool = nn.Conv2d(channels, width, 1)
        self.project = nn.Conv2d(width * (len(rates) + 2), channels, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])
        return x + self.project(F.relu(torch.cat([b(x) for b in self.branches] + [pooled], dim=1)))


class KeyEncoder(nn.Module):
    """ResNet-50 (or supplementary E's WideResNet-50, optionally + ASPP) up to res4; returns
    (f16, f8, f4). BatchNorm frozen."""

    def __init__(self, pretrained: bool = True, backbone: str = DEFAULT_KEY_BACKBONE) -> None:
        super().__init__()
        net = resnet50_trunk(pretrained, backbone)
        self.backbone = backbone
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.res2 = net.layer1  # named res2 in the released checkpoint
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        if backbone.endswith("_aspp"):
            self.aspp = ASPP(F16_DIM)
        freeze_batchnorm(self)

    def train(self, mode: bool = True) -> KeyEncoder:
        super().train(mode)
        freeze_batchnorm(self)
        return self

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(image))))
        f4 = self.res2(x)  # B, 256, H/4, W/4
        f8 = self.layer2(f4)  # B, 512, H/8, W/8
        f16 = self.layer3(f8)  # B, 1024, H/16, W/16
        if hasattr(self, "aspp"):
            f16 = self.aspp(f16)
        return f16, f8, f4


class ValueEncoder(ResNet18Trunk):
    """ResNet-18 up to res4 on [RGB, object mask(, other objects' mask)], fused with the key f16.

    `num_masks` = 2 for the multi-object network (5 input channels), 1 for the stage-0 network
    (4 input channels). BatchNorm frozen.
    """

    def __init__(self, num_masks: int = 2, pretrained: bool = True) -> None:
        super().__init__(extra_in=num_masks)
        self.num_masks = num_masks
        if pretrained:
            self.load_imagenet()
        self.fuser = FeatureFusionBlock(F16_DIM + VALUE_TRUNK_DIM, VALUE_DIM)
        freeze_batchnorm(self)

    def train(self, mode: bool = True) -> ValueEncoder:
        super().train(mode)
        freeze_batchnorm(self)
        return self

    def forward(self, x: Tensor, key_f16: Tensor) -> Tensor:
        """x: N, 3 + num_masks, H, W (image and mask channels); key_f16: N or 1, 1024, H/16, W/16."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))  # N, 256, H/16, W/16
        return self.fuser(x, key_f16)  # N, 512, H/16, W/16


class KeyProjection(nn.Module):
    """3x3 conv from f16 to the key space; orthogonal weight, zero bias."""

    def __init__(self, in_ch: int, key_dim: int) -> None:
        super().__init__()
        self.key_proj = nn.Conv2d(in_ch, key_dim, 3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight)
        nn.init.zeros_(self.key_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.key_proj(x)


class UpsampleBlock(nn.Module):
    """skip_conv(skip) + 2x bilinear(up), then a ResBlock."""

    def __init__(self, skip_ch: int, up_ch: int, out_ch: int, scale: int = 2) -> None:
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_ch, up_ch, 3, padding=1)
        self.out_conv = ResBlock(up_ch, out_ch)
        self.scale = scale

    def forward(self, skip: Tensor, up: Tensor, owners: Tensor | None = None) -> Tensor:
        # skip may have batch 1 while up has one entry per object: the sum broadcasts; with `owners`
        # skip has one entry per frame and owners[n] is the frame of object n (its conv runs per frame)
        up = F.interpolate(up, scale_factor=self.scale, mode="bilinear", align_corners=False)
        skip = self.skip_conv(skip)
        return self.out_conv((skip if owners is None else skip[owners]) + up)


class Decoder(nn.Module):
    """STM-style decoder: compress(readout ++ qv16) at stride 16, up to 8 and 4 with key skip features,
    3x3 prediction of one logit map, x4 bilinear to the input resolution (section 3.2)."""

    def __init__(self) -> None:
        super().__init__()
        self.compress = ResBlock(2 * VALUE_DIM, 512)
        self.up_16_8 = UpsampleBlock(512, 512, 256)  # skip: f8 (512 ch)
        self.up_8_4 = UpsampleBlock(256, 256, 256)  # skip: f4 (256 ch)
        self.pred = nn.Conv2d(256, 1, 3, padding=1)

    def forward(self, readout: Tensor, qv16: Tensor, f8: Tensor, f4: Tensor, owners: Tensor | None = None) -> Tensor:
        """readout: N, 512, H/16, W/16 (one per object); qv16, f8, f4: N or 1 (shared by all objects),
        or B frames with `owners` (N long indices: the frame of each object; several videos batched).

        Returns N, 1, H, W logits.
        """
        x = self.compress.forward_cat(readout, qv16, owners)  # query half once per frame
        x = self.up_16_8(f8, x, owners)
        x = self.up_8_4(f4, x, owners)
        x = self.pred(F.relu(x))
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
