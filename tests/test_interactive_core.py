"""The interactive core (inference_core/interactive.py, interaction_steps.py): MiVOS's propagation and
fusion schedule on the project's STCN, with stand-ins for the scribble-to-mask and fusion networks."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from inference_core import InteractiveCore, Predictor
from inference_core.options import PredictorError
from tests.eval_fixtures import VideoSpec, render

H, W = 40, 56  # padded to 48 x 64 by the core


def video(frames: int, seed: int = 0):
    images, labels = render(VideoSpec("v", H, W, frames, {1: 0, 2: 0}), seed=seed)
    return images, labels


@pytest.fixture(scope="module")
def predictor(stcn_net):
    return Predictor(stcn_net, size=None)  # the frames' own size


class StandInFusion(nn.Module):
    """The fusion network's interface (image, stored, new, diff, time -> logit); records every call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []

    def forward(self, image, stored, new, diff, time):
        assert image.shape[1:] == (3, 48, 64) and stored.shape == new.shape == (1, 1, 48, 64)
        assert diff.shape == time.shape == (1, 2, 48, 64)
        self.calls.append({"nc": float(time[0, 0, 0, 0]), "nr": float(time[0, 1, 0, 0]),
                           "plane": bool((time == time[:, :, :1, :1]).all())})
        # a logit that leans to the new mask, shifted by the carried differences
        return 4 * (new - 0.5) + 2 * (diff[:, :1] - diff[:, 1:])


class StandInS2M(nn.Module):
    """The S2M interface (B, 6, H, W -> B, 1, H, W logits): positive strokes win, negative lose, else the
    current hard mask; records its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.clone())
        return 10 * (x[:, 3:4] - 0.5) + 40 * x[:, 4:5] - 40 * x[:, 5:6]


def times(fusion: StandInFusion) -> list[float]:
    """nc, nr of every fusion call, in order."""
    return [v for c in fusion.calls for v in (c["nc"], c["nr"])]


def recording_cores(predictor, monkeypatch):
    """Every core the predictor makes from now on, in order (the interactive core's passes)."""
    made = []
    original = predictor.new_core

    def new_core():
        made.append(original())
        return made[-1]

    monkeypatch.setattr(predictor, "new_core", new_core)
    return made


# ----------------------------------------------------------------------------------- (a) anchor
def test_one_interaction_on_frame_0_equals_the_stream(predictor, monkeypatch):
    """One full mask on frame 0 propagated forward without fusion gives exactly the masks (and the
    probabilities) of a `Stream` given that mask on frame 0: the same method. Memory frames: MiVOS adds
    one every 5 frames counted from the interacted frame but never the pass's own last frame; the stream
    memorises 0, 5, 10, ... including the last. With 6 frames the pass's memory is frame 0 alone and the
    stream's frames 0 and 5: frame 5 is read by no later frame, so every mask is the same."""
    images, labels = video(6)
    cores = recording_cores(predictor, monkeypatch)
    inter = InteractiveCore(predictor, images, num_objects=2)
    result = inter.interact(0, labels[0])
    assert result.forward == [1, 2, 3, 4, 5] and result.backward == [] and result.fused == []
    stream = predictor.new_stream()
    for t, img in enumerate(images):
        want = stream.step(img, labels[0] if t == 0 else None)
        assert np.array_equal(inter.labels(t), want), t
        got_prob = inter.probabilities.get(t)[:, 4:-4, 4:-4]  # the padding of 40 x 56 to 48 x 64
        assert torch.equal(got_prob, stream.network_probabilities), t
    pass_core = cores[1]  # cores[0] encodes keys and values; cores[1] ran the forward pass
    assert pass_core.memory.frame_ids == [0]
    assert cores[-1].memory.frame_ids == [0, 5]  # the stream's
    assert np.array_equal(inter.labels(0), labels[0])


# -------------------------------------------------------------------------------- (b) and (c) bounds
def test_interaction_on_the_last_frame_propagates_backward_only(predictor):
    images, labels = video(4)
    fusion = StandInFusion()
    inter = InteractiveCore(predictor, images, num_objects=2, fusion=fusion)
    result = inter.interact(3, labels[3])
    assert result.forward == [] and result.backward == [2, 1, 0]
    assert result.fused == [] and fusion.calls == []  # no interacted frame beyond: the new pass is taken
    assert all(inter.labels(t).any() for t in range(4))


def test_frames_between_interactions_are_fused_and_others_untouched(predictor):
    images, labels = video(8)
    fusion = StandInFusion()
    inter = InteractiveCore(predictor, images, num_objects=2, fusion=fusion)
    first = inter.interact(1, labels[1])
    assert first.forward == list(range(2, 8)) and first.backward == [0] and fusion.calls == []
    second = inter.interact(6, labels[6])
    assert second.forward == [7] and second.backward == [5, 4, 3, 2]
    assert second.fused == [5, 4, 3, 2]  # between 1 and 6; 7 has no interaction beyond
    expected = [(abs(1 - ti) / 5, abs(6 - ti) / 5) for ti in second.fused for _ in range(2)]  # per object
    assert times(fusion) == pytest.approx([v for pair in expected for v in pair])
    assert all(c["plane"] for c in fusion.calls)

    before = {t: inter.probabilities.get(t).clone() for t in range(8)}
    fusion.calls.clear()
    third = inter.interact(3, labels[3])
    assert third.forward == [4, 5] and third.backward == [2]  # stops at the interacted 6 and 1
    assert third.fused == [4, 5, 2]
    expected = ([(abs(6 - ti) / 3, abs(3 - ti) / 3) for ti in (4, 5) for _ in range(2)]
                + [(abs(1 - ti) / 2, abs(3 - ti) / 2) for ti in (2,) for _ in range(2)])
    assert times(fusion) == pytest.approx([v for pair in expected for v in pair])
    for t in (0, 1, 6, 7):  # beyond the neighbouring interactions, and the interacted frames
        assert torch.equal(inter.probabilities.get(t), before[t]), t
    for t in (2, 4, 5):
        assert not torch.equal(inter.probabilities.get(t), before[t]), t
    assert inter.interacted == [1, 6, 3]


def test_without_fusion_the_new_pass_is_taken(predictor):
    images, labels = video(5)
    fused = InteractiveCore(predictor, images, num_objects=2, fusion=StandInFusion())
    plain = InteractiveCore(predictor, images, num_objects=2)
    plain.cache = fused.cache  # the same frames: share their features
    for core in (fused, plain):
        core.interact(0, labels[0])
        core.interact(3, labels[3])
    assert torch.equal(fused.probabilities.get(4), plain.probabilities.get(4))  # after 3: not between two interactions
    assert not torch.equal(fused.probabilities.get(2), plain.probabilities.get(2))


# ------------------------------------------------------------------------------ (d) update_mask_only
def test_update_mask_only_changes_only_that_frame(predictor):
    images, labels = video(4)
    inter = InteractiveCore(predictor, images, num_objects=2)
    inter.interact(0, labels[0])
    before = inter.all_labels()
    stored = [inter.probabilities.get(t).clone() for t in range(inter.length)]
    new = np.zeros((H, W), dtype=np.uint8)
    new[5:15, 5:20] = 2
    inter.update_mask_only(2, new)
    after = inter.all_labels()
    assert np.array_equal(after[2], new) and not np.array_equal(before[2], new)
    assert np.array_equal(np.delete(after, 2, axis=0), np.delete(before, 2, axis=0))
    # probabilities kept for the next diff
    assert all(torch.equal(a, inter.probabilities.get(t)) for t, a in enumerate(stored))


# -------------------------------------------------------------------- (e) progress and cancellation
def test_progress_and_cancellation_between_frames(predictor):
    images, labels = video(6)
    inter = InteractiveCore(predictor, images, num_objects=2)
    seen, stop = [], threading.Event()

    def progress(done, total):
        seen.append((done, total))
        if done == 2:
            stop.set()

    result = inter.interact(2, labels[2], progress=progress, cancel=stop)
    assert result.cancelled and result.forward == [3, 4] and result.backward == []
    assert seen == [(1, 5), (2, 5)]  # 3 frames forward + 2 backward were due
    assert np.array_equal(inter.labels(2), labels[2])  # the interaction itself is kept
    for t in (0, 1, 5):  # never reached: still empty
        assert not inter.labels(t).any(), t
    assert inter.interacted == [2]

    # the state stays usable: the next interaction runs its passes in full
    counts = []
    result = inter.interact(0, labels[0], progress=lambda d, n: counts.append((d, n)), cancel=lambda: False)
    assert not result.cancelled and result.forward == [1] and counts == [(1, 1)]


# ----------------------------------------------------------------------------- (f) the cache bound
def test_feature_cache_stays_within_its_bound_on_a_longer_video(predictor):
    images, labels = video(10)
    probe = InteractiveCore(predictor, images[:1], num_objects=2)
    probe._inputs(0)
    entry = probe.cache.nbytes
    bound_mb = 3.5 * entry / 2**20  # three frames' inputs and features
    small = InteractiveCore(predictor, images, num_objects=2, cache_mb=bound_mb)
    for t in (0, 9, 4):
        small.interact(t, labels[t])
    assert small.cache.peak_bytes <= bound_mb * 2**20 and len(small.cache) == 3
    whole = InteractiveCore(predictor, images, num_objects=2, cache_mb=None)
    for t in (0, 9, 4):
        whole.interact(t, labels[t])
    assert len(whole.cache) == 10
    assert np.array_equal(small.all_labels(), whole.all_labels())  # the bound changes no result


def test_probabilities_beyond_their_bound_go_to_disk_and_come_back_exactly(predictor):
    images, labels = video(10)
    whole = InteractiveCore(predictor, images, num_objects=2, prob_mb=None)
    for t in (0, 9, 4):
        whole.interact(t, labels[t])
    entry = whole.probabilities.get(0).nelement() * 4  # float32: 1 + K, H', W'
    small = InteractiveCore(predictor, images, num_objects=2, prob_mb=2.5 * entry / 2**20)  # two frames in RAM
    for t in (0, 9, 4):
        small.interact(t, labels[t])
    store = small.probabilities
    assert store.peak_bytes <= 2.5 * entry and len(store._disk) == 8
    folder = store._folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t}.npy" for t in store._disk)
    for t in range(10):
        assert torch.equal(small.probabilities.get(t), whole.probabilities.get(t)), t
    assert np.array_equal(small.all_labels(), whole.all_labels())
    store.close()
    assert not folder.exists()  # the store's own folder, nothing else
    del small, store


# ------------------------------------------------------------------------------------ (g) S2M step
def test_scribble_to_mask_with_a_stand_in_network(predictor):
    images, labels = video(4)
    inter = InteractiveCore(predictor, images, num_objects=2)
    inter.interact(0, labels[0])
    current = inter.labels(2)
    s2m = StandInS2M()
    scribbles = np.zeros((2, 2, H, W), dtype=np.float32)
    scribbles[0, 0, 30:36, 40:50] = 1  # a positive stroke of object 1 (bottom right)
    scribbles[1, 1, 30:36, 40:50] = 1  # the same stroke is negative for object 2
    scribbles[1, 0, 2:6, 2:8] = 1  # a positive stroke of object 2 (top left)
    scribbles[0, 1, 2:6, 2:8] = 1
    prob = inter.scribble_probabilities(2, s2m, scribbles)
    assert prob.shape == (3, 48, 64)
    torch.testing.assert_close(prob.sum(dim=0), torch.ones(48, 64))
    assert len(s2m.inputs) == 2  # one forward per object
    image, _ = inter._inputs(2)
    hard = inter.probabilities.get(2).argmax(dim=0)  # the current labels at the padded size (MiVOS: padding included)
    assert np.array_equal(hard[4:-4, 4:-4].numpy(), current)
    for k, x in enumerate(s2m.inputs, start=1):
        assert x.shape == (1, 6, 48, 64)
        assert torch.equal(x[:, :3], image)
        assert torch.equal(x[0, 3], (hard == k).float())
        assert np.array_equal(x[0, 4:].numpy(), np.pad(scribbles[k - 1], ((0, 0), (4, 4), (4, 4))))
    new = prob.argmax(dim=0)[4:-4, 4:-4].numpy()
    assert (new[30:36, 40:50] == 1).all() and (new[2:6, 2:8] == 2).all()
    assert prob.max(dim=0).values.min() > 0.99  # the "hard" aggregation: all but one-hot

    inter.update_mask_only(2, prob=prob)
    assert np.array_equal(inter.labels(2), new)
    s2m.inputs.clear()
    inter.scribble_probabilities(2, s2m, scribbles)  # sees the replaced mask as the current one
    assert torch.equal(s2m.inputs[0][0, 3], (prob.argmax(dim=0) == 1).float())
    result = inter.interact(2, prob=prob)
    assert result.forward == [3] and result.backward == [1]  # 0 is interacted
    assert np.array_equal(inter.labels(2), new)


def test_scribble_maps_at_the_padded_size_are_taken_as_they_are(predictor):
    # MiVOS's DAVIS benchmark rasterises at the padded size: such maps reach S2M unchanged, strokes in the
    # padding included; maps at the frame's size are padded with zeros
    images, _ = video(2)
    inter = InteractiveCore(predictor, images, num_objects=1)
    assert inter.padded_size == (48, 64)
    at_frame = np.zeros((1, 2, H, W), dtype=np.float32)
    at_frame[0, 0, 10:20, 10:30] = 1
    padded = np.pad(at_frame, ((0, 0), (0, 0), (4, 4), (4, 4)))
    s2m = StandInS2M()
    torch.testing.assert_close(inter.scribble_probabilities(1, s2m, at_frame),
                               inter.scribble_probabilities(1, s2m, padded))
    padded[0, 1, :, :2] = 1  # a negative stroke in the left padding
    inter.scribble_probabilities(1, s2m, padded)
    assert np.array_equal(s2m.inputs[-1][0, 4:].numpy(), padded[0])


def test_bad_arguments_are_refused_with_the_argument_named(predictor):
    images, labels = video(3)
    inter = InteractiveCore(predictor, images, num_objects=2)
    with pytest.raises(PredictorError, match="^frame: "):
        inter.interact(3, labels[0])
    with pytest.raises(PredictorError, match="^mask: ids up to 3"):
        inter.interact(0, labels[0] + (labels[0] > 0))
    with pytest.raises(PredictorError, match="^prob: "):
        inter.interact(0, prob=torch.zeros(3, 40, 56))
    with pytest.raises(PredictorError, match="^scribbles: "):
        inter.scribble_probabilities(0, StandInS2M(), np.zeros((1, 2, H, W)))
    with pytest.raises(PredictorError, match="^num_objects: "):
        InteractiveCore(predictor, images, num_objects=0)


# -------------------------------------------------------------- directions, on_frame and restore
def test_directions_on_frame_and_restore(predictor):
    images, labels = video(6)
    inter = InteractiveCore(predictor, images, num_objects=2)
    seen = []
    result = inter.interact(2, labels[2], directions="forward", on_frame=seen.append)
    assert result.forward == [3, 4, 5] and result.backward == [] and seen == [3, 4, 5]
    result = inter.interact(4, labels[4], directions="none")
    assert result.forward == result.backward == [] and inter.interacted == [2, 4]
    with pytest.raises(PredictorError, match="^directions: "):
        inter.interact(0, labels[0], directions="sideways")

    # a core rebuilt from saved label maps: the same memory frames, stored probabilities from the maps
    rebuilt = InteractiveCore(predictor, images, num_objects=2)
    for t in (3, 5):
        rebuilt.restore(t, inter.labels(t))
    for t in (2, 4):
        rebuilt.restore(t, inter.labels(t), interacted=True)
    assert rebuilt.interacted == [2, 4] and len(rebuilt._memory) == 2
    for t in (2, 3, 4, 5):
        assert np.array_equal(rebuilt.labels(t), inter.labels(t)), t
    assert not rebuilt.labels(0).any()
    both = [rebuilt.interact(0, labels[0]), inter.interact(0, labels[0])]
    assert both[0].forward == both[1].forward == [1]  # stops at the restored interaction on 2
    assert np.array_equal(rebuilt.labels(1), inter.labels(1))  # without fusion: the same pass
