"""Bidirectional propagation (offline): each object is propagated forward from the frame where it is
first annotated to the end, and backward from that frame to frame 0.

The backward pass runs first, over the frames from the last first-annotation frame down to frame 0,
with its own memory, taking the annotations in that order (`Bidirectional.run_backward`; the caller
says how one frame is stepped). Per frame t, each object comes from the forward pass when it was first
annotated at or before t and from the backward pass otherwise; when both passes contribute objects
on a frame, their probabilities are combined by soft aggregation, otherwise the one pass's result is
kept as it is (`merge_directions`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from model.aggregate import soft_aggregate

Probabilities = tuple[Tensor, list[int]]  # (1 + K, h, w) at the network size, background first; the K ids


def first_frames(annotated: Iterable[tuple[int, Iterable[int]]]) -> dict[int, int]:
    """Object id -> the first frame that starts it, from (frame, ids its annotation starts) in frame order."""
    starts: dict[int, int] = {}
    for t, ids in annotated:
        for v in ids:
            starts.setdefault(int(v), t)
    return starts


class Bidirectional:
    """The backward pass's results of one video and the merge of each frame with the forward pass.

    starts: object id -> the frame where it is first annotated (`first_frames`). `last`: the last of
    those frames, where the backward pass begins (0: nothing to propagate backward).
    """

    def __init__(self, starts: Mapping[int, int]) -> None:
        self.starts = dict(starts)
        self.last = max(self.starts.values(), default=0)
        self.backward: dict[int, Probabilities] = {}  # frame t < last -> the backward pass's result

    def run_backward(self, step: Callable[[int], tuple[Tensor, Sequence[int]]],
                     keep: Callable[[int], bool] = lambda t: True) -> None:
        """Step frames `last`, ..., 0 in that order (`step(t)`: frame t through a core of its own, with
        the objects its annotation starts; returns its probabilities and ids) and keep, for every frame
        t < last that `keep(t)`, its probabilities (on the CPU) and ids for `merge`."""
        if self.last <= 0:
            return
        for t in range(self.last, -1, -1):
            prob, ids = step(t)
            if t < self.last and keep(t):
                self.backward[t] = (prob.cpu(), list(ids))

    def merge(self, t: int, prob: Tensor, ids: Sequence[int]) -> tuple[Tensor, np.ndarray]:
        """Frame t's probabilities and label map (channel -> id, background 0) from the forward pass's
        (`prob`, `ids`) and the backward pass's result of frame t, which is then dropped."""
        if t in self.backward:
            prob, ids = merge_directions((prob, ids), self.backward.pop(t), self.starts, t)
        return prob, np.array([0, *ids], dtype=np.int64)


def merge_directions(forward: tuple[Tensor, Sequence[int]], backward: tuple[Tensor, Sequence[int]],
                     starts: Mapping[int, int], t: int) -> Probabilities:
    """Frame t's probabilities from the two passes: each object from the forward pass when it was
    first annotated at or before t, else from the backward pass. (prob (1 + K, h, w), ids) each.

    When one pass gives every object and holds no other, its result is kept unchanged; otherwise the
    chosen objects' probabilities are renormalised together by soft aggregation (`soft_aggregate`).
    """
    (fprob, fids), (bprob, bids) = forward, backward
    use_f = [i for i, o in enumerate(fids) if starts.get(o, -1) <= t]
    use_b = [i for i, o in enumerate(bids) if starts.get(o, -1) > t]
    if not use_b and len(use_f) == len(fids):
        return fprob, list(fids)
    if not use_f and len(use_b) == len(bids):
        return bprob.to(fprob.device), list(bids)
    objects = torch.cat([fprob[[1 + i for i in use_f]], bprob.to(fprob.device)[[1 + i for i in use_b]]])
    return soft_aggregate(objects, dim=0), [fids[i] for i in use_f] + [bids[i] for i in use_b]
