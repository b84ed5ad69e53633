"""Space-time memory read (section 3.2) as pure tensor functions.

Shapes: B batch, C_k key channels, C_v value channels, N = T*H*W memory positions,
M = H*W query positions (all at stride 16). Every function returns new tensors and leaves its
arguments untouched.

    S = l2_similarity(mk, qk)            # eq. (1) with c = negative squared L2 distance
    W = softmax(S, top_k=20)             # normalised over memory, top-k filtered at inference
    vQ = readout(W, mv)                  # eq. (2): vQ = vM W

`topk_softmax` + `readout_topk` give the same vQ as `softmax(S, top_k)` + `readout` while touching
only k memory entries per query (the dense affinity is mostly zeros after top-k filtering).
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

TOP_K = 20  # section 4: top-k filtering with k = 20 in all experiments

# the CSR product used by readout_topk is stable API in practice; its "beta" notice is noise here
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


def l2_similarity(mk: Tensor, qk: Tensor) -> Tensor:
    """Negative squared L2 distance between every memory and query key, scaled by 1/sqrt(C_k).

    mk: B, C_k, N;  qk: B, C_k, M  ->  S: B, N, M.

    -||m - q||^2 = 2 m.q - ||m||^2 - ||q||^2. The last term is the same for every memory position
    of a query, so it cancels in the softmax over memory and is dropped:
        S_ij = (2 mk_i . qk_j - ||mk_i||^2) / sqrt(C_k).
    This needs one (N x C_k) @ (C_k x M) product and never forms the C_k x N x M differences.
    """
    ck = mk.shape[1]
    scale = 1.0 / math.sqrt(ck)
    mk_sq = mk.pow(2).sum(1).unsqueeze(2)  # B, N, 1
    # beta * (|mk|^2) + alpha * (mk^T qk), in one fused kernel
    return torch.baddbmm(mk_sq, mk.transpose(1, 2), qk, beta=-scale, alpha=2.0 * scale)


def softmax(sim: Tensor, top_k: int | None = None) -> Tensor:
    """Softmax over the memory dimension (dim 1) of S: B, N, M.

    With top_k, only the k largest similarities of each query keep a weight (renormalised to sum
    to one); all other entries are exactly zero. The input is not modified.
    """
    if top_k is None or top_k >= sim.shape[1]:
        return torch.softmax(sim, dim=1)
    weights, indices = topk_softmax(sim, top_k)
    return torch.zeros_like(sim).scatter_(1, indices, weights)


def topk_softmax(sim: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """The k largest similarities per query and their softmax weights.

    sim: B, N, M -> (weights, indices), both B, k, M (k = min(top_k, N)); weights sum to 1 over dim 1.
    """
    k = min(top_k, sim.shape[1])
    values, indices = torch.topk(sim, k=k, dim=1)
    return torch.softmax(values, dim=1), indices


def readout(affinity: Tensor, mv: Tensor) -> Tensor:
    """vQ = vM W.  affinity: B or 1, N, M;  mv: B, C_v, N  ->  B, C_v, M.

    One affinity (batch 1) serves every object: it broadcasts over a batch of objects' values.
    """
    if affinity.shape[0] != mv.shape[0]:
        affinity = affinity.expand(mv.shape[0], -1, -1)
    return torch.bmm(mv, affinity)


def readout_topk(weights: Tensor, indices: Tensor, mv: Tensor) -> Tensor:
    """vQ = vM W for a top-k filtered W given as (weights, indices) from `topk_softmax`.

    weights, indices: 1, k, M (one affinity shared by all objects);
    mv: N, K, C_v, the memory values stored position-major (row n holds every object's value at
    memory position n) -> K, C_v, M.
    Only k of the N entries of each column of W are non-zero, so this sums k terms per query
    instead of N: a sparse (M x N) @ (N x K*C_v) product on CPU, a gather + batched k-term
    weighted sum elsewhere.
    """
    if weights.shape[0] != 1:
        raise ValueError("readout_topk expects one affinity shared by all objects (batch 1)")
    k, m = weights.shape[1:]
    n, num_obj, cv = mv.shape
    values = mv.reshape(n, num_obj * cv)
    w_mk = weights[0].t().to(values.dtype)  # M, k
    idx_mk = indices[0].t()  # M, k
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        rows = torch.arange(0, m * k + 1, k, device=values.device)
        sparse = torch.sparse_csr_tensor(
            rows, idx_mk.reshape(-1), w_mk.reshape(-1), (m, n), check_invariants=False
        )
        out = sparse @ values  # M, K*C_v
    else:
        gathered = values.index_select(0, idx_mk.reshape(-1)).view(m, k, num_obj * cv)
        out = torch.bmm(w_mk.unsqueeze(1), gathered).view(m, num_obj * cv)
    return out.view(m, num_obj, cv).permute(1, 2, 0)
