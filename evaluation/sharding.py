"""Evaluation over several processes (`torchrun`): which videos each rank runs, and the two steps taken together.

    torchrun --nproc_per_node=8 eval_youtube.py --output ../output/yv19

Under `torchrun` (or the deprecated `python -m torch.distributed.launch`; RANK / WORLD_SIZE / LOCAL_RANK in
the environment) every rank builds the same video list, runs its share (`shard_videos`: balanced by
frame count) on its own device (cuda:LOCAL_RANK when CUDA is present, else the CPU) and writes its
videos into the one output folder; a plain `python eval_*.py` is a world of one and runs unsharded.

Rank 0 alone checks the output folders (`Shard.on_main`) and claims them before the others write
(`Shard.writing`); once every rank's videos are done (`Shard.run_dataset`, the ranks' timings
gathered over Gloo) it completes them, does what happens once (the zip, the scores) and prints for
the run. The other ranks print nothing but the error line of a video of theirs that fails. A rank
that fails exits with status 1, and torchrun then stops every other rank (SIGTERM: each removes its
unfinished video, as on Ctrl-C); a rank that finds a peer gone ends with status 1 and no line.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from evaluation.datasets import EvalVideo
from evaluation.loop import RunStats, frames_to_process, run_dataset
from evaluation.run_video import report_errors
from inference_core.predictor import Predictor
from util.errors import UserError
from util.launch import launch_from_env
from util.outputs import OutputDir, tool_of, write_error_line

T = TypeVar("T")

# How long a rank waits for the others to end their shares: the imbalance left by `balanced_split`,
# at most about one video's time; an hour is generous for that and still ends a run whose peer hangs.
GROUP_TIMEOUT = timedelta(hours=1)


# ------------------------------------------------------------------------------- the split
def balanced_split(weights: Sequence[int], world: int) -> list[list[int]]:
    """Indices of `weights` for each of `world` ranks, the totals balanced (greedy longest first).

    The items are taken heaviest first (ties: the earlier index) and each goes to the rank with
    the least total so far (ties: the lower rank), the classic LPT rule whose largest total is at
    most 4/3 of the best possible; each rank's indices are returned in their original order.
    Deterministic: every rank computes the same split from the same list.
    """
    if world < 1:
        raise ValueError(f"world size must be at least 1, got {world}")
    loads = [0] * world
    shares: list[list[int]] = [[] for _ in range(world)]
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        loads[rank] += weights[i]
        shares[rank].append(i)
    return [sorted(s) for s in shares]


def shard_videos(videos: Sequence[EvalVideo], world: int, rank: int) -> list[EvalVideo]:
    """The videos rank `rank` of `world` runs, balanced by the frames each processes (`frames_to_process`)."""
    return [videos[i] for i in balanced_split([frames_to_process(v) for v in videos], world)[rank]]


# ---------------------------------------------------------------------------- timing lines
@dataclass
class ShardedStats:
    """The timing of every rank; printed as each rank's line, then the run's three lines.

    Total processing time is the slowest rank's (I/O excluded, as a single run's): the time the
    ranks processed in parallel. FPS is every processed frame over that time (the run's rate);
    `FPS per process` is every frame over the summed times, the per-GPU rate that compares with
    the paper's single-GPU protocol.
    """

    ranks: list[RunStats]

    @property
    def total(self) -> RunStats:
        return RunStats(frames=sum(s.frames for s in self.ranks), seconds=max(s.seconds for s in self.ranks),
                        masks=sum(s.masks for s in self.ranks), videos=sum(s.videos for s in self.ranks))

    def written(self, videos: bool = True) -> str:
        """What every rank wrote together (RunStats.written)."""
        return self.total.written(videos)

    @property
    def fps_per_process(self) -> float:
        seconds = sum(s.seconds for s in self.ranks)
        return sum(s.frames for s in self.ranks) / seconds if seconds > 0 else float("nan")

    def print(self, file=None) -> None:
        file = file or sys.stdout
        for rank, s in enumerate(self.ranks):
            print(f"Rank {rank}: processing time {s.seconds}, processed frames {s.frames}, FPS {s.fps}", file=file)
        self.total.print(file)
        print(f"FPS per process: {self.fps_per_process}", file=file)


# ---------------------------------------------------------------------------- the ranks
class ShardError(UserError):
    """A video of this rank failed: its one line (`failure_line`), as it is."""

    def __init__(self, line: str) -> None:
        super().__init__("", line)

    def __str__(self) -> str:
        return self.problem


class PeerGone(Exception):
    """A step taken together failed: another rank is gone (its own line, or torchrun's summary, says why)."""


@dataclass
class Shard:
    """This process's place in the run: rank and world size."""

    rank: int = 0
    world: int = 1
    failed: bool = False  # a video of this rank's failed: its line is printed, whatever the rank

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def on_main(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """`fn(*args, **kwargs)` on rank 0 only (e.g. checking the output folders); None on the others."""
        return fn(*args, **kwargs) if self.is_main else None

    @contextlib.contextmanager
    def writing(self, outputs: T) -> Iterator[T]:
        """Rank 0 claims the output folders in `outputs` (one OutputDir, or a dict of them, from `on_main`)
        and hands them to every rank; on leaving, rank 0 completes them, or releases them after an error.
        The other ranks only write into them."""
        with contextlib.ExitStack() as stack:
            if self.is_main:
                values = outputs.values() if isinstance(outputs, dict) else [outputs]
                for folder in values:
                    if isinstance(folder, OutputDir):
                        stack.enter_context(folder)
            shared = [outputs]
            if self.distributed:
                _together(dist.broadcast_object_list, shared, src=0)
            yield shared[0]

    def run_dataset(self, predictor: Predictor, videos: Sequence[EvalVideo], out_dir_of: Callable[[EvalVideo], Path],
                    **kwargs: Any) -> RunStats | ShardedStats:
        """`run_dataset` on this rank's share, then every rank's timing (ShardedStats; RunStats in a world
        of one). A failing video ends this rank with its line (ShardError; a bug: its traceback)."""
        if not self.distributed:
            return run_dataset(predictor, videos, out_dir_of, **kwargs)
        current: list[EvalVideo | None] = [None]

        def tracked(video: EvalVideo) -> Path:
            current[0] = video
            return out_dir_of(video)

        with self.failing(current):
            stats = run_dataset(predictor, shard_videos(videos, self.world, self.rank), tracked, quiet=not self.is_main,
                                **kwargs)
        return ShardedStats(self.gather(stats))

    @contextlib.contextmanager
    def failing(self, current: list) -> Iterator[None]:
        """In a distributed run, a failure inside ends this rank with its line (ShardError naming the video
        `current[0]`, an EvalVideo or None; a bug: its traceback); in a world of one it is left as it is."""
        try:
            yield
        except Exception as exc:
            if not self.distributed:
                raise
            self.failed = True
            if isinstance(exc, (UserError, OSError)):
                raise ShardError(failure_line(exc, current[0])) from None
            raise

    def gather(self, value: T) -> list[T]:
        """Every rank's `value`, in rank order (a step taken together; [value] in a world of one)."""
        if not self.distributed:
            return [value]
        gathered: list = [None] * self.world
        _together(dist.all_gather_object, gathered, value)
        return gathered


def _together(step: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """A collective step; PeerGone when it fails (a peer that stopped closes its connections)."""
    try:
        step(*args, **kwargs)
    except RuntimeError:
        raise PeerGone() from None


def failure_line(exc: BaseException, video: EvalVideo | None) -> str:
    """One line for a rank's failure, naming the video it was running (report_errors' wording)."""
    if isinstance(exc, OSError):
        line = write_error_line(exc)
    elif isinstance(exc, UserError):
        line = str(exc)
    else:
        line = f"{type(exc).__name__}: {exc}"
    line = " ".join(line.split())
    if video is not None and f"/{video.name}/" not in line and not line.startswith(f"video {video.name}"):
        line = f"video {video.name}: {line}"
    return line


# ------------------------------------------------------------------------------ the group
@contextlib.contextmanager
def eval_group(local_rank_arg: int | None = None) -> Iterator[Shard]:
    """This process's Shard from the launcher's environment; creates and destroys the process group.

    A group created already (e.g. by a test harness) is used and left alone. With CUDA, the rank's
    current device becomes cuda:LOCAL_RANK, so `--device auto` (or cuda) runs on its own GPU.
    """
    launch = launch_from_env(local_rank_arg)
    if launch.world_size <= 1 and not (dist.is_available() and dist.is_initialized()):
        yield Shard()
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(launch.local_rank % torch.cuda.device_count())
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("gloo", init_method="env://", rank=launch.rank, world_size=launch.world_size,
                                timeout=GROUP_TIMEOUT)
    try:
        yield Shard(dist.get_rank(), dist.get_world_size())
    finally:
        if owns and dist.is_initialized():
            dist.destroy_process_group()


def run_sharded(body: Callable[[Shard], int], local_rank_arg: int | None = None) -> int:
    """Run a script body on every rank (report_errors: one `error:` line, exit status).

    Rank 0 prints for the run. The other ranks' output is held back; only the error line of a
    video of theirs is shown (a failure before the videos is rank 0's to tell: every rank checks
    the same flags and data). A peer found gone ends this rank with status 1 and no line.
    """
    with eval_group(local_rank_arg) as shard, contextlib.ExitStack() as stack:
        held = io.StringIO()
        if not shard.is_main:
            stack.enter_context(contextlib.redirect_stdout(held))
            stack.enter_context(contextlib.redirect_stderr(held))
        try:
            status = report_errors(lambda: body(shard), tool=tool_of(body))
        except PeerGone:
            status = 1
        stack.close()  # the held output ends here
        if shard.failed and not shard.is_main:
            _print_own_line([ln for ln in held.getvalue().splitlines() if ln.startswith("error: ")])
        return status


def _print_own_line(lines: list[str]) -> None:
    """`lines` on stderr, shared with rank 0's progress bar (which ends no line): written in one system
    call (a pipe write of under 4 KiB is never interleaved) and between newlines, so that they stand
    on lines of their own."""
    text = "\n".join(lines)
    sys.stderr.flush()
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor (captured in-process)
        print(text, file=sys.stderr, flush=True)
        return
    os.write(fd, f"\n{text}\n".encode())
