"""Scribbles in the DAVIS-interactive format: reading, writing, rasterising, and the S2M input maps.

A scribble file (the DAVIS 2017 scribbles, `<davis>/trainval/Scribbles/<video>/001.json`, and the
benchmark robot's answers) is JSON of the form

    {"scribbles": [[stroke, ...] for every frame of the video], "sequence": "<video>",
     "annotated_frame": t}                        # the last key is optional

where a stroke is `{"path": [[x, y], ...], "object_id": k, "start_time": ..., "end_time": ...}`, x and y
are normalised to 0..1 (x across the width), `object_id` 0 marks a background stroke and the times are
whatever the drawing tool recorded (milliseconds for the human scribbles, seconds since the epoch for
the robot's); they are kept as read.

Rasterising follows the DAVIS-interactive benchmark (`scribbles2mask` with Bresenham lines): each
point is scaled by (W - 1, H - 1) and truncated to whole pixels, consecutive points are joined by the
benchmark's Bresenham variant (`line_pixels`), and the strokes of a frame are drawn in file order, a
later stroke overwriting an earlier one. Pixels under no stroke get -1. The scribble-to-mask network
(MiVOS, "Modular Interaction and Propagation Network for Interactive VOS", CVPR 2021, sec. 3.1) sees
per object a positive map (its own strokes) and a negative map (the strokes of every other label,
background included), each grown by a 3x3 square (`s2m_maps`).

numpy only; every problem with a file is one `DataError` naming it.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from util.atomic import atomic_write_text
from util.io import DataError

NO_STROKE = -1  # the rasterised map's value where no stroke passes
BACKGROUND_ID = 0  # object_id of a background stroke
FIX = "use a DAVIS-interactive scribble file ({\"scribbles\": [[{\"path\": [[x, y], ...], \"object_id\": k, ...}]]})"


@dataclass(frozen=True)
class Stroke:
    """One stroke: its path (points (x, y) normalised to 0..1), the label it marks (0 = background)
    and the times the drawing tool recorded (kept as read; None when absent)."""

    path: tuple[tuple[float, float], ...]
    object_id: int
    start_time: float | int | None = None
    end_time: float | int | None = None

    def as_json(self) -> dict:
        return {"path": [list(p) for p in self.path], "object_id": self.object_id,
                "start_time": self.start_time, "end_time": self.end_time}


@dataclass
class Scribbles:
    """The strokes of one video: `frames[t]` lists frame t's strokes in drawing order."""

    frames: list[list[Stroke]]
    sequence: str = ""
    annotated_frame: int | None = None
    extra: dict = field(default_factory=dict)  # other top-level keys of the file, written back unchanged

    @classmethod
    def empty(cls, num_frames: int, sequence: str = "") -> Scribbles:
        return cls([[] for _ in range(num_frames)], sequence)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def annotated_frames(self) -> list[int]:
        """The frames holding at least one stroke, in order."""
        return [t for t, strokes in enumerate(self.frames) if strokes]

    def object_ids(self) -> set[int]:
        return {s.object_id for strokes in self.frames for s in strokes}

    def is_empty(self) -> bool:
        return not any(self.frames)

    def fused(self, other: Scribbles) -> Scribbles:
        """These strokes followed, frame by frame, by `other`'s (the benchmark's accumulated scribbles)."""
        if other.num_frames != self.num_frames:
            raise ValueError(f"cannot fuse scribbles of {self.num_frames} and {other.num_frames} frames")
        return Scribbles([a + b for a, b in zip(self.frames, other.frames)], self.sequence or other.sequence,
                         other.annotated_frame if other.annotated_frame is not None else self.annotated_frame,
                         dict(self.extra))

    def as_json(self) -> dict:
        data = {"scribbles": [[s.as_json() for s in strokes] for strokes in self.frames], "sequence": self.sequence}
        if self.annotated_frame is not None:
            data["annotated_frame"] = self.annotated_frame
        data.update(self.extra)
        return data


# ------------------------------------------------------------------------------------- files
def read_scribbles(path: str | os.PathLike, *, num_frames: int | None = None,
                   num_objects: int | None = None) -> Scribbles:
    """The scribble file at `path`. With `num_frames`, a stroke on a frame the video does not have is
    refused and the frame list is made exactly that long; with `num_objects`, an object_id above it is
    refused (0 is the background). A file that does not parse, has coordinates outside 0..1 or any other
    malformed part raises one DataError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "no such scribble file",
                        "check the path (the DAVIS scribbles: download_datasets.py)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"unreadable scribble file ({type(exc).__name__})", "replace this file") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DataError(path, f"not JSON ({exc})", FIX) from None
    return scribbles_from_json(data, path, num_frames=num_frames, num_objects=num_objects)


def scribbles_from_json(data: object, where: str | os.PathLike, *, num_frames: int | None = None,
                        num_objects: int | None = None) -> Scribbles:
    """Check and convert parsed scribble JSON (see `read_scribbles`); errors name `where`."""
    if not isinstance(data, dict) or not isinstance(data.get("scribbles"), list):
        raise DataError(where, "no \"scribbles\" list of frames", FIX)
    sequence = data.get("sequence", "")
    if not isinstance(sequence, str):
        raise DataError(where, "\"sequence\" is not a name", FIX)
    frames = []
    for t, strokes in enumerate(data["scribbles"]):
        if not isinstance(strokes, list):
            raise DataError(where, f"frame {t}: not a list of strokes", FIX)
        frames.append([_stroke(s, where, t, i, num_objects) for i, s in enumerate(strokes)])
    limit = len(frames) if num_frames is None else num_frames
    beyond = [t for t in range(limit, len(frames)) if frames[t]]
    if beyond:
        raise DataError(where, f"names frame {beyond[0]}, the video has {limit} frames (0..{limit - 1})",
                        "use the scribbles of this video")
    annotated = data.get("annotated_frame")
    if annotated is not None and not (_is_int(annotated) and 0 <= annotated < limit):
        raise DataError(where, f"\"annotated_frame\" {annotated!r} is not a frame of the video (0..{limit - 1})",
                        "use the scribbles of this video")
    frames = frames[:limit] + [[] for _ in range(limit - len(frames))]
    extra = {k: v for k, v in data.items() if k not in ("scribbles", "sequence", "annotated_frame")}
    return Scribbles(frames, sequence, annotated, extra)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _stroke(s: object, where, t: int, i: int, num_objects: int | None) -> Stroke:
    at = f"frame {t}, stroke {i}"
    if not isinstance(s, dict) or "path" not in s or "object_id" not in s:
        raise DataError(where, f"{at}: not a stroke with \"path\" and \"object_id\"", FIX)
    obj = s["object_id"]
    if not _is_int(obj) or obj < 0:
        raise DataError(where, f"{at}: object_id {obj!r} is not a label (0 = background, 1.. = objects)", FIX)
    if num_objects is not None and obj > num_objects:
        raise DataError(where, f"{at}: names object {obj}, the video has {num_objects} object(s)",
                        "use the scribbles of this video")
    path = s["path"]
    if not isinstance(path, list) or not path:
        raise DataError(where, f"{at}: \"path\" is not a non-empty list of [x, y] points", FIX)
    points = []
    for p in path:
        if not (isinstance(p, list) and len(p) == 2 and all(_is_number(c) for c in p)):
            raise DataError(where, f"{at}: point {p!r} is not [x, y]", FIX)
        if not all(math.isfinite(c) and 0 <= c <= 1 for c in p):
            raise DataError(where, f"{at}: point {p!r} lies outside 0..1 (coordinates are normalised)",
                            "divide the pixel coordinates by the frame's width and height")
        points.append((p[0], p[1]))
    times = [s.get("start_time"), s.get("end_time")]
    if any(v is not None and not _is_number(v) for v in times):
        raise DataError(where, f"{at}: start_time/end_time are not numbers", FIX)
    return Stroke(tuple(points), obj, *times)


def write_scribbles(scribbles: Scribbles, path: str | os.PathLike) -> Path:
    """Write `scribbles` as DAVIS-interactive JSON at `path`, atomically."""
    return atomic_write_text(path, json.dumps(scribbles.as_json()))


# ------------------------------------------------------------------------------------- raster
def pixel_path(path: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """A normalised path as whole pixels (N, 2) of (x, y): scaled by (W - 1, H - 1), truncated."""
    points = np.asarray(path, dtype=np.float64).reshape(-1, 2) * np.asarray([width - 1, height - 1], dtype=np.float64)
    return points.astype(np.int64)


def line_pixels(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    """The pixels from (x0, y0) to (x1, y1), both ends included, as the benchmark draws them: one pixel
    per step along the longer axis (the y axis when both are equal); the shorter coordinate starts with
    the error term 2*minor - major, advances after a pixel whose error is >= 0, which then loses
    2*major, and every step adds 2*minor."""
    dx, dy = x1 - x0, y1 - y0
    sx, sy = (1 if dx > 0 else -1), (1 if dy > 0 else -1)
    major, minor = abs(dx), abs(dy)
    x_major = major > minor
    if not x_major:
        major, minor = minor, major
    pixels, error, m = [], 2 * minor - major, 0
    for k in range(major + 1):
        pixels.append((x0 + k * sx, y0 + m * sy) if x_major else (x0 + m * sx, y0 + k * sy))
        if error >= 0:
            m += 1
            error -= 2 * major
        error += 2 * minor
    return pixels


def stroke_pixels(path: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """All pixels (N, 2) of (x, y) of one stroke: its points joined by `line_pixels` (a one-point stroke
    is that pixel)."""
    points = pixel_path(path, height, width)
    if len(points) < 2:
        return points
    pixels = []
    for (x0, y0), (x1, y1) in zip(points[:-1].tolist(), points[1:].tolist()):
        pixels += line_pixels(x0, y0, x1, y1)
    return np.asarray(pixels, dtype=np.int64)


def rasterise(scribbles: Scribbles | Iterable[Stroke], frame: int | None, height: int, width: int,
              default: int = NO_STROKE) -> np.ndarray:
    """(H, W) int64 map of frame `frame`'s strokes: each pixel under a stroke holds that stroke's
    object_id (0 = background stroke; a later stroke wins), `default` (-1) elsewhere. `scribbles` may
    also be a list of strokes (then `frame` is ignored)."""
    if height < 1 or width < 1:
        raise ValueError(f"invalid raster size {height} x {width}")
    strokes = scribbles.frames[frame] if isinstance(scribbles, Scribbles) else scribbles
    out = np.full((height, width), default, dtype=np.int64)
    for stroke in strokes:
        pixels = stroke_pixels(stroke.path, height, width)
        out[pixels[:, 1], pixels[:, 0]] = stroke.object_id
    return out


def dilate3x3(mask: np.ndarray) -> np.ndarray:
    """A boolean mask grown by a 3x3 square (cv2.dilate with np.ones((3, 3)))."""
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def s2m_maps(stroke_map: np.ndarray, obj: int) -> tuple[np.ndarray, np.ndarray]:
    """The scribble-to-mask network's two scribble channels for object `obj` from a `rasterise`d map:
    positive = its strokes, negative = the strokes of every other label (background strokes included;
    pixels under no stroke are neither), each grown by 3x3. float32 0/1 maps."""
    stroke_map = np.asarray(stroke_map)
    pos = dilate3x3(stroke_map == obj)
    neg = dilate3x3((stroke_map != obj) & (stroke_map != NO_STROKE))
    return pos.astype(np.float32), neg.astype(np.float32)


def s2m_inputs(stroke_map: np.ndarray, objects: Iterable[int]) -> np.ndarray:
    """`s2m_maps` of every object of `objects`, in that order: K x 2 x H x W (positive, negative)."""
    return np.stack([np.stack(s2m_maps(stroke_map, obj)) for obj in objects])


# ------------------------------------------------------------------------------------- making
def click_stroke(x: float, y: float, object_id: int, *, height: int | None = None, width: int | None = None,
                 length_px: int = 0) -> Stroke:
    """A click at the normalised point (x, y) as a stroke for `object_id` (0 = background): a single
    point (one pixel, 3x3 after `s2m_maps`), or with `length_px` > 0 and the frame size a horizontal
    stroke that long centred on the click, kept inside the frame."""
    if not (0 <= x <= 1 and 0 <= y <= 1):
        raise ValueError(f"click ({x}, {y}) outside 0..1")
    if length_px <= 0:
        return Stroke(((float(x), float(y)),), int(object_id))
    if not height or not width or width < 2:
        raise ValueError("a click stroke longer than one pixel needs the frame's height and width")
    half = length_px / 2 / (width - 1)
    return Stroke(((max(0.0, x - half), float(y)), (min(1.0, x + half), float(y))), int(object_id))


def background_stroke(path: Sequence[Sequence[float]]) -> Stroke:
    """A background stroke (object_id 0) along the normalised `path`."""
    return Stroke(tuple((float(px), float(py)) for px, py in path), BACKGROUND_ID)


def scribbles_on_frame(strokes: Sequence[Stroke], frame: int, num_frames: int, sequence: str = "") -> Scribbles:
    """A `Scribbles` of `num_frames` frames with `strokes` on `frame` (marked as the annotated frame)."""
    if not 0 <= frame < num_frames:
        raise ValueError(f"frame {frame} outside 0..{num_frames - 1}")
    out = Scribbles.empty(num_frames, sequence)
    out.frames[frame] = list(strokes)
    out.annotated_frame = frame
    return out
