"""Video files: decode frames one at a time, encode a mask overlay video (PyAV, FFmpeg's libraries).

Decoding is streaming: `VideoReader.frames()` yields one RGB frame at a time, so a long video is
never held in memory. Problems a user can fix (no such file, not a video, a codec FFmpeg cannot
decode, a truncated file) become a `DataError` naming the file.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from util.atomic import atomic_path
from util.io import DataError, full_palette
from util.outputs import note_removed

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
DEFAULT_FPS = 24.0  # frame rate of overlays made from frame folders, which have none
OVERLAY_ALPHA = 0.5  # weight of the object colour over the frame in overlays
REENCODE_FIX = "re-encode it, e.g. `ffmpeg -i <video> -c:v libx264 -pix_fmt yuv420p out.mp4`, or extract its frames"
CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".webm": "webm"}


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover - av is in requirements.txt
        raise DataError("av", "PyAV is not installed", "pip install av (see requirements.txt)") from None
    return av


class VideoReader:
    """A video file's first video stream: size, frame rate, frame count and streaming decode."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise DataError(self.path, "is a folder, not a video file",
                            "for a folder of frames use eval_generic.py (JPEGImages/<video>/ + Annotations/<video>/)")
        if not self.path.is_file():
            raise DataError(self.path, "no such video file", "check the path given to --video")
        with self._open() as container:
            stream = self._stream(container)
            self.fps = float(stream.average_rate) if stream.average_rate else DEFAULT_FPS
            codec = stream.codec_context
            self.size = (int(codec.height), int(codec.width))  # H, W
            try:  # count by demuxing (no decoding): the container's own count is not always set
                self.num_frames = sum(1 for packet in container.demux(stream) if packet.size > 0)
            except _av().error.FFmpegError as exc:
                raise DataError(self.path, f"unreadable video ({_reason(exc)})", REENCODE_FIX) from None
        if self.size[0] <= 0 or self.size[1] <= 0 or self.num_frames == 0:
            raise DataError(self.path, "the video stream has no frames", REENCODE_FIX)

    def _open(self):
        av = _av()
        try:
            return av.open(str(self.path))
        except av.error.FFmpegError as exc:
            raise DataError(self.path, f"not a readable video file ({_reason(exc)})", REENCODE_FIX) from None

    def _stream(self, container):
        if not container.streams.video:
            container.close()
            raise DataError(self.path, "the file has no video stream", "pass a video file (e.g. .mp4) to --video")
        stream = container.streams.video[0]
        if stream.codec_context is None or not getattr(stream.codec_context, "name", None):
            container.close()
            raise DataError(self.path, "no decoder for the video's codec", REENCODE_FIX)
        return stream

    def frames(self) -> Iterator[np.ndarray]:
        """Yield every frame as an (H, W, 3) uint8 RGB array, in display order."""
        av = _av()
        with self._open() as container:
            stream = self._stream(container)
            stream.thread_type = "AUTO"
            n = 0
            try:
                for frame in container.decode(stream):
                    rgb = frame.to_ndarray(format="rgb24")
                    if rgb.shape[:2] != self.size:
                        raise DataError(
                            self.path, f"frame {n} is {rgb.shape[1]}x{rgb.shape[0]}, not {self.size[1]}x{self.size[0]}",
                            "videos whose size changes are not supported; " + REENCODE_FIX,
                        )
                    n += 1
                    yield rgb
            except av.error.FFmpegError as exc:
                raise DataError(self.path, f"decoding failed at frame {n} ({_reason(exc)})", REENCODE_FIX) from None


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.split(":")[0].strip() if ":" in text and len(text) > 80 else text


def overlay(rgb: np.ndarray, labels: np.ndarray, palette: Sequence[int], alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Blend the palette colour of each labelled pixel into an (H, W, 3) uint8 frame."""
    colours = np.asarray(full_palette(palette), dtype=np.float32).reshape(-1, 3)
    out = rgb.astype(np.float32)
    fg = labels > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colours[labels[fg]]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class VideoWriter:
    """Encodes RGB frames into a video file, atomically: the file appears complete on `close()`.

    H.264 (libx264) when FFmpeg has it, else MPEG-4 part 2; frames are cropped to even sizes as
    4:2:0 video requires. `abort()` (or an exception inside a `with` block) leaves no file.
    """

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        av = _av()
        self.path = Path(path)
        fmt = CONTAINER_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise DataError(self.path, "unknown video container",
                            f"name the overlay with one of {sorted(CONTAINER_FORMATS)}")
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._container = av.open(str(self._tmp), mode="w", format=fmt)
        codec = "libx264" if "libx264" in av.codecs_available and fmt != "webm" else "mpeg4"
        if fmt == "webm":
            codec = "libvpx-vp9" if "libvpx-vp9" in av.codecs_available else "libvpx"
        self._stream = self._container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        self._stream.pix_fmt = "yuv420p"
        self._size: tuple[int, int] | None = None

    def write(self, rgb: np.ndarray) -> None:
        av = _av()
        h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
        if self._size is None:
            self._size = (h, w)
            self._stream.height, self._stream.width = h, w
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._atomic.__exit__(None, None, None)

    def abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - the file is discarded anyway
            pass
        err = RuntimeError("overlay aborted")
        self._atomic.__exit__(RuntimeError, err, None)  # removes the temporary file
        note_removed(self._tmp)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def is_video_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS
