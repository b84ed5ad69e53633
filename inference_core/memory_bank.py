"""The space-time memory used at inference (section 3.3).

Keys are stored once per memory frame and shared by all objects: every object reads its memory
through the same affinity. Objects that enter the video together form a *group*; a group only
reads the memory frames added since it entered (its first frame carries its annotation), as the
original STCN kept one memory per object for YouTube-VOS. Since every later memory frame is added
to all groups, a group's frames are always a suffix of the stored frames, so one similarity matrix
serves all groups: each group takes its top-k over its own suffix.

    keys        1, C_k, N            (N = T*h*w, frames in the order they were added)
    group.mv    N_g, K_g, C_v        (N_g = the last T_g frames of the keys; position-major so
                                      that adding a frame appends rows and top-k reads gather rows)
    temp        optional last-frame key/values (the `include_last` option), read by every group

Bounded memory (`max_frames` and/or `max_bytes`, both off by default as in the paper): the first
memory frame of every group (the frame that carries its annotation) is permanent; when more than
`max_frames` frames are stored, or the stored keys and values take more than `max_bytes`, the
oldest non-permanent frame is dropped (a sliding window over the most recent frames). Dropping a
frame removes it for every group, so each group's frames remain a suffix. Permanent frames are
never dropped, so a budget smaller than they need is exceeded by them alone (the window is then
empty: every frame reads only the annotated frames).

Corrections and removal (the Python predictor's `correct` and `remove`): `put` replaces the
values of a stored frame (a corrected frame) and `pin` makes a frame permanent as well;
`remove_object` takes an object's value columns out of its group and drops the frames no group
reads any more.

Chunked read (`chunk_size`): the similarity, top-k and readout are computed for `chunk_size` query
positions at a time; each query position is independent, so the result is the same while the
largest temporary is N x chunk_size instead of N x h*w. `chunk_size="auto"` picks, at every read,
the largest chunk whose similarity temporaries fit in AUTO_CHUNK_FRACTION of the device's free
memory (the whole query when it fits, so small memories are read in one piece).

Observer (`observer`, off by default; the memory coverage analysis of section 4.1, Figure 4): when
set, `_read_chunk` calls `observer(weights, indices, start, query_offset)` once per group and chunk
with that group's top-k read: weights, indices 1, m, k (indices into the group's suffix, which
begins at memory position `start` of the keys read, the temporary frame last), for the query
positions `query_offset .. query_offset + m - 1` of the frame. The read itself is unchanged.

Kernelized reading (`kernel_sigma`, off by default; Seong et al., "Kernelized Memory Network for
Video Object Segmentation", ECCV 2020, the paper's [22], which supplementary E uses for its 600p
variants): each memory position n is matched back to the query, q*(n) = argmax_q S(n, q) over every
query position of the frame, and a 2-D Gaussian on the stride-16 grid centred there,
    g(n, q) = exp(-((y_q - y_q*(n))^2 + (x_q - x_q*(n))^2) / (2 sigma^2)),
multiplies the exponentiated affinity, exp(S) * g. Here log g = -d^2 / (2 sigma^2) is added to S
before the top-k and the softmax: the same weights (exp is monotone, so the top-k of exp(S) * g and
of S + log g are the same entries). sigma is in feature cells. KERNEL_SIGMA = 7 is the default of
MiVOS's implementation of kernelized reading (hkchengrex/MiVOS, `make_gaussian(..., sigma=7)` in
its propagation network; MiVOS is the paper's [21], the code STCN builds on), which follows KMN; KMN's
own value is assumed to be the same. The argmax runs over the whole query (chunk by chunk when the
read is chunked), so it costs one more similarity pass.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from model.memory_util import TOP_K, readout_topk, similarity, topk_softmax
from util.defaults import KERNEL_SIGMA  # noqa: F401  (MiVOS's sigma)
from util.device import free_memory_bytes

AUTO_CHUNK_FRACTION = 0.25  # share of the free memory the similarity of one chunk may take
SIMILARITY_COPIES = 3  # similarity, its top-k workspace and the readout's temporaries, per chunk


@dataclass
class ObjectGroup:
    """Objects (internal indices, 0-based) that entered at the same frame, and their memory values."""

    objects: list[int]
    first_frame: int  # index into MemoryBank.frame_ids where this group's memory starts
    values: Tensor | None = None  # N_g, K_g, C_v
    temp_values: Tensor | None = None  # h*w, K_g, C_v


@dataclass
class MemoryBank:
    top_k: int = TOP_K
    keys: Tensor | None = None  # 1, C_k, N
    temp_key: Tensor | None = None  # 1, C_k, h*w
    frame_ids: list[int] = field(default_factory=list)  # video frame index of each memory frame
    groups: list[ObjectGroup] = field(default_factory=list)
    positions_per_frame: int = 0  # h*w
    max_frames: int | None = None  # None: unbounded (the paper)
    max_bytes: int | None = None  # None: unbounded; else bound on keys + values (temporary frame excluded)
    chunk_size: int | str | None = None  # query positions per similarity chunk; None: all at once; "auto"
    similarity: str = "l2"  # the memory read's similarity (one of SIMILARITIES), the network's
    # called with each group's top-k read: (weights, indices, start, query_offset); see the module docstring
    observer: Callable[[Tensor, Tensor, int, int], None] | None = None
    kernel_sigma: float | None = None  # kernelized reading (module docstring); None: off (the paper's default)
    pinned: set[int] = field(default_factory=set)  # video frame ids never dropped (corrected frames)

    @property
    def num_objects(self) -> int:
        return sum(len(g.objects) for g in self.groups)

    @property
    def num_frames(self) -> int:
        return len(self.frame_ids)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored keys and values (the temporary frame excluded)."""
        total = 0 if self.keys is None else self.keys.nelement() * self.keys.element_size()
        return total + sum(g.values.nelement() * g.values.element_size() for g in self.groups if g.values is not None)

    def over_budget(self) -> bool:
        if self.max_frames is not None and self.num_frames > self.max_frames:
            return True
        return self.max_bytes is not None and self.nbytes > self.max_bytes

    def add_group(self, objects: list[int]) -> None:
        """Objects entering now; their memory starts with the next frame added."""
        self.groups.append(ObjectGroup(objects=list(objects), first_frame=self.num_frames))

    def add(self, frame_id: int, key: Tensor, values: Tensor, temporary: bool = False) -> None:
        """Add one frame. key: 1, C_k, h, w; values: K, C_v, h, w for all objects, internal order.

        A temporary frame replaces the previous temporary one and is not kept as memory.
        """
        key = key.flatten(2)
        values = values.flatten(2).permute(2, 0, 1)  # h*w, K, C_v
        self.positions_per_frame = key.shape[-1]
        self.temp_key = None
        for g in self.groups:
            g.temp_values = None
        if temporary:
            self.temp_key = key
            for g in self.groups:
                g.temp_values = values[:, g.objects]
            return
        self.keys = key if self.keys is None else torch.cat([self.keys, key], dim=2)
        self.frame_ids.append(frame_id)
        for g in self.groups:
            v = values[:, g.objects]
            g.values = v if g.values is None else torch.cat([g.values, v], dim=0)
        while self.over_budget() and self._drop_oldest_removable():
            pass

    def permanent_frames(self) -> set[int]:
        """Positions (in frame_ids) of frames that are never dropped: each group's first frame, and pinned frames."""
        return {g.first_frame for g in self.groups} | {i for i, f in enumerate(self.frame_ids) if f in self.pinned}

    # ------------------------------------------------------------------- correction and removal
    def pin(self, frame_id: int) -> None:
        """Never drop video frame `frame_id` (a corrected frame) under the memory bound."""
        self.pinned.add(frame_id)

    def put(self, frame_id: int, key: Tensor, values: Tensor) -> None:
        """Store frame `frame_id` as memory: replace every group's values of it when it is stored
        already (the key is the same frame's), else `add` it. Shapes as in `add`."""
        if frame_id not in self.frame_ids:
            self.add(frame_id, key, values)
            return
        pos = self.frame_ids.index(frame_id)
        hw = self.positions_per_frame
        values = values.flatten(2).permute(2, 0, 1)  # h*w, K, C_v
        for g in self.groups:
            if g.values is not None and pos >= g.first_frame:
                local = pos - g.first_frame
                g.values[local * hw : (local + 1) * hw] = values[:, g.objects].to(g.values.dtype)

    def remove_object(self, obj: int) -> None:
        """Forget internal object `obj`: its value columns leave its group (an emptied group goes), the
        objects after it move down by one, and frames that no group reads any more are dropped."""
        for g in self.groups:
            if obj in g.objects:
                keep = [i for i, o in enumerate(g.objects) if o != obj]
                g.values = None if g.values is None else g.values[:, keep]
                g.temp_values = None if g.temp_values is None else g.temp_values[:, keep]
                g.objects = [g.objects[i] for i in keep]
            g.objects = [o - 1 if o > obj else o for o in g.objects]
        self.groups = [g for g in self.groups if g.objects]
        unread = min((g.first_frame for g in self.groups), default=self.num_frames)
        if unread > 0:
            hw = self.positions_per_frame
            self.keys = self.keys[:, :, unread * hw :] if unread < self.num_frames else None
            del self.frame_ids[:unread]
            for g in self.groups:
                g.first_frame -= unread
        if not self.groups:
            self.temp_key = None

    def _drop_oldest_removable(self) -> bool:
        keep = self.permanent_frames()
        candidates = [i for i in range(self.num_frames) if i not in keep]
        if not candidates:
            return False
        self._remove_frame(candidates[0])
        return True

    def _remove_frame(self, pos: int) -> None:
        hw = self.positions_per_frame
        self.keys = torch.cat([self.keys[:, :, : pos * hw], self.keys[:, :, (pos + 1) * hw :]], dim=2)
        del self.frame_ids[pos]
        for g in self.groups:
            if pos < g.first_frame:
                g.first_frame -= 1
            else:
                local = pos - g.first_frame
                g.values = torch.cat([g.values[: local * hw], g.values[(local + 1) * hw :]], dim=0)

    def read(self, qk: Tensor) -> Tensor:
        """Readout for every object. qk: 1, C_k, h, w -> K, C_v, h, w (internal object order)."""
        h, w = qk.shape[-2:]
        qk = qk.flatten(2)
        mk = self.keys if self.temp_key is None else torch.cat([self.keys, self.temp_key], dim=2)
        chunk = self._chunk(mk, qk.shape[-1])
        if self.kernel_sigma is not None:
            reads = self._kernel_read(mk, qk, chunk, w)
        else:
            reads = [self._read_chunk(mk, qk[:, :, i : i + chunk], i) for i in range(0, qk.shape[-1], chunk)]
        return torch.cat(reads, dim=2).view(self.num_objects, -1, h, w)

    def _chunk(self, mk: Tensor, m: int) -> int:
        """Query positions per chunk: the fixed `chunk_size`, or from free memory for "auto"."""
        if self.chunk_size != "auto":
            return self.chunk_size or m
        free = free_memory_bytes(mk.device)
        if free is None:
            return m
        copies = SIMILARITY_COPIES + (self.kernel_sigma is not None)  # + the kernel's log weights
        per_position = mk.shape[-1] * mk.element_size() * copies
        return max(1, min(m, int(free * AUTO_CHUNK_FRACTION) // per_position))

    def _kernel_read(self, mk: Tensor, qk: Tensor, chunk: int, width: int) -> list[Tensor]:
        """The chunks of a kernelized read (module docstring): q*(n) over the whole query, then each
        chunk with its Gaussian log weights. qk: 1, C_k, M; width: the query's width in cells."""
        assert self.kernel_sigma is not None
        best = best_query_positions(mk, qk, chunk, self.similarity)
        m = qk.shape[-1]
        return [
            self._read_chunk(mk, qk[:, :, i : i + chunk], i, log_kernel=gaussian_log_kernel(
                best, torch.arange(i, min(i + chunk, m), device=qk.device), width, self.kernel_sigma))
            for i in range(0, m, chunk)
        ]

    def _read_chunk(
        self, mk: Tensor, qk: Tensor, query_offset: int = 0, log_kernel: Tensor | None = None
    ) -> Tensor:
        """mk: 1, C_k, N; qk: 1, C_k, m query positions (from `query_offset` on) -> K, C_v, m.

        log_kernel: m, N log weights added to the similarity before the top-k (kernelized reading).
        """
        sim_t = similarity(mk, qk, self.similarity, query_major=True)  # 1, m, N
        if log_kernel is not None:
            sim_t = sim_t + log_kernel.to(sim_t.dtype)
        out: list[Tensor | None] = [None] * self.num_objects
        for g in self.groups:
            start = g.first_frame * self.positions_per_frame
            mv = g.values if g.temp_values is None else torch.cat([g.values, g.temp_values], dim=0)
            weights, indices = topk_softmax(sim_t[:, :, start:], self.top_k)  # 1, m, k
            if self.observer is not None:
                self.observer(weights, indices, start, query_offset)
            read = readout_topk(weights, indices, mv)  # K_g, C_v, m
            for i, obj in enumerate(g.objects):
                out[obj] = read[i]
        return torch.stack(out, dim=0)


# ------------------------------------------------------------------------------ kernelized read
def best_query_positions(mk: Tensor, qk: Tensor, chunk: int, kind: str = "l2") -> Tensor:
    """q*(n) = argmax_q S(n, q): the best-matching query position of every memory position.

    mk: 1, C_k, N; qk: 1, C_k, M -> N (long, flat query index), computed `chunk` query positions at a
    time with a running maximum (the earliest position wins a tie); S is the read's similarity `kind`.
    """
    best_value, best = similarity(mk, qk[:, :, :chunk], kind, query_major=True)[0].max(dim=0)  # N, N
    for i in range(chunk, qk.shape[-1], chunk):
        values, index = similarity(mk, qk[:, :, i : i + chunk], kind, query_major=True)[0].max(dim=0)
        better = values > best_value
        best_value = torch.where(better, values, best_value)
        best = torch.where(better, index + i, best)
    return best


def gaussian_log_kernel(best: Tensor, queries: Tensor, width: int, sigma: float) -> Tensor:
    """log g(n, q) = -((y_q - y_q*(n))^2 + (x_q - x_q*(n))^2) / (2 sigma^2) (module docstring).

    best: N flat query index q*(n) of each memory position; queries: m flat query indices; width: the
    query's width in cells (flat index = y * width + x) -> m, N float32 (0 at q = q*(n)).
    """
    qy, qx = (queries // width).float(), (queries % width).float()
    by, bx = (best // width).float(), (best % width).float()
    d2 = (qy[:, None] - by[None, :]) ** 2 + (qx[:, None] - bx[None, :]) ** 2
    return d2 / (-2.0 * sigma**2)
