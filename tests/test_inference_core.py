"""The inference core against a direct transcription of the paper's propagation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference_core import InferenceCore
from inference_core.core import probabilities_to_labels
from inference_core.reference import ReferencePropagation


def moving_squares(frames: int = 8, h: int = 40, w: int = 56, objects: int = 2, seed: int = 0):
    """A textured background with `objects` squares moving right; returns images and label maps."""
    g = torch.Generator().manual_seed(seed)
    bg = torch.rand(3, h, w, generator=g) * 0.5
    images, labels = [], []
    for t in range(frames):
        img = bg.clone()
        lab = torch.zeros(h, w, dtype=torch.long)
        for o in range(objects):
            y, x = 4 + 14 * o, 3 + 2 * t + 5 * o
            img[:, y : y + 10, x : x + 10] = torch.tensor([1.0, 0.2 + 0.3 * o, 0.1])[:, None, None]
            lab[y : y + 10, x : x + 10] = o + 1
        images.append((img - 0.45) / 0.25)
        labels.append(lab)
    return images, labels


def test_core_matches_reference_propagation(stcn_net):
    images, labels = moving_squares(frames=12)
    ref = ReferencePropagation(stcn_net, num_objects=2)
    core = InferenceCore(stcn_net)
    for ti, img in enumerate(images):
        end = ti == len(images) - 1
        out = core.step(img, labels[0] if ti == 0 else None, end=end)
        assert out.shape == (3, 40, 56)
        torch.testing.assert_close(out, ref.step(img, labels[0], end=end), atol=1e-4, rtol=1e-4)
    assert core.memory.frame_ids == [0, 5, 10]
    assert core.labels == [1, 2]


def test_memory_frames_follow_mem_every_and_include_last(stcn_net):
    images, labels = moving_squares(frames=9, objects=1)
    core = InferenceCore(stcn_net, mem_every=3, include_last=True)
    for ti, img in enumerate(images):
        core.step(img, labels[0] if ti == 0 else None)
    assert core.memory.frame_ids == [0, 3, 6]
    assert core.memory.temp_key is not None  # frame 8, the last one, as temporary memory
    core = InferenceCore(stcn_net)
    for ti, img in enumerate(images):
        core.step(img, labels[0] if ti == 0 else None)
    assert core.memory.frame_ids == [0, 5] and core.memory.temp_key is None


def test_objects_appearing_later_with_non_contiguous_labels(stcn_net):
    images, labels = moving_squares(frames=7, objects=2)
    core = InferenceCore(stcn_net)
    first = torch.where(labels[0] == 1, 7, 0)  # only label 7 on frame 0
    later = torch.where(labels[3] == 2, 42, 0)  # label 42 appears on frame 3
    outs = []
    for ti, img in enumerate(images):
        mask = first if ti == 0 else later if ti == 3 else None
        outs.append(core.step(img, mask))
    assert core.labels == [7, 42]
    assert [o.shape[0] for o in outs] == [2, 2, 2, 3, 3, 3, 3]
    assert core.memory.frame_ids == [0, 3]  # new objects make their frame memory, then +5
    assert [g.first_frame for g in core.memory.groups] == [0, 1]
    for o in outs:
        torch.testing.assert_close(o.sum(0), torch.ones(40, 56))
    # the annotated frame reproduces the annotation; labels map back
    lab = probabilities_to_labels(outs[3], (40, 56), core.label_map())
    assert set(np.unique(lab)) <= {0, 7, 42}
    assert (lab[later.numpy() == 42] == 42).all()
    lab0 = probabilities_to_labels(outs[0], (80, 112), core.label_map())
    assert lab0.shape == (80, 112) and lab0.dtype == np.uint8


def test_frames_before_any_object_and_skipping(stcn_net):
    images, labels = moving_squares(frames=8, objects=1)
    core = InferenceCore(stcn_net)
    empty = core.step(images[0])
    assert empty.shape == (1, 40, 56) and core.memory.num_frames == 0
    core.step(images[1], labels[1])
    for ti in range(2, 8):
        if core.needs_frame(required=False):
            core.step(images[ti])
        else:
            core.skip()
    assert core.frame_index == 7
    assert core.memory.frame_ids == [1, 6]


def test_amp_path_runs_on_cpu(stcn_net):
    images, labels = moving_squares(frames=3, objects=2)
    core = InferenceCore(stcn_net, amp=True, amp_dtype=torch.bfloat16)
    outs = [core.step(img, labels[0] if ti == 0 else None) for ti, img in enumerate(images)]
    assert all(o.dtype == torch.float32 and torch.isfinite(o).all() for o in outs)


def test_invalid_settings_are_rejected(stcn_net):
    with pytest.raises(ValueError):
        InferenceCore(stcn_net, mem_every=0)
    with pytest.raises(ValueError):
        InferenceCore(stcn_net, top_k=0)


def run_core(core, images, labels):
    return [core.step(img, labels[0] if ti == 0 else None) for ti, img in enumerate(images)]


def test_chunked_read_and_object_batches_equal_default(stcn_net):
    images, labels = moving_squares(frames=8, objects=3)
    default = run_core(InferenceCore(stcn_net), images, labels)
    chunked = run_core(InferenceCore(stcn_net, chunk_size=3, object_batch=2), images, labels)
    for a, b in zip(default, chunked):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_bounded_memory_keeps_annotated_frames_and_never_exceeds_budget(stcn_net):
    images, labels = moving_squares(frames=16, objects=2)
    core = InferenceCore(stcn_net, mem_every=1, max_mem_frames=4)
    for ti, img in enumerate(images):
        core.step(img, labels[0] if ti == 0 else None)
        assert core.memory.num_frames <= 4
        assert core.memory.keys.shape[-1] == core.memory.num_frames * core.memory.positions_per_frame
        assert core.memory.groups[0].values.shape[0] == core.memory.keys.shape[-1]
    assert core.memory.frame_ids == [0, 13, 14, 15]  # the annotated frame and the most recent ones

    # a group that enters later keeps its annotated frame too, and its suffix stays consistent
    core = InferenceCore(stcn_net, mem_every=1, max_mem_frames=3)
    first = torch.where(labels[0] == 1, 1, 0)
    for ti, img in enumerate(images):
        mask = first if ti == 0 else torch.where(labels[5] == 2, 2, 0) if ti == 5 else None
        core.step(img, mask)
    mem = core.memory
    assert mem.frame_ids == [0, 5, 15]
    assert [mem.frame_ids[g.first_frame] for g in mem.groups] == [0, 5]
    assert mem.groups[1].values.shape[0] == 2 * mem.positions_per_frame


def test_unset_budget_is_identical_to_default(stcn_net):
    images, labels = moving_squares(frames=12, objects=2)
    default = run_core(InferenceCore(stcn_net), images, labels)
    roomy = run_core(InferenceCore(stcn_net, max_mem_frames=100), images, labels)
    for a, b in zip(default, roomy):
        assert torch.equal(a, b)


def test_memory_budget_in_megabytes_bounds_stored_bytes(stcn_net):
    images, labels = moving_squares(frames=12, objects=2)
    probe = InferenceCore(stcn_net, mem_every=1)
    probe.step(images[0], labels[0])
    frame_bytes = probe.memory.nbytes  # keys + values of one memory frame
    budget_mb = 3.5 * frame_bytes / 2**20
    core = InferenceCore(stcn_net, mem_every=1, max_mem_mb=budget_mb)
    for ti, img in enumerate(images):
        core.step(img, labels[0] if ti == 0 else None)
        assert core.memory.nbytes <= budget_mb * 2**20
    assert core.memory.frame_ids == [0, 10, 11]  # annotated frame + the two most recent that fit


def test_memory_budget_smaller_than_annotated_frames_keeps_them(stcn_net):
    images, labels = moving_squares(frames=6, objects=1)
    core = InferenceCore(stcn_net, mem_every=1, max_mem_mb=1e-6)
    for ti, img in enumerate(images):
        prob = core.step(img, labels[0] if ti == 0 else None)
        assert torch.isfinite(prob).all()
    assert core.memory.frame_ids == [0]


def test_automatic_chunk_size_follows_free_memory_and_equals_whole_read(stcn_net, monkeypatch):
    import inference_core.memory_bank as memory_bank

    images, labels = moving_squares(frames=8, objects=2)
    whole = run_core(InferenceCore(stcn_net, chunk_size=None), images, labels)
    chunks = []
    original = memory_bank.MemoryBank._read_chunk

    def spy(self, mk, qk, *rest):
        chunks.append(qk.shape[-1])
        return original(self, mk, qk, *rest)

    monkeypatch.setattr(memory_bank.MemoryBank, "_read_chunk", spy)
    roomy = run_core(InferenceCore(stcn_net), images, labels)  # "auto" is the default
    positions = -(-images[0].shape[-2] // 16) * -(-images[0].shape[-1] // 16)  # padded h/16 * w/16
    assert set(chunks) == {positions}  # plenty of free memory: the whole query in one chunk
    chunks.clear()
    # little free memory: a chunk's similarity (N x chunk floats, 3 copies) must fit a quarter of it
    monkeypatch.setattr(memory_bank, "free_memory_bytes", lambda device: 4 * 3 * 4 * 40)
    tight = run_core(InferenceCore(stcn_net, chunk_size="auto"), images, labels)
    assert max(chunks) <= 3 and min(chunks) == 1
    for a, b, c in zip(whole, roomy, tight):
        assert torch.equal(a, b)  # one chunk: the very same computation
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        InferenceCore(stcn_net, chunk_size="big")
