"""Extra outputs of a segmented video, written frame by frame beside the palette masks.

A sink sees each written frame's label map as soon as it is produced (`add`), and makes its result
visible only when the whole video is done (`commit`); on an error `abort` removes what it wrote,
so an output that exists is complete. Where a finished output may go, and what it may replace,
is the output contract of `util.outputs` (checked before any work).

    BinaryMaskSink   <root>/<video>/<label>/<frame>.png: 0/255 greyscale, one folder per object
    OverlaySink      <root>/<video>.mp4 (or one given file): the frames with the masks blended in
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from evaluation.datasets import EvalVideo
from util.io import write_binary_mask
from util.outputs import OutputDir, Partial
from util.video import DEFAULT_FPS, VideoWriter, overlay


class FrameSink(Protocol):
    def begin(self, video: EvalVideo) -> None: ...
    def add(self, index: int, labels: np.ndarray) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class BinaryMaskSink:
    """One 0/255 PNG per object and frame: `<dir_of(video)>/<label>/<frame>.png`."""

    def __init__(self, dir_of: Callable[[EvalVideo], Path], output: OutputDir | None = None) -> None:
        self.dir_of = dir_of
        self.output = output  # the checked --binary_masks folder: how an existing result is replaced
        self._video: EvalVideo | None = None
        self._partial: Partial | None = None

    def begin(self, video: EvalVideo) -> None:
        video.prepare()
        final = Path(self.dir_of(video))
        self._video = video
        self._partial = (self.output if self.output is not None else OutputDir.owned(final)).partial(final)
        for label in video.object_labels:
            (self._partial.tmp / str(label)).mkdir()

    def add(self, index: int, labels: np.ndarray) -> None:
        assert self._video is not None and self._partial is not None
        name = self._video.frames[index].name
        for label in self._video.object_labels:
            try:
                write_binary_mask(self._partial.tmp / str(label) / f"{name}.png", labels, label)
            except OSError as exc:  # name the file's final place
                raise self._partial.error(exc) from None

    def commit(self) -> None:
        assert self._partial is not None
        self._partial.commit()
        self._partial = None

    def abort(self) -> None:
        if self._partial is not None:
            self._partial.discard()
            self._partial = None


class OverlaySink:
    """A video of the frames with each object's palette colour blended in (`path_of(video)`)."""

    def __init__(self, path_of: Callable[[EvalVideo], Path], fps: float | None = None) -> None:
        self.path_of = path_of
        self.fps = fps  # None: the video file's own rate, else DEFAULT_FPS
        self._video: EvalVideo | None = None
        self._writer: VideoWriter | None = None

    def begin(self, video: EvalVideo) -> None:
        fps = self.fps or getattr(video, "fps", None) or DEFAULT_FPS
        self._video = video
        self._writer = VideoWriter(Path(self.path_of(video)), fps=fps)

    def add(self, index: int, labels: np.ndarray) -> None:
        assert self._video is not None and self._writer is not None
        self._writer.write(overlay(self._video.original_rgb(index), labels, self._video.palette))

    def commit(self) -> None:
        assert self._writer is not None
        self._writer.close()
        self._writer = None

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
