"""Evaluation over several processes (`torchrun`): which videos each rank runs, and the few steps taken together.

    torchrun --nproc_per_node=8 eval_youtube.py --output ../output/yv19

Under `torchrun` (or the old `python -m torch.distributed.launch`; RANK / WORLD_SIZE / LOCAL_RANK in
the environment) every rank builds the same video list, runs its share (`shard_videos`: balanced by
frame count) on its own device (cuda:LOCAL_RANK when CUDA is present, else the CPU) and writes its
videos into the one output folder; a plain `python eval_*.py` is a world of one and runs as before.

The output contract (util/outputs.py) is kept by rank 0 alone: it checks the output folders
(`Shard.on_main`), claims and marks them (`Shard.writing`) before any other rank writes, and marks
them complete only after every rank finished its videos (`Shard.run_dataset`). Rank 0 then does what
happens once (the zip for an evaluation server, the DAVIS scores) and prints for the run: the other ranks' output
is held back (their progress bars are off), so a failure is one `error:` line and the timing lines
are printed once, per rank and in total.

The ranks meet only at three points (after rank 0 prepared the output, after the videos, at the end),
each an `all_gather_object` of a small tagged message over Gloo (CPU), whatever the device: a rank that
left early (an error before the videos) is recognised by its tag instead of being waited for, and
a rank that died ends the wait with the group's timeout (or torchrun stops the others). A rank whose
video fails also raises a flag in the group's store (`FAILED_KEY`), and every other rank stops at the
start of its next video (`PeerWatch`), so the run ends about one video after the failure, not after
the other ranks' whole shares (which may take longer than the group's timeout).
"""
from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from evaluation.datasets import EvalVideo
from evaluation.loop import RunStats, frames_to_process, run_dataset
from evaluation.run_video import report_errors
from inference_core.core import InferenceCore
from util.errors import UserError
from util.launch import launch_from_env
from util.outputs import OutputDir, tool_of, write_error_line

T = TypeVar("T")

# How long a rank waits for the others at a meeting point. The longest wait is the end of the
# videos: the imbalance left by `balanced_split`, at most about one video's time; an hour is
# generous for that and still ends a run whose peer hangs (a peer that dies ends it at once).
GROUP_TIMEOUT = timedelta(hours=1)
# The tags of the meeting points, in the order every rank reaches them; EXIT also after an error.
PREPARED, VIDEOS_DONE, EXIT = "prepared", "videos done", "exit"
# Set in the process group's store by a rank whose videos failed (cleared by rank 0 before the videos).
FAILED_KEY = "stcn/eval/a rank failed"


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
class PeerFailed(Exception):
    """Another rank failed; rank 0 says why (this rank stays silent)."""


class PeerStopped(Exception):
    """This rank stopped before its next video because another rank's video failed (`PeerWatch`)."""


class PeerWatch:
    """A frame sink that writes nothing: at the start of each video it stops this rank (PeerStopped,
    before anything of that video is written) once another rank raised `FAILED_KEY` in the group's
    store. `store`: the group's key-value store (`check(keys) -> bool`)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def begin(self, video: EvalVideo) -> None:
        try:
            failed = self.store.check([FAILED_KEY])
        except (RuntimeError, ValueError):  # a store that fails only loses the early stop (the meeting tells)
            return
        if failed:
            raise PeerStopped(video.name)

    def add(self, index: int, labels: Any) -> None:
        pass

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass


@dataclass
class Shard:
    """This process's place in the run: rank, world size, and the meeting points with the others."""

    rank: int = 0
    world: int = 1
    store: Any = field(default=None, repr=False)  # the group's store (FAILED_KEY); None: none to share
    _left: bool = field(default=False, repr=False)  # a peer left early: no further meetings

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def meet(self, tag: str, payload: Any = None) -> list[tuple[str, Any]]:
        """Every rank's (tag, payload) at this meeting point; a world of one meets only itself."""
        if not self.distributed or self._left:
            return [(tag, payload)]
        gathered: list = [None] * self.world
        dist.all_gather_object(gathered, (tag, payload))
        if any(t == EXIT for t, _ in gathered) and tag != EXIT:
            self._left = True  # that rank is gone: do not wait for it again
        return gathered

    def _raise_failure(self, gathered: list[tuple[str, Any]]) -> None:
        """Raise the first failure another rank reported: ShardError (its line) on rank 0, PeerFailed elsewhere.

        A peer failed when it reported an error line with its videos, or when it is already at EXIT
        (it stopped early; its payload is its error line, if it had one).
        """
        for rank, (tag, payload) in enumerate(gathered):
            if rank == self.rank:
                continue
            if tag == EXIT:
                message = payload or f"rank {rank} stopped before its videos"
            elif tag == VIDEOS_DONE and payload[1] is not None:
                message = payload[1]
            else:
                continue
            raise ShardError(message) if self.is_main else PeerFailed(message)

    def on_main(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """`fn(*args, **kwargs)` on rank 0 only (e.g. checking the output folders); None on the others."""
        return fn(*args, **kwargs) if self.is_main else None

    @contextlib.contextmanager
    def writing(self, outputs: T) -> Iterator[T]:
        """Rank 0 claims the output folders in `outputs` (one OutputDir, or a dict or list of them, from
        `on_main`) and hands them to every rank; on leaving, rank 0 marks them complete, or releases
        them after an error (OutputDir.writing). The other ranks only write into them."""
        with contextlib.ExitStack() as stack:
            if self.is_main:
                for folder in _folders(outputs):
                    stack.enter_context(folder.writing())
                self._store_call("delete_key", FAILED_KEY)  # an earlier run's flag in a reused group
            gathered = self.meet(PREPARED, outputs if self.is_main else None)
            self._raise_failure(gathered)
            yield gathered[0][1]

    def run_dataset(self, core: InferenceCore, videos: Sequence[EvalVideo], out_dir_of: Callable[[EvalVideo], Path],
                    **kwargs: Any) -> RunStats | ShardedStats:
        """`run_dataset` on this rank's share; then wait for every rank and raise the first failure.

        Returns RunStats in a world of one (today's three lines), else every rank's ShardedStats.
        """
        if not self.distributed:
            return run_dataset(core, videos, out_dir_of, **kwargs)
        current: list[EvalVideo | None] = [None]

        def tracked(video: EvalVideo) -> Path:
            current[0] = video
            return out_dir_of(video)

        stats, error, failure, stopped = RunStats(), None, None, False
        watch = [PeerWatch(self.store)] if self.store is not None else []
        sinks = [*watch, *kwargs.pop("sinks", ())]  # the watch first: it stops a video before any sink begins
        try:
            stats = run_dataset(core, shard_videos(videos, self.world, self.rank), tracked,
                                quiet=not self.is_main, sinks=sinks, **kwargs)
        except PeerStopped:
            stopped = True  # the failing rank's line comes with the meeting
        except Exception as exc:  # noqa: BLE001 - told to every rank, then raised again; an interrupt is not caught
            error, failure = exc, failure_line(exc, current[0])
            self._store_call("set", FAILED_KEY, failure)  # the others stop at their next video
        gathered = self.meet(VIDEOS_DONE, (stats, failure))
        if error is not None:
            raise error
        self._raise_failure(gathered)
        if stopped:  # the flag without a failure at the meeting: never a complete run
            message = "another rank raised the failure flag without reporting a failure"
            raise ShardError(message) if self.is_main else PeerFailed(message)
        return ShardedStats([payload[0] for _, payload in gathered])

    def _store_call(self, method: str, *args: Any) -> None:
        """`store.<method>(*args)` when there is a store; a store that fails only loses the early stop."""
        if self.store is None:
            return
        try:
            getattr(self.store, method)(*args)
        except (RuntimeError, ValueError):  # e.g. a store without delete_key
            pass


class ShardError(UserError):
    """A rank's failure, told by rank 0: its error line as it is."""

    def __init__(self, line: str) -> None:
        super().__init__("", line)

    def __str__(self) -> str:
        return self.problem


def _folders(outputs: Any) -> list[OutputDir]:
    if isinstance(outputs, OutputDir):
        return [outputs]
    values = outputs.values() if isinstance(outputs, dict) else outputs
    return [v for v in values if isinstance(v, OutputDir)]


def failure_line(exc: BaseException, video: EvalVideo | None) -> str:
    """One line for a rank's failure, naming the video it was running (report_errors' wording)."""
    if isinstance(exc, OSError):
        line = write_error_line(exc)
    elif isinstance(exc, UserError):
        line = str(exc)
    else:  # a bug: its traceback shows on that rank
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
        yield Shard(dist.get_rank(), dist.get_world_size(), store=_group_store())
    finally:
        if owns and dist.is_initialized():
            dist.destroy_process_group()


def _group_store() -> Any:
    """The default process group's key-value store (torchrun's TCPStore), or None where torch hides it."""
    try:
        return dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):
        return None


def run_sharded(body: Callable[[Shard], int], local_rank_arg: int | None = None) -> int:
    """Run a script body on every rank (report_errors: one `error:` line, exit status).

    The ranks other than 0 run with their stdout and stderr held back (rank 0 prints for the run;
    a failure of theirs reaches it at the next meeting point); an unexpected exception still
    shows its traceback. All ranks meet once more at the end, so none leaves while rank 0 prints.
    """
    with eval_group(local_rank_arg) as shard:
        if not shard.distributed:
            return report_errors(lambda: body(shard), tool=tool_of(body))
        held = io.StringIO()
        status, raised = 1, None
        try:
            with contextlib.ExitStack() as stack:
                if not shard.is_main:
                    stack.enter_context(contextlib.redirect_stdout(held))
                    stack.enter_context(contextlib.redirect_stderr(held))
                status = report_errors(lambda: _silent_peer(body, shard), tool=tool_of(body))
        except Exception as exc:  # noqa: BLE001 - a bug: raised again (traceback) once the others are told
            raised = exc
        interrupted = status >= 128 and raised is None  # every rank got the signal: nobody waits
        if not interrupted:
            lines = [ln for ln in held.getvalue().splitlines() if ln.startswith("error: ")]
            said = lines[-1][len("error: "):] if lines else (f"{type(raised).__name__}: {raised}" if raised else None)
            shard.meet(EXIT, said if status or raised else None)
        if raised is not None:
            raise raised
        return status


def _silent_peer(body: Callable[[Shard], int], shard: Shard) -> int:
    """The body; a PeerFailed (rank 0 reports it) ends this rank with status 1 and no line."""
    try:
        return body(shard)
    except PeerFailed:
        return 1
