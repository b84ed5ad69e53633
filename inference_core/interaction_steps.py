"""The per-frame steps of interactive segmentation that use networks besides STCN (MiVOS, Cheng, Tai and
Tang, CVPR 2021, section 3): an interaction turned into a mask by the scribble-to-mask network (S2M), and
the difference-aware fusion of a frame lying between two interactions.

Both networks are arguments (any module with the interface of `model.s2m.S2M` / `model.fusion.FusionNet`),
so these steps run with the released weights or with a stand-in. Tensors are at the padded network size
(sides multiples of 16), on the networks' device; probabilities are (1 + K, H, W), background first.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor

from model.aggregate import aggregate_logits, soft_aggregate
from model.memory_util import similarity, softmax

# S2M's aggregation with the background divides the logits by a very low temperature (MiVOS's "hard"
# variant, the one its S2M was trained with): the result is all but one-hot
HARD_LOGIT_SCALE = 1000.0


def hard_aggregate(prob: Tensor, dim: int) -> Tensor:
    """Soft aggregation (`model.aggregate`) with the logits multiplied by HARD_LOGIT_SCALE: per-object
    probabilities (K along `dim`) -> 1 + K probabilities, background first, nearly one-hot."""
    return torch.softmax(aggregate_logits(prob, dim) * HARD_LOGIT_SCALE, dim=dim)


def label_probabilities(labels: Tensor, num_objects: int) -> Tensor:
    """A label map (H, W; 0 = background, objects 1..K) as probabilities (1 + K, H, W): the objects'
    one-hot masks through soft aggregation, exactly as `InferenceCore` takes an annotated first frame."""
    one_hot = torch.stack([(labels == k).float() for k in range(1, num_objects + 1)], dim=0)
    return soft_aggregate(one_hot, dim=0)


@torch.inference_mode()
def s2m_probabilities(s2m: torch.nn.Module, image: Tensor, labels: Tensor, scribbles: Tensor,
                      autocast: AbstractContextManager | None = None) -> Tensor:
    """The scribble-to-mask step: a frame's new probabilities from its scribbles.

    image: 1, 3, H, W normalised; labels: H, W long, the frame's current hard label map (0..K);
    scribbles: K, 2, H, W, per object its positive and negative scribble map (0/1; dilated already).
    Per object the network sees cat(image, that object's current hard mask, positive, negative) and
    gives a logit; the sigmoids are combined by `hard_aggregate`. Returns 1 + K, H, W float32.
    """
    outputs = []
    with autocast or nullcontext():
        for k in range(1, scribbles.shape[0] + 1):
            x = torch.cat([image, (labels == k).to(image.dtype)[None, None], scribbles[k - 1 : k].to(image.dtype)], 1)
            outputs.append(torch.sigmoid(s2m(x).float()))
    return hard_aggregate(torch.cat(outputs, dim=0), dim=0)[:, 0]


def carried_differences(diff: Tensor, memory_key: Tensor, query_key: Tensor, kind: str = "l2") -> Tensor:
    """The interacted frame's mask differences carried to another frame (MiVOS's difference-aware fusion).

    diff: 1 + K, H, W (new minus stored probabilities at the interacted frame); memory_key, query_key:
    1, C_k, h, w (h, w = H/16, W/16), the interacted frame's key and the target frame's. The positive and
    negative parts of `diff` are area-downsampled to h, w, multiplied by the plain (not top-k) softmax
    affinity over the interacted frame's positions (similarity `kind`, the network's own) and upsampled
    bilinearly. Returns 1 + K, 2, H, W (positive, negative) float32.
    """
    h, w = query_key.shape[-2:]
    affinity = softmax(similarity(memory_key.flatten(2).float(), query_key.flatten(2).float(), kind))  # 1, h*w, h*w
    carried = torch.cat([
        F.interpolate(part[:, None].float(), size=(h, w), mode="area").flatten(2) @ affinity  # 1 + K, 1, h*w
        for part in (diff.clamp(0, 1), (-diff).clamp(0, 1))
    ], dim=1).view(-1, 2, h, w)
    return F.interpolate(carried, size=tuple(diff.shape[-2:]), mode="bilinear", align_corners=False)


@torch.inference_mode()
def fuse_frame(fusion: torch.nn.Module, image: Tensor, stored: Tensor, new: Tensor, carried: Tensor,
               tc: int, tr: int, ti: int, autocast: AbstractContextManager | None = None) -> Tensor:
    """The difference-aware fusion of frame ti, between an earlier interaction at tc and the current one at tr.

    image: 1, 3, H, W normalised; stored: 1 + K, H, W, the probabilities stored at ti (from tc's pass);
    new: 1 + K, H, W, those of tr's pass; carried: 1 + K, 2, H, W (`carried_differences`). The time
    planes are nc = |tc - ti| / |tc - tr| and nr = |tr - ti| / |tc - tr|. Per object the network's logit
    goes through a sigmoid; soft aggregation adds the background. Returns 1 + K, H, W float32.
    """
    if not (tc < ti < tr or tr < ti < tc):
        raise ValueError(f"frame {ti} does not lie between the interactions at {tc} and {tr}")
    span = abs(tc - tr)
    time = torch.tensor([abs(tc - ti) / span, abs(tr - ti) / span], dtype=torch.float32, device=image.device)
    time = time.view(1, 2, 1, 1).expand(1, 2, *image.shape[-2:])
    outputs = []
    with autocast or nullcontext():
        for k in range(1, stored.shape[0]):
            logit = fusion(image, stored[k][None, None], new[k][None, None], carried[k : k + 1], time)
            outputs.append(torch.sigmoid(logit.float()))
    return soft_aggregate(torch.cat(outputs, dim=0), dim=0)[:, 0]
