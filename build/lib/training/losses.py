"""Training loss: bootstrapped cross-entropy over frames 2 and 3, plus IoU for monitoring.

Output/batch keys (frame indices are 0-based, as in the original): `logits_1`, `logits_2`
(B, K + 1, H, W, background first), `mask_1`, `mask_2` (B, 1, H, W, first object's probability),
`sec_mask_*` for the second object; `cls_gt` (B, 3, H, W) class indices, `gt`/`sec_gt`
(B, 3, 1, H, W) binary masks, `selector` (B, 2) which objects exist.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.config import BootstrapSchedule

PREDICTED_FRAMES = (1, 2)  # frame 0 is given with its mask; frames 1 and 2 are segmented (section 5)
MASK_THRESHOLD = 0.5  # probability -> binary mask for the IoU statistics


class BootstrappedCE(nn.Module):
    """Cross-entropy over the hardest pixels (hard pixel mining, supplementary F.5 after MiVOS).

    Before `start_warm` this is plain cross-entropy. Afterwards only the fraction p of pixels with
    the highest loss of each sample contribute, where
        p(it) = top_p + (1 - top_p) * (end_warm - it) / (end_warm - start_warm)   for it <= end_warm
        p(it) = top_p                                                             for it >  end_warm
    i.e. p falls linearly from 1 at start_warm to top_p at end_warm.
    """

    def __init__(self, schedule: BootstrapSchedule = BootstrapSchedule()) -> None:
        super().__init__()
        self.schedule = schedule

    def p_at(self, it: int) -> float:
        s = self.schedule
        if it < s.start_warm:
            return 1.0
        if it > s.end_warm:
            return s.top_p
        return s.top_p + (1 - s.top_p) * (s.end_warm - it) / (s.end_warm - s.start_warm)

    def forward(self, logits: Tensor, target: Tensor, it: int) -> tuple[Tensor, float]:
        """logits: B, C, H, W; target: B, H, W class indices. Returns (loss, p).

        The hardest pixels are picked per sample, and the per-sample means are averaged over the batch.
        """
        if it < self.schedule.start_warm:
            return F.cross_entropy(logits, target), 1.0
        p = self.p_at(it)
        raw = F.cross_entropy(logits, target, reduction="none").flatten(1)  # B, H*W
        k = max(1, int(raw.shape[1] * p))
        hardest, _ = torch.topk(raw, k, dim=1, sorted=False)
        return hardest.mean(), p


def binary_iou_counts(pred: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """Total intersection and union pixel counts of two boolean mask batches."""
    return (pred & gt).sum().float(), (pred | gt).sum().float()


def compute_loss(data: dict[str, Tensor], out: dict[str, Tensor], it: int, bce: BootstrappedCE) -> dict[str, Tensor]:
    """Loss per predicted frame (`loss_1`, `loss_2`), their sum `total_loss`, the bootstrap `p`,
    and intersection/union counts (`iou_i`, `iou_u`, and `sec_iou_*` with two objects).

    A sample whose second object does not exist (selector [1, 0]) is scored over background and the
    first object only, as in the original: its second-object logit is excluded from the softmax.
    Computed in float32 (outside the AMP precision of the network).
    """
    cls_gt = data["cls_gt"].long()
    selector = data.get("selector")
    losses: dict[str, Tensor] = {}
    total = torch.zeros((), device=cls_gt.device)
    p_sum = 0.0
    iou_i = torch.zeros((), device=cls_gt.device)
    iou_u = torch.zeros((), device=cls_gt.device)
    sec_i = torch.zeros((), device=cls_gt.device)
    sec_u = torch.zeros((), device=cls_gt.device)
    for f in PREDICTED_FRAMES:
        logits = out[f"logits_{f}"].float()
        if selector is not None and logits.shape[1] > 2:
            absent = (selector[:, 1] < 0.5)[:, None, None, None]  # B, 1, 1, 1
            only_second = torch.zeros_like(logits, dtype=torch.bool)
            only_second[:, 2:3] = True
            logits = logits.masked_fill(absent & only_second, float("-inf"))
        loss, p = bce(logits, cls_gt[:, f], it)
        losses[f"loss_{f}"] = loss
        total = total + loss
        p_sum += p
        i, u = binary_iou_counts(out[f"mask_{f}"] > MASK_THRESHOLD, data["gt"][:, f] > MASK_THRESHOLD)
        iou_i, iou_u = iou_i + i, iou_u + u
        if selector is not None and f"sec_mask_{f}" in out:
            i, u = binary_iou_counts(out[f"sec_mask_{f}"] > MASK_THRESHOLD, data["sec_gt"][:, f] > MASK_THRESHOLD)
            sec_i, sec_u = sec_i + i, sec_u + u
    losses["total_loss"] = total
    losses["p"] = torch.tensor(p_sum / len(PREDICTED_FRAMES), device=cls_gt.device)
    losses["iou_i"], losses["iou_u"] = iou_i, iou_u
    if selector is not None:
        losses["sec_iou_i"], losses["sec_iou_u"] = sec_i, sec_u
    return losses
