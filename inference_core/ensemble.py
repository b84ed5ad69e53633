"""Several propagations of one video, their probabilities averaged: multi-scale and flip testing and
model ensembles (supplementary E, Table 10: "we feed the network with 480p/600p and original/flipped
images and simply average the output probabilities"; the ensemble's networks "are simply averaged as
in the case for multi-scale inference").

Every variant (network x shorter side x mirrored or not) is its own `InferenceCore` with its own
memory: it sees the frame at its own size (resized from the original frame by the caller), mirrored
left-right for a flipped variant, and the annotation resized and mirrored the same way. Its
probabilities are mirrored back, resized bilinearly to the frame's original size and averaged over
the variants, in the order the variants are given:

    P(x) = (1 / V) * sum_v  resize_to_original( unflip_v( P_v(x_v) ) )

so the label map is argmax P. One variant at the video's own size without flip is the plain run
exactly (the same probabilities, resized by the same function, divided by 1).

`EnsembleCore` has the surface the evaluation loop uses of an `InferenceCore` (reset, step,
needs_frame, skip, labels, label_map, device, memory for the progress bar), with one difference:
`step` takes a `ScaledFrame` (the frame at every size the variants read) and, on annotated frames,
the annotation at those sizes, and returns probabilities at the original size.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from inference_core.core import InferenceCore, resize_probabilities
from inference_core.objects import ObjectRegistry

Side = int | None  # a variant's shorter side in pixels; None: the video's own network size


@dataclass(frozen=True)
class Variant:
    """One propagation of an ensemble: which network, at which shorter side, mirrored or not."""

    model: str  # the network's name (its weights file), for messages
    short_side: Side = None
    flip: bool = False
    kernel_sigma: float | None = None  # kernelized memory reading (MemoryBank), None: off


@dataclass(frozen=True)
class ScaledFrame:
    """One frame at every shorter side the variants read. images: side -> 3, h, w normalised;
    size: the original (H, W), where the averaged probabilities are returned."""

    images: Mapping[Side, Tensor]
    size: tuple[int, int]


class EnsembleMemory:
    """The progress bar's view of the variants' memories: frames of one (all store the same frames),
    bytes of all."""

    def __init__(self, cores: Sequence[InferenceCore]) -> None:
        self.cores = cores

    @property
    def num_frames(self) -> int:
        return self.cores[0].memory.num_frames

    @property
    def nbytes(self) -> int:
        return sum(c.memory.nbytes for c in self.cores)


def variant_core(core: InferenceCore, kernel_sigma: float | None = None) -> InferenceCore:
    """A fresh core on the same network and with the same options as `core`, with its own memory.

    A shallow copy keeps every option of `core` (whatever options InferenceCore gains) and shares its
    network; `reset` then gives it an empty memory of its own.
    """
    if kernel_sigma is not None and not kernel_sigma > 0:
        raise ValueError(f"kernel_sigma must be > 0 or None, got {kernel_sigma}")
    twin = copy.copy(core)
    twin.kernel_sigma = kernel_sigma
    twin.reset()
    return twin


class EnsembleCore:
    """Runs one InferenceCore per variant on the same frames and averages their probabilities.

    cores[i] runs variants[i]; they must not share a memory (see `variant_core`). All cores are
    given the same object labels, so their probabilities have the same channels.
    """

    def __init__(self, cores: Sequence[InferenceCore], variants: Sequence[Variant]) -> None:
        if not cores or len(cores) != len(variants):
            raise ValueError(f"one core per variant is needed, got {len(cores)} cores for {len(variants)} variants")
        if len({id(c.memory) for c in cores}) != len(cores):
            raise ValueError("the variants' cores share a memory; give each its own (variant_core)")
        self.cores = list(cores)
        self.variants = list(variants)
        self.device = self.cores[0].device
        self.memory = EnsembleMemory(self.cores)

    @property
    def sides(self) -> tuple[Side, ...]:
        """The distinct shorter sides the variants read, in the order of the variants."""
        return tuple(dict.fromkeys(v.short_side for v in self.variants))

    @property
    def labels(self) -> list[int]:
        return self.cores[0].labels

    @property
    def objects(self) -> ObjectRegistry:
        """The tracked objects (the same in every variant)."""
        return self.cores[0].objects

    @property
    def frame_index(self) -> int:
        return self.cores[0].frame_index

    @property
    def num_objects(self) -> int:
        return self.cores[0].num_objects

    def label_map(self) -> np.ndarray:
        return self.cores[0].label_map()

    def reset(self) -> None:
        for core in self.cores:
            core.reset()

    def needs_frame(self, required: bool) -> bool:
        return any(core.needs_frame(required) for core in self.cores)

    def skip(self) -> None:
        for core in self.cores:
            core.skip()

    def step(
        self,
        frame: ScaledFrame,
        masks: Mapping[Side, Tensor] | None = None,
        labels: Sequence[int] | None = None,
        end: bool = False,
    ) -> Tensor:
        """Segment the next frame with every variant; (1 + num_objects, H, W) at the original size.

        frame: the frame at every side of `sides`; masks: the annotation given on this frame at the
        same sides (H', W' label maps), or None. labels: as InferenceCore.step (default: the labels of
        the masks not tracked yet, the same for every variant).
        """
        if masks is not None and labels is None:
            present = set().union(*(torch.unique(m).tolist() for m in masks.values()))
            labels = sorted(int(v) for v in present if v != 0 and int(v) not in self.labels)
        total: Tensor | None = None
        for core, variant in zip(self.cores, self.variants):
            image = frame.images[variant.short_side]
            mask = None if masks is None else masks[variant.short_side]
            if variant.flip:
                image = image.flip(-1)
                mask = None if mask is None else mask.flip(-1)
            prob = core.step(image, mask, labels=labels, end=end)
            if variant.flip:
                prob = prob.flip(-1)
            prob = resize_probabilities(prob, frame.size)
            total = prob if total is None else total + prob
        if any(core.labels != self.labels for core in self.cores):  # by construction; a guard for the average
            raise RuntimeError("the variants track different objects")
        assert total is not None
        return total / len(self.cores)
