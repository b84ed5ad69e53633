"""Bootstrapped cross-entropy schedule and loss bookkeeping (supplementary F.5)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.config import BootstrapSchedule
from training.losses import BootstrappedCE, compute_loss


@pytest.mark.parametrize(
    "it, p",
    [(0, 1.0), (19_999, 1.0), (20_000, 1.0), (45_000, 0.575), (70_000, 0.15), (100_000, 0.15)],
)
def test_bootstrap_p_schedule(it, p):
    assert BootstrappedCE().p_at(it) == pytest.approx(p)


def test_plain_ce_before_warm_up_and_hardest_pixels_after():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    bce = BootstrappedCE(BootstrapSchedule(start_warm=10, end_warm=20, top_p=0.25))
    loss, p = bce(logits, target, 5)
    torch.testing.assert_close(loss, F.cross_entropy(logits, target))
    assert p == 1.0
    loss, p = bce(logits, target, 30)
    raw = F.cross_entropy(logits, target, reduction="none").flatten(1)
    expected = raw.sort(dim=1, descending=True).values[:, :16].mean()  # 25% of 64 pixels per sample
    torch.testing.assert_close(loss, expected)
    assert p == 0.25


def _batch(b=2, h=16, w=16, second=True):
    gt = torch.zeros(b, 3, 1, h, w)
    gt[..., 2:8, 2:8] = 1
    sec = torch.zeros(b, 3, 1, h, w)
    if second:
        sec[..., 10:14, 10:14] = 1
    cls = (gt[:, :, 0] + 2 * sec[:, :, 0]).long()
    return {"gt": gt, "sec_gt": sec, "cls_gt": cls, "selector": torch.tensor([[1.0, 1.0 if second else 0.0]] * b)}


def test_compute_loss_keys_iou_and_absent_second_object():
    data = _batch(second=False)
    logits = torch.randn(2, 3, 16, 16)
    prob = logits.softmax(1)
    out = {}
    for f in (1, 2):
        out[f"logits_{f}"] = logits
        out[f"mask_{f}"] = (data["gt"][:, f] > 0.5).float()  # perfect first object
        out[f"sec_mask_{f}"] = prob[:, 2:3]
    losses = compute_loss(data, out, 0, BootstrappedCE())
    assert set(losses) >= {"loss_1", "loss_2", "total_loss", "p", "iou_i", "iou_u", "sec_iou_i", "sec_iou_u"}
    torch.testing.assert_close(losses["total_loss"], losses["loss_1"] + losses["loss_2"])
    assert losses["iou_i"].item() == losses["iou_u"].item() == 2 * 2 * 36
    # without the second object, the loss is the 2-class CE over background and object 1
    torch.testing.assert_close(losses["loss_1"], F.cross_entropy(logits[:, :2], data["cls_gt"][:, 1]))


def test_compute_loss_single_object():
    data = _batch()
    del data["sec_gt"], data["selector"]
    data["cls_gt"] = data["gt"][:, :, 0].long()
    logits = torch.randn(2, 2, 16, 16, requires_grad=True)
    out = {f"logits_{f}": logits for f in (1, 2)}
    out.update({f"mask_{f}": logits.softmax(1)[:, 1:2] for f in (1, 2)})
    losses = compute_loss(data, out, 50_000, BootstrappedCE())
    assert "sec_iou_i" not in losses
    assert losses["p"].item() == pytest.approx(BootstrappedCE().p_at(50_000))
    losses["total_loss"].backward()
    assert torch.isfinite(logits.grad).all()
