"""Multi-scale and flip testing, kernelized memory reading and model ensembles (supplementary E, Table 10).

Through the CLIs: one scale or one model is today's run bit for bit; at the core: flip-only is the
average of the normal run and the mirrored run of the mirrored video, two scales the average of the two
runs at the original size; the kernelized read against a brute-force computation.
"""
from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval_davis
import eval_generic
import segment_video
from evaluation.datasets import GenericEvalDataset
from inference_core import Predictor
from inference_core.core import InferenceCore, resize_probabilities
from inference_core.ensemble import EnsembleCore, ScaledFrame, Variant, variant_core
from inference_core.memory_bank import MemoryBank, best_query_positions, gaussian_log_kernel
from model.memory_util import l2_similarity
from tests.eval_fixtures import VideoSpec, davis_template, generic_template, render, save_indexed  # noqa: F401
from tests.helpers import frame_at, mask_at
from util.io import DataError
from util.video import VideoWriter

torch.set_num_threads(1)
FRAMES = 5  # frames of the generic fixture video used at the core level (object 2 starts on frame 3)


def masks_of(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): np.array(Image.open(p)) for p in sorted(folder.rglob("*.png"))}


def run_cli(main, argv, capsys) -> tuple[int, str]:
    rc = main([*map(str, argv), "--device", "cpu"])
    _, err = capsys.readouterr()
    return rc, err


def assert_one_error(rc: int, err: str, flag: str) -> None:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert rc != 0 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and flag in lines[0], lines[0]
    assert "Traceback" not in err


# ------------------------------------------------------------------------------ CLI equivalence
@pytest.fixture()
def davis_cat(tmp_path, davis_template):  # noqa: F811
    """The DAVIS fixture with only `cat`, whose frames (48x64) have the short side 48 natively."""
    root = Path(shutil.copytree(davis_template, tmp_path / "DAVIS")) / "2017"
    (root / "trainval" / "ImageSets" / "2017" / "val.txt").write_text("cat\n")
    return root


def test_one_scale_and_one_model_are_todays_masks_davis(davis_cat, released_checkpoint, tmp_path, capsys):
    ckpt = released_checkpoint
    runs = {"default": [], "scales": ["--model", ckpt, "--scales", "48"], "twice": ["--model", ckpt, ckpt]}
    out = {}
    for name, extra in runs.items():
        argv = ["--davis_path", davis_cat, "--no_score", "--output", tmp_path / name, *(extra or ["--model", ckpt])]
        rc, err = run_cli(eval_davis.main, argv, capsys)
        assert rc == 0, err
        out[name] = masks_of(tmp_path / name)
    assert len(out["default"]) == 7
    for name in runs:  # "twice": (p + p) / 2 == p exactly in floating point, so the same masks
        assert out[name].keys() == out["default"].keys()
        assert all(np.array_equal(out[name][k], out["default"][k]) for k in out["default"]), name


@pytest.mark.parametrize("extra", [[], ["--bidirectional"]])
def test_one_scale_is_todays_masks_generic(tmp_path, generic_template, released_checkpoint, extra, capsys):  # noqa: F811
    """Also with --bidirectional: the backward pass feeds an ensemble its sizes too (object 2 of the
    fixture starts on frame 3)."""
    base = ["--data_path", generic_template, "--model", released_checkpoint, "--size", "48", *extra]
    rc, err = run_cli(eval_generic.main, [*base, "--output", tmp_path / "a"], capsys)
    assert rc == 0, err
    rc, err = run_cli(eval_generic.main, [*base, "--output", tmp_path / "b", "--scales", "48"], capsys)
    assert rc == 0, err
    a, b = masks_of(tmp_path / "a"), masks_of(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == 8
    assert all(np.array_equal(a[k], b[k]) for k in a)
    if extra:  # several variants run the backward pass as well
        rc, err = run_cli(eval_generic.main, [*base, "--output", tmp_path / "c", "--scales", "48", "64", "--flip"],
                          capsys)
        assert rc == 0, err
        assert len(masks_of(tmp_path / "c")) == 8


def test_scales_and_flip_run_end_to_end_and_count_frames_once(tmp_path, generic_template, released_checkpoint,  # noqa: F811
                                                             capsys):
    argv = ["--data_path", generic_template, "--model", released_checkpoint, "--size", "48", "--output",
            tmp_path / "o", "--scales", "48", "64", "--flip", "--device", "cpu"]
    assert eval_generic.main(list(map(str, argv))) == 0
    out = capsys.readouterr().out
    assert "Total processed frames: 8\n" in out  # 8 frames, 4 variants: counted once each
    masks = masks_of(tmp_path / "o")
    assert len(masks) == 8 and all(m.shape == (48, 64) for m in masks.values())
    assert set(np.unique(masks["clip/00004.png"])) <= {0, 1, 2}


def test_video_file_one_scale_is_todays_masks_and_flip_runs(tmp_path, released_checkpoint, capsys):
    images, labels = render(VideoSpec("clip", height=48, width=64, frames=6, starts={1: 0, 2: 2}))
    with VideoWriter(tmp_path / "clip.mp4", fps=10) as writer:
        for img in images:
            writer.write(img)
    (tmp_path / "masks").mkdir()
    for t, label in ((0, 1), (2, 2)):
        save_indexed(tmp_path / "masks" / f"{t:05d}.png", np.where(labels[t] == label, label, 0).astype(np.uint8))
    base = ["--video", tmp_path / "clip.mp4", "--mask_dir", tmp_path / "masks", "--model", released_checkpoint,
            "--size", "32"]
    runs = {"default": [], "scales": ["--scales", "32"], "multi": ["--scales", "32", "40", "--flip"]}
    out = {}
    for name, extra in runs.items():
        rc, err = run_cli(segment_video.main, [*base, "--output", tmp_path / name, *extra], capsys)
        assert rc == 0, err
        out[name] = masks_of(tmp_path / name)
    assert len(out["default"]) == 6 and out["multi"].keys() == out["default"].keys()
    assert all(np.array_equal(out["scales"][k], out["default"][k]) for k in out["default"])
    assert all(m.shape == (48, 64) for m in out["multi"].values())


# ------------------------------------------------------------------------------------ bad flags
@pytest.mark.parametrize("extra, flag", [
    (["--scales", "0"], "--scales"),
    (["--scales", "-16"], "--scales"),
    (["--scales", "48", "48"], "--scales"),
    (["--scales", "48", "--size", "64"], "--size"),
    (["--scales", "48", "600", "--kernel_sigma", "0"], "--kernel_sigma"),
    (["--scales", "48", "600", "--kernel_sigma", "-1"], "--kernel_sigma"),
    (["--kernel_sigma"], "--kernel_sigma"),  # no scale above 480: it would change nothing
    (["--flip", "--onnx_dir", "x", "--backend", "onnxruntime"], "--onnx_dir"),
])
def test_bad_ensemble_flags_are_one_error(tmp_path, generic_template, released_checkpoint, capsys, extra, flag):  # noqa: F811
    models = [released_checkpoint] * (2 if flag == "--onnx_dir" else 1)
    argv = ["--data_path", generic_template, "--model", *models, "--output", tmp_path / "o", *extra]
    rc, err = run_cli(eval_generic.main, argv, capsys)
    assert_one_error(rc, err, flag)


def test_video_batch_with_an_ensemble_is_refused():
    from evaluation.run_video import video_batch_option

    args = argparse.Namespace(model="a.pth", models=["a.pth"], scales=None, flip=True, kernel_sigma=None,
                              onnx_dir=None, video_batch=2)
    with pytest.raises(DataError, match="--video_batch"):
        video_batch_option(args)
    video_batch_option(argparse.Namespace(**{**vars(args), "video_batch": 1}))


def test_variants_are_model_by_scale_by_flip_with_the_kernel_above_480(stcn_net):
    predictor = Predictor([stcn_net, stcn_net], models=("a", "b"), scales=(480, 600), flip=True, kernel_sigma=7.0)
    got = predictor.variants()
    assert [(v.model, v.short_side, v.flip) for v in got] == [
        (m, s, f) for m in "ab" for s in (480, 600) for f in (False, True)]
    assert [v.kernel_sigma for v in got] == [None, None, 7.0, 7.0] * 2


def test_the_predictor_builds_a_core_per_variant_on_each_network(stcn_net):
    other = type(stcn_net)(pretrained=False).eval()
    predictor = Predictor([stcn_net, other], models=("a", "b"), scales=(480, 600), flip=True, kernel_sigma=7.0,
                          top_k=5)
    ensemble = predictor.new_core()
    assert isinstance(ensemble, EnsembleCore) and len(ensemble.cores) == 8 and ensemble.sides == (480, 600)
    assert [c.memory.kernel_sigma for c in ensemble.cores] == [None, None, 7.0, 7.0] * 2
    assert all(c.top_k == 5 for c in ensemble.cores)  # options kept, weights shared
    assert [c.network for c in ensemble.cores] == [stcn_net] * 4 + [other] * 4
    assert len({id(c.memory) for c in ensemble.cores}) == 8
    assert isinstance(Predictor(stcn_net, top_k=5).new_core(), InferenceCore)  # today's single core


# ------------------------------------------------------------------------------- core level
@pytest.fixture(scope="module")
def clip(generic_template):  # noqa: F811
    return GenericEvalDataset(generic_template, short_side=48)[0]


def plain_run(core: InferenceCore, video, side, flip: bool = False) -> list[torch.Tensor]:
    """Today's core on the frames at `side` (mirrored with `flip`); probabilities mirrored back, original size."""
    core.reset()
    probs = []
    for i in range(FRAMES):
        image, mask = frame_at(video, i, side), mask_at(video, i, side)
        if flip:
            image, mask = image.flip(-1), None if mask is None else mask.flip(-1)
        prob = core.step(image, mask)
        probs.append(resize_probabilities(prob.flip(-1) if flip else prob, video.size))
    return probs


def ensemble_run(ensemble: EnsembleCore, video) -> list[torch.Tensor]:
    ensemble.reset()
    return [ensemble.step(ScaledFrame({s: frame_at(video, i, s) for s in ensemble.sides}, video.size),
                          None if video.annotation(i) is None else {s: mask_at(video, i, s) for s in ensemble.sides})
            for i in range(FRAMES)]


def test_flip_is_the_average_of_the_normal_and_the_mirrored_run(stcn_net, clip):
    core = InferenceCore(stcn_net)
    variants = [Variant("m", 48, False), Variant("m", 48, True)]
    ensemble = EnsembleCore([variant_core(core) for _ in variants], variants)
    got = ensemble_run(ensemble, clip)
    normal = plain_run(core, clip, 48)
    mirrored = plain_run(core, clip, 48, flip=True)
    assert not torch.equal(normal[-1], mirrored[-1])  # the mirrored run is a different propagation
    assert ensemble.labels == [1, 2]
    assert got[0].shape == (2, 48, 64) and got[-1].shape == (3, 48, 64)  # object 2 starts on frame 3
    for g, a, b in zip(got, normal, mirrored):
        torch.testing.assert_close(g, (a + b) / 2, rtol=0, atol=0)


def test_two_scales_average_at_the_original_size(stcn_net, clip):
    core = InferenceCore(stcn_net)
    variants = [Variant("m", 48), Variant("m", 64)]
    ensemble = EnsembleCore([variant_core(core) for _ in variants], variants)
    got = ensemble_run(ensemble, clip)
    small, large = plain_run(core, clip, 48), plain_run(core, clip, 64)
    assert not torch.allclose(small[-1], large[-1])
    for g, a, b in zip(got, small, large):
        torch.testing.assert_close(g, (a + b) / 2, rtol=0, atol=0)
        torch.testing.assert_close(g.sum(0), torch.ones(48, 64), rtol=0, atol=1e-5)


def test_each_variant_has_its_own_memory(stcn_net):
    core = InferenceCore(stcn_net)
    with pytest.raises(ValueError, match="share a memory"):
        EnsembleCore([core, core], [Variant("m"), Variant("m", flip=True)])
    twin = variant_core(core, kernel_sigma=3.0)
    assert twin.network is core.network and twin.memory is not core.memory
    assert twin.memory.kernel_sigma == 3.0 and core.memory.kernel_sigma is None
    with pytest.raises(ValueError, match="kernel_sigma"):
        InferenceCore(stcn_net, kernel_sigma=0.0)


# ------------------------------------------------------------------------------ kernelized read
def test_gaussian_log_kernel_is_centred_on_the_best_query_position():
    width, sigma = 5, 2.0
    best = torch.tensor([0, 7, 24])  # (0, 0), (1, 2), (4, 4) on a 5 x 5 grid
    queries = torch.arange(25)
    log_g = gaussian_log_kernel(best, queries, width, sigma)  # 25, 3
    assert log_g.shape == (25, 3)
    assert torch.equal(log_g.argmax(dim=0), best)
    assert log_g[7, 1] == 0 and log_g[8, 1] == -1 / (2 * sigma**2)  # one cell right of (1, 2)
    torch.testing.assert_close(log_g[0, 2], torch.tensor(-(16.0 + 16.0) / (2 * sigma**2)))


def test_best_query_positions_in_chunks_is_the_argmax():
    torch.manual_seed(0)
    mk, qk = torch.randn(1, 8, 30), torch.randn(1, 8, 12)
    expected = l2_similarity(mk, qk)[0].argmax(dim=1)  # N
    for chunk in (1, 5, 12):
        assert torch.equal(best_query_positions(mk, qk, chunk), expected)


def brute_force_kernel_read(mk, qk, mv, h, w, sigma, top_k):
    """exp(S) * g over every memory position, top-k, normalised, read: the formula, written out."""
    s = l2_similarity(mk, qk.flatten(2))[0]  # N, M
    best = s.argmax(dim=1)  # N: best query of each memory position
    qy, qx = torch.arange(h * w) // w, torch.arange(h * w) % w
    out = torch.zeros(mv.shape[1], mv.shape[2], h * w)
    for q in range(h * w):
        g = torch.exp(-((qy[q] - best // w) ** 2 + (qx[q] - best % w) ** 2).float() / (2 * sigma**2))  # N
        score = torch.exp(s[:, q] - s[:, q].max()) * g
        weight, index = score.topk(top_k)
        weight = weight / weight.sum()
        out[:, :, q] = torch.einsum("k,kjc->jc", weight, mv[index])
    return out.view(mv.shape[1], mv.shape[2], h, w)


@pytest.mark.parametrize("chunk", [None, 3])
def test_kernel_read_matches_the_formula(chunk):
    torch.manual_seed(1)
    h, w, ck, cv, k_obj = 4, 5, 8, 6, 2
    bank = MemoryBank(top_k=7, kernel_sigma=1.5, chunk_size=chunk)
    bank.add_group([0, 1])
    keys = [torch.randn(1, ck, h, w) for _ in range(2)]
    values = [torch.randn(k_obj, cv, h, w) for _ in range(2)]
    for t in range(2):
        bank.add(t, keys[t], values[t])
    qk = torch.randn(1, ck, h, w)
    mk = torch.cat([k.flatten(2) for k in keys], dim=2)
    mv = torch.cat([v.flatten(2).permute(2, 0, 1) for v in values], dim=0)  # N, K, C_v
    expected = brute_force_kernel_read(mk, qk, mv, h, w, 1.5, 7)
    torch.testing.assert_close(bank.read(qk), expected, rtol=1e-5, atol=1e-5)
    plain = MemoryBank(top_k=7, chunk_size=chunk)
    plain.add_group([0, 1])
    for t in range(2):
        plain.add(t, keys[t], values[t])
    assert not torch.allclose(plain.read(qk), expected, atol=1e-3)  # the kernel changes the read


def test_huge_sigma_is_todays_read(stcn_net, clip):
    wide, plain = InferenceCore(stcn_net, kernel_sigma=1e6), InferenceCore(stcn_net)
    for i in range(FRAMES):
        image, mask = frame_at(clip, i), mask_at(clip, i)
        torch.testing.assert_close(wide.step(image, mask), plain.step(image, mask), rtol=0, atol=1e-5)
    assert math.isclose(wide.memory.kernel_sigma, 1e6)
