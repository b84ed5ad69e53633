"""Scoring a results folder on a tiny synthetic DAVIS dataset, through the API and the CLI."""
from __future__ import annotations

import csv
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.davis_scoring import (
    GLOBAL_COLUMNS,
    ScoringError,
    UnknownObjectWarning,
    evaluate_davis,
    ground_truth_available,
    list_sequences,
    score_results,
)

ROOT = Path(__file__).resolve().parents[1]
H, W = 48, 64
VIDEOS = {"alpha": (3, 6), "beta": (2, 5)}  # video -> (objects, frames)
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128] + [0] * (256 * 3 - 15)


def _load_cli():
    spec = importlib.util.spec_from_file_location("score_davis_cli", ROOT / "scripts" / "score_davis.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


score_cli = _load_cli()


def save_indexed(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette(PALETTE)
    image.save(path)


def gt_frame(n_objects: int, t: int) -> np.ndarray:
    """Objects as separate 10x8 boxes in a row, drifting right by one pixel a frame."""
    ids = np.zeros((H, W), dtype=np.uint8)
    for k in range(n_objects):
        top, left = 5 + 12 * k, 4 + 18 * k + t
        ids[top : top + 10, left : left + 8] = k + 1
    return ids


@pytest.fixture()
def davis(tmp_path) -> Path:
    root = tmp_path / "DAVIS" / "2017" / "trainval"
    for video, (n_obj, n_frames) in VIDEOS.items():
        for t in range(n_frames):
            save_indexed(root / "Annotations" / "480p" / video / f"{t:05d}.png", gt_frame(n_obj, t))
            jpg = root / "JPEGImages" / "480p" / video / f"{t:05d}.jpg"
            jpg.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (W, H)).save(jpg)
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("alpha\nbeta\n")
    return root


def write_results(results: Path, davis: Path, edit=None) -> Path:
    """Copy the GT as the prediction; `edit(video, t, n_frames, ids)` may change a frame."""
    for video, (n_obj, n_frames) in VIDEOS.items():
        for t in range(n_frames):
            ids = gt_frame(n_obj, t)
            if edit is not None:
                ids = edit(video, t, n_frames, ids)
            if ids is not None:
                save_indexed(results / video / f"{t:05d}.png", ids)
    return results


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_perfect_results_cli(davis, tmp_path, capsys):
    results = write_results(tmp_path / "res", davis)
    assert score_cli.main(["--results", str(results), "--davis_path", str(davis), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "J&F-Mean" in out and "alpha_3" in out
    lines = out.strip().splitlines()
    # printed in percent with one decimal, as the paper's tables; the csv files keep the fractions (below)
    assert "  100.0    100.0" in out and "J&F 100.0  J 100.0  F 100.0" in lines
    assert lines[-1] == (f"wrote the scores to {results / 'global_results-val.csv'}, "
                         f"{results / 'per-sequence_results-val.csv'}")

    rows = read_csv(results / "global_results-val.csv")
    assert rows[0] == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    assert rows[1] == ["1.000000", "1.000000", "1.000000", "0.000000", "1.000000", "1.000000", "0.000000"]
    seq = read_csv(results / "per-sequence_results-val.csv")
    assert seq[0] == ["Sequence", "J-Mean", "F-Mean"]
    assert [r[0] for r in seq[1:]] == ["alpha_1", "alpha_2", "alpha_3", "beta_1", "beta_2"]
    assert all(r[1:] == ["1.000000", "1.000000"] for r in seq[1:])
    assert not [p for p in results.iterdir() if p.name.endswith(".tmp")]


def test_first_and_last_frames_are_not_scored(davis, tmp_path):
    def wrong_ends(video, t, n_frames, ids):
        if t in (0, n_frames - 1):
            return np.roll(ids, 20, axis=1)[::-1]  # nothing right about it
        return ids

    results = write_results(tmp_path / "res", davis, wrong_ends)
    scores = evaluate_davis(results, davis, "val", print_table=False)
    assert scores == {c: (0.0 if "Decay" in c else 1.0) for c in GLOBAL_COLUMNS}

    # the first and last result frames may even be missing
    for video, (_, n_frames) in VIDEOS.items():
        (results / video / "00000.png").unlink()
        (results / video / f"{n_frames - 1:05d}.png").unlink()
    assert evaluate_davis(results, davis, "val", print_table=False)["J&F-Mean"] == 1.0


def test_known_shift_and_global_averaging(davis, tmp_path):
    """alpha object 2 shifted right by 2 px in every scored frame: J = 6/10, F = 9/18 there."""

    def shift_one(video, t, n_frames, ids):
        if video == "alpha":
            obj = ids == 2
            ids = np.where(obj, 0, ids).astype(np.uint8)
            ids[np.roll(obj, 2, axis=1)] = 2
        return ids

    results = write_results(tmp_path / "res", davis, shift_one)
    scores = score_results(results, davis, "val")
    per = {name: (j, f) for name, j, f in scores.per_sequence_results()}
    # 10 x 8 box shifted by 2: IoU (8 - 2) / (8 + 2); boundary F = (w + 1) / (h + w), see test_metrics
    assert per["alpha_2"][0] == pytest.approx(6 / 10)
    assert per["alpha_2"][1] == pytest.approx(9 / 18)
    g = scores.global_results()
    assert g["J-Mean"] == pytest.approx((4 + 0.6) / 5)  # mean over the 5 objects, not over videos
    assert g["F-Mean"] == pytest.approx((4 + 0.5) / 5)
    assert g["J&F-Mean"] == pytest.approx((g["J-Mean"] + g["F-Mean"]) / 2)
    assert g["J-Recall"] == 1.0 and g["F-Recall"] == 0.8  # F = 0.5 is not > 0.5


def test_missing_result_video_is_one_clear_error(davis, tmp_path, capsys):
    results = write_results(tmp_path / "res", davis)
    shutil.rmtree(results / "beta")
    assert score_cli.main(["--results", str(results), "--davis_path", str(davis)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(results / "beta") in err[0]
    assert "Traceback" not in err[0]
    assert not (results / "global_results-val.csv").exists()
    # scoring only the videos present works
    assert score_cli.main(["--results", str(results), "--davis_path", str(davis), "--from_results"]) == 0
    assert [r[0] for r in read_csv(results / "per-sequence_results-val.csv")[1:]] == ["alpha_1", "alpha_2", "alpha_3"]


def test_missing_frame_and_size_mismatch(davis, tmp_path, capsys):
    results = write_results(tmp_path / "res", davis)
    (results / "alpha" / "00002.png").unlink()
    with pytest.raises(ScoringError, match=r"alpha/00002\.png: missing result frame"):
        score_results(results, davis, "val")

    save_indexed(results / "alpha" / "00002.png", np.zeros((H + 2, W), np.uint8))
    assert score_cli.main(["--results", str(results), "--davis_path", str(davis)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "00002.png" in err[0] and "64x50" in err[0] and "64x48" in err[0]


def test_rgb_result_is_refused(davis, tmp_path):
    results = write_results(tmp_path / "res", davis)
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(results / "beta" / "00001.png")
    with pytest.raises(ScoringError, match="not an indexed PNG"):
        score_results(results, davis, "val")


def test_unknown_ids_warn_and_missing_objects_score_zero(davis, tmp_path):
    def edit(video, t, n_frames, ids):
        ids = ids.copy()
        if video == "alpha":
            ids[ids == 3] = 0  # object 3 never predicted
            ids[40:, 50:] = 7  # an id the GT does not have, on background
        return ids

    results = write_results(tmp_path / "res", davis, edit)
    with pytest.warns(UnknownObjectWarning, match=r"\[7\]"):
        scores = score_results(results, davis, "val")
    per = {name: (j, f) for name, j, f in scores.per_sequence_results()}
    assert per["alpha_3"] == (0.0, 0.0)
    assert per["alpha_1"] == (1.0, 1.0) and per["beta_2"] == (1.0, 1.0)


def test_workers_match_loop(davis, tmp_path):
    results = write_results(tmp_path / "res", davis, lambda v, t, n, ids: np.roll(ids, 1, axis=0))
    serial = evaluate_davis(results, davis, "val", print_table=False)
    pooled = evaluate_davis(results, davis, "val", workers=2, print_table=False)
    assert serial == pooled
    assert serial["J-Mean"] < 1.0 and serial["F-Mean"] == 1.0  # 1 px shift is within the tolerance


def test_sequence_lists_and_ground_truth_check(davis, tmp_path):
    assert list_sequences(davis, "val") == ["alpha", "beta"]
    assert ground_truth_available(davis, "val")
    with pytest.raises(ScoringError, match="ImageSets/2017/test-dev.txt"):
        list_sequences(davis, "test-dev")
    # a test-dev-like video: only the first frame annotated
    for png in sorted((davis / "Annotations" / "480p" / "beta").glob("*.png"))[1:]:
        png.unlink()
    assert not ground_truth_available(davis, "val")
    results = write_results(tmp_path / "res", davis)
    with pytest.raises(ScoringError, match="1 annotated frame"):
        score_results(results, davis, "val")


def test_davis2016_mode(tmp_path, capsys):
    root = tmp_path / "DAVIS"
    d16, d17 = root / "2016", root / "2017" / "trainval"
    for t in range(5):
        obj = gt_frame(1, t) > 0
        path = d16 / "Annotations" / "480p" / "cows" / f"{t:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(obj.astype(np.uint8) * 255, mode="L").save(path)  # DAVIS 2016: 0 / 255
        # predictions as palette index 1 (from the multi-object writer) and as 0/255 grayscale
        save_indexed(tmp_path / "res_p" / "cows" / f"{t:05d}.png", obj.astype(np.uint8))
        res_l = tmp_path / "res_l" / "cows" / f"{t:05d}.png"
        res_l.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(obj.astype(np.uint8) * 255, mode="L").save(res_l)
    (d17 / "ImageSets" / "2016").mkdir(parents=True)
    (d17 / "ImageSets" / "2016" / "val.txt").write_text("cows\n")  # STCN: the 2016 list lives in 2017

    for res in ("res_p", "res_l"):
        args = ["--results", str(tmp_path / res), "--davis_path", str(d16), "--year", "2016"]
        assert score_cli.main(args) == 0
        rows = read_csv(tmp_path / res / "per-sequence_results-val.csv")
        assert rows[1] == ["cows_1", "1.000000", "1.000000"]
    capsys.readouterr()


def generic_layout(root: Path, edit=None) -> Path:
    """eval_generic.py's layout (JPEGImages/<video>/*.jpg, Annotations/<video>/*.png, names not DAVIS's) with
    a mask for every frame."""
    for video, (n_obj, n_frames) in VIDEOS.items():
        for t in range(n_frames):
            jpg = root / "JPEGImages" / video / f"{t}.jpg"
            jpg.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (W, H)).save(jpg)
            save_indexed(root / "Annotations" / video / f"{t}.png", gt_frame(n_obj, t))
    return root


def test_generic_layout_is_scored_as_davis(davis, tmp_path, capsys):
    data = generic_layout(tmp_path / "mine")
    results, expected = tmp_path / "res", tmp_path / "expected"
    for video, (n_obj, n_frames) in VIDEOS.items():
        for t in range(n_frames):
            ids = gt_frame(n_obj, t) if t % 2 else np.roll(gt_frame(n_obj, t), 3, axis=1)  # some frames off
            save_indexed(results / video / f"{t}.png", ids)
            save_indexed(expected / video / f"{t:05d}.png", ids)
    rc = score_cli.main(["--results", str(results), "--data_path", str(data)])
    out = capsys.readouterr().out
    assert rc == 0 and out.strip().splitlines()[-1].startswith("wrote the scores to ")
    # the same numbers as the DAVIS layout of the same videos and predictions (frames in the same order)
    reference = evaluate_davis(expected, davis, "val", print_table=False)
    assert read_csv(results / "global_results-val.csv")[1] == [f"{reference[c]:.6f}" for c in GLOBAL_COLUMNS]
    assert 0 < reference["J&F-Mean"] < 1
    # a generic folder with first-frame masks only (eval_generic's input) is refused with one line
    for png in (data / "Annotations" / "beta").glob("*.png"):
        if png.stem != "0":
            png.unlink()
    rc = score_cli.main(["--results", str(results), "--data_path", str(data), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("error:") == 1 and "Annotations/beta" in err
    assert "1 of 5 frame(s) have a ground-truth mask (none for 1)" in err and "every frame" in err
