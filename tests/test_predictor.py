"""The Python API (inference_core/predictor.py): streams, object ids, corrections, removal, offline and
bidirectional segmentation, bad arguments, and the README's "Use from Python" examples."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import eval_generic
import segment_video
from inference_core import InferenceCore, MemoryBank, Predictor, PredictorError
from inference_core.bidirectional import Bidirectional, first_frames, merge_directions
from inference_core.core import probabilities_to_labels
from tests.eval_fixtures import TEST_PALETTE, VideoSpec, render, save_indexed, save_jpg, save_rgb
from tests.helpers import PROB_TOL, assert_same_labels
from util.errors import UserError
from util.frames import normalise, resize_frame, resize_labels
from util.io import DataError, MaskReader, resized_shape

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32  # network short side of the tests: small and fast
SPEC = VideoSpec("v", 48, 64, 10, {3: 0, 200: 5})  # ids 3 and 200; 200 appears on frame 5


@pytest.fixture(scope="module")
def video():
    images, labels = render(SPEC, seed=3)
    return images, labels


@pytest.fixture(scope="module")
def predictor(stcn_net):
    return Predictor(stcn_net, size=SIZE)


@pytest.fixture(scope="module")
def native(stcn_net):
    """At the frames' own size (48 x 64), where an annotated frame's labels are the annotation exactly."""
    return Predictor(stcn_net, size=None)


def only(labels: np.ndarray, *ids: int) -> np.ndarray:
    return np.where(np.isin(labels, ids), labels, 0).astype(labels.dtype)


def first_appearances(labels) -> dict[int, np.ndarray]:
    """Frame -> mask of the objects that start there (YouTube-VOS style)."""
    return {start: only(labels[start], obj) for obj, start in SPEC.starts.items()}


# ------------------------------------------------------------------------ equals the core and the CLI
def test_stream_equals_inference_core_on_the_evaluation_preprocessing(predictor, stcn_net, video):
    images, labels = video
    masks = first_appearances(labels)
    stream = predictor.new_stream()
    core = InferenceCore(stcn_net)
    size = resized_shape(SPEC.height, SPEC.width, SIZE)
    for t, img in enumerate(images):
        got = stream.step(img, masks.get(t))
        mask = None if t not in masks else resize_labels(torch.from_numpy(masks[t].astype(np.int64)), size)
        prob = core.step(resize_frame(normalise(Image.fromarray(img)), size), mask)
        want = probabilities_to_labels(prob, (SPEC.height, SPEC.width), core.label_map())
        assert np.array_equal(got, want), t
        assert got.dtype == np.uint8 and got.shape == (SPEC.height, SPEC.width)
    assert stream.objects == [3, 200]
    probs = stream.probabilities
    assert sorted(probs) == [0, 3, 200] and probs[3].shape == (SPEC.height, SPEC.width)
    np.testing.assert_allclose(sum(probs.values()), 1.0, atol=1e-5)


def write_generic(root: Path, images, masks: dict[int, np.ndarray]) -> Path:
    for t, img in enumerate(images):
        save_jpg(root / "JPEGImages" / "v" / f"{t:05d}.jpg", img)
    for t, mask in masks.items():
        save_indexed(root / "Annotations" / "v" / f"{t:05d}.png", mask)
    return root


@pytest.mark.parametrize("bidirectional", [False, True])
def test_segment_equals_eval_generic(tmp_path, video, released_checkpoint, bidirectional, capsys):
    images, labels = video
    masks = {2: only(labels[2], 3), 5: only(labels[5], 200)}  # both objects start after frame 0
    data = write_generic(tmp_path / "data", images, masks)
    flags = ["--bidirectional"] if bidirectional else []
    argv = ["--data_path", str(data), "--output", str(tmp_path / "out"), "--model", str(released_checkpoint),
            "--size", str(SIZE), "--device", "cpu", *flags]
    assert eval_generic.main(argv) == 0
    capsys.readouterr()
    predictor = Predictor.from_checkpoint(released_checkpoint, device="cpu", size=SIZE)
    read = {t: np.array(Image.open(data / "Annotations" / "v" / f"{t:05d}.png")) for t in masks}
    results = list(predictor.segment(data / "JPEGImages" / "v", read, bidirectional=bidirectional))
    assert [t for t, _ in results] == list(range(SPEC.frames))
    for t, got in results:
        assert np.array_equal(got, np.array(Image.open(tmp_path / "out" / "v" / f"{t:05d}.png"))), t
    before = np.unique(np.concatenate([r.ravel() for _, r in results[:2]]))
    assert bool(set(before.tolist()) - {0}) == bidirectional  # frames before any annotation: objects only backwards


def test_an_ensemble_stream_equals_eval_generics_ensemble(tmp_path, video, released_checkpoint, capsys):
    """Two networks x two scales x flip from Python: the masks of eval_generic.py with the same flags (the
    stream resizes and mirrors its inputs from the original frame as the evaluation datasets do)."""
    images, labels = video
    masks = {0: only(labels[0], 3), 5: only(labels[5], 200)}
    data = write_generic(tmp_path / "data", images, masks)
    ckpt = str(released_checkpoint)
    argv = ["--data_path", str(data), "--output", str(tmp_path / "out"), "--model", ckpt, ckpt, "--size", str(SIZE),
            "--scales", str(SIZE), "48", "--flip", "--device", "cpu"]
    assert eval_generic.main(argv) == 0
    capsys.readouterr()
    predictor = Predictor.from_checkpoint([ckpt, ckpt], device="cpu", size=SIZE, scales=(SIZE, 48), flip=True)
    assert len(predictor.new_core().cores) == 8
    read = {t: np.array(Image.open(data / "Annotations" / "v" / f"{t:05d}.png")) for t in masks}
    results = list(predictor.segment(data / "JPEGImages" / "v", read))
    assert [t for t, _ in results] == list(range(SPEC.frames))
    for t, got in results:
        assert np.array_equal(got, np.array(Image.open(tmp_path / "out" / "v" / f"{t:05d}.png"))), t
    stream = predictor.new_stream()
    stream.step(images[0], labels[0])
    for call, where in ((lambda: stream.step(images[1], labels[0]), "mask"), (lambda: stream.remove(3), "remove"),
                        (lambda: predictor.step_batch([(stream, images[1])]), "items")):
        with pytest.raises(PredictorError) as info:
            call()
        assert info.value.where == where


def test_segment_video_bidirectional_equals_segment_on_the_video_file(tmp_path, video, released_checkpoint, capsys):
    from util.video import VideoWriter

    images, labels = video
    with VideoWriter(tmp_path / "clip.mp4", fps=10) as writer:
        for img in images:
            writer.write(img)
    mask = only(labels[4], 3)
    save_indexed(tmp_path / "masks" / "00004.png", mask)
    argv = ["--video", str(tmp_path / "clip.mp4"), "--mask_dir", str(tmp_path / "masks"), "--output",
            str(tmp_path / "out"), "--model", str(released_checkpoint), "--size", str(SIZE), "--device", "cpu",
            "--bidirectional"]
    assert segment_video.main(argv) == 0
    capsys.readouterr()
    predictor = Predictor.from_checkpoint(released_checkpoint, device="cpu", size=SIZE)
    results = list(predictor.segment(tmp_path / "clip.mp4", {4: mask}, bidirectional=True))
    assert len(results) == SPEC.frames
    for t, got in results:
        assert np.array_equal(got, np.array(Image.open(tmp_path / "out" / f"{t:05d}.png"))), t


def test_checkpoint_formats_load_as_the_clis_do(tmp_path, stcn_net, released_checkpoint, video):
    images, labels = video
    training = tmp_path / "run.pth"
    torch.save({"network": {f"module.{k}": v for k, v in stcn_net.state_dict().items()}, "it": 1}, training)
    runs = []
    for p in (Predictor(stcn_net, size=SIZE), Predictor.from_checkpoint(released_checkpoint, "cpu", size=SIZE),
              Predictor.from_checkpoint(training, device="cpu", size=SIZE)):
        runs.append([lab for _, lab in p.segment(images[:4], {0: labels[0]})])
    for other in runs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(runs[0], other))


def test_stage0_checkpoint_is_converted(tmp_path):
    from model import STCN

    torch.manual_seed(1)
    path = tmp_path / "s0.pth"
    torch.save(STCN(single_object=True, pretrained=False).state_dict(), path)
    predictor = Predictor.from_checkpoint(path, device="cpu", size=SIZE)
    assert predictor.network.value_encoder.conv1.weight.shape == (64, 5, 7, 7)


# ------------------------------------------------------------------------------------- objects
def test_ids_are_kept_and_large_ids_come_back_as_uint16(predictor, video):
    images, labels = video
    stream = predictor.new_stream()
    first = np.where(labels[0] == 3, 300, 0)  # an id above 255
    out = [stream.step(img, first if t == 0 else None) for t, img in enumerate(images[:3])]
    assert out[0].dtype == np.uint16 and set(np.unique(out[0])) == {0, 300}
    assert stream.objects == [300]


def with_lost_object(labels: np.ndarray, obj: int = 7) -> tuple[np.ndarray, tuple[int, int]]:
    """`labels` plus object `obj` on one background pixel that the nearest resize to SIZE samples none of."""
    net = resized_shape(*labels.shape, SIZE)
    for y, x in zip(*np.nonzero(labels == 0)):
        mask = labels.copy()
        mask[y, x] = obj
        if obj not in resize_labels(torch.from_numpy(mask.astype(np.int64)), net).unique().tolist():
            return mask, (int(y), int(x))
    raise AssertionError("no background pixel is lost at the network size")


def test_an_object_lost_at_the_network_size_is_noted_and_kept_on_its_frame(predictor, video):
    """A 1-pixel object is not tracked (the network never sees it) but its frame's labels keep it, with one
    note naming it and its size; the other objects' labels stay those of the mask without it."""
    images, labels = video
    mask, (y, x) = with_lost_object(labels[0])
    stream, plain = predictor.new_stream(), predictor.new_stream()
    got = [stream.step(img, mask if t == 0 else None) for t, img in enumerate(images[:3])]
    want = [plain.step(img, labels[0] if t == 0 else None) for t, img in enumerate(images[:3])]
    assert got[0][y, x] == 7 and stream.objects == [3]
    got[0][y, x] = want[0][y, x]
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert len(stream.notes) == 1 and not plain.notes
    assert stream.notes[0].startswith("note: mask of frame 0: object 7 (1 pixel, 1x1) has no pixel at the network "
                                      "size 42x32"), stream.notes
    offline = dict(predictor.segment(images[:3], {0: mask}))
    assert offline[0][y, x] == 7 and np.array_equal(offline[2], want[2]) and predictor.notes == stream.notes
    # bidirectional: frame 0 comes from the backward pass (object 9 starts on frame 2) and keeps it too
    later = np.where(labels[2] == 3, 9, 0).astype(np.uint8)
    both = dict(predictor.segment(images[:3], {0: mask, 2: later}, bidirectional=True))
    assert both[0][y, x] == 7 and len(predictor.notes) == 1


def test_a_colour_mask_is_read_by_the_commands_rule(predictor, video, tmp_path):
    """An RGB mask gets the ids a command gives the same colours in a PNG (util/io.py MaskReader), with one
    note saying which colour became which id; an anti-aliased one is refused with the commands' reason."""
    images, labels = video
    save_rgb(tmp_path / "first.png", labels[5])
    rgb = np.array(Image.open(tmp_path / "first.png"))
    ids = MaskReader().read(tmp_path / "first.png")  # what segment_video / eval_generic read
    assert sorted(np.unique(ids)) == [0, 1, 2]
    stream, plain = predictor.new_stream(), predictor.new_stream()
    assert np.array_equal(stream.step(images[5], rgb), plain.step(images[5], ids))
    assert np.array_equal(stream.step(images[6], rgb), plain.step(images[6], ids))  # the same ids again
    pil = predictor.new_stream()
    assert np.array_equal(pil.step(images[5], Image.open(tmp_path / "first.png")), plain.labels())
    assert len(stream.notes) == 1 and stream.notes == pil.notes, stream.notes
    for obj in (3, 200):
        colour = tuple(TEST_PALETTE[3 * obj : 3 * obj + 3])
        assert f"{colour} -> {int(ids[labels[5] == obj][0])}" in stream.notes[0]
    smooth = rgb.copy()
    ys, xs = np.nonzero(labels[5] == 3)
    smooth[ys.min() - 1, xs.min() : xs.max() + 1] = rgb[ys.min(), xs.min()] // 2  # an anti-aliased edge
    Image.fromarray(smooth).save(tmp_path / "smooth.png")
    with pytest.raises(DataError) as cli:
        MaskReader().read(tmp_path / "smooth.png")
    with pytest.raises(PredictorError) as api:
        predictor.new_stream().step(images[5], smooth)
    assert api.value.where == "mask" and api.value.problem == cli.value.problem


def test_object_added_at_frame_5_and_removed_at_frame_8(native, video):
    images, labels = video
    stream = native.new_stream()
    seen = []
    for t, img in enumerate(images):
        if t == 8:
            stream.remove(3)
        out = stream.step(img, labels[0] if t == 0 else only(labels[5], 200) if t == 5 else None)
        seen.append(set(np.unique(out).tolist()) - {0})
        if t == 5:
            assert np.array_equal(out == 200, labels[5] == 200)  # the annotation on its own frame
    assert all(200 not in s for s in seen[:5]) and all(200 in s for s in seen[5:])
    assert all(3 not in s for s in seen[8:])
    assert stream.objects == [200] and sorted(stream.probabilities) == [0, 200]
    memory = stream.core.memory
    assert memory.num_objects == 1 and [g.objects for g in memory.groups] == [[0]]
    assert memory.frame_ids[0] == 5  # frames only object 3 read are gone


def test_removing_an_object_right_after_its_frame_keeps_probabilities_normalised(predictor, video):
    images, labels = video
    stream = predictor.new_stream()
    stream.step(images[0], labels[0] * (labels[0] > 0))
    stream.step(images[1], only(labels[5], 200))
    stream.remove(3)
    probs = stream.probabilities
    assert sorted(probs) == [0, 200]
    np.testing.assert_allclose(probs[0] + probs[200], 1.0, atol=1e-5)
    assert 3 not in stream.labels()


def test_memory_bank_remove_object_renumbers_groups_and_drops_unread_frames():
    bank = MemoryBank(top_k=2)
    key = torch.randn(1, 4, 2, 2)
    bank.add_group([0, 1])
    bank.add(0, key, torch.randn(2, 3, 2, 2))
    bank.add_group([2])
    bank.add(1, key, torch.randn(3, 3, 2, 2))
    kept = bank.groups[1].values.clone()
    bank.remove_object(1)
    assert [g.objects for g in bank.groups] == [[0], [1]] and bank.groups[0].values.shape == (8, 1, 3)
    bank.remove_object(0)  # the first group goes: frame 0 is read by nobody
    assert bank.frame_ids == [1] and bank.groups[0].first_frame == 0 and bank.groups[0].objects == [0]
    assert torch.equal(bank.groups[0].values, kept) and bank.keys.shape == (1, 4, 4)
    assert bank.read(torch.randn(1, 4, 2, 2)).shape == (1, 3, 2, 2)


def test_mask_mixing_tracked_and_new_ids_starts_the_new_and_corrects_the_tracked(native, video):
    images, labels = video
    stream = native.new_stream()
    stream.step(images[0], only(labels[0], 3))
    for img in images[1:5]:
        stream.step(img)
    shifted = np.roll(labels[5], 6, axis=1)  # object 3 annotated somewhere else, 200 new
    out = stream.step(images[5], shifted)
    assert stream.objects == [3, 200]
    assert np.array_equal(out, shifted)  # every id of the mask gets exactly its pixels on its frame
    assert 5 in stream.core.memory.pinned and stream.core.last_mem_index == 5


def test_a_mask_of_tracked_ids_only_is_a_correction_of_its_frame(native, video):
    images, labels = video
    a, b = native.new_stream(), native.new_stream()
    for s in (a, b):
        s.step(images[0], only(labels[0], 3))
    moved = np.roll(only(labels[1], 3), 4, axis=0)
    got = a.step(images[1], moved)
    b.step(images[1])
    assert np.array_equal(got, b.correct(moved)) and np.array_equal(got, moved)
    assert np.array_equal(a.step(images[2]), b.step(images[2]))


# ----------------------------------------------------------------------------------- corrections
class CopyNetwork:
    """A network that propagates masks by position: keys are pixel coordinates, the value of a memory
    position is its mask, the decoder returns the read value (scaled into logits). With it a memory
    frame's mask shows up at the same place in the next frames, so the effect of a correction is known."""

    device = torch.device("cpu")
    GAIN = 8.0

    def eval(self):
        return self

    def encode_key(self, frame):
        h, w = frame.shape[-2] // 16, frame.shape[-1] // 16
        yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
        k16 = torch.stack([yy, xx])[None] * 4.0
        f16 = torch.zeros(1, 1, h, w)
        return k16, torch.zeros(1, 1, h, w), f16, None, None

    def encode_value(self, frame, f16, masks, others):
        return F.avg_pool2d(masks, 16).unsqueeze(2) * 2 - 1  # B, K, 1, h/16, w/16 in [-1, 1]

    def decode(self, readout, qv16, f8, f4):
        return F.interpolate(readout[:, :1] * self.GAIN, scale_factor=16, mode="nearest")


def test_a_correction_changes_later_frames_toward_the_corrected_mask():
    frame = np.full((64, 96, 3), 128, np.uint8)  # a static video: only the memory decides
    start = np.zeros((64, 96), np.int64)
    start[:, :32] = 7
    fixed = np.zeros_like(start)
    fixed[:, 48:] = 7  # the correction moves the object to the right
    predictor = Predictor(CopyNetwork(), size=None, mem_every=100, top_k=4)

    def run(correct: bool) -> list[np.ndarray]:
        stream = predictor.new_stream()
        stream.step(frame, start)
        stream.step(frame)
        if correct:
            assert np.array_equal(stream.correct(fixed, frame_index=1), fixed)
        return [stream.step(frame) for _ in range(3)], stream

    plain, _ = run(False)
    corrected, stream = run(True)
    assert all(np.array_equal(p, start) for p in plain)
    right = fixed == 7
    for p, c in zip(plain, corrected):
        assert (c[right] == 7).mean() > (p[right] == 7).mean()
    assert 1 in stream.core.memory.pinned and stream.core.memory.frame_ids == [0, 1]


def test_correct_replaces_the_values_of_a_memory_frame(native, video):
    images, labels = video
    stream = native.new_stream()
    stream.step(images[0], only(labels[0], 3))
    values = stream.core.memory.groups[0].values.clone()
    out = stream.correct(np.roll(only(labels[0], 3), 5, axis=1))
    assert np.array_equal(out, np.roll(only(labels[0], 3), 5, axis=1))
    assert stream.core.memory.frame_ids == [0]  # the frame was memory: its values replaced, not added
    assert not torch.equal(values, stream.core.memory.groups[0].values)


# ------------------------------------------------------------------------------------- backwards
def test_backward_propagation_from_frame_m_equals_forward_over_the_reversed_frames(predictor, video):
    images, labels = video
    m = 6
    results = dict(predictor.segment(images, {m: labels[m]}, bidirectional=True))
    forward = dict(predictor.segment(images, {m: labels[m]}))
    reverse = predictor.new_stream()
    backward = {t: reverse.step(images[t], labels[m] if t == m else None) for t in range(m, -1, -1)}
    for t in range(SPEC.frames):
        assert np.array_equal(results[t], backward[t] if t < m else forward[t]), t
    assert set(np.unique(results[0]).tolist()) - {0}


def test_merge_takes_each_object_from_its_pass():
    prob = torch.softmax(torch.randn(3, 4, 4), dim=0)
    same, ids = merge_directions((prob, [1, 2]), (prob[:1], []), {1: 0, 2: 0}, 3)
    assert same is prob and ids == [1, 2]
    merged, ids = merge_directions((prob[:2], [1]), (prob, [5, 1]), {1: 0, 5: 7}, 3)
    assert ids == [1, 5] and merged.shape == (3, 4, 4)
    torch.testing.assert_close(merged.sum(0), torch.ones(4, 4))



def test_the_backward_pass_runs_from_the_last_first_annotation_and_keeps_the_frames_asked():
    """inference_core.bidirectional, the one implementation under the loop and `segment`: frames last..0
    stepped in that order, results kept for the frames before `last` that `keep` asks for, merged once."""
    both = Bidirectional(first_frames([(0, [1]), (2, [1, 5]), (3, [5, 7])]))
    assert both.starts == {1: 0, 5: 2, 7: 3} and both.last == 3
    stepped = []

    def step(t):
        stepped.append(t)
        return torch.full((3, 2, 2), float(t)), [5, 7]

    both.run_backward(step, keep=lambda t: t != 1)
    assert stepped == [3, 2, 1, 0] and sorted(both.backward) == [0, 2]
    prob = torch.softmax(torch.randn(2, 2, 2), dim=0)
    merged, label_map = both.merge(0, prob, [1])  # 1 forward (started on 0), 5 and 7 backward
    assert label_map.tolist() == [0, 1, 5, 7] and merged.shape == (4, 2, 2) and 0 not in both.backward
    same, label_map = both.merge(1, prob, [1])  # nothing kept for frame 1: the forward pass as it is
    assert same is prob and label_map.tolist() == [0, 1]
    Bidirectional({1: 0}).run_backward(lambda t: pytest.fail("nothing to propagate backward"))


# ----------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, where", [
    (lambda s, img, lab: s.step(img.astype(np.float32)), "frame"),
    (lambda s, img, lab: s.step(img[..., 0]), "frame"),
    (lambda s, img, lab: s.step([1, 2, 3]), "frame"),
    (lambda s, img, lab: s.step(img, lab[:-1]), "mask"),
    (lambda s, img, lab: s.step(img, lab.astype(np.float32)), "mask"),
    (lambda s, img, lab: s.step(img, -lab.astype(np.int64)), "mask"),
    (lambda s, img, lab: (s.step(img, lab), s.step(img[:-2]))[1], "frame"),
    (lambda s, img, lab: (s.step(img, lab), s.remove(99))[1], "obj_id"),
    (lambda s, img, lab: (s.step(img, only(lab, 3)), s.correct(lab))[1], "mask"),
    (lambda s, img, lab: (s.step(img, lab), s.correct(lab[:, :-1]))[1], "mask"),
    (lambda s, img, lab: (s.step(img, lab), s.correct(lab, frame_index=0), s.step(img), s.correct(lab, 0))[3],
     "frame_index"),
    (lambda s, img, lab: s.correct(lab), "correct"),
])
def test_bad_stream_input_names_the_argument(predictor, video, call, where):
    images, labels = video
    with pytest.raises(PredictorError) as info:
        call(predictor.new_stream(), images[0], labels[5])
    assert isinstance(info.value, UserError) and info.value.where == where
    assert str(info.value).startswith(f"{where}: ")


@pytest.mark.parametrize("kwargs, where", [
    (dict(top_k=0), "top_k"), (dict(mem_every=0), "mem_every"), (dict(chunk_size="lots"), "chunk_size"),
    (dict(max_mem_mb=0), "max_mem_mb"), (dict(object_batch=0), "object_batch"), (dict(size=8), "size"),
    (dict(no_such_option=1), "no_such_option"),
])
def test_bad_options_name_the_argument(stcn_net, kwargs, where):
    with pytest.raises(PredictorError) as info:
        Predictor(stcn_net, **kwargs)
    assert info.value.where == where


@pytest.mark.parametrize("name", ["size", "top_k", "mem_every", "max_mem_frames", "object_batch", "chunk_size"])
@pytest.mark.parametrize("value", [480.0, np.float32(40), True])
def test_integer_options_refuse_floats_and_booleans_as_not_integers(stcn_net, name, value):
    """One rule for every integer option: ints and numpy integers; 480.0 is 'not an integer', not 'too small'."""
    with pytest.raises(PredictorError) as info:
        Predictor(stcn_net, **{name: value})
    assert info.value.where == name and "must be an integer" in info.value.problem
    assert "minimum" not in info.value.problem
    if isinstance(value, float):
        assert f"{name}={int(value)}" in info.value.fix


def test_integer_options_take_numpy_integers(stcn_net, video):
    images, labels = video
    kwargs = dict(top_k=np.int64(20), mem_every=np.int32(5), max_mem_frames=np.int64(4), object_batch=np.uint8(1),
                  chunk_size=np.int16(500))
    predictor = Predictor(stcn_net, size=np.int64(SIZE), **kwargs)
    assert predictor.size == SIZE and type(predictor.size) is int
    assert all(type(predictor.options[k]) is int and predictor.options[k] == v for k, v in kwargs.items())
    want = Predictor(stcn_net, size=SIZE, **{k: int(v) for k, v in kwargs.items()}).new_stream()
    got = predictor.new_stream()
    for t in range(3):
        mask = labels[0] if t == 0 else None
        assert np.array_equal(got.step(images[t], mask), want.step(images[t], mask))


@pytest.mark.parametrize("device", ["cuda", "cuda:3", torch.device("cuda"), torch.device("cuda", 3)])
def test_a_cuda_device_the_machine_lacks_is_one_device_error(released_checkpoint, device, monkeypatch):
    """Without CUDA (also a torch.device), and with CUDA but fewer GPUs than cuda:i asks for."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PredictorError) as info:
        Predictor.from_checkpoint(released_checkpoint, device=device)
    assert info.value.where == "device" and "CUDA" in info.value.problem
    if str(device).endswith(":3"):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        with pytest.raises(PredictorError) as info:
            Predictor.from_checkpoint(released_checkpoint, device=device)
        assert info.value.where == "device" and "CUDA device 3 does not exist" in info.value.problem


@pytest.mark.parametrize("kwargs, where", [
    (dict(device="cuda:7" if not torch.cuda.is_available() else "nonsense"), "device"),
    (dict(backend="tensorflow"), "backend"), (dict(onnx_dir="x"), "onnx_dir"),
    (dict(backend="onnxruntime", amp=True), "amp"), (dict(amp_dtype="float8"), "amp_dtype"),
])
def test_bad_from_checkpoint_arguments_name_the_argument(released_checkpoint, kwargs, where):
    with pytest.raises(PredictorError) as info:
        Predictor.from_checkpoint(released_checkpoint, **kwargs)
    assert info.value.where == where


def test_bad_segment_input_names_the_argument(predictor, video, tmp_path):
    images, labels = video
    cases = ((images, {len(images): labels[0]}), (images, [labels[0]]), (images, {-1: labels[0]}),
             (tmp_path / "none.mp4", {0: labels[0]}), (iter(images), {len(images): labels[0]}))
    for frames, masks in cases:
        with pytest.raises(PredictorError) as info:
            list(predictor.segment(frames, masks))
        assert info.value.where in ("masks", "frames")


# ------------------------------------------------------------------ frames: order, names, depth, size
def test_unpadded_frame_names_run_in_number_order_and_keep_their_names(tmp_path, released_checkpoint, capsys):
    """0.jpg ... 10.jpg run as 0, 1, 2, ..., 10 (not 0, 1, 10, 2, ...) in eval_generic.py and
    Predictor.segment(folder); each mask lands on the frame of its name and is written under it."""
    spec = VideoSpec("v", 48, 64, 11, {3: 0, 200: 9})
    images, labels = render(spec, seed=4)
    data = tmp_path / "data"
    for t, img in enumerate(images):
        save_jpg(data / "JPEGImages" / "v" / f"{t}.jpg", img)
    masks = {0: only(labels[0], 3), 9: only(labels[9], 200)}
    for t, mask in masks.items():
        save_indexed(data / "Annotations" / "v" / f"{t}.png", mask)
    argv = ["--data_path", data, "--output", tmp_path / "out", "--model", released_checkpoint, "--size", SIZE,
            "--device", "cpu"]
    assert eval_generic.main([str(a) for a in argv]) == 0
    capsys.readouterr()
    written = {p.name for p in (tmp_path / "out" / "v").glob("*.png")}
    assert written == {f"{t}.png" for t in range(spec.frames)}
    predictor = Predictor.from_checkpoint(released_checkpoint, device="cpu", size=SIZE)
    decoded = [np.asarray(Image.open(data / "JPEGImages" / "v" / f"{t}.jpg")) for t in range(spec.frames)]
    want = [labels for _, labels in predictor.segment(decoded, masks)]
    folder = [labels for _, labels in predictor.segment(data / "JPEGImages" / "v", masks)]
    for t in range(spec.frames):
        assert np.array_equal(folder[t], want[t]), t
        assert np.array_equal(np.array(Image.open(tmp_path / "out" / "v" / f"{t}.png")), want[t]), t


def test_two_frames_of_one_name_in_a_folder_are_refused(predictor, video, tmp_path):
    images, labels = video
    for t, img in enumerate(images[:4]):
        save_jpg(tmp_path / f"{t:05d}.jpg", img)
    Image.fromarray(images[3]).save(tmp_path / "00003.png")
    with pytest.raises(UserError, match=r"00003\.jpg: two frames named 00003 \(00003\.jpg and 00003\.png\)"):
        list(predictor.segment(tmp_path, {0: labels[0]}))


def test_sixteen_bit_frames_are_read_as_their_high_byte(predictor, video, tmp_path):
    """16-bit frames (a PIL image in mode I;16 or I, a 16-bit PNG in a folder) give what their 8 high bits
    give, not a white frame (convert("RGB") saturates them)."""
    images, labels = video
    grey = [img.mean(axis=-1).astype(np.uint8) for img in images[:3]]
    eight = [np.repeat(g[..., None], 3, axis=-1) for g in grey]
    deep = [g.astype(np.uint16) * 256 + 200 for g in grey]  # the high byte is the 8-bit frame
    for t, d in enumerate(deep):
        Image.fromarray(d).save(tmp_path / f"{t:05d}.png")
    masks = {0: labels[0]}
    want = [labels for _, labels in predictor.segment(eight, masks)]
    as_pil = [Image.fromarray(d) for d in deep]
    assert {img.mode for img in as_pil} == {"I;16"}
    for frames in (as_pil, [img.convert("I") for img in as_pil], tmp_path):
        got = [labels for _, labels in predictor.segment(frames, masks)]
        assert all(np.array_equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("frame", [np.zeros((0, 64, 3), np.uint8), np.zeros((48, 0, 3), np.uint8),
                                   torch.zeros((0, 0, 3), dtype=torch.uint8), Image.new("RGB", (64, 0))],
                         ids=["no-rows", "no-columns", "tensor", "pil"])
def test_a_frame_without_pixels_is_refused_in_one_line(predictor, frame):
    with pytest.raises(PredictorError, match=r"^frame: is \d+x\d+: it has no pixels; pass a frame of at least"):
        predictor.new_stream().step(frame)


# ------------------------------------------------------------------------------------------ README
def readme_examples() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Use from Python"):].split("\n## ")[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_examples_run(tmp_path, released_checkpoint, monkeypatch, video):
    """The README's streaming and offline examples, run as written (at the tests' small size)."""
    from evaluation.sample_video import write_sample, write_video_file

    images, labels = video
    (tmp_path / "saves").mkdir()
    (tmp_path / "saves" / "stcn.pth").write_bytes(Path(released_checkpoint).read_bytes())
    write_sample(tmp_path, frames=10, height=48, width=64)
    write_video_file(tmp_path, name="shapes")
    (tmp_path / "shapes.mp4").rename(tmp_path / "clip.mp4")
    (tmp_path / "shapes_first.png").rename(tmp_path / "first.png")
    for t, img in enumerate(images):
        save_jpg(tmp_path / "frames" / f"{t:05d}.jpg", img)
    save_indexed(tmp_path / "mask_00006.png", labels[6], TEST_PALETTE)
    real = Predictor.from_checkpoint.__func__
    monkeypatch.setattr(Predictor, "from_checkpoint",
                        classmethod(lambda cls, path, **kw: real(cls, path, **{**kw, "size": SIZE})))
    monkeypatch.chdir(tmp_path)
    examples = readme_examples()
    assert len(examples) == 2
    for code in examples:
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    assert len(list((tmp_path / "out").glob("*.png"))) == 10


# ------------------------------------------------------------------------------- batched streams
def test_step_batch_equals_stepping_each_stream_alone(predictor):
    """3 videos with 1, 2 and 3 objects, different lengths and sizes, objects starting mid-video."""
    specs = [VideoSpec("a", 48, 64, 5, {1: 0}), VideoSpec("b", 40, 72, 7, {4: 0, 9: 2}),
             VideoSpec("c", 48, 64, 4, {2: 0, 5: 1, 7: 3})]
    videos = [render(spec, seed=10 + n) for n, spec in enumerate(specs)]
    masks = [{start: only(labels[start], obj) for obj, start in spec.starts.items()}
             for spec, (_, labels) in zip(specs, videos)]
    alone, batched = [predictor.new_stream() for _ in specs], [predictor.new_stream() for _ in specs]
    for t in range(max(spec.frames for spec in specs)):
        live = [n for n, spec in enumerate(specs) if t < spec.frames]  # a finished video leaves the batch
        got = predictor.step_batch([(batched[n], videos[n][0][t], masks[n].get(t)) for n in live])
        for n, labels in zip(live, got):
            want = alone[n].step(videos[n][0][t], masks[n].get(t))
            assert labels.shape == want.shape and batched[n].objects == alone[n].objects
            prob, expected = batched[n].network_probabilities, alone[n].network_probabilities
            assert (prob - expected).abs().max() <= PROB_TOL, (n, t)
            assert_same_labels(prob, expected)
    assert [s.objects for s in batched] == [[1], [4, 9], [2, 5, 7]]


def test_step_batch_refuses_bad_items(predictor, stcn_net, video):
    images, labels = video
    stream = predictor.new_stream()
    other = Predictor(stcn_net, size=SIZE).new_stream()
    for items in ([(stream, images[0]), (stream, images[0])], [(other, images[0])], [(images[0],)], [stream]):
        with pytest.raises(PredictorError) as info:
            predictor.step_batch(items)
        assert info.value.where == "items"
    assert stream.frame_index == -1  # nothing was stepped
