"""SIGINT / SIGTERM end every command with one line, exit 130 / 143 and no traceback; unfinished outputs are
removed, and those of a killed run (SIGKILL) are cleaned by the next run in the same place."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import download_model
import downloads.model
import segment_video
import train
from tests.eval_fixtures import VideoSpec, render
from tests.helpers import child_env, file_hashes, leftovers, message_lines, snapshot, write_clip, write_video
from tests.test_batch import generic_three  # noqa: F401 (fixture)
from tests.test_training import TINY, FakeClips, fake_data  # noqa: F401 (fixture)
from training import trainer
from training.data import TrainData
from util.outputs import MARKER, run_command

ROOT = Path(__file__).resolve().parents[1]
LONG = VideoSpec("long", height=32, width=48, frames=150, starts={1: 0})  # long enough to be stopped midway
SHORT_FRAMES = 4
WAIT_S = 180  # generous bound for a slow shared machine; never a timing assertion


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    root = write_clip(tmp_path_factory.mktemp("long"), LONG)
    write_video(root / "short.mp4", render(LONG)[0][:SHORT_FRAMES])  # for a quick rerun in the same destination
    return root


def start_segmenting(clip: Path, ckpt: Path, work: Path) -> tuple[subprocess.Popen, list[str]]:
    argv = [sys.executable, str(ROOT / "segment_video.py"), "--video", str(clip / "long.mp4"),
            "--mask", str(clip / "first.png"), "--model", str(ckpt), "--device", "cpu", "--size", "-1",
            "--output", str(work / "out"), "--overlay", str(work / "ov.mp4"), "--binary_masks", str(work / "bin")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work, env=child_env())
    return proc, argv[2:]


def wait_for_first_mask(proc: subprocess.Popen, work: Path) -> None:
    """Poll (bounded) until the run has written its first mask into its unfinished folder."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if any(work.glob(".partial-out-*/*.png")):
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no mask appeared")


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_segmentation(signum, status, long_clip, released_checkpoint, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("the user's file")
    before = file_hashes(long_clip / "long.mp4", long_clip / "first.png", work / "mine.txt")
    proc, _ = start_segmenting(long_clip, released_checkpoint, work)
    wait_for_first_mask(proc, work)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == status, err
    lines = message_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"interrupted by {signal.Signals(signum).name}: "), err
    assert "Traceback" not in err and "removed the unfinished" in lines[0]
    assert not leftovers(work) and not leftovers(long_clip)
    assert sorted(p.name for p in work.iterdir()) == ["mine.txt"]  # nothing half-written is left
    assert file_hashes(long_clip / "long.mp4", long_clip / "first.png", work / "mine.txt") == before


def test_partials_of_a_killed_run_are_cleaned_by_the_next(long_clip, released_checkpoint, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    proc, argv = start_segmenting(long_clip, released_checkpoint, work)
    wait_for_first_mask(proc, work)
    proc.kill()  # SIGKILL: no cleanup can run
    proc.communicate(timeout=WAIT_S)
    assert leftovers(work)  # what a killed run leaves behind
    argv[argv.index("--video") + 1] = str(long_clip / "short.mp4")
    assert segment_video.main(argv) == 0
    err = capsys.readouterr().err
    assert "note: removed" in err and "earlier run" in err
    assert not leftovers(work)
    assert (work / "out" / MARKER).is_file() and len(list((work / "out").glob("*.png"))) == SHORT_FRAMES


# --------------------------------------------------------------------------- the same mechanism
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_run_command_turns_a_signal_into_one_line(signum, status, capsys):
    previous = signal.getsignal(signal.SIGTERM)

    def body() -> int:
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the signal arrives before this ends
        return 0

    assert run_command(body) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"interrupted by {signal.Signals(signum).name}: nothing was")
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is only installed while running


def test_sigterm_during_training_keeps_the_last_checkpoint(tmp_path, fake_data, capsys, monkeypatch):  # noqa: F811
    class StopAt(FakeClips):
        def __getitem__(self, index):
            if self.fetches == 3:  # after iteration 2 (checkpointed)
                os.kill(os.getpid(), signal.SIGTERM)
            return super().__getitem__(index)

    def build(cfg):
        return TrainData(StopAt(4, cfg.crop_size, two_objects=False), None)

    monkeypatch.setattr(trainer, "build_datasets", build)
    args = ["--stage", "0", "--id", "stop", "--save_dir", str(tmp_path), "--iterations", "6",
            "--checkpoint_every", "2", *TINY]
    assert train.main(args) == 143
    err = message_lines(capsys.readouterr().err)
    checkpoint = tmp_path / "stop" / "stop_checkpoint.pth"
    assert len(err) == 1 and err[0].startswith("interrupted by SIGTERM: kept ") and str(checkpoint) in err[0], err
    assert err[0].endswith(f"; resume with --load_model {checkpoint}"), err  # the real path, not <id>_...
    assert torch.load(checkpoint, weights_only=False)["iteration"] == 2 and not leftovers(tmp_path)


def test_ctrl_c_during_a_download_is_one_line(tmp_path, capsys, monkeypatch):
    def interrupted(source, dest, **kwargs):
        Path(f"{dest}.part").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(downloads.model, "download", interrupted)
    assert download_model.main(["--output", str(tmp_path / "stcn.pth")]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("interrupted by SIGINT: ") and ".part" in err
    assert "Traceback" not in err


# ------------------------------------------------------------ every evaluation mode, stopped mid-run
MODES = {
    "video_batch": ["--video_batch", "2"],
    "bidirectional": ["--bidirectional"],
    "ensemble-flip": ["--flip"],  # with two --model paths (below)
    "scales": ["--scales", "32", "48"],
}
STOP_AT_MASK = 12  # "one" (5 frames) is finished by then in every mode, "two" (9 frames) is not


@pytest.mark.parametrize("mode", MODES)
def test_ctrl_c_in_every_mode_keeps_the_finished_videos_and_removes_the_rest(mode, generic_three,
                                                                             released_checkpoint, tmp_path,
                                                                             capsys, monkeypatch):
    import eval_generic
    import evaluation.loop

    data = Path(shutil.copytree(generic_three, tmp_path / "data"))
    before = snapshot(data)
    real_write, calls = evaluation.loop.write_mask, {"n": 0}

    def write_then_stop(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == STOP_AT_MASK:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(evaluation.loop, "write_mask", write_then_stop)
    models = [released_checkpoint, released_checkpoint] if mode == "ensemble-flip" else [released_checkpoint]
    out, binary = tmp_path / "o", tmp_path / "bin"
    argv = ["--model", *models, "--data_path", data, "--output", out, "--binary_masks", binary, "--device", "cpu",
            "--size", "32", *MODES[mode]]
    rc = eval_generic.main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = message_lines(err)
    assert rc == 130 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("interrupted by SIGINT: kept ") and str(out / "one") in lines[0], lines[0]
    assert "removed the unfinished" in lines[0]
    assert len(list((out / "one").glob("*.png"))) == 5 and (binary / "one").is_dir()
    assert not (out / "two").exists() and not (binary / "two").exists()
    assert not leftovers(tmp_path) and snapshot(data) == before
