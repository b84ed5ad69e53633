"""`eval_interactive_davis.py` end to end on a synthetic DAVIS with scribbles and random weights: the report
and summary, the masks of every interaction, MiVOS's schedule, the bad-input lines, an interrupt and a
two-process torchrun run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import eval_interactive_davis
import evaluation.interactive.benchmark as benchmark
from evaluation.interactive import metrics
from evaluation.interactive.session import Sample
from inference_core.interactive import InteractiveCore
from model.fusion import FusionNet
from model.s2m import S2M
from tests.eval_fixtures import DAVIS_VIDEOS, davis_template, render  # noqa: F401  (fixture)
from tests.helpers import error_lines, leftovers, message_lines, one_error, run_main, run_torchrun
from util.outputs import MARKER, read_marker
from util.scribbles import Scribbles, Stroke, write_scribbles

ROOT = Path(__file__).resolve().parents[1]
CPU = ("--device", "cpu")
QUICK = ("--max_interactions", "2")


def first_scribble(k: int, spec, frame: int) -> Scribbles:
    """Frame `frame` of video `spec`: a stroke across each object's middle row and one on the background."""
    _, labels = render(spec, seed=k)
    lab = labels[frame]
    h, w = lab.shape
    strokes = []
    for obj in sorted(int(v) for v in np.unique(lab) if v):
        ys, xs = np.nonzero(lab == obj)
        row = int(np.median(ys))
        cols = xs[ys == row]
        strokes.append(Stroke(((cols.min() / (w - 1), row / (h - 1)), (cols.max() / (w - 1), row / (h - 1))), obj))
    strokes.append(Stroke(((0.02, 0.9), (0.3, 0.95)), 0))
    out = Scribbles.empty(spec.frames, spec.name)
    out.frames[frame] = strokes
    out.annotated_frame = frame
    return out


def add_scribbles(davis: Path) -> Path:
    """<davis>/2017/trainval/Scribbles/<video>/001.json for each synthetic video (cat: frame 2, odd: 0)."""
    for k, spec in enumerate(DAVIS_VIDEOS):
        write_scribbles(first_scribble(k, spec, 2 if k == 0 else 0),
                        davis / "2017" / "trainval" / "Scribbles" / spec.name / "001.json")
    return davis


@pytest.fixture()
def davis(tmp_path, davis_template):  # noqa: F811
    return add_scribbles(Path(shutil.copytree(davis_template, tmp_path / "DAVIS")))


@pytest.fixture(scope="session")
def interactive_weights(tmp_path_factory, released_checkpoint) -> tuple[Path, Path, Path]:
    """Random STCN, scribble-to-mask and fusion networks saved as their released files."""
    folder = tmp_path_factory.mktemp("interactive_weights")
    torch.manual_seed(1)
    torch.save(S2M().state_dict(), folder / "s2m.pth")
    torch.save(FusionNet().state_dict(), folder / "fusion_stcn.pth")
    return released_checkpoint, folder / "s2m.pth", folder / "fusion_stcn.pth"


def argv(davis: Path, weights, output: Path, *extra) -> list:
    stcn, s2m, fusion = weights
    return ["--model", stcn, "--s2m_model", s2m, "--fusion_model", fusion, "--davis_path", davis / "2017",
            "--output", output, *CPU, *extra]


def samples(report: Path) -> dict[tuple[str, int], int]:
    """(video, scribble) -> its number of interactions in a report."""
    found: dict[tuple[str, int], int] = {}
    for r in metrics.read_report(report):
        found[(r.sequence, r.scribble_idx)] = max(found.get((r.sequence, r.scribble_idx), 0), r.interaction)
    return found


# ----------------------------------------------------------------------------------- the run
def test_a_whole_session_writes_the_report_the_summary_and_the_masks(davis, interactive_weights, tmp_path, capsys,
                                                                    monkeypatch):
    calls: list[tuple[str, int]] = []
    named: list = []  # the candidate frames of each submission
    real_interact, real_update, real_submit = (InteractiveCore.interact, InteractiveCore.update_mask_only,
                                               Sample.submit)

    def interact(self, frame, *args, **kwargs):
        calls.append(("propagate", frame))
        return real_interact(self, frame, *args, **kwargs)

    def update(self, frame, *args, **kwargs):
        calls.append(("refine", frame))
        return real_update(self, frame, *args, **kwargs)

    def submit(self, masks, seconds=None, candidates=None):
        named.append(candidates)
        return real_submit(self, masks, seconds, candidates)

    shapes: list[tuple[int, ...]] = []
    real_s2m = InteractiveCore.scribble_probabilities

    def s2m_step(self, frame, s2m, maps):
        shapes.append(tuple(maps.shape))
        return real_s2m(self, frame, s2m, maps)

    monkeypatch.setattr(InteractiveCore, "interact", interact)
    monkeypatch.setattr(InteractiveCore, "update_mask_only", update)
    monkeypatch.setattr(InteractiveCore, "scribble_probabilities", s2m_step)
    monkeypatch.setattr(Sample, "submit", submit)
    # the method's clock: 1 s per answer; saving the masks takes 100 s of it, which must not count
    clock = {"now": 0.0}

    def tick() -> float:
        clock["now"] += 1.0
        return clock["now"] - 1.0

    real_save = benchmark._save

    def slow_save(*args, **kwargs):
        clock["now"] += 100.0
        return real_save(*args, **kwargs)

    monkeypatch.setattr(benchmark, "clock", tick)
    monkeypatch.setattr(benchmark, "_save", slow_save)
    out = tmp_path / "out"
    rc, stdout, err = run_main(eval_interactive_davis.main, argv(davis, interactive_weights, out, "--save_mask"),
                               capsys)
    assert rc == 0, err
    # MiVOS's schedule: interactions 3, 6 and 8 propagate; the others refine the frame and name it alone
    schedule = ["refine", "refine", "propagate", "refine", "refine", "propagate", "refine", "propagate"]
    assert [kind for kind, _ in calls] == schedule * 2
    for s in range(2):
        frames = [frame for _, frame in calls[8 * s:8 * s + 8]]
        assert frames[0] == (2 if s == 0 else 0)  # the human scribble's frame
        for i, kind in enumerate(schedule):
            expected = None if kind == "propagate" else [frames[i]]
            assert named[8 * s + i] == expected
            if kind == "refine" and i + 1 < 8:
                assert frames[i + 1] == frames[i]  # the robot corrects that same frame next
    # strokes rasterised at the padded size, as MiVOS's processor: cat 48 x 64 (2 objects), odd 50 x 70 -> 64 x 80
    assert shapes == [(2, 2, 48, 64)] * 8 + [(1, 2, 64, 80)] * 8
    # the report: every sample, interaction, object and frame, the benchmark's columns
    report = out / "report.csv"
    assert report.read_text().splitlines()[0] == ",".join(metrics.REPORT_COLUMNS)
    rows = metrics.read_report(report)
    expected_rows = sum(8 * s.frames * len(s.starts) for s in DAVIS_VIDEOS)
    assert len(rows) == expected_rows and samples(report) == {("cat", 1): 8, ("odd", 1): 8}
    assert {r.timing for r in rows} == {1.0}  # the answer's own second, not the 100 s of saving
    # summary.json: the benchmark's keys; its curve at 1 s per interaction, up to the budget (1.5 objects x 240 s)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"auc", "metric_at_threshold", "curve"}
    assert summary["metric_at_threshold"]["threshold"] == 60 and set(summary["curve"]) == {"time", "J_AND_F"}
    assert summary["curve"]["time"] == [float(i) for i in range(9)] + [1.5 * 240]
    infos = [metrics.SampleInfo("cat", 1, 2), metrics.SampleInfo("odd", 1, 1)]
    assert summary == json.loads(json.dumps(metrics.summary(rows, infos, 8, 240.0)))
    # the masks of every interaction; under the schedule, frames no pass reached stay empty until interaction 3
    for k, spec in enumerate(DAVIS_VIDEOS):
        folder = out / "masks" / spec.name / "001"
        assert sorted(p.name for p in folder.iterdir()) == [str(i) for i in range(1, 9)]
        first = 2 if k == 0 else 0
        for i in (1, 2):
            masks = sorted((folder / str(i)).glob("*.png"))
            assert [p.stem for p in masks] == [f"{t:05d}" for t in range(spec.frames)]
            assert all(not np.asarray(_png(p)).any() for t, p in enumerate(masks) if t != first)
    assert read_marker(out)["complete"] is True and not leftovers(tmp_path)
    lines = message_lines(stdout)
    assert lines[-2].startswith("AUC-J&F ") and "J&F@60s" in lines[-2]
    assert lines[-1].startswith("wrote the report to ") and "the masks to" in lines[-1]


def _png(path: Path):
    from PIL import Image

    return Image.open(path)


# ------------------------------------------------------------------------------- bad input
def _scribble_file(davis: Path, video: str = "cat") -> Path:
    return davis / "2017" / "trainval" / "Scribbles" / video / "001.json"


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _first_stroke(data: dict) -> dict:
    return next(s for frame in data["scribbles"] for s in frame)


BAD_SCRIBBLES = {
    "not JSON": (lambda p: p.write_text("{\"scribbles\": [")),
    "unknown object": (lambda p: _edit(p, lambda d: _first_stroke(d).update(object_id=5))),
    "unknown frame": (lambda p: _edit(p, lambda d: d["scribbles"].extend([[]] * 20 + [[_first_stroke(d)]]))),
    "outside 0..1": (lambda p: _edit(p, lambda d: _first_stroke(d).update(path=[[0.5, 0.5], [1.5, 0.2]]))),
}


@pytest.mark.parametrize("case", BAD_SCRIBBLES)
def test_a_bad_scribble_file_is_one_line_naming_it(case, davis, interactive_weights, tmp_path, capsys):
    path = _scribble_file(davis, "odd")  # the second video: refused before the first runs
    BAD_SCRIBBLES[case](path)
    out = tmp_path / "o"
    rc, _, err = run_main(eval_interactive_davis.main, argv(davis, interactive_weights, out), capsys)
    one_error(rc, err, str(path))
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--s2m_model", "--fusion_model"])
def test_weights_of_the_wrong_kind_are_refused_naming_the_file(flag, davis, interactive_weights, tmp_path, capsys):
    stcn, s2m, fusion = interactive_weights
    wrong = stcn if flag == "--s2m_model" else s2m  # an STCN file; the scribble-to-mask file as the fusion
    args = argv(davis, interactive_weights, tmp_path / "o") + [flag, wrong]
    rc, _, err = run_main(eval_interactive_davis.main, args, capsys)
    one_error(rc, err, str(wrong))
    assert not (tmp_path / "o").exists()


def test_missing_davis_folders_say_the_fix(davis, interactive_weights, tmp_path, capsys):
    rc, _, err = run_main(eval_interactive_davis.main, argv(tmp_path / "nowhere", interactive_weights,
                                                            tmp_path / "o"), capsys)
    assert "--davis_path" in one_error(rc, err)
    shutil.rmtree(davis / "2017" / "trainval" / "Scribbles" / "odd")
    rc, _, err = run_main(eval_interactive_davis.main, argv(davis, interactive_weights, tmp_path / "o"), capsys)
    assert "download_datasets.py --only davis17_scribbles" in one_error(rc, err, "odd")


# -------------------------------------------------------------------------------- interrupt
def test_ctrl_c_leaves_no_report(davis, interactive_weights, tmp_path, capsys, monkeypatch):

    real, calls = benchmark.MivosMethod.answer, {"n": 0}

    def answer_then_stop(self, scribble):
        calls["n"] += 1
        if calls["n"] == 3:  # the second sample's first answer
            raise KeyboardInterrupt
        return real(self, scribble)

    monkeypatch.setattr(benchmark.MivosMethod, "answer", answer_then_stop)
    out = tmp_path / "o"
    rc, _, err = run_main(eval_interactive_davis.main, argv(davis, interactive_weights, out, *QUICK, "--save_mask"),
                          capsys)
    lines = message_lines(err)
    assert rc == 130 and len(lines) == 1 and lines[0].startswith("interrupted by SIGINT"), err
    assert not (out / "report.csv").exists() and not (out / "summary.json").exists()
    assert len(list((out / "masks" / "cat" / "001").iterdir())) == 2  # the finished sample is kept whole
    assert not (out / "masks" / "odd" / "001").exists() and not leftovers(tmp_path)
    assert read_marker(out)["complete"] is False and (out / MARKER).is_file()


# -------------------------------------------------------------------------------- torchrun
def test_propagating_every_interaction_under_torchrun_as_in_one_process(davis, interactive_weights, tmp_path,
                                                                         capsys, monkeypatch):
    propagated: list[int] = []
    real = InteractiveCore.interact

    def interact(self, frame, *args, **kwargs):
        propagated.append(frame)
        return real(self, frame, *args, **kwargs)

    monkeypatch.setattr(InteractiveCore, "interact", interact)
    monkeypatch.setattr(InteractiveCore, "update_mask_only", lambda *a, **k: pytest.fail("refined only"))
    flags = (*QUICK, "--propagate_every_interaction")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process (OMP_NUM_THREADS=1): the same float work
    try:
        rc, _, err = run_main(eval_interactive_davis.main, argv(davis, interactive_weights, tmp_path / "one", *flags),
                              capsys)
    finally:
        torch.set_num_threads(threads)
    assert rc == 0, err
    assert len(propagated) == 4 and samples(tmp_path / "one" / "report.csv") == {("cat", 1): 2, ("odd", 1): 2}
    proc = run_torchrun(ROOT / "eval_interactive_davis.py", argv(davis, interactive_weights, tmp_path / "two", *flags),
                        cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one, two = (metrics.read_report(tmp_path / name / "report.csv") for name in ("one", "two"))

    def untimed(rows):
        return [r.__class__(**{**r.__dict__, "timing": 0.0}) for r in rows]

    assert len(one) > 0 and untimed(two) == untimed(one)
    a, b = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("one", "two"))
    assert b["curve"]["J_AND_F"] == a["curve"]["J_AND_F"] and b["metric_at_threshold"] == a["metric_at_threshold"]
    # the AUC differs only by the time axis: at most the two runs' total times over the budget
    budget = a["curve"]["time"][-1]
    assert abs(a["auc"] - b["auc"]) <= (a["curve"]["time"][-2] + b["curve"]["time"][-2]) / budget
    assert proc.stdout.count("AUC-J&F") == 1 and read_marker(tmp_path / "two")["complete"] is True
    assert not error_lines(proc.stderr)


def test_inference_flags_reach_the_options(davis, interactive_weights, tmp_path, capsys, monkeypatch):
    import evaluation.run_video
    from util.io import DataError

    seen = {}

    def capture(cls, paths, options, **kwargs):
        seen.update(paths=paths, options=options)
        raise DataError("stop", "captured", "nothing")

    monkeypatch.setattr(evaluation.run_video.Predictor, "from_checkpoint", classmethod(capture))
    flags = ["--top", "7", "--mem_every", "3", "--max_mem_frames", "9", "--object_batch", "2"]
    rc, _, err = run_main(eval_interactive_davis.main, argv(davis, interactive_weights, tmp_path / "o", *flags), capsys)
    assert rc == 1 and "captured" in err
    options = seen["options"]
    assert seen["paths"] == (str(interactive_weights[0]),) or list(seen["paths"]) == [str(interactive_weights[0])]
    assert (options.top_k, options.mem_every, options.max_mem_frames, options.object_batch) == (7, 3, 9, 2)
    assert options.size is None and not options.is_ensemble  # DAVIS at its own size, one network


def test_a_scribble_without_strokes_names_the_last_frame():
    from evaluation.interactive.benchmark import interacted_frame

    scribble = Scribbles.empty(5, "v")
    assert interacted_frame(scribble) == 4  # MiVOS's processor, when the robot found nothing wrong
    scribble.frames[3] = [Stroke(((0.5, 0.5),), 1)]
    scribble.frames[1] = [Stroke(((0.5, 0.5),), 0)]
    assert interacted_frame(scribble) == 1
