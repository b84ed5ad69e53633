"""The one evaluation loop: frames of a video -> a `Stream` -> masks on disk, with timing.

An evaluation command builds a dataset of `EvalVideo`s and a `Predictor`, and calls `run_dataset`. Per
video, frames are read lazily at their original size and prepared by the stream (resized for the
network, or for every variant of an ensemble; an annotation only starts objects), stepped, and each
required mask, resized back to the original size, is written as soon as it is produced, into a hidden
temporary folder that is renamed to the video's name only when the video is complete; on any error the
temporary folder is removed, so a video folder that exists is always complete.

Timing follows the paper ("FPS ... measured with IO time excluded", STCN README): the clock covers
the network work of a frame (`Stream.advance`) and turning its probabilities into the output label map
(`Stream.finish`), not reading the image, preparing it (`Stream.prepare`) or writing the PNG; the device
is synchronised before each clock reading. FPS is the total number of processed frames over the total
time, whatever the number of objects.

Several videos at once (`run_videos_batched`): N videos side by side, one stream each, their current
frames stepped in one batch (`advance_together`); each video is written as above, and a batched step's
time counts once for all the frames it processed.

The loop takes a predictor and videos, never flags.
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
from evaluation.sinks import FrameSink
from inference_core.bidirectional import Bidirectional, first_frames
from inference_core.objects import starting_objects  # the evaluation rule: later annotations only start objects
from inference_core.predictor import Predictor, StepInput, Stream, advance_together
from util.device import synchronize
from util.frames import MIN_FEATURE_CELLS, MIN_SHORT_SIDE, resize_labels  # MIN_SHORT_SIDE: the network's smallest
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
    """The next frame of a video to give to its stream: read and prepared (`Stream.prepare`, I/O)."""

    index: int
    prepared: StepInput  # the frame at the network size on the stream's device, and the objects it starts
    required: bool  # its label map is written


class VideoRun:
    """One video being segmented by a stream: its frames in order, its hidden temporary folder and its sinks.

    Made with a stream (reset here to this video) and a video (its annotations read here). `start`
    begins the sinks; `next_frame` passes over the frames that need no processing (`Stream.needs_frame`)
    and returns the next one to process, or None after the last required or annotated frame; `labels`
    finishes that frame's step and gives its label map at the original size (timed as processing);
    `write` writes it to the folder and the sinks (I/O); `commit` renames the folder into place;
    `abort` removes what was written. `run_video` drives one, `run_videos_batched` several.
    """

    def __init__(
        self,
        stream: Stream,
        video: EvalVideo,
        out_dir: Path,
        sinks: Sequence[FrameSink] = (),
        on_frame: Callable[[], None] | None = None,
        output: OutputDir | None = None,
    ) -> None:
        stream.reset()
        video.prepare()  # reads every annotation: a bad one stops here, before anything is written
        if stream.predictor.network_size(*video.size) != video.network_size:
            raise ValueError(f"{video.name}: the dataset's network size {video.network_size} is not the predictor's")
        self.stream, self.video, self.sinks, self.on_frame = stream, video, sinks, on_frame
        self.palette = video.palette
        self.out_dir = Path(out_dir)
        self.partial = (output if output is not None else OutputDir.owned(self.out_dir)).partial(self.out_dir)
        self.tmp = self.partial.tmp
        self.started: list[FrameSink] = []
        self._frames = frames_to_step(stream, video, on_skip=on_frame)
        self.backward: Bidirectional | None = None  # a bidirectional run's backward pass (`backward_pass`)
        self.written = 0  # masks written

    def start(self) -> None:
        for sink in self.sinks:
            sink.begin(self.video)
            self.started.append(sink)

    def next_frame(self) -> FrameInput | None:
        """The next frame to process (image and annotation read here, I/O), or None when the video is done."""
        return next(self._frames, None)

    def labels(self, frame: FrameInput, prob: torch.Tensor) -> np.ndarray | None:
        """`Stream.finish` of a stepped frame: its label map at the video's size (objects annotated after it:
        from the backward pass), or None when it is not written."""
        return self.stream.finish(frame.prepared, prob, labels=frame.required, backward=self.backward)

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


def frames_to_step(stream: Stream, video: EvalVideo, on_skip: Callable[[], None] | None = None
                   ) -> Iterator[FrameInput]:
    """The frames of `video` that `stream` must step, in order, each read and prepared when it is reached (I/O).

    Frames the stream needs no step for (`Stream.needs_frame`: neither written, annotated nor due as
    memory) are passed with `stream.skip()` (then `on_skip()`); the video ends at its last required or
    annotated frame (`frames_to_process`). The stream takes the original frame and annotation; an
    annotation only starts objects (the evaluation rule: `Predictor.new_stream(start_only=True)`).
    """
    last = frames_to_process(video) - 1
    for i in range(last + 1):
        frame = video.frames[i]
        if not stream.needs_frame(frame.required or frame.mask_path is not None):
            stream.skip()
            if on_skip is not None:
                on_skip()
            continue
        prepared = stream.prepare(video.original_rgb(i), video.annotation(i), frame.start_labels, end=i == last)
        yield FrameInput(i, prepared, frame.required)


def run_video(
    stream: Stream,
    video: EvalVideo,
    out_dir: Path,
    stats: RunStats,
    sinks: Sequence[FrameSink] = (),
    on_frame: Callable[[], None] | None = None,
    output: OutputDir | None = None,
    bidirectional: bool = False,
) -> None:
    """Segment one video with `stream` and write its required frames to `out_dir/<frame>.png` (and to `sinks`).

    output: the checked output folder `out_dir` is (in), which decides how an existing `out_dir`
    is replaced; None: replaced whole. Frames after the last required or annotated
    frame are not processed; frames that are neither required nor memory (see
    `Stream.needs_frame`) are skipped. `on_frame` is called after every frame (processed or
    skipped), e.g. to advance a progress bar. bidirectional: objects first annotated on frame m are
    also propagated from m back to frame 0 (`backward_pass`; inference_core.bidirectional).
    """
    run = VideoRun(stream, video, out_dir, sinks, on_frame, output)
    device = stream.core.device
    try:
        if bidirectional:  # before anything is written: the backward pass keeps its results in memory
            run.backward = backward_pass(stream, video, stats)
        run.start()
        while (frame := run.next_frame()) is not None:
            synchronize(device)
            t0 = time.perf_counter()
            labels = run.labels(frame, stream.advance(frame.prepared))
            synchronize(device)
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
    streams: Sequence[Stream],
    videos: Sequence[EvalVideo],
    out_dir_of: Callable[[EvalVideo], Path],
    stats: RunStats,
    sinks: Sequence[FrameSink] = (),
    on_frame: Callable[[], None] | None = None,
    output: OutputDir | None = None,
    on_videos: Callable[[list[str]], None] | None = None,
) -> None:
    """Segment `videos` side by side, one per stream (a slot), stepped together (`advance_together`).

    Each slot takes the next video of the list when its video is done, so up to len(streams) videos
    run at once; every video is written as by `run_video` (its temporary folder renamed into place
    when it is complete, the sinks copied per slot: a sink holds one video at a time). Timing: a
    batched step's time (network work and label maps, as `run_video` times one frame) counts once
    for all the frames it processed, so FPS stays processed frames over processing time. On an error
    every unfinished video's folder and sink outputs are removed. `on_videos` is told the names of
    the videos running whenever they change (e.g. for a progress bar).
    """
    pending = iter(videos)
    slots: list[tuple[VideoRun, FrameInput] | None] = [None] * len(streams)
    slot_sinks = [[copy.copy(s) for s in sinks] for _ in streams]
    running: list[VideoRun] = []  # started and not committed: removed on an error
    current: list[VideoRun | None] = [None]  # the video being read or written (None: the batched step)

    def fill(k: int) -> None:
        """Give slot k the next video that has a frame to process (videos with none are committed at once)."""
        while slots[k] is None and (video := next(pending, None)) is not None:
            current[0] = None  # out_dir_of(video) is the last asked until the run exists
            run = VideoRun(streams[k], video, out_dir_of(video), slot_sinks[k], on_frame, output)
            running.append(run)
            current[0] = run
            run.start()
            frame = run.next_frame()
            if frame is None:
                run.commit(stats)
                running.remove(run)
            else:
                slots[k] = (run, frame)

    device = streams[0].core.device
    try:
        for k in range(len(streams)):
            fill(k)
        while active := [(k, *slot) for k, slot in enumerate(slots) if slot is not None]:
            if on_videos is not None:
                on_videos([run.video.name for _, run, _ in active])
            current[0] = None
            synchronize(device)
            t0 = time.perf_counter()
            probs = advance_together([run.stream for _, run, _ in active], [f.prepared for _, _, f in active])
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


def backward_pass(stream: Stream, video: EvalVideo, stats: RunStats) -> Bidirectional:
    """The backward pass of a bidirectional run (inference_core.bidirectional): the frames from the last
    frame that starts an object back to frame 0, through `stream` (reset before and after) with the
    annotations taken in that order (the evaluation rule); the results of the required frames are
    kept. A video decoded in order (`EvalVideo.sequential`) is read once, forward, and its frames up to
    that last frame are kept. Timed as the forward frames.
    """
    both = Bidirectional(first_frames(
        (i, starting_objects(resize_labels(torch.from_numpy(video.annotation(i).astype(np.int64)),
                                           video.network_size), frame.start_labels, ())[1])
        for i, frame in enumerate(video.frames) if frame.mask_path is not None))
    if both.last == 0:
        return both
    stream.reset()
    images = [video.original_rgb(i) for i in range(both.last + 1)] if video.sequential else None

    def step(i: int) -> tuple[torch.Tensor, list[int]]:
        image = images[i] if images is not None else video.original_rgb(i)
        prepared = stream.prepare(image, video.annotation(i), video.frames[i].start_labels, end=i == 0)
        synchronize(stream.core.device)
        t0 = time.perf_counter()
        stream.finish(prepared, stream.advance(prepared), labels=False)
        synchronize(stream.core.device)
        stats.seconds += time.perf_counter() - t0
        stats.frames += 1
        return stream.network_probabilities, stream.objects

    both.run_backward(step, keep=lambda i: video.frames[i].required)
    stream.reset()
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
    predictor: Predictor,
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
    video_batch > 1: that many videos at once (`run_videos_batched`), one stream each; the same masks as
    one at a time. Every video is segmented by a stream of `predictor` under the evaluation rule
    (`Predictor.new_stream(start_only=True)`: a later annotation only starts objects).
    """
    check_videos(videos)
    for video in videos:  # what the user should know of their masks (colours read as ids, objects too small)
        for line in video.notes:
            print(line, file=sys.stderr)
    stats = RunStats()
    streams = [predictor.new_stream(start_only=True) for _ in range(max(1, min(video_batch, len(videos))))]
    if quiet:
        if video_batch > 1:
            run_videos_batched(streams, videos, out_dir_of, stats, sinks, output=output)
            return stats
        for video in videos:
            run_video(streams[0], video, out_dir_of(video), stats, sinks, output=output, bidirectional=bidirectional)
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
        status.update_mapping(mem_frames=sum(s.core.memory.num_frames for s in streams),
                              mem_mib=sum(s.core.memory.nbytes for s in streams) / 2**20,
                              fps=stats.fps if stats.seconds > 0 else 0.0)
        bar.update(min(done, total))

    try:
        if video_batch > 1:
            run_videos_batched(streams, videos, out_dir_of, stats, sinks, on_frame=advance, output=output,
                               on_videos=lambda names: status.update_mapping(video="+".join(names)))
            return stats
        for video in videos:
            status.update_mapping(video=video.name)
            run_video(streams[0], video, out_dir_of(video), stats, sinks, on_frame=advance, output=output,
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
