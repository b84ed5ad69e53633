"""The one evaluation loop: frames of a video -> InferenceCore -> masks on disk, with timing.

An evaluation command builds a dataset of `EvalVideo`s and calls `run_dataset`. Per video, frames are
read lazily, given to the core, and each required mask is resized to the original size and written as
soon as it is produced, into a hidden temporary folder that is renamed to the video's name only when the
video is complete; on any error the temporary folder is removed, so a video folder that exists is always
complete.

Timing follows the paper ("FPS ... measured with IO time excluded", STCN README): the clock covers
the network work of a frame and turning its probabilities into the output label map, not reading
the image or writing the PNG; the device is synchronised before each clock reading. FPS is the
total number of processed frames over the total time, whatever the number of objects.

Several videos at once (`run_videos_batched`): N videos side by side, one core each, their current
frames stepped in one batch (`step_cores`); each video is written as above, and a batched step's time
counts once for all the frames it processed.

The loop takes a core and videos, never flags. A core here is an `InferenceCore` or a core of the same
interface (an ensemble of them); the one place that tells them apart is `frame_input` /
`annotation_input`, which give a frame and its annotation in the form the core takes.
"""
from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import progressbar
import torch

from evaluation.datasets import EvalVideo
from evaluation.ensembles import annotation_input, frame_input
from evaluation.sinks import FrameSink
from inference_core.batch import BatchItem, fresh_core, step_cores
from inference_core.bidirectional import Bidirectional, first_frames
from inference_core.core import InferenceCore, probabilities_to_labels
from inference_core.objects import keep_lost, starting_objects  # starting_objects: later annotations only start objects
from util.device import synchronize
from util.frames import MIN_FEATURE_CELLS, MIN_SHORT_SIDE  # the network's smallest shorter side
from util.io import DataError, write_mask
from util.outputs import OutputDir
from util.tensor_util import STRIDE


@dataclass
class RunStats:
    """Processed frames and processing time (I/O excluded) over all videos; the masks written and
    the videos finished, for the command's last line (`written`)."""

    frames: int = 0
    seconds: float = 0.0
    masks: int = 0
    videos: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def print(self, file=None) -> None:
        """The three lines the original STCN scripts printed."""
        file = file or sys.stdout
        print(f"Total processing time: {self.seconds}", file=file)
        print(f"Total processed frames: {self.frames}", file=file)
        print(f"FPS: {self.fps}", file=file)

    def written(self, videos: bool = True) -> str:
        """What the run wrote, for `util.outputs.wrote_line`: "30 masks of 2 videos" ("30 masks": one video file)."""
        return plural(self.masks, "mask") + (f" of {plural(self.videos, 'video')}" if videos else "")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def frames_to_process(video: EvalVideo) -> int:
    """Frames up to the last required or annotated one (later frames are not processed)."""
    needed = [i for i, f in enumerate(video.frames) if f.required or f.mask_path is not None]
    return needed[-1] + 1 if needed else 0


@dataclass
class FrameInput:
    """The next frame of a video to give to its core: `core.step(image, mask, labels=start, end=end)`."""

    index: int
    image: object  # `frame_input`: 3, H, W at the network size on the core's device (an ensemble: every size)
    mask: object  # `annotation_input`: the objects that start here, or None
    start: list[int] | None
    end: bool
    required: bool


class VideoRun:
    """One video being segmented: its frames in order, its hidden temporary folder and its sinks.

    Made with a core (reset here) and a video (its annotations read here). `start` begins the sinks;
    `next_frame` passes over the frames that need no processing (`InferenceCore.needs_frame`) and
    returns the next one to process, or None after the last required or annotated frame;
    `labels` turns that frame's probabilities into its label map at the original size (timed as
    processing); `write` writes it to the folder and the sinks (I/O); `commit` renames the folder
    into place; `abort` removes what was written. `run_video` drives one, `run_videos_batched` several.
    """

    def __init__(
        self,
        core: InferenceCore,
        video: EvalVideo,
        out_dir: Path,
        sinks: Sequence[FrameSink] = (),
        on_frame: Callable[[], None] | None = None,
        output: OutputDir | None = None,
    ) -> None:
        core.reset()
        video.prepare()  # reads every annotation: a bad one stops here, before anything is written
        self.core, self.video, self.sinks, self.on_frame = core, video, sinks, on_frame
        self.palette = video.palette
        self.size = video.size
        self.out_dir = Path(out_dir)
        self.partial = (output if output is not None else OutputDir.owned(self.out_dir)).partial(self.out_dir)
        self.tmp = self.partial.tmp
        self.started: list[FrameSink] = []
        self._frames = frames_to_step(core, video, on_skip=on_frame)
        self.bidirectional: Bidirectional | None = None  # a bidirectional run's backward pass (`backward_pass`)
        self.written = 0  # masks written

    def start(self) -> None:
        for sink in self.sinks:
            sink.begin(self.video)
            self.started.append(sink)

    def next_frame(self) -> FrameInput | None:
        """The next frame to process (image and annotation read here, I/O), or None when the video is done."""
        return next(self._frames, None)

    def labels(self, frame: FrameInput, prob: torch.Tensor) -> np.ndarray | None:
        """The label map of a processed frame at the video's size, or None when it is not written."""
        if not frame.required:
            return None
        label_map = self.core.label_map()
        if self.bidirectional is not None:  # objects annotated after this frame: from the backward pass
            prob, label_map = self.bidirectional.merge(frame.index, prob, self.core.labels)
        # objects this frame's annotation starts that the network size loses keep their given pixels here
        return keep_lost(probabilities_to_labels(prob, self.size, label_map), self.video.lost.get(frame.index, ()))

    def write(self, frame: FrameInput, labels: np.ndarray | None) -> None:
        if labels is not None:
            write_mask(self.tmp / f"{self.video.frames[frame.index].name}.png", labels, self.palette)
            self.written += 1
            for sink in self.sinks:
                sink.add(frame.index, labels)
        if self.on_frame is not None:
            self.on_frame()

    def commit(self, stats: RunStats) -> None:
        for sink in self.sinks:
            sink.commit()
        self.partial.commit()
        stats.masks += self.written
        stats.videos += 1

    def abort(self) -> None:
        self.partial.discard()
        for sink in self.started:
            sink.abort()

    def as_final(self, exc: OSError) -> OSError:
        """A write error naming the mask's place, not the temporary's (e.g. a full disk)."""
        return self.partial.error(exc)


def frames_to_step(
    core: InferenceCore, video: EvalVideo, on_skip: Callable[[], None] | None = None
) -> Iterator[FrameInput]:
    """The frames of `video` that `core` must step, in order, each read when it is reached (I/O).

    Frames the core needs no step for (`InferenceCore.needs_frame`: neither written, annotated nor
    due as memory) are passed with `core.skip()` (then `on_skip()`); the video ends at its last
    required or annotated frame (`frames_to_process`). The same loop serves evaluation (`VideoRun`)
    and the memory-coverage recording.
    """
    last = frames_to_process(video) - 1
    for i in range(last + 1):
        frame = video.frames[i]
        if not core.needs_frame(frame.required or frame.mask_path is not None):
            core.skip()
            if on_skip is not None:
                on_skip()
            continue
        image = frame_input(core, video, i)  # I/O: not timed (an ensemble: every size it reads)
        mask, start = starting_annotation(core, video, i)
        yield FrameInput(i, image, mask, start, end=i == last, required=frame.required)


def starting_annotation(core: InferenceCore, video: EvalVideo, index: int) -> tuple:
    """(mask, labels) for `core.step` on frame `index`: the objects its annotation starts (the
    evaluation rule, `starting_objects`) in the form the core takes (`annotation_input`), or
    (None, None) when the frame starts none."""
    frame = video.frames[index]
    if frame.mask_path is None:
        return None, None
    mask, start = starting_objects(video.load_mask(index).to(core.device), frame.start_labels, core.labels)
    if not start:
        return None, None
    return annotation_input(core, video, index, mask, start), start


def run_video(
    core: InferenceCore,
    video: EvalVideo,
    out_dir: Path,
    stats: RunStats,
    sinks: Sequence[FrameSink] = (),
    on_frame: Callable[[], None] | None = None,
    output: OutputDir | None = None,
    bidirectional: bool = False,
) -> None:
    """Segment one video and write its required frames to `out_dir/<frame>.png` (and to `sinks`).

    output: the checked output folder `out_dir` is (in), which decides how an existing `out_dir`
    is replaced; None: replaced whole. Frames after the last required or annotated
    frame are not processed; frames that are neither required nor memory (see
    `InferenceCore.needs_frame`) are skipped. `on_frame` is called after every frame (processed or
    skipped), e.g. to advance a progress bar. bidirectional: objects first annotated on frame m are
    also propagated from m back to frame 0 (`backward_pass`; inference_core.bidirectional).
    """
    run = VideoRun(core, video, out_dir, sinks, on_frame, output)
    try:
        if bidirectional:  # before anything is written: the backward pass keeps its results in memory
            run.bidirectional = backward_pass(core, video, stats)
        run.start()
        while (frame := run.next_frame()) is not None:
            synchronize(core.device)
            t0 = time.perf_counter()
            prob = core.step(frame.image, frame.mask, labels=frame.start, end=frame.end)
            labels = run.labels(frame, prob)
            synchronize(core.device)
            stats.seconds += time.perf_counter() - t0
            stats.frames += 1  # once per frame, whatever the number of ensemble variants
            run.write(frame, labels)
        run.commit(stats)
    except BaseException as exc:
        run.abort()
        if isinstance(exc, OSError):
            raise run.as_final(exc) from None
        raise


def run_videos_batched(
    cores: Sequence[InferenceCore],
    videos: Sequence[EvalVideo],
    out_dir_of: Callable[[EvalVideo], Path],
    stats: RunStats,
    sinks: Sequence[FrameSink] = (),
    on_frame: Callable[[], None] | None = None,
    output: OutputDir | None = None,
    on_videos: Callable[[list[str]], None] | None = None,
) -> None:
    """Segment `videos` side by side, one per core (a slot), the cores stepped together (`step_cores`).

    Each slot takes the next video of the list when its video is done, so up to len(cores) videos
    run at once; every video is written as by `run_video` (its temporary folder renamed into place
    when it is complete, the sinks copied per slot: a sink holds one video at a time). Timing: a
    batched step's time (network work and label maps, as `run_video` times one frame) counts once
    for all the frames it processed, so FPS stays processed frames over processing time. On an error
    every unfinished video's folder and sink outputs are removed. `on_videos` is told the names of
    the videos running whenever they change (e.g. for a progress bar).
    """
    pending = iter(videos)
    slots: list[tuple[VideoRun, FrameInput] | None] = [None] * len(cores)
    slot_sinks = [[copy.copy(s) for s in sinks] for _ in cores]
    running: list[VideoRun] = []  # started and not committed: removed on an error
    current: list[VideoRun | None] = [None]  # the video being read or written (None: the batched step)

    def fill(k: int) -> None:
        """Give slot k the next video that has a frame to process (videos with none are committed at once)."""
        while slots[k] is None and (video := next(pending, None)) is not None:
            current[0] = None  # out_dir_of(video) is the last asked until the run exists
            run = VideoRun(cores[k], video, out_dir_of(video), slot_sinks[k], on_frame, output)
            running.append(run)
            current[0] = run
            run.start()
            frame = run.next_frame()
            if frame is None:
                run.commit(stats)
                running.remove(run)
            else:
                slots[k] = (run, frame)

    device = cores[0].device
    try:
        for k in range(len(cores)):
            fill(k)
        while active := [(k, *slot) for k, slot in enumerate(slots) if slot is not None]:
            if on_videos is not None:
                on_videos([run.video.name for _, run, _ in active])
            current[0] = None
            synchronize(device)
            t0 = time.perf_counter()
            probs = step_cores([BatchItem(run.core, f.image, f.mask, f.start, f.end) for _, run, f in active])
            labels = [run.labels(f, prob) for (_, run, f), prob in zip(active, probs)]
            synchronize(device)
            stats.seconds += time.perf_counter() - t0
            stats.frames += len(active)
            for (k, run, frame), frame_labels in zip(active, labels):
                current[0] = run
                run.write(frame, frame_labels)
                following = run.next_frame()
                slots[k] = None if following is None else (run, following)
                if following is None:
                    run.commit(stats)
                    running.remove(run)
                    fill(k)
    except BaseException as exc:
        if current[0] is not None:  # asked again last, so that a caller tracking the video it was last
            out_dir_of(current[0].video)  # given (sharding's failure line) names the one that failed
        for run in running:
            run.abort()
        if isinstance(exc, OSError):
            for run in running:
                exc = run.as_final(exc)
            raise exc from None
        raise


def backward_pass(core: InferenceCore, video: EvalVideo, stats: RunStats) -> Bidirectional:
    """The backward pass of a bidirectional run (inference_core.bidirectional): the frames from the last
    frame that starts an object back to frame 0, through `core` (reset before and after) with the
    annotations taken in that order (the evaluation rule, `starting_objects`); the results of the
    required frames are kept. A video decoded in order (`EvalVideo.sequential`) is read once, forward,
    and its frames up to that last frame are kept at the network size. Timed as the forward frames.
    """
    both = Bidirectional(first_frames(
        (i, starting_objects(video.load_mask(i), frame.start_labels, ())[1])
        for i, frame in enumerate(video.frames) if frame.mask_path is not None))
    if both.last == 0:
        return both
    core.reset()
    images = [frame_input(core, video, i) for i in range(both.last + 1)] if video.sequential else None

    def step(i: int) -> tuple[torch.Tensor, list[int]]:
        image = images[i] if images is not None else frame_input(core, video, i)
        mask, start = starting_annotation(core, video, i)
        synchronize(core.device)
        t0 = time.perf_counter()
        prob = core.step(image, mask, labels=start, end=i == 0)
        synchronize(core.device)
        stats.seconds += time.perf_counter() - t0
        stats.frames += 1
        return prob, core.labels

    both.run_backward(step, keep=lambda i: video.frames[i].required)
    core.reset()
    return both


class _CurrentStderr:
    """Writes to whatever sys.stderr is now: progressbar would otherwise keep the stream it saw at import."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()

    def fileno(self) -> int:
        return sys.stderr.fileno()


def run_dataset(
    core: InferenceCore,
    videos: Sequence[EvalVideo],
    out_dir_of: Callable[[EvalVideo], Path],
    quiet: bool = False,
    sinks: Sequence[FrameSink] = (),
    output: OutputDir | None = None,
    bidirectional: bool = False,
    video_batch: int = 1,
) -> RunStats:
    """Run every video with a progress bar over all frames; returns the totals for the timing lines.

    Every video is checked first (`check_videos`), so a bad one stops the run before any work; then the
    notes of the videos' masks (`EvalVideo.notes`) are printed, one `note:` line each.
    The bar shows the current video, the size of its memory (frames and MiB of keys and values)
    and the processing frame rate (I/O excluded, as the final FPS line).
    video_batch > 1: that many videos at once (`run_videos_batched`), `core` and copies of it
    (`fresh_core`: the same network and options); the same masks as one at a time.
    """
    check_videos(videos)
    for video in videos:  # what the user should know of their masks (colours read as ids, objects too small)
        for line in video.notes:
            print(line, file=sys.stderr)
    stats = RunStats()
    cores = [core] + [fresh_core(core) for _ in range(min(video_batch, len(videos)) - 1)]
    if quiet:
        if video_batch > 1:
            run_videos_batched(cores, videos, out_dir_of, stats, sinks, output=output)
            return stats
        for video in videos:
            run_video(core, video, out_dir_of(video), stats, sinks, output=output, bidirectional=bidirectional)
        return stats

    status = progressbar.FormatCustomText(
        "%(video)s | memory %(mem_frames)d frames, %(mem_mib).1f MiB | %(fps).2f fps",
        dict(video="", mem_frames=0, mem_mib=0.0, fps=0.0),
    )
    widgets = [progressbar.Percentage(), " ", progressbar.SimpleProgress(), " ", progressbar.Bar(), " ",
               status, " ", progressbar.ETA()]
    total = sum(frames_to_process(v) for v in videos)
    bar = progressbar.ProgressBar(max_value=max(total, 1), widgets=widgets, fd=_CurrentStderr())
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        status.update_mapping(mem_frames=sum(c.memory.num_frames for c in cores),
                              mem_mib=sum(c.memory.nbytes for c in cores) / 2**20,
                              fps=stats.fps if stats.seconds > 0 else 0.0)
        bar.update(min(done, total))

    try:
        if video_batch > 1:
            run_videos_batched(cores, videos, out_dir_of, stats, sinks, on_frame=advance, output=output,
                               on_videos=lambda names: status.update_mapping(video="+".join(names)))
            return stats
        for video in videos:
            status.update_mapping(video=video.name)
            run_video(core, video, out_dir_of(video), stats, sinks, on_frame=advance, output=output,
                      bidirectional=bidirectional)
    finally:
        bar.finish(dirty=True)
    return stats


def check_videos(videos: Sequence[EvalVideo]) -> None:
    """Read every video's annotations and check its network size, before any work.

    A mask without any object, a bad annotation, or frames whose shorter side is below
    MIN_SHORT_SIDE at the network size (native-size videos such as DAVIS) stop the run with a
    DataError naming the file, before the network is loaded or anything is written. `prepare`
    keeps what it read, so `run_video` does not read the annotations again.
    """
    for video in videos:
        video.prepare()
        h, w = video.network_size
        if min(h, w) < MIN_SHORT_SIDE:
            raise DataError(
                video.frames[0].image_path,
                f"video {video.name} is {w}x{h} at the network size, below its minimum shorter side of "
                f"{MIN_SHORT_SIDE} pixels ({MIN_FEATURE_CELLS} cells of its stride-{STRIDE} features)",
                f"upscale the frames (--size {MIN_SHORT_SIDE} or more where the script has it)",
            )
