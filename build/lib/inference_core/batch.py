"""Several videos stepped together: one batch through the network for the current frame of each.

`step_cores` takes the next frame of several `InferenceCore`s (one per video, all sharing one
network) and runs the phases of `InferenceCore.step` for all of them, with the three network
parts batched over the videos:

    key encoder     the frames of every core, concatenated along the batch
    memory read     per core, on its own memory (its objects, memory frames, top-k)
    decoder         every reading core's objects, concatenated (sum K_i entries); its frame-level
                    convolutions (the qv16 half of `compress`, the f8 / f4 skip convolutions) run
                    once per frame and are gathered per object by its frame index (`owners`)
    value encoder   every memorising core's objects, concatenated, each with its own frame and f16

The network needs one frame size per batch, so frames are grouped by their padded size (sides
rounded up to multiples of 16, as `step` pads them): one forward pass of each part per group.
Padding a frame further to a common size would change the convolutions near its border (they
would see more zeros), so grouping is what keeps every core's result that of stepping it alone.

Equality with `step`: the arithmetic per core is the same, and a batch of entries that all belong
to one core is given that core's batch-1 features exactly as `step` gives them (the decoder's and
value encoder's shared half computed once), so a single core, or one core alone in its size
group, gets bit-identical probabilities. Entries of several cores in one decoder batch take
their frame's share of the frame-level convolutions by index (`Decoder.forward(..., owners)`), and
the value encoder sees each frame repeated per object: the same sums, in another order for
convolutions over a batch of several frames, equal to float rounding (within 1e-4; the label maps
are the same).

`object_batch` bounds the entries per decoder / value-encoder call, over all cores together
(default: the smallest `object_batch` of the cores; None = all at once).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from inference_core.core import FrameState, InferenceCore, decoded_probabilities


class BatchItem(NamedTuple):
    """One core's next frame, with the arguments of `InferenceCore.step`."""

    core: InferenceCore
    image: Tensor  # 3, H, W normalised RGB
    mask: Tensor | None = None  # H, W label map given on this frame
    labels: Sequence[int] | None = None  # the labels of `mask` starting here (default: the new ones)
    end: bool = False  # the core's last frame: its memory value is not computed


def fresh_core(core: InferenceCore) -> InferenceCore:
    """A core with the same network and options as `core`, holding no video (for another slot of a batch)."""
    twin = copy.copy(core)  # shallow: the network is shared, every per-video state is replaced by reset()
    twin.reset()
    return twin


@torch.inference_mode()
def step_cores(
    items: Sequence[BatchItem | tuple], object_batch: int | None | str = "auto"
) -> list[Tensor]:
    """Step every item's core by one frame, the network parts batched over the cores.

    items: BatchItem(core, image, mask=None, labels=None, end=False) or plain tuples of the same
        fields; each core appears at most once and all share one network, device and precision.
        Cores with nothing to track yet, with objects starting on this frame, or on their last
        frame (`end`) may be mixed freely.
    object_batch: decoder / value-encoder entries per call over all cores ("auto": the smallest
        `object_batch` of the cores, None when none has one).
    Returns, per item and in order, what `item.core.step(image, mask, labels, end)` returns:
    probabilities (1 + K_i, H_i, W_i), float32, background first.
    Bad arguments of an item (labels without a mask, a label <= 0) raise ValueError as `step` does,
    before any core is stepped.
    """
    items = [BatchItem(*item) for item in items]
    if not items:
        return []
    cores = [item.core for item in items]
    check_compatible(cores)
    if object_batch == "auto":
        object_batch = min((c.object_batch for c in cores if c.object_batch is not None), default=None)
    for item in items:  # the arguments' errors before any core moves on
        item.core._new_labels(item.mask, item.labels)
    frames = [item.core.begin_frame(item.image, item.mask, item.labels, item.end) for item in items]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, frame in enumerate(frames):
        if frame.active:
            groups.setdefault(tuple(frame.padded.shape[-2:]), []).append(i)
    with cores[0]._autocast():
        for members in groups.values():
            _step_group(cores[0].network, [cores[i] for i in members], [frames[i] for i in members], object_batch)
    return [core.finish(frame) for core, frame in zip(cores, frames)]


def check_compatible(cores: Sequence[InferenceCore]) -> None:
    """ValueError unless the cores are distinct and share one network, device and autocast setting."""
    first = cores[0]
    if len({id(c) for c in cores}) != len(cores):
        raise ValueError("step_cores: a core appears more than once; each steps one frame per call")
    for c in cores[1:]:
        if c.network is not first.network:
            raise ValueError("step_cores: the cores must share one network (make them with fresh_core)")
        if c.device != first.device or c.amp != first.amp or (c.amp and c.amp_dtype != first.amp_dtype):
            raise ValueError("step_cores: the cores must share one device and precision (amp, amp_dtype)")


def _step_group(network, cores: list[InferenceCore], frames: list[FrameState], object_batch: int | None) -> None:
    """The phases of `InferenceCore.step` for cores whose frames have the same padded size."""
    padded = torch.cat([f.padded for f in frames])  # B, 3, H, W
    k16, qv16, f16, f8, f4 = network.encode_key(padded)
    for j, frame in enumerate(frames):
        # k16 is kept as memory: a copy, so that the memory does not hold the whole batch's key
        frame.features = (k16[j : j + 1].clone(), qv16[j : j + 1], f16[j : j + 1], f8[j : j + 1], f4[j : j + 1])

    readouts = [core.read_memory(frame) for core, frame in zip(cores, frames)]
    reading = [j for j, r in enumerate(readouts) if r is not None]
    if reading:
        logits = _per_object_batches(
            lambda owners, r: network.decode(r, qv16[owners], f8[owners], f4[owners]) if isinstance(owners, slice)
            else network.decode(r, qv16, f8, f4, owners=torch.tensor(owners, device=r.device)),
            reading, [[readouts[j] for j in reading]], object_batch,
        )
        for j, lg in zip(reading, logits):
            frames[j].prob = decoded_probabilities(lg)

    for core, frame in zip(cores, frames):
        core.add_new_objects(frame)
    inputs = [core.value_inputs(frame) for core, frame in zip(cores, frames)]
    writing = [j for j, x in enumerate(inputs) if x is not None]
    if writing:

        def encode(owners: list[int] | slice, masks: Tensor, others: Tensor) -> Tensor:
            if isinstance(owners, slice):  # one frame's objects: one entry of K objects, as in step
                return network.encode_value(padded[owners], f16[owners], masks[None], others[None])[0]
            return network.encode_value(padded[owners], f16[owners], masks[:, None], others[:, None])[:, 0]

        values = _per_object_batches(
            encode, writing, [[inputs[j][0] for j in writing], [inputs[j][1] for j in writing]], object_batch
        )
        for j, mv16 in zip(writing, values):
            cores[j].memorise(frames[j], mv16)


def _per_object_batches(
    fn: Callable[..., Tensor], owner_of: list[int], per_core: list[list[Tensor]], object_batch: int | None
) -> tuple[Tensor, ...]:
    """`fn` over the objects of several frames, concatenated and `object_batch` at a time; split per frame.

    owner_of: each frame's index into the group's batch; per_core: lists of per-frame tensors with
    the objects first (K_i, ...), joined and cut into the same chunks. fn(owners, *chunks) gets,
    per entry of the chunks, its frame's index, or a slice of that one index when the whole chunk
    belongs to one frame (its batch-1 features then broadcast over the objects, as in `step`).
    """
    counts = [len(x) for x in per_core[0]]
    joined = [torch.cat(xs) for xs in per_core]
    owners = [o for o, n in zip(owner_of, counts) for _ in range(n)]
    size = object_batch or len(owners)
    outs = []
    for start in range(0, len(owners), size):
        chunk_owners: list[int] | slice = owners[start : start + size]
        if len(set(chunk_owners)) == 1:  # a view of the frame's own features, as step passes them
            chunk_owners = slice(chunk_owners[0], chunk_owners[0] + 1)
        outs.append(fn(chunk_owners, *(x[start : start + size] for x in joined)))
    return torch.cat(outs).split(counts)
