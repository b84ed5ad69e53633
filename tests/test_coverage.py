"""Memory coverage (section 4.1, Figure 4): the observer, the recorded maxima against a dense
recomputation, the statistics, and scripts/memory_coverage.py end to end."""
from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import inference_core.memory_bank as memory_bank
from evaluation.coverage import (
    THRESHOLD_STEPS,
    CoverageRecorder,
    exceedance_curve,
    gini,
    nice_ticks,
    record_video,
    share_at_most,
    unique_labels,
)
from evaluation.datasets import DAVISEvalDataset
from evaluation.run_video import build_predictor
from inference_core import InferenceCore
from model.memory_util import l2_similarity, softmax
from scripts import memory_coverage
from tests.eval_fixtures import DAVIS_VIDEOS, davis_template  # noqa: F401  (fixture)

torch.set_num_threads(1)

# default: the paper's setting; the other exercises chunks, a bounded memory, the temporary frame
SETTINGS = [dict(), dict(chunk_size=5, mem_every=1, max_mem_frames=3, include_last=True, top_k=7)]


def squares_video(frames: int = 8, h: int = 40, w: int = 56, seed: int = 0):
    """Noisy frames with two squares; object 2 is annotated only from frame 3 on (a second group)."""
    g = torch.Generator().manual_seed(seed)
    images, masks = [], []
    for t in range(frames):
        img = torch.rand(3, h, w, generator=g) - 0.5
        lab = torch.zeros(h, w, dtype=torch.long)
        for o in range(2):
            y, x = 4 + 16 * o, 3 + 3 * t + 6 * o
            img[:, y : y + 10, x : x + 10] = torch.tensor([1.0, 0.3 * o, -0.5])[:, None, None]
            lab[y : y + 10, x : x + 10] = o + 1
        images.append(img)
        masks.append(torch.where(lab == 1, 1, 0) if t == 0 else torch.where(lab == 2, 2, 0) if t == 3 else None)
    return images, masks


def run(core: InferenceCore, images, masks, observe: bool) -> tuple[list[torch.Tensor], CoverageRecorder]:
    core.reset()
    recorder = CoverageRecorder(core.memory)
    if observe:
        core.memory.observer = recorder
    probs = [core.step(img, m, end=i == len(images) - 1) for i, (img, m) in enumerate(zip(images, masks))]
    return probs, recorder


@pytest.mark.parametrize("settings", SETTINGS)
def test_recording_does_not_change_the_masks(stcn_net, settings):
    images, masks = squares_video()
    core = InferenceCore(stcn_net, **settings)
    plain, _ = run(core, images, masks, observe=False)
    observed, recorder = run(core, images, masks, observe=True)
    assert recorder.maxima  # it did record
    assert len(plain) == len(observed)
    for a, b in zip(plain, observed):
        assert torch.equal(a, b)


FP32_UNIT_ROUNDOFF = 2.0**-24


def gamma(n: int) -> float:
    """The classic bound n*u / (1 - n*u) on the relative error of an n-term fp32 sum of products."""
    return n * FP32_UNIT_ROUNDOFF / (1 - n * FP32_UNIT_ROUNDOFF)


def weight_rel_tol(reads: list[dict]) -> float:
    """A relative tolerance for two fp32 computations of the same top-k softmax weights.

    Each similarity S_ij = (2 mk_i.qk_j - |mk_i|^2) / sqrt(C_k) sums C_k + 1 products, so its rounding
    error is at most gamma(C_k + 1) times the same sum over absolute values (|S|_abs below), whatever
    the order and blocking of the kernel. A softmax weight exp(s_i) / sum_j exp(s_j) moves by a factor
    of at most exp(2 e) when every logit moves by at most e, and the softmax adds its own rounding over
    the k terms. Two computations (the recorded and the dense one) may err in opposite directions.
    """
    worst = 0.0
    for r in reads:
        mk = r["keys"] if r["temp"] is None else torch.cat([r["keys"], r["temp"]], dim=2)
        mk, qk = mk.double(), r["qk"].double()
        ck = mk.shape[1]
        s_abs = (2 * mk.abs().transpose(1, 2) @ qk.abs() + mk.pow(2).sum(1).unsqueeze(2)) / math.sqrt(ck)
        worst = max(worst, gamma(ck + 1) * float(s_abs.max()))
    per_side = math.expm1(2 * worst) + gamma(2 * r["top_k"] + 4)
    return 2 * per_side


def dense_maxima(reads: list[dict]) -> dict[tuple[int, int], float]:
    """Every node's largest weight, from the dense top-k affinity of every group of every read."""
    best: dict[tuple[int, int], float] = {}
    for r in reads:
        hw, stored = r["hw"], len(r["frame_ids"]) * r["hw"]
        mk = r["keys"] if r["temp"] is None else torch.cat([r["keys"], r["temp"]], dim=2)
        for start_frame in r["starts"]:
            start = start_frame * hw
            weights = softmax(l2_similarity(mk[:, :, start:], r["qk"]), top_k=r["top_k"])[0]  # N_g, M
            node_max = weights.max(dim=1).values
            for j, w in enumerate(node_max.tolist()):
                p = start + j
                if p < stored:  # the temporary frame is not a memory node
                    key = (r["frame_ids"][p // hw], p % hw)
                    best[key] = max(best.get(key, 0.0), w)
    return best


@pytest.mark.parametrize("settings", SETTINGS)
def test_recorded_maxima_equal_a_dense_recomputation(stcn_net, settings, monkeypatch):
    images, masks = squares_video()
    reads: list[dict] = []
    original = memory_bank.MemoryBank.read

    def snapshot(self, qk):
        reads.append(dict(keys=self.keys.clone(), temp=None if self.temp_key is None else self.temp_key.clone(),
                          frame_ids=list(self.frame_ids), starts=[g.first_frame for g in self.groups],
                          hw=self.positions_per_frame, qk=qk.flatten(2).clone(), top_k=self.top_k))
        return original(self, qk)

    monkeypatch.setattr(memory_bank.MemoryBank, "read", snapshot)
    core = InferenceCore(stcn_net, **settings)
    _, recorder = run(core, images, masks, observe=True)
    assert any(len(r["starts"]) == 2 for r in reads)  # two object groups read different suffixes
    expected = dense_maxima(reads)
    recorded = {(f, i): float(v) for f, row in recorder.maxima.items() for i, v in enumerate(row.tolist())}
    assert recorded.keys() == expected.keys()
    rel_tol = weight_rel_tol(reads)  # from the fp32 arithmetic, not from one CPU's kernels
    assert rel_tol < 1e-2  # still a check that tells a wrong node or a wrong read apart
    for key in expected:
        assert math.isclose(recorded[key], expected[key], rel_tol=rel_tol, abs_tol=1e-7), key
    maxima = recorder.result()
    assert maxima.size == len(expected)
    # all it keeps is one float per node, never an affinity matrix
    kept = sum(row.untyped_storage().nbytes() for row in recorder.maxima.values())
    assert kept == 4 * maxima.size
    if settings.get("max_mem_frames"):
        assert len(recorder.maxima) > core.memory.num_frames  # dropped frames keep their maxima
    # the Gini of the recorded maxima is the pairwise-difference definition's (on the same values: the
    # recorded and the dense maxima agree only to rel_tol, checked above)
    x = np.asarray(maxima, dtype=np.float64)
    assert gini(maxima) == pytest.approx(np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean()))


def test_gini_of_known_vectors():
    assert gini(np.full(7, 0.3)) == pytest.approx(0.0)
    for n in (1, 2, 10):
        one = np.zeros(n)
        one[n // 2] = 0.8
        assert gini(one) == pytest.approx((n - 1) / n)
    assert gini(np.zeros(4)) == 0.0
    x = np.random.default_rng(0).random(50) ** 3
    pairwise = np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean())
    assert gini(x) == pytest.approx(pairwise)


def test_curve_and_shares_count_nodes_above_each_threshold():
    maxima = np.array([0.0, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0])
    levels = np.array([0.0, 0.01, 0.1, 0.5, 1.0])
    assert exceedance_curve(maxima, levels).tolist() == [6, 4, 2, 1, 0]
    assert share_at_most(maxima, 0.01) == pytest.approx(3 / 7)
    assert share_at_most(maxima, 0.1) == pytest.approx(5 / 7)


def test_plot_helpers():
    assert nice_ticks(520) == [0, 200, 400, 600]  # at most 5 steps of 1, 2 or 5 x 10^e, covering the top
    assert nice_ticks(450) == [0, 100, 200, 300, 400, 500]
    assert nice_ticks(0.9)[-1] >= 0.9
    assert unique_labels(["a/x.pth", "b/x.pth", "c/y.pth"]) == ["x", "x-2", "y"]
    assert unique_labels(["p", "q"], ["dot", "dot"]) == ["dot", "dot-2"]


# ------------------------------------------------------------------------------------- the script
@pytest.fixture()
def davis(tmp_path, davis_template):  # noqa: F811
    return Path(shutil.copytree(davis_template, tmp_path / "DAVIS"))


def expected_nodes() -> int:
    """Memory frames 0, 5, 10, ... except the last frame (never memory), times the stride-16 cells."""
    return sum(math.ceil(s.height / 16) * math.ceil(s.width / 16) * len(range(0, s.frames - 1, 5))
               for s in DAVIS_VIDEOS)


def test_script_writes_curve_summary_and_plot(davis, released_checkpoint, tmp_path, capsys):
    out = tmp_path / "coverage"
    argv = ["--model", released_checkpoint, "--model", released_checkpoint, "--label", "A", "--label", "B",
            "--davis_path", davis / "2017", "--output", out, "--device", "cpu"]
    assert memory_coverage.main([str(a) for a in argv]) == 0
    printed = capsys.readouterr().out
    assert f"A: {expected_nodes()} memory nodes; Gini coefficient" in printed
    assert "B: never above 1%" in printed and "B: never above 10%" in printed

    with open(out / "coverage_curve.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["threshold", "A", "B"] and len(rows) == THRESHOLD_STEPS + 2
    counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert (np.diff(counts, axis=0) <= 0).all() and (counts[-1] == 0).all()  # no weight above 1
    assert (counts[:, 0] == counts[:, 1]).all()  # the same network twice

    # the curve is the one of the recorded maxima
    args = memory_coverage.get_args_parser().parse_args(["--device", "cpu"])
    stream = build_predictor(memory_coverage._with_model(args, str(released_checkpoint))).new_stream(start_only=True)
    videos = DAVISEvalDataset(davis / "2017" / "trainval").videos
    maxima = np.concatenate([record_video(stream, v) for v in videos])
    levels = np.array([float(r[0]) for r in rows[1:]])
    assert counts[:, 0].tolist() == exceedance_curve(maxima, levels).tolist()

    with open(out / "coverage_summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert [r["model"] for r in summary] == ["A", "B"] and int(summary[0]["nodes"]) == expected_nodes()
    assert float(summary[0]["gini"]) == pytest.approx(100 * gini(maxima), abs=1e-3)
    with Image.open(out / "coverage.png") as img:
        assert img.format == "PNG" and img.size == (720, 480)


def one_error(rc: int, err: str, names: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0], err


def test_script_bad_input_is_one_error_line(davis, released_checkpoint, tmp_path, capsys):
    base = ["--davis_path", str(davis / "2017"), "--device", "cpu"]
    rc = memory_coverage.main([*base, "--model", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "o1")])
    one_error(rc, capsys.readouterr().err, "missing.pth")
    rc = memory_coverage.main([*base, "--model", str(released_checkpoint), "--label", "a", "--label", "b",
                               "--output", str(tmp_path / "o2")])
    one_error(rc, capsys.readouterr().err, "--label")
    rc = memory_coverage.main(["--davis_path", str(tmp_path / "nowhere"), "--model", str(released_checkpoint),
                               "--output", str(tmp_path / "o3"), "--device", "cpu"])
    one_error(rc, capsys.readouterr().err, "nowhere")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    rc = memory_coverage.main([*base, "--model", str(released_checkpoint), "--output", str(mine)])
    one_error(rc, capsys.readouterr().err, "mine")
    assert (mine / "notes.txt").read_text() == "keep" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
