"""Soft aggregation of per-object probabilities (STM, section 3.2 of STCN).

Each object's decoder gives an independent probability p_i. The background gets prod_i (1 - p_i);
the K + 1 probabilities are turned into logits log(p / (1 - p)) and renormalised with a softmax,
so that background + objects sum to one at every pixel.
"""
from __future__ import annotations

import torch
from torch import Tensor

AGGREGATE_EPS = 1e-7  # clamp before the logit, as in STM/STCN


def aggregate_logits(prob: Tensor, dim: int) -> Tensor:
    """prob: per-object probabilities with the objects along `dim` (K entries).

    Returns logits with K + 1 entries along `dim`, index 0 being the background.
    """
    bg = torch.prod(1 - prob, dim=dim, keepdim=True)
    with_bg = torch.cat([bg, prob], dim=dim).clamp(AGGREGATE_EPS, 1 - AGGREGATE_EPS)
    return torch.log(with_bg / (1 - with_bg))


def soft_aggregate(prob: Tensor, dim: int) -> Tensor:
    """Probabilities with background first (K + 1 along `dim`), summing to one along `dim`."""
    return torch.softmax(aggregate_logits(prob, dim), dim=dim)
