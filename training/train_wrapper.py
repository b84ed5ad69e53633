"""The three-frame training unroll of section 5, as one module whose forward is the DDP entry point.

Frame 0 comes with its ground-truth mask; frame 1 is segmented with frame 0 as memory; the predicted
mask of frame 1 is encoded as a second memory frame; frame 2 is segmented with frames 0 and 1.

Glossary as in `model.network`: k16 keys (B, C_k, h, w), qv16 query values, f16/f8/f4 key-encoder
features; mk16 (B, C_k, T, h, w) and mv16 (B, K, C_v, T, h, w) the memory; K objects.

The predicted mask of frame 1 is NOT detached before it becomes memory, as in the original STCN
training code: the loss of frame 2 back-propagates through the value encoding of that prediction
into the frame-1 segmentation, so the network learns to produce masks that make good memory.
No top-k in training (the original reads the memory with a full softmax there).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from dataset.util import NUM_FRAMES
from model.network import STCN

MAX_TRAIN_OBJECTS = 2  # supplementary F.3.2: at most two objects per sample


class STCNTrainWrapper(nn.Module):
    """Wraps an STCN; `forward(batch)` returns logits and masks of frames 1 and 2.

    batch: `rgb` (B, 3, 3, H, W) normalised frames, `gt` (B, 3, 1, H, W) first object's mask;
    multi-object network only: `sec_gt` (B, 3, 1, H, W) and `selector` (B, 2).
    Returns `logits_{1,2}` (B, K + 1, H, W), `mask_{1,2}` (B, 1, H, W) and, for two objects,
    `sec_mask_{1,2}`; K = 1 for the single-object (stage 0) network, 2 otherwise.
    """

    def __init__(self, network: STCN) -> None:
        super().__init__()
        self.network = network

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        net = self.network
        rgb = batch["rgb"]
        b, t = rgb.shape[:2]
        if t != NUM_FRAMES:
            raise ValueError(f"expected {NUM_FRAMES} frames per sample, got rgb of shape {tuple(rgb.shape)}")

        # Keys of all frames in one batch: the key encoder runs once per step.
        k16, qv16, f16, f8, f4 = (x.view(b, t, *x.shape[1:]) for x in net.encode_key(rgb.flatten(0, 1)))

        if net.single_object:
            first_masks = batch["gt"][:, 0]  # B, 1, H, W
            selector = None
        else:
            first_masks = torch.cat([batch["gt"][:, 0], batch["sec_gt"][:, 0]], dim=1)  # B, 2, H, W
            selector = batch["selector"]

        mv0 = net.encode_value(rgb[:, 0], f16[:, 0], first_masks)  # B, K, C_v, h, w
        logits1, prob1 = net.segment(
            k16[:, 1], qv16[:, 1], f8[:, 1], f4[:, 1], k16[:, 0].unsqueeze(2), mv0.unsqueeze(3), selector
        )
        mv1 = net.encode_value(rgb[:, 1], f16[:, 1], prob1[:, 1:])  # prediction becomes memory
        mk16 = torch.stack([k16[:, 0], k16[:, 1]], dim=2)  # B, C_k, 2, h, w
        mv16 = torch.stack([mv0, mv1], dim=3)  # B, K, C_v, 2, h, w
        logits2, prob2 = net.segment(k16[:, 2], qv16[:, 2], f8[:, 2], f4[:, 2], mk16, mv16, selector)

        out = {"logits_1": logits1, "logits_2": logits2, "mask_1": prob1[:, 1:2], "mask_2": prob2[:, 1:2]}
        if not net.single_object:
            out["sec_mask_1"] = prob1[:, 2:3]
            out["sec_mask_2"] = prob2[:, 2:3]
        return out
