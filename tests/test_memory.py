"""The memory read and soft aggregation, checked against the paper's definitions."""
from __future__ import annotations

import math

import pytest
import torch

from model.aggregate import aggregate_logits, soft_aggregate
from model.memory_util import l2_similarity, readout, readout_topk, softmax, topk_softmax


def naive_l2_affinity(mk, qk):
    """softmax over memory of -||mk_i - qk_j||^2 / sqrt(C_k), by explicit differences."""
    diff = mk.unsqueeze(3) - qk.unsqueeze(2)  # B, C_k, N, M
    return torch.softmax(-diff.pow(2).sum(1) / math.sqrt(mk.shape[1]), dim=1)


def test_l2_affinity_equals_softmax_of_negative_distance():
    torch.manual_seed(0)
    mk, qk = torch.randn(2, 64, 30), torch.randn(2, 64, 12)
    torch.testing.assert_close(softmax(l2_similarity(mk, qk)), naive_l2_affinity(mk, qk), atol=1e-5, rtol=0)


def test_similarity_does_not_modify_inputs_and_top_k_is_pure():
    torch.manual_seed(1)
    mk, qk = torch.randn(1, 8, 40), torch.randn(1, 8, 9)
    mk0, qk0 = mk.clone(), qk.clone()
    sim = l2_similarity(mk, qk)
    sim0 = sim.clone()
    softmax(sim, top_k=5)
    assert torch.equal(mk, mk0) and torch.equal(qk, qk0) and torch.equal(sim, sim0)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_top_k_keeps_exactly_k_weights_summing_to_one(k):
    torch.manual_seed(2)
    sim = torch.randn(2, 50, 7)
    w = softmax(sim, top_k=k)
    assert (torch.count_nonzero(w, dim=1) == k).all()
    torch.testing.assert_close(w.sum(1), torch.ones(2, 7))
    # the kept entries are the k largest similarities
    kept = w > 0
    assert torch.equal(kept, torch.zeros_like(kept).scatter_(1, sim.topk(k, dim=1).indices, True))


def test_top_k_larger_than_memory_is_plain_softmax():
    sim = torch.randn(1, 6, 4)
    torch.testing.assert_close(softmax(sim, top_k=20), torch.softmax(sim, dim=1))


def original_topk_softmax(sim_t, k):
    """The original STCN's inference softmax: exp of the top-k values without subtracting their max."""
    values, indices = torch.topk(sim_t, k=k, dim=-1)
    e = values.exp()
    return e / e.sum(-1, keepdim=True), indices


def test_top_k_softmax_is_stable_where_the_original_overflows():
    """A deliberate difference from the original (docs/evaluation.md): same weights wherever the
    original is finite, finite weights where its exp overflows (an affinity above log(float32 max))."""
    torch.manual_seed(4)
    sim_t = torch.randn(1, 6, 40) * 10
    ours, idx = topk_softmax(sim_t, 20)
    theirs, idx_o = original_topk_softmax(sim_t, 20)
    assert torch.equal(idx, idx_o)
    torch.testing.assert_close(ours, theirs)
    big = sim_t.clone()
    big[0, 0, 3] = math.log(torch.finfo(torch.float32).max) + 1  # about 89.7
    theirs, _ = original_topk_softmax(big, 20)
    assert theirs[0, 0].isnan().any() and not theirs[0, 1:].isnan().any()
    ours, _ = topk_softmax(big, 20)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours[0, 0], torch.softmax(big[0, 0].topk(20).values, dim=-1))
    torch.testing.assert_close(ours[0, 0, 0], torch.tensor(1.0))  # the rest are exp(<= -50) ~ 0
    torch.testing.assert_close(softmax(big.transpose(1, 2), top_k=20).sum(1), torch.ones(1, 6))


def test_sparse_top_k_readout_equals_dense():
    torch.manual_seed(3)
    mk, qk, mv = torch.randn(1, 64, 300), torch.randn(1, 64, 40), torch.randn(3, 512, 300)
    sim = l2_similarity(mk, qk)
    dense = readout(softmax(sim, top_k=20), mv)
    sim_t = l2_similarity(mk, qk, query_major=True)
    torch.testing.assert_close(sim_t, sim.transpose(1, 2), atol=1e-5, rtol=1e-5)
    assert sim_t.is_contiguous()
    weights, idx = topk_softmax(sim_t, 20)
    assert weights.shape == idx.shape == (1, 40, 20)
    mv_nkc = mv.permute(2, 0, 1).contiguous()  # position-major storage
    torch.testing.assert_close(readout_topk(weights, idx, mv_nkc), dense, atol=1e-5, rtol=1e-5)
    # the gather path (used off CPU and for half precision) gives the same result
    torch.testing.assert_close(
        readout_topk(weights, idx, mv_nkc.double()).float(), dense, atol=1e-5, rtol=1e-5
    )
    half = readout_topk(weights, idx, mv_nkc.bfloat16())
    torch.testing.assert_close(half.float(), dense, atol=0.1, rtol=0.05)


def test_one_affinity_serves_all_objects():
    torch.manual_seed(4)
    aff = torch.softmax(torch.randn(1, 10, 6), dim=1)
    mv = torch.randn(3, 4, 10)
    out = readout(aff, mv)
    for i in range(3):
        torch.testing.assert_close(out[i], mv[i] @ aff[0])


def test_soft_aggregation_sums_to_one_with_background():
    torch.manual_seed(5)
    prob = torch.rand(3, 1, 8, 8)  # K objects along dim 0, as in inference
    agg = soft_aggregate(prob, dim=0)
    assert agg.shape == (4, 1, 8, 8)
    torch.testing.assert_close(agg.sum(0), torch.ones(1, 8, 8))
    batch = torch.rand(2, 2, 8, 8)  # B, K, H, W as in training
    torch.testing.assert_close(soft_aggregate(batch, dim=1).sum(1), torch.ones(2, 8, 8))
    # a confident single object dominates its pixels; with nothing, background wins
    one = torch.tensor([0.999, 0.001]).view(2, 1, 1, 1)
    assert soft_aggregate(one, dim=0).argmax(0).item() == 1
    none = torch.full((2, 1, 1, 1), 1e-3)
    assert soft_aggregate(none, dim=0).argmax(0).item() == 0
    assert torch.isfinite(aggregate_logits(torch.tensor([[0.0], [1.0]]), dim=0)).all()
