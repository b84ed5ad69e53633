"""Space-time memory read (section 3.2) as pure tensor functions.

Shapes: B batch, C_k key channels, C_v value channels, N = T*H*W memory positions,
M = H*W query positions (all at stride 16). Every function returns new tensors and leaves its
arguments untouched.

    S = l2_similarity(mk, qk)            # eq. (1) with c = negative squared L2 distance
    W = softmax(S, top_k=20)             # normalised over memory, top-k filtered at inference
    vQ = readout(W, mv)                  # eq. (2): vQ = vM W

The inference path reads the same vQ through S^T (query-major, B x M x N), whose rows are the
contiguous similarity of one query to every memory position, so that the top-k selection runs
along contiguous memory:

    St = l2_similarity(mk, qk, query_major=True)    # S^T
    weights, indices = topk_softmax(St, top_k=20)   # the k non-zero entries of each column of W
    vQ = readout_topk(weights, indices, mv)         # touches k memory entries per query, not N

The similarity c of eq. (1) is L2 by default (section 4: "L2 similarity with C_k = 64 in all
experiments"); `similarity(mk, qk, kind)` also gives the dot product and cosine similarity that
section 4.2 / Table 2 compare, with the same shapes and layouts (training and inference both call it).
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from util.defaults import SIMILARITIES, TOP_K  # noqa: F401  (section 4's k; Table 2's measures)

# section 4.2: "For cosine similarity, we use a softmax temperature of 0.01 while a default temperature
# of 1 is used for both dot product and L2 similarity" (cosine's range [-1, 1] is too narrow otherwise)
COSINE_TEMPERATURE = 0.01

# the CSR product of readout_topk is stable API in practice; its "beta" notice is noise here
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


def l2_similarity(mk: Tensor, qk: Tensor, query_major: bool = False) -> Tensor:
    """Negative squared L2 distance between every memory and query key, scaled by 1/sqrt(C_k).

    mk: B, C_k, N;  qk: B, C_k, M  ->  S: B, N, M, or its transpose S^T: B, M, N (contiguous)
    with `query_major`.

    -||m - q||^2 = 2 m.q - ||m||^2 - ||q||^2. The last term is the same for every memory position
    of a query, so it cancels in the softmax over memory and is dropped:
        S_ij = (2 mk_i . qk_j - ||mk_i||^2) / sqrt(C_k).
    This needs one (N x C_k) @ (C_k x M) product and never forms the C_k x N x M differences.
    """
    ck = mk.shape[1]
    scale = 1.0 / math.sqrt(ck)
    mk_sq = mk.pow(2).sum(1)  # B, N
    # beta * (|mk|^2) + alpha * (mk^T qk), in one fused kernel
    if query_major:
        return torch.baddbmm(mk_sq.unsqueeze(1), qk.transpose(1, 2), mk, beta=-scale, alpha=2.0 * scale)
    return torch.baddbmm(mk_sq.unsqueeze(2), mk.transpose(1, 2), qk, beta=-scale, alpha=2.0 * scale)


def dot_similarity(mk: Tensor, qk: Tensor, query_major: bool = False) -> Tensor:
    """STM's affinity (eq. 3), scaled by 1/sqrt(C_k): S_ij = mk_i . qk_j / sqrt(C_k).

    Shapes as `l2_similarity`. The 1/sqrt(C_k) is the scale STM applies to its dot product (and
    `l2_similarity` to L2, as the original STCN code); with it, dot product and L2 differ only by
    L2's factor 2 and its -||mk_i||^2 term (the query-agnostic norm that section 4.1 discusses).
    """
    scale = 1.0 / math.sqrt(mk.shape[1])
    if query_major:
        return torch.bmm(qk.transpose(1, 2), mk).mul_(scale)
    return torch.bmm(mk.transpose(1, 2), qk).mul_(scale)


def cosine_similarity(mk: Tensor, qk: Tensor, query_major: bool = False) -> Tensor:
    """Cosine similarity over the softmax temperature: S_ij = (mk_i . qk_j) / (|mk_i| |qk_j| tau).

    Shapes as `l2_similarity`. Both keys are L2-normalised along C_k first (section 4: "we first
    normalize the input vectors, then compute dot product"); tau = COSINE_TEMPERATURE = 0.01
    (section 4.2), so S lies in [-100, 100]. No 1/sqrt(C_k): the temperature alone sets the scale.
    A zero key (norm 0) has similarity 0 to everything.
    """
    mk = F.normalize(mk, dim=1)
    qk = F.normalize(qk, dim=1)
    if query_major:
        return torch.bmm(qk.transpose(1, 2), mk).div_(COSINE_TEMPERATURE)
    return torch.bmm(mk.transpose(1, 2), qk).div_(COSINE_TEMPERATURE)


_SIMILARITY_FUNCTIONS = {"l2": l2_similarity, "dot": dot_similarity, "cosine": cosine_similarity}


def check_similarity(kind: str) -> str:
    """`kind` if it names one of SIMILARITIES, else ValueError."""
    if kind not in _SIMILARITY_FUNCTIONS:
        raise ValueError(f"unknown similarity {kind!r}: choose one of {', '.join(SIMILARITIES)}")
    return kind


def similarity(mk: Tensor, qk: Tensor, kind: str = "l2", query_major: bool = False) -> Tensor:
    """S (B, N, M) or S^T (B, M, N, with `query_major`) under the similarity `kind` (SIMILARITIES).

    mk: B, C_k, N;  qk: B, C_k, M. "l2" is exactly `l2_similarity` (the default path is unchanged).
    """
    return _SIMILARITY_FUNCTIONS[check_similarity(kind)](mk, qk, query_major=query_major)


def softmax(sim: Tensor, top_k: int | None = None) -> Tensor:
    """Softmax over the memory dimension (dim 1) of S: B, N, M.

    With top_k, only the k largest similarities of each query keep a weight (renormalised to sum
    to one); all other entries are exactly zero. The input is not modified.
    """
    if top_k is None or top_k >= sim.shape[1]:
        return torch.softmax(sim, dim=1)
    values, indices = torch.topk(sim, k=top_k, dim=1)
    return torch.zeros_like(sim).scatter_(1, indices, torch.softmax(values, dim=1))


def topk_softmax(sim_t: Tensor, top_k: int) -> tuple[Tensor, Tensor]:
    """The k largest similarities per query and their softmax weights.

    sim_t: S^T, B, M, N (query-major, see `l2_similarity`) -> (weights, indices), both B, M, k
    (k = min(top_k, N)); weights sum to 1 over the last dim. On this layout the selection runs
    along contiguous memory (several times faster on CPU than along dim 1 of S).
    """
    k = min(top_k, sim_t.shape[-1])
    values, indices = torch.topk(sim_t, k=k, dim=-1)
    return torch.softmax(values, dim=-1), indices


def readout(affinity: Tensor, mv: Tensor) -> Tensor:
    """vQ = vM W.  affinity: B or 1, N, M;  mv: B, C_v, N  ->  B, C_v, M.

    One affinity (batch 1) serves every object: it broadcasts over a batch of objects' values.
    """
    if affinity.shape[0] != mv.shape[0]:
        affinity = affinity.expand(mv.shape[0], -1, -1)
    return torch.bmm(mv, affinity)


def readout_topk(weights: Tensor, indices: Tensor, mv: Tensor) -> Tensor:
    """vQ = vM W for a top-k filtered W given as (weights, indices) from `topk_softmax`.

    weights, indices: 1, M, k (one affinity shared by all objects);
    mv: N, K, C_v, the memory values stored position-major (row n holds every object's value at
    memory position n) -> K, C_v, M.
    Only k of the N entries of each column of W are non-zero, so this sums k terms per query
    instead of N: a sparse (M x N) @ (N x K*C_v) product on CPU, a gather + batched k-term
    weighted sum elsewhere.
    """
    if weights.shape[0] != 1:
        raise ValueError("readout_topk expects one affinity shared by all objects (batch 1)")
    m, k = weights.shape[1:]
    n, num_obj, cv = mv.shape
    values = mv.reshape(n, num_obj * cv)
    w_mk = weights[0].to(values.dtype)  # M, k
    idx_mk = indices[0]  # M, k
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
