"""Video files: decode frames one at a time, encode a mask overlay video (PyAV, FFmpeg's libraries).

Decoding is streaming: `VideoReader.frames()` yields one RGB frame at a time, so a long video is
never held in memory. Frames come in display orientation: a container's rotation (the display
matrix phones write, or an older `rotate` tag) is applied as players apply it, so masks, outputs and
overlays are in the orientation the user sees. Problems a user can fix (no such file, not a video, a
codec FFmpeg cannot decode, a truncated file, a rotation that is not a quarter turn) become a
`DataError` naming the file.
"""
from __future__ import annotations

import math
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
DISPLAY_MATRIX = "DISPLAYMATRIX"  # FFmpeg's side data holding the display transform (3x3 int32)
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
            self.stored_size = (int(codec.height), int(codec.width))  # H, W as encoded
            tag = next((str(v) for k, v in stream.metadata.items() if k.lower() == "rotate"), None)
            try:  # count by demuxing (no decoding): the container's own count is not always set
                self.num_frames = sum(1 for packet in container.demux(stream) if packet.size > 0)
            except _av().error.FFmpegError as exc:
                raise DataError(self.path, f"unreadable video ({_reason(exc)})", REENCODE_FIX) from None
        if self.stored_size[0] <= 0 or self.stored_size[1] <= 0 or self.num_frames == 0:
            raise DataError(self.path, "the video stream has no frames", REENCODE_FIX)
        matrix = self._display_matrix()
        if matrix is None and tag is not None:
            matrix = _tag_matrix(self.path, tag)
        self.orientation = Orientation.of(self.path, matrix)
        h, w = self.stored_size
        self.size = (w, h) if self.orientation.transpose else (h, w)  # H, W as displayed

    def _display_matrix(self) -> tuple[int, ...] | None:
        """The display matrix of the first frame (FFmpeg hands the container's to every decoded frame)."""
        av = _av()
        with self._open() as container:
            stream = self._stream(container)
            try:
                frame = next(container.decode(stream), None)
            except av.error.FFmpegError as exc:
                raise DataError(self.path, f"decoding failed at frame 0 ({_reason(exc)})", REENCODE_FIX) from None
        for data in frame.side_data if frame is not None else ():
            if DISPLAY_MATRIX in str(getattr(data, "type", "")):
                return tuple(int(v) for v in np.frombuffer(bytes(data), dtype=np.int32)[:9])
        return None

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
                    if rgb.shape[:2] != self.stored_size:
                        h, w = self.stored_size
                        raise DataError(
                            self.path, f"frame {n} is {rgb.shape[1]}x{rgb.shape[0]}, not {w}x{h}",
                            "videos whose size changes are not supported; " + REENCODE_FIX,
                        )
                    n += 1
                    yield self.orientation.apply(rgb)
            except av.error.FFmpegError as exc:
                raise DataError(self.path, f"decoding failed at frame {n} ({_reason(exc)})", REENCODE_FIX) from None


class Orientation:
    """How a stored frame is shown: transposed, then rows and/or columns reversed (the eight quarter
    turns and mirrorings of a display matrix). FFmpeg's matrix [a b u; c d v; x y w] maps a stored
    pixel (p, q) (x right, y down) to (a p + c q, b p + d q) on the screen, up to a shift."""

    def __init__(self, transpose: bool = False, flip_rows: bool = False, flip_cols: bool = False,
                 description: str = "") -> None:
        self.transpose, self.flip_rows, self.flip_cols = transpose, flip_rows, flip_cols
        self.description = description  # e.g. "rotated 90 degrees clockwise" (empty: as stored)

    @classmethod
    def of(cls, path: Path, matrix: Sequence[int] | None) -> Orientation:
        """The orientation of a display matrix (None: as stored); DataError for one that is no quarter turn."""
        if matrix is None:
            return cls()
        a, b, c, d = matrix[0], matrix[1], matrix[3], matrix[4]
        mirrored = a * d - b * c < 0
        angle = round(-math.degrees(math.atan2(b, a))) % 360  # counter-clockwise, as FFmpeg reads it
        straight = b == 0 and c == 0 and a != 0 and d != 0
        turned = a == 0 and d == 0 and b != 0 and c != 0
        if not (straight or turned):
            raise DataError(path, f"the video's display matrix turns it by {angle} degrees, not a quarter turn",
                            "re-encode it upright, e.g. `ffmpeg -i <video> -c:v libx264 out.mp4` (ffmpeg applies the "
                            "rotation)")
        if mirrored:
            description = "mirrored by its display matrix"
        elif angle:
            turn = f"{angle} degrees counter-clockwise" if angle == 90 else (
                "90 degrees clockwise" if angle == 270 else f"{angle} degrees")
            description = f"rotated {turn} for display"
        else:
            description = ""
        if a == 0:  # (p, q) -> (c q, b p): transposed
            return cls(True, b < 0, c < 0, description)
        return cls(False, d < 0, a < 0, description)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """A stored (H, W, 3) frame as displayed."""
        if not (self.transpose or self.flip_rows or self.flip_cols):
            return rgb
        if self.transpose:
            rgb = rgb.transpose(1, 0, 2)
        if self.flip_rows:
            rgb = rgb[::-1]
        if self.flip_cols:
            rgb = rgb[:, ::-1]
        return np.ascontiguousarray(rgb)


def _tag_matrix(path: Path, tag: str) -> tuple[int, ...]:
    """The display matrix of an older `rotate` tag (degrees clockwise, as FFmpeg up to 4.x wrote it)."""
    try:
        degrees = float(tag)
    except ValueError:
        raise DataError(path, f"the video's rotate tag {tag!r} is not a number of degrees", REENCODE_FIX) from None
    angle = math.radians(degrees)
    one = 1 << 16  # 16.16 fixed point
    cos, sin = round(math.cos(angle) * one), round(math.sin(angle) * one)
    return (cos, sin, 0, -sin, cos, 0, 0, 0, 1 << 30)


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
