"""The frames of one video, from a folder of images, a video file or frames in memory.

Three ways to read them: `forward` (every frame once, in order: a video file is decoded one frame at a
time, so a long video is never held in memory), `frame(i)` (one frame by index: a video file is decoded
on from the last frame read, and from its start again when `i` lies behind it) and `upto(n)` (frames
0..n with random access, for a pass that runs backward: a video file's frames are decoded once and
kept). Image files are read with `read_image` (RGB, PIL), video frames come as displayed (H, W, 3)
uint8 RGB arrays (`VideoReader`), frames in memory as they were given.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from util.io import DataError, read_image
from util.video import VideoReader


class FrameSource:
    """One video's frames: `images(files)`, `video_file(reader)` or `in_memory(frames)`; `length` is
    their number (None for a one-shot iterable)."""

    def __init__(self, files: list[Path] | None = None, video: VideoReader | None = None,
                 frames: Iterable[Any] | None = None) -> None:
        self.files, self.video, self.frames = files, video, frames
        self.length = (len(files) if files is not None else video.num_frames if video is not None
                       else len(frames) if isinstance(frames, Sequence) else None)
        self._decoder: Iterator[np.ndarray] | None = None  # a video file's decoder for `frame`
        self._next = 0  # the index of the frame it yields next
        self._current: tuple[int, np.ndarray] | None = None  # the last frame it decoded

    @classmethod
    def images(cls, files: list[Path]) -> FrameSource:
        return cls(files=files)

    @classmethod
    def video_file(cls, reader: VideoReader) -> FrameSource:
        return cls(video=reader)

    @classmethod
    def in_memory(cls, frames: Iterable[Any]) -> FrameSource:
        return cls(frames=frames)

    def forward(self) -> Iterator[Any]:
        """Every frame once, in order (a video file: decoded from its start)."""
        if self.files is not None:
            return (read_image(p) for p in self.files)
        if self.video is not None:
            return self.video.frames()
        return iter(self.frames)

    def frame(self, index: int) -> Any:
        """Frame `index`; a video file that ends before it (truncated or corrupt) raises DataError naming it."""
        if self.files is not None:
            return read_image(self.files[index])
        if self.video is None:
            return self.upto(index)[index]
        if self._current is not None and self._current[0] == index:
            return self._current[1]
        if self._decoder is None or index < self._next:
            self._decoder = self.video.frames()
            self._next = 0
        rgb = None
        while self._next <= index:
            rgb = next(self._decoder, None)
            if rgb is None:
                raise DataError(
                    self.video.path, f"the video ended at frame {self._next} of {self.video.num_frames}",
                    "the file is truncated or corrupt; re-encode it (ffmpeg -i in.mp4 -c:v libx264 out.mp4)",
                )
            self._next += 1
        self._current = (index, rgb)
        return rgb

    def upto(self, last: int) -> Sequence[Any]:
        """Frames 0..last with random access: image files read when asked, a video file's frames decoded
        once and kept, a one-shot iterable's frames kept (and still given by `forward`)."""
        if self.files is not None:
            return _LazyImages(self.files)
        if isinstance(self.frames, Sequence):
            return self.frames
        if self.video is not None:
            kept = [self.frame(i) for i in range(last + 1)]
            self._decoder, self._next = None, 0  # closes the file; `forward` decodes it anew
            return kept
        out = []
        for frame in self.forward():
            out.append(frame)
            if len(out) > last:
                break
        if isinstance(self.frames, Iterator):  # a one-shot iterator: keep what was read for `forward`
            self.frames = out + list(self.frames)
        return out


class _LazyImages(Sequence):
    """Image files as a sequence of frames, each read when it is asked for."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):  # type: ignore[override]
        return read_image(self.files[i])
