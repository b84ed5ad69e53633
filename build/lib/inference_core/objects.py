"""The one object registry of a video: the caller's object ids <-> the core's internal indices.

The caller names objects by any positive integers (palette indices of YouTube-VOS, 3 and 200, ...);
the core numbers them 0, 1, ... in order of appearance, which is the order of the probability
channels (channel i + 1 is internal object i, channel 0 the background) and of the memory bank's
value columns. Removing an object shifts the later indices down by one, in the registry, the
probabilities and the memory bank alike.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

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
