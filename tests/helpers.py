"""Helpers shared by the tests that run whole commands (bad input, the output contract, interrupts,
sharded evaluation, distributed training):

    run_main(main, argv, capsys)     a command's main(argv) in-process -> (exit code, stdout, stderr)
    message_lines / error_lines      the lines of its output a test reads (no progress bars)
    one_error(rc, err, *names)       the single `error:` line of a refused command
    snapshot(root) / file_hashes     the user's files before and after (sha256)
    leftovers(root)                  what an unfinished write would leave behind
    killed_partial(final, file=)     the partial folder a killed run leaves beside `final` (its process gone)
    as_written(folder, *names)       list files in a result's marker, as if the command had written them
    write_video / write_clip         a short video file and its first-frame mask
    run_torchrun(script, args, cwd)  two local processes over Gloo, on the CPU (torchrun or the old launcher)
"""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from tests.eval_fixtures import VideoSpec, render, save_indexed
from util.video import VideoWriter

PROGRESS_MARK = "%"  # every line of a progress bar holds a percentage
LEFTOVER_MARKS = (".partial", ".stcn-probe")  # name prefixes of unfinished outputs and write probes
TMP_MARK = ".tmp"  # temporary files of atomic writes (util/atomic.py)
VIDEO_FPS = 10
TORCHRUN_TIMEOUT_S = 300  # generous bound for a slow shared machine; never a timing assertion


# ------------------------------------------------------------------------------ running a command
def run_main(main: Callable[[list[str]], int], argv: Sequence, capsys,
             device: str | None = None) -> tuple[int, str, str]:
    """Run ``main(argv)`` in-process (items as strings, ``--device device`` appended when given);
    returns (exit code, stdout, stderr). argparse's own exit is returned as its code."""
    args = [str(a) for a in argv] + (["--device", device] if device else [])
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def message_lines(text: str, notes: bool = True) -> list[str]:
    """The non-blank lines of a command's output without its progress bars (and without its
    `note:` lines unless ``notes``)."""
    return [line for line in text.splitlines()
            if line.strip() and PROGRESS_MARK not in line and (notes or not line.startswith("note:"))]


def error_lines(text: str) -> list[str]:
    """Every line that holds `error:` (ours start with it, argparse's follow `<prog>: `)."""
    return [line for line in text.splitlines() if "error:" in line]


def one_error(rc: int, err: str, *names: str) -> str:
    """The one line of a command that failed with exit 1: it starts with `error: `, no traceback, and it
    names each of ``names``. Returns the line."""
    lines = message_lines(err, notes=False)
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------ the user's files
def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_hashes(*paths: Path) -> dict[str, str]:
    """Path -> sha256 of each file."""
    return {str(p): file_hash(p) for p in paths}


def snapshot(root: Path, dirs: bool = False) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root`` (and 'dir' for each folder when ``dirs``)."""
    state = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_dir():
            if dirs:
                state[str(path.relative_to(root))] = "dir"
        else:
            state[str(path.relative_to(root))] = file_hash(path)
    return state


def leftovers(root: Path) -> list[Path]:
    """Unfinished outputs, temporary files and write probes under ``root`` (none after any command)."""
    return [p for p in Path(root).rglob("*") if p.name.startswith(LEFTOVER_MARKS) or TMP_MARK in p.name]


def killed_partial(final: Path, file: bool = False) -> Path:
    """The partial folder (util/atomic.py) a process leaves beside `final` when it is killed while
    writing: a folder output's (`partial_dir`) or, file=True, an atomic file write's temporary."""
    code = ("import os, sys; from pathlib import Path; from util.atomic import atomic_path;"
            "from util.atomic import make_partial as partial_dir; final = Path(sys.argv[1]);"
            "cm = atomic_path(final); tmp = cm.__enter__() if sys.argv[2] == '1' else partial_dir(final);"
            "(tmp if tmp.is_dir() else tmp.parent).joinpath('half').write_bytes(b'half'); print(tmp, flush=True);"
            "os._exit(0)")  # no cleanup runs, as under SIGKILL
    done = subprocess.run([sys.executable, "-c", code, str(final), "1" if file else "0"], capture_output=True,
                          text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    tmp = Path(done.stdout.strip())
    return tmp if tmp.is_dir() else tmp.parent


def as_written(folder: Path, *names: str) -> None:
    """Add `names` to the files a result's marker lists (util/outputs.py): files the project wrote."""
    from util.outputs import read_marker, write_marker  # noqa: PLC0415

    marker = read_marker(folder)
    write_marker(folder, marker["command"], marker["complete"], [Path(c) for c in marker["companions"]],
                 {*marker["files"], *names}, marker["tool"])


# ------------------------------------------------------------------------------ a video on disk
def write_video(path: Path, frames: Iterable[np.ndarray], fps: int = VIDEO_FPS) -> Path:
    with VideoWriter(path, fps=fps) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def write_clip(root: Path, spec: VideoSpec) -> Path:
    """``<root>/<spec.name>.mp4`` (the frames of ``spec``) and ``<root>/first.png`` (its first
    frame's objects); returns ``root``."""
    images, labels = render(spec)
    write_video(root / f"{spec.name}.mp4", images)
    save_indexed(root / "first.png", labels[0])
    return root


# ------------------------------------------------------------------------------ torchrun
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    """The environment of a command run as a child process: one thread each, never a GPU."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


TORCHRUN = "torch.distributed.run"  # `torchrun`
OLD_LAUNCHER = "torch.distributed.launch"  # the deprecated launcher: passes --local-rank=<n> to the script


def run_torchrun(script: Path, args: Sequence, cwd: Path, processes: int = 2,
                 launcher: str = TORCHRUN) -> subprocess.CompletedProcess:
    """``script`` under ``launcher`` on this machine (``processes`` ranks, a free port); output captured."""
    cmd = [sys.executable, "-m", launcher, "--nnodes=1", f"--nproc_per_node={processes}",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", str(script), *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True,
                          timeout=TORCHRUN_TIMEOUT_S, check=False)


# ------------------------------------------------------------------ batched against one at a time
PROB_TOL = 1e-4  # batched probabilities equal one at a time to this (convolutions sum in another order)


def frame_at(video, index: int, side: int | None = None) -> torch.Tensor:
    """Frame `index` of an EvalVideo as a core takes it: normalised, then the paper's resize to the shorter
    side `side` (None: the video's network size), as `Stream.prepare` does."""
    from util.frames import normalise, resize_frame
    from util.io import resized_shape

    shape = video.network_size if side is None else resized_shape(*video.size, side)
    return resize_frame(normalise(video.original_rgb(index)), shape)


def mask_at(video, index: int, side: int | None = None) -> torch.Tensor | None:
    """The annotation of frame `index` at that size (nearest), as `Stream.prepare` resizes it; None without one."""
    from util.frames import resize_labels
    from util.io import resized_shape

    labels = video.annotation(index)
    if labels is None:
        return None
    shape = video.network_size if side is None else resized_shape(*video.size, side)
    return resize_labels(torch.from_numpy(labels.astype(np.int64)), shape)


def assert_same_labels(prob: torch.Tensor, expected: torch.Tensor) -> None:
    """The same argmax wherever the difference of the probabilities can not explain another one.

    With |prob - expected| <= d everywhere, the argmax can only change where the expected two largest
    probabilities are within 2 d of each other: a tie to float rounding (random weights put many
    pixels near p = 0.5). Everywhere else the labels must be the same.
    """
    d = (prob - expected).abs().max()
    top = expected.topk(2, dim=0).values if len(expected) > 1 else torch.cat([expected, expected - 1])
    decided = (top[0] - top[1]) > 2 * d
    assert torch.equal(prob.argmax(0)[decided], expected.argmax(0)[decided])
    assert decided.float().mean() > 0.9  # most pixels are decided: the comparison is not empty
