"""Evaluation sharded over processes: the balanced split, and the four eval scripts under torchrun.

The torchrun runs (2 processes, Gloo on CPU, a random network) must give the masks, the zip's list
of files and the scores of a single-process run, byte for byte, also with the newer options
(--video_batch, an ensemble with --bidirectional, extra outputs, the old launcher); a failing rank
fails the whole run with one line and no zip or csv files.
"""
from __future__ import annotations

import errno
import io
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist

import eval_davis
import eval_davis_2016
import eval_generic
import eval_youtube
from evaluation.loop import RunStats
from evaluation.sharding import GROUP_TIMEOUT, ShardedStats, balanced_split, eval_group, failure_line, shard_videos
from tests.eval_fixtures import (  # noqa: F401  (fixtures)
    DAVIS_VIDEOS,
    GENERIC_VIDEOS,
    YT_VIDEOS,
    davis_template,
    generic_template,
    youtube_template,
)
from tests.helpers import OLD_LAUNCHER, error_lines, run_main, run_torchrun
from util.io import DataError
from util.outputs import MARKER, read_marker

ROOT = Path(__file__).resolve().parents[1]
CPU = ("--device", "cpu")
torch.set_num_threads(1)  # as each torchrun process (OMP_NUM_THREADS=1), so the float work is the same


# ------------------------------------------------------------------------------ the split
def test_balanced_split_longest_first_into_the_least_loaded_rank():
    # 9 -> r0, 7 -> r1, 5 -> r1 (7 < 9), 4 -> r0 (12 > 9), 2 -> r1 (12 < 13), 1 -> r0 (13 < 14)
    assert balanced_split([5, 9, 1, 7, 4, 2], 2) == [[1, 2, 4], [0, 3, 5]]
    assert balanced_split([3, 3, 3], 2) == [[0, 2], [1]]  # ties: earlier item, lower rank


def test_balanced_split_covers_every_item_once_and_stays_close_to_balanced():
    weights = [(37 * i) % 101 + 1 for i in range(50)]
    for world in (1, 2, 3, 8):
        shares = balanced_split(weights, world)
        assert sorted(i for s in shares for i in s) == list(range(len(weights)))
        assert all(s == sorted(s) for s in shares)  # each rank keeps the list's order
        loads = [sum(weights[i] for i in s) for s in shares]
        assert max(loads) - min(loads) <= max(weights)  # greedy bound: at most one item apart
        assert shares == balanced_split(weights, world)  # every rank computes the same split


def test_balanced_split_edge_cases():
    assert balanced_split([4, 2], 1) == [[0, 1]]
    assert balanced_split([4], 3) == [[0], [], []]  # more ranks than videos: some run none
    assert balanced_split([], 2) == [[], []]
    with pytest.raises(ValueError):
        balanced_split([1], 0)


def _video(name: str, frames: int) -> SimpleNamespace:
    first = [SimpleNamespace(required=True, mask_path="m.png")]
    return SimpleNamespace(name=name, frames=first + [SimpleNamespace(required=True, mask_path=None)] * (frames - 1))


def test_shard_videos_weighs_by_the_frames_processed():
    videos = [_video("a", 10), _video("b", 40), _video("c", 25), _video("d", 20)]
    # b 40 -> r0, c 25 -> r1, d 20 -> r1 (25 < 40), a 10 -> r0 (40 < 45); each rank in the list's order
    assert [v.name for v in shard_videos(videos, 2, 0)] == ["a", "b"]
    assert [v.name for v in shard_videos(videos, 2, 1)] == ["c", "d"]
    assert [v.name for v in shard_videos(videos, 1, 0)] == ["a", "b", "c", "d"]


def test_failure_line_names_the_video():
    odd = SimpleNamespace(name="odd")
    assert failure_line(RuntimeError("boom"), odd) == "video odd: RuntimeError: boom"
    bad = DataError("D/JPEGImages/odd/00003.jpg", "unreadable image", "replace it")
    assert failure_line(bad, odd) == str(bad)  # the file already names the video
    full = OSError(errno.ENOSPC, "No space left on device", "out/odd/00001.png")
    assert failure_line(full, odd).startswith("out/odd/00001.png: No space left on device; free some space")


def test_sharded_stats_lines_per_rank_and_in_total():
    stats = ShardedStats([RunStats(frames=30, seconds=2.0), RunStats(frames=10, seconds=1.0)])
    text = io.StringIO()
    stats.print(text)
    assert text.getvalue().splitlines() == [
        "Rank 0: processing time 2.0, processed frames 30, FPS 15.0",
        "Rank 1: processing time 1.0, processed frames 10, FPS 10.0",
        "Total processing time: 2.0",  # the slowest rank: the ranks run side by side
        "Total processed frames: 40",
        "FPS: 20.0",
        "FPS per process: 13.333333333333334",  # 40 frames over 3 s of processing: the per-GPU rate
    ]


@pytest.mark.parametrize("env, local_rank_arg", [({"LOCAL_RANK": "3"}, None), ({}, 3)])
def test_eval_group_puts_each_rank_on_its_own_gpu_over_gloo(monkeypatch, env, local_rank_arg):
    """torchrun's LOCAL_RANK, or the old launcher's --local-rank: rank 6 of 8, local rank 3 of a node with 2 GPUs
    (as torchrun numbers them: the device follows the local rank, not the rank) on cuda:1."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "6")
    monkeypatch.setenv("WORLD_SIZE", "8")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls: list = []
    group: dict = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(group))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: group.update(backend=backend, **kw))
    monkeypatch.setattr(dist, "get_rank", lambda: group["rank"])
    monkeypatch.setattr(dist, "get_world_size", lambda: group["world_size"])
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append(("destroyed", group.clear())))
    with eval_group(local_rank_arg) as shard:
        assert (shard.rank, shard.world, shard.is_main) == (6, 8, False)
        assert group["backend"] == "gloo" and group["timeout"] == GROUP_TIMEOUT
    assert calls == [("set_device", 1), ("destroyed", None)]


def test_a_plain_run_is_a_world_of_one(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with eval_group() as shard:
        assert (shard.rank, shard.world, shard.distributed) == (0, 1, False)
    assert eval_davis.get_args_parser().parse_args(["--output", "o", "--local-rank=1"]).local_rank == 1


# ------------------------------------------------------------------------------- torchrun
def files(folder: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob(pattern))}


@pytest.fixture()
def davis(tmp_path, davis_template):
    return Path(shutil.copytree(davis_template, tmp_path / "DAVIS"))


def test_davis_under_torchrun_matches_a_single_process(davis, released_checkpoint, tmp_path, capsys):
    args = ["--model", released_checkpoint, "--davis_path", davis / "2017", *CPU]
    rc, one_out, err = run_main(eval_davis.main, [*args, "--output", tmp_path / "one"], capsys)
    assert rc == 0, err
    proc = run_torchrun(ROOT / "eval_davis.py", [*args, "--output", tmp_path / "two"], cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one, two = tmp_path / "one", tmp_path / "two"
    masks = files(two, "*/*.png")
    assert len(masks) == sum(s.frames for s in DAVIS_VIDEOS) and masks == files(one, "*/*.png")
    csvs = files(two, "*.csv")
    assert len(csvs) == 2 and csvs == files(one, "*.csv")
    assert read_marker(two)["complete"] is True
    # rank 0 prints for the run: each rank's timing, the totals and the scores, once
    out = proc.stdout
    assert out.count("Rank 0: processing time") == 1 and out.count("Rank 1: processing time") == 1
    assert out.count("Total processed frames: ") == 1 and out.count("\nJ&F ") == 1
    assert out.strip().splitlines()[-1] == one_out.strip().splitlines()[-1].replace(str(tmp_path / "one"),
                                                                                  str(tmp_path / "two"))
    assert "Rank 0:" not in one_out and "FPS per process" not in one_out  # a plain run: today's three lines
    total = int(out.split("Total processed frames: ")[1].split()[0])
    assert total == int(one_out.split("Total processed frames: ")[1].split()[0])
    scores = [line for line in one_out.splitlines() if line.startswith(("J&F", "J-", "F-"))]
    assert scores and all(line in out.splitlines() for line in scores)


def test_youtube_under_torchrun_matches_a_single_process(youtube_template, released_checkpoint, tmp_path, capsys):
    args = ["--model", released_checkpoint, "--yv_path", youtube_template, "--size", "32", *CPU]
    rc, _, err = run_main(eval_youtube.main, [*args, "--output", tmp_path / "one"], capsys)
    assert rc == 0, err
    proc = run_torchrun(ROOT / "eval_youtube.py", [*args, "--output", tmp_path / "two"], cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    masks = files(tmp_path / "two", "Annotations/*/*.png")
    assert {Path(k).parent.name for k in masks} == {s.name for s in YT_VIDEOS}
    assert masks == files(tmp_path / "one", "Annotations/*/*.png")
    with zipfile.ZipFile(tmp_path / "one.zip") as a, zipfile.ZipFile(tmp_path / "two.zip") as b:
        assert b.namelist() == a.namelist() and len(a.namelist()) == len(masks)
    assert proc.stdout.count("their zip to") == 1 and "wrote 5 masks of 2 videos" in proc.stdout
    assert read_marker(tmp_path / "two")["complete"] is True


def test_a_failing_rank_fails_the_run_with_one_line(davis, released_checkpoint, tmp_path, capsys):
    # "odd" (6 frames) runs on rank 1, "cat" (7) on rank 0; a later frame of "odd" is corrupt
    (davis / "2017" / "trainval" / "JPEGImages" / "480p" / "odd" / "00003.jpg").write_bytes(b"\xff\xd8garbage")
    args = ["--model", released_checkpoint, "--davis_path", davis / "2017", *CPU]
    rc, _, err = run_main(eval_davis.main, [*args, "--output", tmp_path / "one"], capsys)
    assert rc == 1 and len(error_lines(err)) == 1
    proc = run_torchrun(ROOT / "eval_davis.py", [*args, "--output", tmp_path / "two"], cwd=ROOT)
    assert proc.returncode != 0
    lines = error_lines(proc.stdout + proc.stderr)
    assert lines == error_lines(err), proc.stderr[-3000:]  # the single run's line, once
    assert "odd/00003.jpg" in lines[0]
    assert f'File "{ROOT}' not in proc.stderr  # torchrun's own summary follows, but no traceback of ours
    two = tmp_path / "two"
    assert not list(two.glob("*.csv")) and not (two / "odd").exists()
    assert read_marker(two)["complete"] is False and (two / MARKER).is_file()
    # rank 0's video is kept whole if it ended before torchrun stopped rank 0, else it is absent
    assert not (two / "cat").exists() or len(list((two / "cat").glob("*.png"))) == DAVIS_VIDEOS[0].frames
    assert sorted(p.name for p in two.iterdir()) in ([MARKER], [MARKER, "cat"])  # no partial folder either
    assert "Total processed frames" not in proc.stdout


def rank_frames(stdout: str) -> list[int]:
    """The processed frames of each rank's timing line ("Rank r: ..., processed frames n, FPS ...")."""
    return [int(line.split("processed frames ")[1].split(",")[0])
            for line in stdout.splitlines() if line.startswith("Rank ")]


def add_video_copy(root: Path, name: str, copy: str, lists: Sequence[Path] = ()) -> None:
    """A second video `copy` with the frames and annotations of `name` (every folder under `root`
    holding `name`), and its name appended to the video `lists`."""
    for folder in sorted(root.rglob(name)):
        if folder.is_dir():
            shutil.copytree(folder, folder.with_name(copy))
    for path in lists:
        path.write_text(path.read_text() + copy + "\n")


def test_generic_under_the_old_launcher_with_an_ensemble_bidirectional_and_binary_masks(
        generic_template, released_checkpoint, tmp_path, capsys):
    # the old launcher passes --local-rank=<n>; a second video so that each rank runs one
    data = Path(shutil.copytree(generic_template, tmp_path / "data"))
    add_video_copy(data, GENERIC_VIDEOS[0].name, "clip_b")
    args = ["--model", released_checkpoint, "--data_path", data, "--size", "48", "--scales", "48", "64",
            "--bidirectional", *CPU]

    def outputs(name: str) -> list:
        return ["--output", tmp_path / name, "--binary_masks", tmp_path / f"{name}_bin"]

    rc, _, err = run_main(eval_generic.main, [*args, *outputs("one")], capsys)
    assert rc == 0, err
    proc = run_torchrun(ROOT / "eval_generic.py", [*args, *outputs("two")], cwd=ROOT, launcher=OLD_LAUNCHER)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    masks = files(tmp_path / "two", "*/*.png")
    assert len(masks) == 2 * GENERIC_VIDEOS[0].frames and masks == files(tmp_path / "one", "*/*.png")
    binary = files(tmp_path / "two_bin", "*/*/*.png")
    assert binary and binary == files(tmp_path / "one_bin", "*/*/*.png")
    assert all(read_marker(tmp_path / f)["complete"] is True for f in ("two", "two_bin"))
    assert [n > 0 for n in rank_frames(proc.stdout)] == [True, True]  # both ranks ran a video


def test_davis_2016_under_torchrun_with_video_batch_matches_a_single_process(davis, released_checkpoint, tmp_path,
                                                                               capsys):
    # a third video: "cat" and "odd" on rank 0 (batched side by side), "cat_b" on rank 1
    add_video_copy(davis / "2016", "cat", "cat_b",
                   lists=[davis / "2017" / "trainval" / "ImageSets" / "2016" / "val.txt"])
    args = ["--model", released_checkpoint, "--davis_path", davis / "2016", *CPU]
    rc, one_out, err = run_main(eval_davis_2016.main, [*args, "--output", tmp_path / "one"], capsys)
    assert rc == 0, err
    proc = run_torchrun(ROOT / "eval_davis_2016.py", [*args, "--video_batch", "2", "--output", tmp_path / "two"],
                        cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    masks = files(tmp_path / "two", "*/*.png")
    assert {Path(k).parent.name for k in masks} == {"cat", "odd", "cat_b"}
    assert masks == files(tmp_path / "one", "*/*.png")
    csvs = files(tmp_path / "two", "*.csv")
    assert len(csvs) == 2 and csvs == files(tmp_path / "one", "*.csv")
    assert rank_frames(proc.stdout) == [DAVIS_VIDEOS[0].frames + DAVIS_VIDEOS[1].frames, DAVIS_VIDEOS[0].frames]


def test_a_failing_rank_leaves_no_zip(youtube_template, released_checkpoint, tmp_path, capsys):
    # "yv_b" runs on rank 1, "yv_a" on rank 0; its last listed frame (read for its mask) is corrupt
    yv = Path(shutil.copytree(youtube_template, tmp_path / "YouTube"))
    (yv / "all_frames" / "valid_all_frames" / "JPEGImages" / "yv_b" / "00005.jpg").write_bytes(b"\xff\xd8garbage")
    args = ["--model", released_checkpoint, "--yv_path", yv, "--size", "32", *CPU]
    rc, _, err = run_main(eval_youtube.main, [*args, "--output", tmp_path / "one"], capsys)
    assert rc == 1 and len(error_lines(err)) == 1 and "yv_b/00005.jpg" in err
    proc = run_torchrun(ROOT / "eval_youtube.py", [*args, "--output", tmp_path / "two"], cwd=ROOT)
    assert proc.returncode != 0
    assert error_lines(proc.stdout + proc.stderr) == error_lines(err), proc.stderr[-3000:]
    assert not (tmp_path / "two.zip").exists() and "their zip to" not in proc.stdout
    two = tmp_path / "two"
    assert read_marker(two)["complete"] is False and not (two / "Annotations" / "yv_b").exists()
    # rank 0's video is kept whole if it ended before torchrun stopped rank 0, else it is absent
    kept, single = two / "Annotations" / "yv_a", tmp_path / "one" / "Annotations" / "yv_a"
    assert not kept.exists() or sorted(p.name for p in kept.iterdir()) == sorted(p.name for p in single.iterdir())


@pytest.mark.parametrize("case", ["output is a file", "refused combination"])
def test_a_rank_that_stops_before_the_videos_ends_the_run_with_one_line(case, davis, generic_template,
                                                                        released_checkpoint, tmp_path, capsys):
    """Rank 0 alone checks the output (the others wait for it); every rank refuses the flags: one line, no hang."""
    if case == "output is a file":
        (tmp_path / "out").write_text("mine")
        script, main = "eval_davis.py", eval_davis.main
        args = ["--model", released_checkpoint, "--davis_path", davis / "2017", "--output", tmp_path / "out", *CPU]
    else:
        script, main = "eval_generic.py", eval_generic.main
        args = ["--model", released_checkpoint, "--data_path", generic_template, "--size", "48", "--bidirectional",
                "--video_batch", "2", "--output", tmp_path / "out", *CPU]
    rc, _, err = run_main(main, args, capsys)
    assert rc == 1 and len(error_lines(err)) == 1
    proc = run_torchrun(ROOT / script, args, cwd=ROOT)
    assert proc.returncode != 0
    assert error_lines(proc.stdout + proc.stderr) == error_lines(err), proc.stderr[-3000:]
    assert f'File "{ROOT}' not in proc.stderr
    assert case != "output is a file" or (tmp_path / "out").read_text() == "mine"
