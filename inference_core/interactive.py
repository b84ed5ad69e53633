"""Interactive video object segmentation: STCN as the propagation module of MiVOS (Cheng, Tai and Tang,
"Modular Interaction and Propagation Network", CVPR 2021; STCN's DAVIS-interactive row).

One video, any number of interactions in any order. An interaction on frame tr gives that frame's
probabilities: from a label map, or from scribbles through the scribble-to-mask network
(`scribble_probabilities`). Then (MiVOS section 3.3):
- frame tr joins the permanent memory: its key and the values encoded from the given probabilities;
  every interacted frame stays memory for every later pass (an interaction repeated on a frame adds it again);
- a pass runs forward from tr up to, not including, the next interacted frame (or the end) and one
  backward down to, not including, the previous one (or frame 0). Each pass is an `InferenceCore`
  started from the permanent memory (`InferenceCore.start_from_memory`): the same network, memory
  read, soft aggregation and options (top-k, memory bounds, precision) as every other propagation here.
  A pass adds a memory frame every `mem_every` (5) frames counted from tr, never its own last frame;
- a frame ti of a pass that ends at an interacted frame tc (so ti lies between tc and tr) is fused by the
  difference-aware fusion network from its stored probabilities (tc's pass), the new ones, the
  difference tr's interaction made at tr carried to ti by the key affinity, and the time planes
  (`interaction_steps.fuse_frame`); other frames take the new pass. Without a fusion network every frame
  takes the new pass. The memory of a pass holds its own propagated frames, never fused ones.
`update_mask_only` replaces a frame's label map without propagating and without touching the stored
probabilities (MiVOS keeps those of the last full interaction for the next difference).

What is kept, per frame: the probabilities of its last pass or interaction (1 + K at the padded
network size, `prob_dtype` on the CPU: the fusion and the next difference map need them soft at every
frame that may lie between two interactions; float16 halves them for long videos), and a label map only
where `update_mask_only` set one (it stands until a pass or an interaction gives the frame new
probabilities; MiVOS also drops it at any later interaction, which never differs on the DAVIS
schedule, whose next interaction is on that same frame). Frames themselves are read from the
`FrameSource` when needed; their network inputs and key-encoder features are kept in a
least-recently-used `BoundedCache` bounded in bytes (`cache_mb`), so a long video needs neither all
frames nor all features at once. The per-frame probabilities are kept in RAM up to `prob_mb` (a
`ProbabilityStore`); beyond it the least recently used go to a temporary folder of the store's own
(removed with the core) and come back exactly as they were, so a long video fits a memory budget.
The permanent memory (key and values of each interaction) is on
the network's device.

Progress and cancellation (for a GUI): `interact(..., progress=f)` calls f(done, total) after each
propagated frame; `cancel` (a callable returning True, or a `threading.Event`) is checked before each
frame. A cancelled interaction keeps the interacted frame (its probabilities and its permanent memory)
and the frames already propagated; the other frames keep what they had; `InteractionResult.cancelled`
says so. Every frame then still has probabilities of some completed step.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inference_core.core import InferenceCore, probabilities_to_labels
from inference_core.interaction_steps import carried_differences, fuse_frame, label_probabilities, s2m_probabilities
from inference_core.options import PredictorError
from inference_core.predictor import Predictor, as_label_map, as_rgb
from util.defaults import INTERACTIVE_CACHE_MB, INTERACTIVE_PROB_MB
from util.frame_source import FrameSource
from util.frames import normalise, resize_frame, resize_labels
from util.tensor_util import pad_divide_by, unpad

DEFAULT_CACHE_MB = INTERACTIVE_CACHE_MB  # frames' network inputs and key features kept (about 20 frames at 480p)
INITIAL_BACKGROUND = 1e-7  # MiVOS's probabilities of a frame no pass has reached: background 1e-7, objects 0

DIRECTIONS = ("both", "forward", "backward", "none")  # the passes `interact` runs
Progress = Callable[[int, int], None]
Cancel = Callable[[], bool] | threading.Event


class BoundedCache:
    """Entries by frame index (tensors, or tuples of them), least recently used dropped first once they hold
    more than `max_bytes` (None: unbounded); `dropped(index, value)` is told of each one dropped. The entry
    just added is always kept, so one entry larger than the bound exceeds it alone. `peak_bytes`: the most
    held after an entry was added."""

    def __init__(self, max_bytes: int | None, dropped: Callable[[int, Any], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self.dropped = dropped
        self._entries: OrderedDict[int, tuple[Any, int]] = OrderedDict()
        self.nbytes = 0
        self.peak_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, index: object) -> bool:
        return index in self._entries

    def get(self, index: int, make: Callable[[], Any]) -> Any:
        """Frame `index`'s entry, made by `make()` and added when absent."""
        if index in self._entries:
            self._entries.move_to_end(index)
            return self._entries[index][0]
        value = make()
        self.put(index, value)
        return value

    def put(self, index: int, value: Any) -> None:
        """Keep `value` for frame `index`, replacing what it had."""
        if index in self._entries:
            self.nbytes -= self._entries.pop(index)[1]
        size = _nbytes(value)
        self._entries[index] = (value, size)
        self.nbytes += size
        while self.max_bytes is not None and self.nbytes > self.max_bytes and len(self._entries) > 1:
            old, (dropped, old_size) = self._entries.popitem(last=False)
            self.nbytes -= old_size
            if self.dropped is not None:
                self.dropped(old, dropped)
        self.peak_bytes = max(self.peak_bytes, self.nbytes)


class ProbabilityStore:
    """Per-frame tensors (the probabilities) by frame index: in RAM up to `max_bytes` (None: unbounded), the
    least recently used beyond it saved to a temporary folder this store creates (and removes when it is
    closed or collected) and read back bit for bit when asked for (`BoundedCache` with a spill to disk)."""

    def __init__(self, max_bytes: int | None) -> None:
        self.ram = BoundedCache(max_bytes, dropped=self._save)
        self._disk: set[int] = set()
        self._folder: Path | None = None
        self._cleanup: weakref.finalize | None = None

    @property
    def nbytes(self) -> int:
        return self.ram.nbytes

    @property
    def peak_bytes(self) -> int:
        return self.ram.peak_bytes

    def __contains__(self, index: object) -> bool:
        return index in self.ram or index in self._disk

    def get(self, index: int) -> Tensor | None:
        if index not in self:
            return None
        return self.ram.get(index, lambda: self._load(index))

    def put(self, index: int, value: Tensor) -> None:
        """Keep `value` (a CPU tensor) for frame `index`, replacing what it had."""
        self._forget_saved(index)
        self.ram.put(index, value)

    def _save(self, index: int, value: Tensor) -> None:
        np.save(self._path(index), value.numpy())
        self._disk.add(index)

    def _load(self, index: int) -> Tensor:
        value = torch.from_numpy(np.load(self._path(index)))
        self._forget_saved(index)  # back in RAM: saved again if it is dropped again
        return value

    def _forget_saved(self, index: int) -> None:
        if index in self._disk:
            self._disk.discard(index)
            self._path(index).unlink()

    def _path(self, index: int) -> Path:
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="stcn-probabilities-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self._folder, True)
        return self._folder / f"{index}.npy"

    def close(self) -> None:
        """Remove the temporary folder (what was saved there is gone; RAM entries stay)."""
        if self._cleanup is not None:
            self._cleanup()
        self._disk.clear()


def _nbytes(x: Tensor | tuple) -> int:
    if isinstance(x, Tensor):
        return x.nelement() * x.element_size()
    return sum(_nbytes(t) for t in x)


@dataclass
class InteractionResult:
    """What one `interact` call did: the interacted frame, the frames each pass propagated (in their
    order), those of them that were fused, and whether it was cancelled before the passes finished."""

    frame: int
    forward: list[int] = field(default_factory=list)
    backward: list[int] = field(default_factory=list)
    fused: list[int] = field(default_factory=list)
    cancelled: bool = False


class InteractiveCore:
    """One video segmented by interactions (module docstring).

    predictor: a `Predictor` of one network (no ensemble); its options give the network size, top-k,
        memory schedule and bounds, precision and device.
    frames: a `FrameSource` of known length, or a sequence of H x W x 3 uint8 frames.
    num_objects: K; objects are the ids 1..K (0 = background).
    fusion: the difference-aware fusion network (`model.fusion.FusionNet` interface) or None (no fusion).
    cache_mb: bound in MiB of the frames' inputs and key features kept (`BoundedCache`; None: unbounded).
    prob_dtype: dtype of the stored per-frame probabilities (float32: exact; float16: half the memory).
    prob_mb: RAM for the per-frame probabilities in MiB, the rest on disk (`ProbabilityStore`; None: all in RAM).
    """

    def __init__(self, predictor: Predictor, frames: FrameSource | Sequence[Any], num_objects: int,
                 fusion: torch.nn.Module | None = None, cache_mb: float | None = DEFAULT_CACHE_MB,
                 prob_dtype: torch.dtype = torch.float32, prob_mb: float | None = INTERACTIVE_PROB_MB) -> None:
        self.predictor = predictor
        self._core = predictor.new_core()  # encodes keys and values; each pass gets a core of its own
        if not isinstance(self._core, InferenceCore):
            raise PredictorError("predictor", "runs an ensemble; interactive segmentation uses one network",
                                 "use a predictor of one network at one size, without flip")
        self.source = frames if isinstance(frames, FrameSource) else FrameSource.in_memory(frames)
        if self.source.length is None or self.source.length < 1:
            raise PredictorError("frames", "no frames, or an iterator of unknown length",
                                 "pass a FrameSource or a sequence of frames")
        if isinstance(num_objects, bool) or not isinstance(num_objects, (int, np.integer)) or num_objects < 1:
            raise PredictorError("num_objects", f"{num_objects!r} is not a positive integer", "pass K >= 1")
        for name, mb in (("cache_mb", cache_mb), ("prob_mb", prob_mb)):
            if mb is not None and not mb > 0:
                raise PredictorError(name, f"{mb!r} is not positive", "pass a size in MiB, or None")
        self.num_objects = int(num_objects)
        self.fusion = fusion
        self.prob_dtype = prob_dtype
        self.cache = BoundedCache(None if cache_mb is None else int(cache_mb * 2**20))  # inputs and key features
        first = as_rgb(self.source.frame(0), "frame 0")
        self.frame_size = (int(first.shape[0]), int(first.shape[1]))
        self.network_size = predictor.network_size(*self.frame_size)
        _, self.pad = pad_divide_by(torch.zeros(1, *self.network_size), 16)
        self.probabilities = ProbabilityStore(None if prob_mb is None else int(prob_mb * 2**20))  # 1 + K, H', W'

        self._labels: dict[int, Tensor] = {}  # H', W' uint8 label maps set by update_mask_only
        self.interacted: list[int] = []  # interacted frames, in the order of the interactions
        self._memory: list[tuple[Tensor, Tensor]] = []  # their keys and values: every pass's permanent memory

    @property
    def length(self) -> int:
        return int(self.source.length)

    @property
    def device(self) -> torch.device:
        return self._core.device

    # -------------------------------------------------------------------------------- outputs
    def labels(self, frame: int) -> np.ndarray:
        """Frame `frame`'s label map (H x W uint8 at the frame's size, ids 0..K; zeros before any pass)."""
        self._check_frame(frame)
        if frame in self._labels:
            return resize_labels(unpad(self._labels[frame], self.pad), self.frame_size).numpy().astype(np.uint8)
        prob = self.probabilities.get(frame)
        if prob is None:
            return np.zeros(self.frame_size, dtype=np.uint8)
        label_map = np.arange(self.num_objects + 1, dtype=np.int64)
        return probabilities_to_labels(unpad(prob.float(), self.pad), self.frame_size, label_map)

    def all_labels(self) -> np.ndarray:
        """Every frame's label map: T x H x W uint8."""
        return np.stack([self.labels(t) for t in range(self.length)])

    # --------------------------------------------------------------------------- interactions
    def scribble_probabilities(self, frame: int, s2m: torch.nn.Module, scribbles: Any) -> Tensor:
        """The scribble-to-mask step on frame `frame`: its new probabilities for `interact(frame, prob=...)`
        or `update_mask_only(frame, prob=...)`.

        scribbles: K x 2 x H x W (per object: positive, negative scribble map at the frame's size, 0/1,
        dilated as `util.scribbles.s2m_maps` gives them), or K x 2 x H' x W' at the padded network size
        (`padded_size`), taken as they are: MiVOS's DAVIS benchmark rasterises the strokes at that size.
        The network sees the frame's current hard labels (`update_mask_only`'s where set). Returns
        1 + K, H', W' at the padded network size (on the device).
        """
        self._check_frame(frame)
        maps = torch.as_tensor(np.asarray(scribbles) if not isinstance(scribbles, Tensor) else scribbles)
        at_frame, padded = (self.num_objects, 2, *self.frame_size), (self.num_objects, 2, *self.padded_size)
        if tuple(maps.shape) not in (at_frame, padded):
            raise PredictorError("scribbles", f"shape {tuple(maps.shape)} is not {at_frame} (or {padded}, "
                                 "at the padded network size)",
                                 "give per object its positive and negative map at the frame's size")
        maps = maps.float().to(self.device)
        if tuple(maps.shape) == at_frame:
            if tuple(self.network_size) != tuple(self.frame_size):
                maps = F.interpolate(maps, size=self.network_size, mode="nearest")
            maps, _ = pad_divide_by(maps, 16)
        image, _ = self._inputs(frame)
        return s2m_probabilities(s2m, image, self._hard_labels(frame).to(self.device), maps, self._core._autocast())

    def update_mask_only(self, frame: int, mask: Any = None, *, prob: Tensor | None = None) -> None:
        """Replace frame `frame`'s label map without propagating: from `mask` (H x W ids 0..K at the frame's
        size) or from `prob` (1 + K, H', W' as `scribble_probabilities` gives, its argmax). The stored
        probabilities (for the next difference map and fusion) stay those of the last pass or interaction."""
        self._check_frame(frame)
        if prob is not None:
            labels = self._checked_prob(prob, mask).argmax(dim=0)
        else:
            labels = self._padded_labels(mask, frame)
        self._labels[frame] = labels.to("cpu", torch.uint8)

    @torch.inference_mode()
    def restore(self, frame: int, mask: Any, *, interacted: bool = False) -> None:
        """Re-enter a frame's saved label map (H x W ids 0..K) without propagating, to rebuild a core from
        saved masks (a resumed session, a changed set of objects): its stored probabilities become the
        map's (as `interact` takes a mask), and with `interacted` it joins the permanent memory again.
        The soft probabilities of the original passes are not saved, so a later fusion sees hard ones."""
        self._check_frame(frame)
        prob = label_probabilities(self._padded_labels(mask, frame).to(self.device), self.num_objects)
        self._keep(frame, prob)
        if interacted:
            self._remember(frame, prob)

    @torch.inference_mode()
    def interact(self, frame: int, mask: Any = None, *, prob: Tensor | None = None,
                 progress: Progress | None = None, cancel: Cancel | None = None,
                 directions: str = "both", on_frame: Callable[[int], None] | None = None) -> InteractionResult:
        """An interaction on frame `frame`, then propagation and fusion (module docstring).

        mask: H x W label map at the frame's size (ids 0..K; taken as a first-frame annotation), or
        prob: 1 + K, H', W' probabilities at the padded network size (`scribble_probabilities`).
        progress(done, total) after each propagated frame; cancel checked before each (module docstring).
        directions: the passes run, "both" (MiVOS), "forward", "backward" or "none" (the frame only joins
        the permanent memory). on_frame(t) after frame t got its new probabilities (to save its mask).
        """
        self._check_frame(frame)
        if directions not in DIRECTIONS:
            raise PredictorError("directions", f"{directions!r} is not one of {', '.join(DIRECTIONS)}",
                                 "pick one of them")
        if prob is not None:
            new = self._checked_prob(prob, mask).to(self.device, torch.float32)
        else:
            new = label_probabilities(self._padded_labels(mask, frame).to(self.device), self.num_objects)
        diff = new - self._stored(frame)  # what this interaction changed at its frame
        self._keep(frame, new)
        key = self._remember(frame, new)
        after = min([t for t in self.interacted if t > frame], default=self.length)
        before = max([t for t in self.interacted if t < frame], default=-1)
        result = InteractionResult(frame)
        passes = [(range(frame + 1, after), after, result.forward), (range(frame - 1, before, -1), before,
                                                                     result.backward)]
        passes = [p for p, name in zip(passes, ("forward", "backward")) if directions in (name, "both")]
        total = sum(len(frames) for frames, _, _ in passes)
        for frames, bound, done in passes:
            fused_with = bound if 0 <= bound < self.length else None
            if not self._propagate(frame, frames, fused_with, diff, key, result, done, progress, total, cancel,
                                   on_frame):
                result.cancelled = True
                break
        return result

    # ------------------------------------------------------------------------------ internals
    def _propagate(self, tr: int, frames: range, tc: int | None, diff: Tensor, key: Tensor,
                   result: InteractionResult, done: list[int], progress: Progress | None, total: int,
                   cancel: Cancel | None, on_frame: Callable[[int], None] | None = None) -> bool:
        """One pass from tr over `frames`; fused with the interaction at tc when given. False if cancelled."""
        if not frames:
            return True
        core = self.predictor.new_core()
        core.start_from_memory(self._memory, range(1, self.num_objects + 1))
        for ti in frames:
            if cancel is not None and (cancel.is_set() if isinstance(cancel, threading.Event) else cancel()):
                return False
            image, features = self._inputs(ti)
            new = core.step(image[0], end=ti == frames[-1], features=features)
            if tc is not None and self.fusion is not None:
                carried = carried_differences(diff, key, features[0], core.similarity)
                new = fuse_frame(self.fusion, image, self._stored(ti), new, carried, tc, tr, ti, core._autocast())
                result.fused.append(ti)
            self._keep(ti, new)
            done.append(ti)
            if on_frame is not None:
                on_frame(ti)
            if progress is not None:
                progress(len(result.forward) + len(result.backward), total)
        return True

    def _remember(self, frame: int, prob: Tensor) -> Tensor:
        """Frame `frame` with probabilities `prob` joins the permanent memory (key and values encoded, as
        every pass starts from them); returns its key."""
        image, (key, _, f16, _, _) = self._inputs(frame)
        self._memory.append((key, self._core.encode_values(image, f16, prob[1:])))
        self.interacted.append(frame)
        return key

    def _inputs(self, frame: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Frame `frame`'s padded network input (1, 3, H', W') and key features, through the cache."""

        def make() -> tuple[Tensor, tuple[Tensor, ...]]:
            rgb = as_rgb(self.source.frame(frame), f"frame {frame}")
            if tuple(rgb.shape[:2]) != self.frame_size:
                raise PredictorError(f"frame {frame}", f"is {rgb.shape[1]}x{rgb.shape[0]} but frame 0 is "
                                     f"{self.frame_size[1]}x{self.frame_size[0]}", "give frames of one size")
            x = resize_frame(normalise(rgb), self.network_size, self.predictor.antialias)
            padded, _ = pad_divide_by(x.to(self.device).unsqueeze(0), 16)
            return padded, self._core.encode_key(padded)

        return self.cache.get(frame, make)

    def _stored(self, frame: int) -> Tensor:
        """Frame `frame`'s stored probabilities on the device, float32 (MiVOS's initial ones before any pass)."""
        prob = self.probabilities.get(frame)
        if prob is not None:
            return prob.to(self.device, torch.float32)
        shape = (self.num_objects + 1, *self.padded_size)
        initial = torch.zeros(shape, device=self.device)
        initial[0] = INITIAL_BACKGROUND
        return initial

    def _keep(self, frame: int, prob: Tensor) -> None:
        self.probabilities.put(frame, prob.to("cpu", self.prob_dtype))
        self._labels.pop(frame, None)

    def _hard_labels(self, frame: int) -> Tensor:
        """The current hard label map at the padded network size (H', W' long)."""
        if frame in self._labels:
            return self._labels[frame].long()
        prob = self.probabilities.get(frame)
        return torch.zeros(self.padded_size, dtype=torch.long) if prob is None else prob.float().argmax(dim=0)

    @property
    def padded_size(self) -> tuple[int, int]:
        """(H', W'): the network size padded to multiples of 16, the size of the probabilities kept."""
        left, right, top, bottom = self.pad
        return self.network_size[0] + top + bottom, self.network_size[1] + left + right

    def _padded_labels(self, mask: Any, frame: int) -> Tensor:
        """A label map given at the frame's size, checked, at the padded network size (H', W' long)."""
        if mask is None:
            raise PredictorError("mask", "neither a mask nor prob given", "pass a label map or prob=...")
        labels = as_label_map(mask, self.frame_size, where=f"mask of frame {frame}")
        if int(labels.max()) > self.num_objects:
            raise PredictorError("mask", f"ids up to {int(labels.max())} but the video has {self.num_objects} "
                                 "objects", f"use ids 0..{self.num_objects}")
        padded, _ = pad_divide_by(resize_labels(labels, self.network_size)[None, None].float(), 16)
        return padded[0, 0].long()

    def _checked_prob(self, prob: Tensor, mask: Any) -> Tensor:
        if mask is not None:
            raise PredictorError("prob", "given together with a mask", "pass one of them")
        shape = (self.num_objects + 1, *self.padded_size)
        if not isinstance(prob, Tensor) or tuple(prob.shape) != shape:
            raise PredictorError("prob", f"is not a tensor of shape {shape}",
                                 "pass what scribble_probabilities returns")
        return prob

    def _check_frame(self, frame: int) -> None:
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= frame < self.length:
            raise PredictorError("frame", f"{frame!r} is not a frame index of this video", f"use 0..{self.length - 1}")
