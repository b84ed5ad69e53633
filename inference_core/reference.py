"""A direct, unoptimised transcription of STCN propagation, for checking and benchmarking.

It follows the original implementation's computation order and amount of work: one memory for
all objects, the dense top-k affinity (a THW x HW matrix with zeros outside the top k), a dense
`vM W` product per object, and the decoder on the concatenated [readout, query value] of each
object, its skip convolutions run once on the batch-1 query features and broadcast over objects
(as the original's decoder did when given one query frame). Every 5th frame
(counted from frame 0) becomes memory; the first frame's annotation is soft-aggregated before its
value is encoded. `InferenceCore` must produce the same probabilities while doing less work (the tests check
it; the inference benchmark's `--baseline` times both).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from model.aggregate import soft_aggregate
from model.memory_util import TOP_K, readout, similarity, softmax
from model.network import STCN
from util.tensor_util import pad_divide_by, unpad


class ReferencePropagation:
    """Frame-by-frame dense propagation of the objects given on frame 0 (DAVIS setting)."""

    def __init__(self, network: STCN, num_objects: int, top_k: int = TOP_K, mem_every: int = 5) -> None:
        self.net = network.eval()
        self.num_objects = num_objects
        self.top_k = top_k
        self.mem_every = mem_every
        self.mem_k: list[Tensor] = []
        self.mem_v: list[Tensor] = []
        self.ti = -1

    @torch.inference_mode()
    def step(self, image: Tensor, first_mask: Tensor | None = None, end: bool = False) -> Tensor:
        """image: 3, H, W; first_mask: H, W labels 1..K on frame 0. Returns K+1, H, W probabilities."""
        self.ti += 1
        net, k = self.net, self.num_objects
        x, pad = pad_divide_by(image[None], 16)
        k16, qv16, f16, f8, f4 = net.encode_key(x)
        if self.ti == 0:
            onehot = torch.stack([(first_mask == i + 1).float() for i in range(k)])
            onehot, _ = pad_divide_by(onehot[:, None], 16)
            prob = soft_aggregate(onehot[:, 0], dim=0)
        else:
            mk = torch.cat(self.mem_k, dim=2).flatten(2)  # 1, C_k, T*h*w
            mv = torch.cat(self.mem_v, dim=3).flatten(2)  # K, C_v, T*h*w
            # the network's similarity (L2 for the released weights, as the original)
            affinity = softmax(similarity(mk, k16.flatten(2), net.similarity), self.top_k)  # 1, THW, HW (dense)
            read = readout(affinity, mv).view(k, -1, *k16.shape[-2:])
            dec = net.decoder
            x16 = dec.compress(torch.cat([read, qv16.expand(k, -1, -1, -1)], dim=1))
            x8 = dec.up_16_8(f8, x16)  # f8, f4: batch 1, broadcast over the k objects
            x4 = dec.up_8_4(f4, x8)
            logits = F.interpolate(dec.pred(F.relu(x4)), scale_factor=4, mode="bilinear", align_corners=False)
            prob = soft_aggregate(torch.sigmoid(logits), dim=0)[:, 0]
        if self.ti % self.mem_every == 0 and not end:
            self.mem_k.append(k16.unsqueeze(2))
            # the original concatenated f16 to every object's value features (k full fusion blocks):
            # one object per batch entry, so encode_value does not share f16 across them
            masks = prob[1:, None]  # K, 1, H, W
            others = masks.sum(0, keepdim=True) - masks
            mv = net.encode_value(x.expand(k, -1, -1, -1), f16.expand(k, -1, -1, -1), masks, others)
            self.mem_v.append(mv[:, 0].unsqueeze(2))  # K, C_v, 1, h, w
        return unpad(prob, pad)
