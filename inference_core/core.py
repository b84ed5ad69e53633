"""InferenceCore: STCN propagation one frame at a time.

Per frame (section 3): the key encoder runs once; its key is the query key and, if the frame
becomes memory, the memory key. One top-k affinity over the memory serves all objects; the
decoder runs for every object in one batch and soft aggregation combines them. A frame becomes
memory when objects are first given on it and every `mem_every`-th frame after the last memory
frame (the paper's "every 5th frame"; with the first annotation on frame 0 this is frames
0, 5, 10, ...). No temporary last frame unless `include_last`.

The core keeps no per-video probabilities: `step` returns the current frame's probabilities and
the caller writes them out, so memory does not grow with the number of processed frames
(only with the number of memory frames).

Objects are identified by the caller's labels (any positive integers, e.g. the palette indices of
YouTube-VOS, which need not be contiguous); internally they are numbered in order of appearance.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from inference_core.memory_bank import MemoryBank
from inference_core.objects import ObjectRegistry, present_ids
from model.aggregate import soft_aggregate
from model.memory_util import TOP_K, check_similarity
from model.network import STCN
from util.defaults import MEM_EVERY  # section 3.3's every 5th frame
from util.device import resolve_amp_dtype
from util.tensor_util import pad_divide_by, unpad

MASK_THRESHOLD = 0.5  # an annotated pixel belongs to the given objects above this


@dataclass
class FrameState:
    """One frame on its way through the phases of `InferenceCore.step` (and of `inference_core.batch`).

    padded: 1, 3, H', W' (sides multiples of 16; None when the frame is not processed);
    features: the key encoder's k16, qv16, f16, f8, f4 of `padded`; prob: 1 + K, H', W'.
    """

    index: int
    size: tuple[int, int]  # H, W before padding
    mask: Tensor | None = None
    new_labels: list[int] = field(default_factory=list)
    end: bool = False
    active: bool = True  # False: nothing to track yet (no object, none starting)
    padded: Tensor | None = None
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    features: tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None = None
    prob: Tensor | None = None
    is_memory: bool = False  # set by InferenceCore.value_inputs


def decoded_probabilities(logits: Tensor) -> Tensor:
    """Per-object decoder logits (K, 1, H, W) -> soft-aggregated probabilities (1 + K, H, W), float32."""
    return soft_aggregate(torch.sigmoid(logits.float()), dim=0)[:, 0]


class InferenceCore:
    """Propagates object masks through a video, one `step` per frame.

    network: an STCN in eval mode (its device is used for all work), or an object with the same
        encode_key / encode_value / decode and a `device` (an exported backend).
    top_k: memory entries read per query position (20 in the paper).
    mem_every: a frame becomes memory this many frames after the previous memory frame.
    include_last: also keep the previous frame as a temporary memory frame (off in the paper).
    amp: run the network under torch.autocast with `amp_dtype`. amp_dtype None (default): the `--amp`
        rule of `resolve_amp_dtype` for the network's device (float16 on CUDA; bfloat16 on a
        CPU with native bf16, else fp32 with a warning); a dtype given is taken as given.
    max_mem_frames: bound on stored memory frames (None = unbounded, the paper); see MemoryBank.
    max_mem_mb: bound on the memory's keys and values in MiB (None = unbounded); see MemoryBank.
    chunk_size: query positions per memory-read chunk: "auto" (default) reads the whole query at
        once whenever its similarity fits a quarter of the free memory and in chunks otherwise;
        an int fixes the chunk; None always reads at once. Same result in every case.
    object_batch: objects decoded / value-encoded per batch (None = all at once); same result.
    similarity: the memory read's similarity ("l2", "dot", "cosine"; Table 2). None
        (default): the network's own (`network.similarity`; L2 for a network without one, e.g. an
        exported backend). A value that contradicts the network's raises ValueError: weights are
        trained for one similarity.
    kernel_sigma: kernelized memory reading with this Gaussian std in stride-16 cells (None = off, the
        paper's default; supplementary E uses it for the 600p variants); see MemoryBank.
    """

    def __init__(
        self,
        network: STCN,
        top_k: int = TOP_K,
        mem_every: int = MEM_EVERY,
        include_last: bool = False,
        amp: bool = False,
        amp_dtype: torch.dtype | None = None,
        max_mem_frames: int | None = None,
        max_mem_mb: float | None = None,
        chunk_size: int | str | None = "auto",
        object_batch: int | None = None,
        similarity: str | None = None,
        kernel_sigma: float | None = None,
    ) -> None:
        if mem_every < 1:
            raise ValueError(f"mem_every must be >= 1, got {mem_every}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.network = network.eval()
        # an exported backend has no parameters and names its device
        self.device = getattr(network, "device", None) or next(network.parameters()).device
        self.top_k = top_k
        self.mem_every = mem_every
        self.include_last = include_last
        if amp and amp_dtype is None:
            amp_dtype, note = resolve_amp_dtype(self.device, amp=True)
            if note is not None:
                warnings.warn(note, stacklevel=2)
        self.amp = amp and amp_dtype is not None
        self.amp_dtype = amp_dtype
        if isinstance(chunk_size, str) and chunk_size != "auto":
            raise ValueError(f"chunk_size must be a positive int, 'auto' or None, got {chunk_size!r}")
        fixed_chunk = None if chunk_size == "auto" else chunk_size
        for name, value in (("max_mem_frames", max_mem_frames), ("chunk_size", fixed_chunk),
                            ("object_batch", object_batch)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if max_mem_mb is not None and not max_mem_mb > 0:
            raise ValueError(f"max_mem_mb must be > 0 or None, got {max_mem_mb}")
        if kernel_sigma is not None and not kernel_sigma > 0:
            raise ValueError(f"kernel_sigma must be > 0 or None, got {kernel_sigma}")
        self.kernel_sigma = kernel_sigma
        self.max_mem_mb = max_mem_mb
        self.max_mem_frames = max_mem_frames
        self.chunk_size = chunk_size
        self.object_batch = object_batch
        self.similarity = network_similarity(network, similarity)
        self.reset()

    def reset(self) -> None:
        """Forget the current video."""
        self.memory = MemoryBank(
            top_k=self.top_k, max_frames=self.max_mem_frames, chunk_size=self.chunk_size,
            max_bytes=None if self.max_mem_mb is None else int(self.max_mem_mb * 2**20),
            similarity=self.similarity,
            kernel_sigma=self.kernel_sigma,
        )
        self.objects = ObjectRegistry()  # caller's label of each internal object, in order of appearance
        self.frame_index = -1  # index of the last frame given to step() or skip()
        self.last_mem_index: int | None = None

    # ---------------------------------------------------------------------------------- queries
    @property
    def labels(self) -> list[int]:
        """The caller's label of each internal object, in order of appearance (the registry's ids)."""
        return self.objects.ids

    @property
    def num_objects(self) -> int:
        return len(self.labels)

    def is_memory_frame(self, index: int | None = None) -> bool:
        """Whether frame `index` (default: the next one) becomes memory under the propagation rule."""
        index = self.frame_index + 1 if index is None else index
        return self.last_mem_index is not None and index - self.last_mem_index >= self.mem_every

    def needs_frame(self, required: bool) -> bool:
        """Whether the next frame must be processed: it is wanted by the caller, or it is memory.

        Frames that are neither (YouTube-VOS frames outside the annotated subset, between memory
        frames) can be passed over with `skip()`: they change nothing in the other results.
        """
        return required or self.include_last or self.is_memory_frame()

    def skip(self) -> None:
        """Advance one frame without processing it (see `needs_frame`)."""
        self.frame_index += 1

    def label_map(self) -> np.ndarray:
        """Array mapping output channel (0 = background, i = internal object i) to the caller's label."""
        return np.array([0, *self.labels], dtype=np.int64)

    # ------------------------------------------------------------------------------------ step
    def _autocast(self):
        if not self.amp:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    @torch.inference_mode()
    def step(
        self,
        image: Tensor,
        mask: Tensor | None = None,
        labels: Sequence[int] | None = None,
        end: bool = False,
        features: tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Segment the next frame.

        image: 3, H, W normalised RGB (any size; padded internally to a multiple of 16).
        mask: H, W integer label map given on this frame (0 = background), or None.
        labels: the labels of `mask` to start tracking here (default: those not tracked yet).
            Pixels of any label in `mask` are taken away from the objects already tracked, as the
            annotation is authoritative there.
        end: this is the last frame to process; its memory value is not computed.
        features: the key encoder's output for this frame (`encode_key`, e.g. kept in a cache), used
            instead of running the key encoder again; None (default): run it.
        Returns probabilities (1 + num_objects, H, W), float32, background first, object i + 1
        being `self.labels[i]`; they sum to one at each pixel.

        The phases below (begin_frame, the key encoder, read_memory, the decoder, add_new_objects,
        value_inputs, the value encoder, memorise, finish) are shared with `inference_core.batch`,
        which runs the network parts of several cores in one batch.
        """
        frame = self.begin_frame(image, mask, labels, end)
        if not frame.active:
            return self.finish(frame)  # nothing to track yet
        with self._autocast():
            frame.features = self.network.encode_key(frame.padded) if features is None else features
            _, qv16, f16, f8, f4 = frame.features
            readout = self.read_memory(frame)
            if readout is not None:
                logits = torch.cat(
                    [self.network.decode(r, qv16, f8, f4) for r in self._object_batches(readout)]
                )  # K, 1, H, W
                frame.prob = decoded_probabilities(logits)
            self.add_new_objects(frame)
            inputs = self.value_inputs(frame)
            if inputs is not None:
                self.memorise(frame, self.encode_values(frame.padded, f16, *inputs))
        return self.finish(frame)

    # ------------------------------------------------------------------------- step's phases
    def begin_frame(
        self, image: Tensor, mask: Tensor | None = None, labels: Sequence[int] | None = None, end: bool = False
    ) -> FrameState:
        """Advance to the next frame: its padded image and the objects that start on it."""
        self.frame_index += 1
        image = image.to(self.device, non_blocking=True)
        new_labels = self._new_labels(mask, labels)
        frame = FrameState(index=self.frame_index, size=tuple(image.shape[-2:]), mask=mask, new_labels=new_labels,
                           end=end, active=self.num_objects > 0 or bool(new_labels))
        if frame.active:
            frame.padded, frame.pad = pad_divide_by(image.unsqueeze(0), 16)
        return frame

    def read_memory(self, frame: FrameState) -> Tensor | None:
        """The memory readout of every tracked object (K, C_v, h, w), or None with nothing to read."""
        if self.memory.num_frames > 0 and self.num_objects > 0:
            return self.memory.read(frame.features[0])
        return None

    def add_new_objects(self, frame: FrameState) -> None:
        """Merge the annotation of the objects starting on this frame into its probabilities."""
        if frame.new_labels:
            frame.prob = self._add_objects(frame.prob, frame.mask, frame.new_labels, frame.pad)

    def value_inputs(self, frame: FrameState) -> tuple[Tensor, Tensor] | None:
        """(masks, others), both K, H, W, for the value encoder if this frame is memorised, else None.

        others: per object, the sum of the other objects' probabilities.
        """
        frame.is_memory = bool(frame.new_labels) or self.is_memory_frame(frame.index)
        if frame.end or not (frame.is_memory or self.include_last):
            return None
        masks = frame.prob[1:]
        return masks, masks.sum(dim=0, keepdim=True) - masks

    def memorise(self, frame: FrameState, mv16: Tensor) -> None:
        """Add the frame (its key, and values mv16: K, C_v, h, w) as memory or as the temporary frame."""
        self.memory.add(frame.index, frame.features[0], mv16, temporary=not frame.is_memory)
        if frame.is_memory:
            self.last_mem_index = frame.index

    def finish(self, frame: FrameState) -> Tensor:
        """The frame's probabilities at its own size (1 + K, H, W), float32."""
        if not frame.active:
            return torch.ones(1, *frame.size, device=self.device)
        return unpad(frame.prob, frame.pad).float()

    # ------------------------------------------------------------------- correction and removal
    @torch.inference_mode()
    def correct(self, image: Tensor, mask: Tensor, prob: Tensor, labels: Sequence[int] | None = None) -> Tensor:
        """Replace tracked objects' masks on the current frame (the last one given to `step`).

        image: that frame as it was given to `step`; prob: what `step` returned for it (1 + K, H, W).
        mask: H, W label map; labels: the objects it corrects (default: every label in `mask`; all
            must be tracked). A corrected object becomes exactly its pixels of `mask`; the other
            objects give way on every labelled pixel and keep their probabilities elsewhere; soft
            aggregation renormalises. The STCN way to take a correction: the frame becomes memory
            with values encoded from the corrected masks (replacing its values when it was memory
            already), is never dropped by a memory bound, and the memory schedule restarts from it.
        Returns the corrected probabilities (1 + K, H, W), float32.
        """
        if self.frame_index < 0:
            raise ValueError("correct() before the first step()")
        mask = mask.to(self.device)
        labels = present_ids(mask) if labels is None else [int(v) for v in labels]
        unknown = [v for v in labels if v not in self.objects]
        if unknown:
            raise ValueError(f"objects {unknown} are not tracked")
        objects = prob[1:].to(self.device).float() * (mask == 0)  # the others give way on labelled pixels
        for v in labels:
            objects[self.objects.index(v)] = (mask == v).float()
        prob = soft_aggregate(objects, dim=0)
        padded, pad = pad_divide_by(image.to(self.device).unsqueeze(0), 16)
        masks, _ = pad_divide_by(prob[1:], 16)
        with self._autocast():
            k16, _, f16, _, _ = self.network.encode_key(padded)
            mv16 = self.encode_values(padded, f16, masks)
        self.memory.pin(self.frame_index)
        self.memory.put(self.frame_index, k16, mv16)
        self.last_mem_index = self.frame_index
        return prob

    # ------------------------------------------------------------------ memory given by the caller
    @torch.inference_mode()
    def encode_key(self, padded: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The key encoder's k16, qv16, f16, f8, f4 of a padded frame (1, 3, H', W', sides multiples of 16),
        at this core's precision: what `step` computes for a frame (and takes back as `features`)."""
        with self._autocast():
            return self.network.encode_key(padded.to(self.device))

    def encode_values(self, padded: Tensor, f16: Tensor, masks: Tensor, others: Tensor | None = None) -> Tensor:
        """Memory values (K, C_v, h, w) of a padded frame (1, 3, H', W') from its f16 and the objects'
        probabilities `masks` (K, H', W'); others: per object, the sum of the other objects' probabilities
        (default: computed from `masks`). In `object_batch` batches, at this core's precision."""
        if others is None:
            others = masks.sum(dim=0, keepdim=True) - masks
        with self._autocast():
            return torch.cat([
                self.network.encode_value(padded, f16, m[None], o[None])[0]
                for m, o in zip(self._object_batches(masks), self._object_batches(others))
            ])

    @torch.inference_mode()
    def start_from_memory(self, memory: Sequence[tuple[Tensor, Tensor]], labels: Sequence[int]) -> None:
        """Begin a video whose memory is given rather than annotated on its first frame.

        labels: the objects (positive ids), registered as one group; memory: frames as (key 1, C_k, h, w;
        values K, C_v, h, w in the order of `labels`, from `encode_key` / `encode_values`), stored in
        that order as permanent memory (never dropped by a memory bound). The last of them is the
        current frame, index 0: the next `step` is frame 1 and the memory schedule counts from frame 0.
        The interactive core runs each propagation pass this way, with the interacted frames as memory.
        """
        if not memory:
            raise ValueError("start_from_memory() needs at least one memory frame")
        self.reset()
        self.memory.add_group(self.objects.add([int(v) for v in labels]))
        for i, (key, values) in enumerate(memory):
            frame_id = i + 1 - len(memory)  # ..., -1, 0: the last one is the current frame
            self.memory.pin(frame_id)
            self.memory.add(frame_id, key.to(self.device), values.to(self.device))
        self.frame_index = 0
        self.last_mem_index = 0

    def remove(self, label: int) -> None:
        """Stop tracking object `label`: its registry entry and its memory values go (see MemoryBank.remove_object)."""
        if label not in self.objects:
            raise ValueError(f"object {label} is not tracked")
        self.memory.remove_object(self.objects.remove(label))

    # ------------------------------------------------------------------------------- internals
    def _object_batches(self, x: Tensor) -> tuple[Tensor, ...]:
        """Split a per-object tensor (objects first) into batches of `object_batch` objects."""
        return (x,) if self.object_batch is None else x.split(self.object_batch)

    def _new_labels(self, mask: Tensor | None, labels: Sequence[int] | None) -> list[int]:
        if mask is None:
            if labels:
                raise ValueError("labels given without a mask")
            return []
        if labels is None:
            present = torch.unique(mask).tolist()
            labels = [int(v) for v in present if v != 0]
        new = [int(v) for v in labels if int(v) not in self.labels]
        for v in new:
            if v <= 0:
                raise ValueError(f"object labels must be positive, got {v}")
        return new

    def _add_objects(self, prob: Tensor | None, mask: Tensor, new_labels: list[int], pad) -> Tensor:
        """Merge the annotation of newly given objects into the prediction of the tracked ones."""
        mask = mask.to(self.device)
        padded_mask, _ = pad_divide_by(mask[None, None].float(), 16)
        padded_mask = padded_mask[0, 0]
        annotated = padded_mask > MASK_THRESHOLD  # every labelled pixel of the given mask
        if prob is None:
            objects = torch.zeros(0, *padded_mask.shape, device=self.device)
        else:
            objects = prob[1:] * (~annotated)  # tracked objects give way to the annotation
        new = torch.stack([(padded_mask == v).float() for v in new_labels], dim=0)
        self.memory.add_group(self.objects.add(new_labels))
        return soft_aggregate(torch.cat([objects.float(), new], dim=0), dim=0)


def network_similarity(network: STCN, similarity: str | None = None) -> str:
    """The similarity to read `network`'s memory with: `similarity`, or the network's own when None.

    A network without a `similarity` attribute (an exported backend) is taken as L2 unless told.
    ValueError for an unknown name or one that contradicts the network's.
    """
    own = getattr(network, "similarity", None)
    if similarity is None:
        return own or "l2"
    check_similarity(similarity)
    if own is not None and similarity != own:
        raise ValueError(f"the network was trained with {own} similarity, not {similarity}")
    return similarity


def probabilities_to_labels(prob: Tensor, size: tuple[int, int], label_map: np.ndarray) -> np.ndarray:
    """Resize probabilities (K+1, h, w) bilinearly to `size` (H, W), take the argmax and map it to labels.

    Returns an (H, W) uint8 array (uint16 when a label exceeds 255).
    """
    index = resize_probabilities(prob, size).argmax(dim=0).cpu().numpy()
    out = label_map[index]
    return out.astype(np.uint8 if label_map.max() <= 255 else np.uint16)


def resize_probabilities(prob: Tensor, size: tuple[int, int]) -> Tensor:
    """Probabilities (K+1, h, w) resized bilinearly to `size` (H, W); unchanged when already that size."""
    if tuple(prob.shape[-2:]) == tuple(size):
        return prob
    return F.interpolate(prob.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
