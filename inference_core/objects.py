"""The one object registry of a video: the caller's object ids <-> the core's internal indices.

The caller names objects by any positive integers (palette indices of YouTube-VOS, 3 and 200, ...);
the core numbers them 0, 1, ... in order of appearance, which is the order of the probability
channels (channel i + 1 is internal object i, channel 0 the background) and of the memory bank's
value columns. Removing an object shifts the later indices down by one, in the registry, the
probabilities and the memory bank alike.

Objects lost at the network size (`lost_objects`): a given mask is resized to the network size by
nearest neighbour, which samples one pixel in (original / network size) per side; an object smaller
than that spacing (1-2 pixels of a 1080p mask at 480p) may have no sampled pixel, so the network never
sees it and cannot follow it. One `note:` line then says so (`lost_objects_note`) and its given pixels
are kept in the output of the frame where it was given (`keep_lost`); the other objects' results are
untouched.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch


class ObjectRegistry:
    """Object ids in order of appearance; `index(id)` is the internal index (probability channel - 1)."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, obj_id: object) -> bool:
        return obj_id in self.ids

    def index(self, obj_id: int) -> int:
        return self.ids.index(int(obj_id))

    def add(self, obj_ids: Iterable[int]) -> list[int]:
        """Register new ids (each positive, none tracked yet); returns their internal indices."""
        start = len(self.ids)
        for v in obj_ids:
            v = int(v)
            if v <= 0:
                raise ValueError(f"object labels must be positive, got {v}")
            if v in self.ids:
                raise ValueError(f"object {v} is tracked already")
            self.ids.append(v)
        return list(range(start, len(self.ids)))

    def remove(self, obj_id: int) -> int:
        """Forget `obj_id`; returns the internal index it had (later objects move down by one)."""
        index = self.index(obj_id)
        del self.ids[index]
        return index

    def split(self, present: Iterable[int]) -> tuple[list[int], list[int]]:
        """(tracked, new): the ids of `present` that are tracked already and those that are not."""
        present = [int(v) for v in present]
        return [v for v in present if v in self.ids], [v for v in present if v not in self.ids]

    def label_map(self) -> np.ndarray:
        """Array mapping output channel (0 = background, i = internal object i - 1) to the caller's id."""
        return np.array([0, *self.ids], dtype=np.int64)


def present_ids(mask: torch.Tensor) -> list[int]:
    """The non-zero ids of a label map, ascending."""
    return [int(v) for v in torch.unique(mask).tolist() if v != 0]


def starting_objects(
    mask: torch.Tensor, start_labels: Sequence[int] | None, tracked: Sequence[int]
) -> tuple[torch.Tensor, list[int]]:
    """The part of an annotation that starts objects here, and their labels (the evaluation rule).

    start_labels: the objects that start on this frame (YouTube-VOS meta.json), or None for every
    label of the mask not tracked yet (generic videos). Labels already tracked are removed from
    the mask: the core would otherwise take their annotated pixels away from them (a later
    annotation starts objects; it does not re-annotate tracked ones).
    """
    present = present_ids(mask)
    start = [v for v in (present if start_labels is None else start_labels) if v not in tracked]
    keep = torch.zeros_like(mask, dtype=torch.bool)
    for v in start:
        keep |= mask == v
    return torch.where(keep, mask, torch.zeros_like(mask)), start


@dataclass(frozen=True, eq=False)
class LostObject:
    """An object of a given mask with no pixel at the network size: its id and its given pixels (rows,
    columns at the frame's size)."""

    id: int
    rows: np.ndarray
    cols: np.ndarray

    def describe(self) -> str:
        """'3 (2 pixels, 1x2)': the id, the pixel count and the bounding box (width x height) at the frame's size."""
        n = len(self.rows)
        width, height = int(np.ptp(self.cols)) + 1, int(np.ptp(self.rows)) + 1
        return f"{self.id} ({n} pixel{'' if n == 1 else 's'}, {width}x{height})"


def lost_objects(given: torch.Tensor, at_network: torch.Tensor, ids: Iterable[int] | None = None) -> list[LostObject]:
    """The objects among `ids` (default: every object of `given`) that the mask `given` (H, W, at the
    frame's size) holds and `at_network` (the same mask resized to the network size) does not."""
    if tuple(given.shape) == tuple(at_network.shape):
        return []
    kept = set(present_ids(at_network))
    lost = []
    for v in present_ids(given) if ids is None else ids:
        if v in kept:
            continue
        rows, cols = np.nonzero((given == v).cpu().numpy())
        if len(rows):
            lost.append(LostObject(int(v), rows, cols))
    return lost


def lost_objects_note(where: str, lost: Sequence[LostObject], network_size: tuple[int, int], fix: str) -> str:
    """The one `note:` line of the objects of one mask lost at the network size (H, W); `fix` says how to
    track them where the note is read (a flag, an argument)."""
    many = len(lost) > 1
    return (f"note: {where}: object{'s' if many else ''} {', '.join(o.describe() for o in lost)} "
            f"{'have' if many else 'has'} no pixel at the network size {network_size[1]}x{network_size[0]}, so "
            f"the network cannot follow {'them' if many else 'it'}: the given pixels are kept on this frame only "
            f"({fix})")


def keep_lost(labels: np.ndarray, lost: Sequence[LostObject]) -> np.ndarray:
    """A label map (at the frame's size) with the given pixels of each lost object set to its id
    (uint16 when an id does not fit uint8); `labels` itself when nothing was lost."""
    if not lost:
        return labels
    top = max(o.id for o in lost)
    out = labels.astype(np.uint16) if top > np.iinfo(labels.dtype).max else labels.copy()
    for o in lost:
        out[o.rows, o.cols] = o.id
    return out
