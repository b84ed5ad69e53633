"""STCN from Python: `Predictor` (weights and options), `Stream` (one video, frame by frame), `segment`.

    predictor = Predictor.from_checkpoint("saves/stcn.pth")
    stream = predictor.new_stream()
    labels = stream.step(frame, mask)        # H x W x 3 uint8 in, H x W label map out (your ids)

A `Predictor` holds the network(s) and the inference options (`InferenceOptions`);
every `Stream` is one video with its own `InferenceCore` (its memory and its object registry), or for an
ensemble (several networks, scales, flip: supplementary E) its own `EnsembleCore`, whose variants read the
frame resized from the original at each side, as the evaluation datasets give it. A stream does its
work in three steps so that a batched step (several streams in one forward pass) can drive it:
`prepare` (frame and mask -> the network-size tensors), the core's `step`, and `finish`
(corrections, probabilities, the label map at the frame's size).

Frames are normalised and resized exactly as in evaluation (`util.frames`: the
normalised frame, plain bicubic, to `size` on the shorter side), and the probabilities are resized
back bilinearly before the argmax (`probabilities_to_labels`), so a stream gives the masks of
`eval_generic.py` for the same frames and first-appearance masks.

Objects and masks (the rule for a mask given with a frame, `Stream.step(frame, mask)`): the mask is
authoritative on its frame. Ids not tracked yet start there (their memory starts with that frame);
ids that are tracked already are corrected there, as by `Stream.correct`: every id in the mask gets
exactly its pixels on that frame, every other object gives way on the labelled pixels, and the frame
becomes permanent memory. (The evaluation scripts keep the datasets' rule instead: a later annotation
only starts objects, `inference_core.objects.starting_objects`.)

A mask is H x W ids, or colours (H x W x 3 RGB / x 4 RGBA uint8, a PIL image in mode RGB/RGBA) read as
the commands read a colour PNG (`colour_ids`: one id per colour for the whole video, anti-aliased
colours refused). An object with no pixel at the network size (1-2 pixels of a large frame;
see `lost_objects`) is not tracked; its given pixels are kept in the labels of
the frame where it was given.

Notes: what the user should know but is no error is kept as `note: ...` lines, never printed, as
`Predictor.note` keeps the precision line of `from_checkpoint`: `Stream.notes` gets one line for each
mask whose colours became ids (which colour became which id) and one for each mask with objects lost
at the network size (their ids and sizes); `Predictor.notes` holds the lines of the last `segment` call.

Bidirectional `segment`: an object first annotated on frame m is propagated forward from m to the
end and backward from m to frame 0 (a second stream over the reversed frames, with its own memory,
taking the masks in the same way). Per frame t, each object comes from the forward pass when t >= m
and from the backward pass when t < m; when both passes contribute objects on a frame, their
probabilities are combined by soft aggregation, otherwise the one pass's result is kept as it is.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from inference_core.backends import compile_network, exported_network
from inference_core.batch import BatchItem, step_cores
from inference_core.bidirectional import Bidirectional, first_frames
from inference_core.core import InferenceCore, probabilities_to_labels, resize_probabilities
from inference_core.ensemble import EnsembleCore, ScaledFrame, Variant, variant_core
from inference_core.objects import LostObject, keep_lost, lost_objects, lost_objects_note, present_ids, starting_objects
from inference_core.options import InferenceOptions, PredictorError
from model.checkpoint import load_network
from util.defaults import KERNEL_ABOVE_SIDE
from util.device import DeviceError, precision_label, prepare_for_inference, resolve_amp_dtype, resolve_device
from util.frame_source import FrameSource
from util.frames import MIN_SHORT_SIDE, normalise, resize_frame, resize_labels
from util.io import DataError, MaskReader, image_files, resized_shape, rgb_image
from util.video import VideoReader

MAX_LABEL = 2**16 - 1  # label maps come back as uint8 (ids <= 255) or uint16

Frame = np.ndarray | Tensor | Image.Image
Frames = str | os.PathLike | Iterable[Frame]


# ------------------------------------------------------------------------------ arguments
def options_device(options: InferenceOptions) -> torch.device:
    """The device the options name, checked to exist (exported backends: the CPU, also for "auto");
    PredictorError naming `device`. The one place a device option is resolved."""
    device = options.device
    try:
        resolved = resolve_device(device)  # a name or a torch.device, checked to exist
    except DeviceError as exc:
        raise PredictorError("device", exc.problem, "use {device='cpu'} or auto") from None
    except RuntimeError:  # a device string torch does not know
        raise PredictorError("device", f"unknown device {device!r}", "choose auto, cpu, cuda or cuda:i") from None
    if options.backend == "pytorch":
        return resolved
    if device in (None, "", "auto"):
        return torch.device("cpu")
    if resolved.type != "cpu":
        raise PredictorError("device", f"{{backend='{options.backend}'}} runs on the CPU", "use {device='cpu'} or auto")
    return resolved


def network_similarity_of(options: InferenceOptions, network: Any, name: str) -> str:
    """The memory read's similarity for `network` (named `name` in messages): its own (section 4, Table 2;
    L2 for a network that does not say, e.g. an export); PredictorError when `options.similarity`
    contradicts it: weights are trained for one similarity."""
    trained = getattr(network, "similarity", None) or options.similarity or "l2"
    wanted = options.similarity
    if wanted is not None and wanted != trained:
        raise PredictorError("similarity", f"{wanted} contradicts {name}, which was trained with {trained} similarity",
                             f"leave {{similarity}} out or pass {{similarity='{trained}'}}")
    return trained


def as_rgb(frame: Frame, name: str = "frame") -> np.ndarray | Tensor:
    """An H x W x 3 uint8 frame of at least one pixel (numpy, tensor, or a PIL image in any mode, converted
    to 8-bit RGB as the image files are, by `rgb_image`)."""
    if isinstance(frame, Image.Image):
        try:
            frame = np.asarray(rgb_image(frame, name), dtype=np.uint8)
        except DataError as exc:
            raise PredictorError(name, exc.problem, exc.fix) from None
    if not isinstance(frame, (np.ndarray, Tensor)):
        raise PredictorError(name, f"expected an H x W x 3 uint8 array, tensor or PIL image, "
                             f"got {type(frame).__name__}",
                             "pass the frame as a numpy array (H, W, 3), dtype uint8")
    dtype = frame.dtype
    if dtype not in (np.uint8, torch.uint8):
        raise PredictorError(name, f"dtype {dtype} is not uint8",
                             "pass 0..255 RGB values as uint8 (e.g. .astype(np.uint8))")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise PredictorError(name, f"shape {tuple(frame.shape)} is not H x W x 3",
                             "pass RGB frames channels last (a C x H x W tensor: .permute(1, 2, 0))")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise PredictorError(name, f"is {frame.shape[1]}x{frame.shape[0]}: it has no pixels",
                             "pass a frame of at least one row and one column")
    return frame


def as_label_map(mask: Any, size: tuple[int, int], name: str = "mask", colours: MaskReader | None = None,
                 where: str = "mask") -> Tensor:
    """An H x W integer label map (numpy, tensor or PIL image, ids 0..MAX_LABEL) as a long CPU tensor.

    A colour mask is first read as ids by `colour_ids` (with `colours`, the video's colour -> id map).
    """
    if colours is not None:
        mask = colour_ids(mask, colours, where, name)
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask)
    if isinstance(mask, np.ndarray):
        if mask.dtype.kind not in "iu":
            raise PredictorError(name, f"dtype {mask.dtype} is not an integer type", "pass object ids as integers")
        mask = torch.from_numpy(mask.astype(np.int64))
    elif isinstance(mask, Tensor):
        if mask.dtype.is_floating_point or mask.dtype.is_complex or mask.dtype == torch.bool:
            raise PredictorError(name, f"dtype {mask.dtype} is not an integer type", "pass object ids as integers")
        mask = mask.detach().to("cpu", torch.int64)
    else:
        raise PredictorError(name, f"expected an H x W integer array, got {type(mask).__name__}",
                             "pass a numpy array of object ids (0 = background)")
    if tuple(mask.shape) != tuple(size):
        shape = "x".join(str(v) for v in reversed(mask.shape))
        raise PredictorError(name, f"mask is {shape} but the frame is {size[1]}x{size[0]}",
                             "give the mask at the frame's size (H x W)")
    if mask.numel() and (int(mask.min()) < 0 or int(mask.max()) > MAX_LABEL):
        raise PredictorError(name, f"ids outside 0..{MAX_LABEL}", f"use object ids 1..{MAX_LABEL} (0 = background)")
    return mask


def colour_ids(mask: Any, colours: MaskReader, where: str, name: str = "mask") -> Any:
    """A colour mask (H x W x 3 RGB or x 4 RGBA uint8 array or tensor, a PIL image in mode RGB/RGBA) as the
    H x W uint8 ids the commands read from the same colours in a PNG: `MaskReader.colour_labels_of`
    (one id per colour, kept for the video by `colours`, a note naming `where` saying which
    colour became which id, anti-aliased colours refused). Any other mask is returned as it is."""
    if isinstance(mask, Image.Image):
        if mask.mode not in ("RGB", "RGBA"):
            return mask
        mask = np.asarray(mask)
    elif isinstance(mask, Tensor) and mask.ndim == 3:
        mask = mask.detach().cpu().numpy()
    if not (isinstance(mask, np.ndarray) and mask.ndim == 3 and mask.shape[2] in (3, 4)):
        return mask
    if mask.dtype != np.uint8:
        raise PredictorError(name, f"colour mask of dtype {mask.dtype}, not uint8",
                             "pass colours as H x W x 3 uint8 RGB, or ids as an H x W integer array")
    try:
        return colours.colour_labels_of(where, mask)
    except DataError as exc:
        raise PredictorError(name, exc.problem, exc.fix) from None


# ------------------------------------------------------------------------------ predictor
class Predictor:
    """The network(s) and the inference options; `new_stream()` for each video, `new_core()` for the loop.

    network: an STCN in eval mode (or an exported backend, `inference_core.backends`), or a list of
        them: the networks of an ensemble, named by `models` in messages.
    options: an InferenceOptions, its fields replaced by `fields`
        (`Predictor(net, size=480, top_k=20, ...)`); every field is checked, PredictorError naming it.
    amp_dtype: the autocast dtype the network runs under (None: fp32, or the `amp` rule of
        `resolve_amp_dtype` for the network's device when `amp` is set).
    """

    def __init__(self, network: Any, options: InferenceOptions | None = None, *,
                 amp_dtype: torch.dtype | None = None, **fields: Any) -> None:
        self.inference_options = options = InferenceOptions.of(options, **fields)
        self.networks = list(network) if isinstance(network, (list, tuple)) else [network]
        self.names = list(options.models) if len(options.models) == len(self.networks) else [
            f"network {i}" for i in range(len(self.networks))]
        self.network = self.networks[0]
        # an exported backend has no parameters and names its device
        self.device = getattr(self.network, "device", None) or next(self.network.parameters()).device
        self.note: str | None = None  # a line for the user about the precision
        if amp_dtype is None and options.amp and options.backend == "pytorch":
            amp_dtype, self.note = resolve_amp_dtype(self.device, True, options.amp_dtype)
        self.amp_dtype = amp_dtype
        self.similarities = [network_similarity_of(options, net, name) for net, name in zip(self.networks, self.names)]
        self.notes: list[str] = []  # lines for the user about the masks of the last `segment` call

    @property
    def size(self) -> int | None:
        """The shorter side frames are resized to for the network (None: their own size)."""
        return self.inference_options.size

    @property
    def antialias(self) -> bool:
        return self.inference_options.antialias

    @property
    def options(self) -> dict[str, Any]:
        """The InferenceCore arguments of the options (top_k, mem_every, ...)."""
        return self.inference_options.core_options()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | Sequence[str | os.PathLike],
                        options: InferenceOptions | str | torch.device | None = None, **fields: Any) -> Predictor:
        """Load weights with `load_network` (released stcn.pth, training checkpoints, stage-0 files
        converted) and keep the options.

        path: one weights file, or several: an ensemble averaging their probabilities (supplementary E;
        with `scales`, `flip` and `kernel_sigma` every configuration of the evaluation commands).
        options / fields: as `Predictor` (a device may also be given in place of `options`). device:
        "auto" (CUDA when present), "cpu", "cuda", ... amp: autocast (float16 on CUDA; on a CPU
        bfloat16 where it is native, else fp32 with a note in `.note`); amp_dtype forces "float16" or
        "bfloat16". backend: "pytorch", "onnxruntime" or "openvino" (exported, CPU; onnx_dir: their
        exports), compile: torch.compile (pytorch). Bad arguments raise PredictorError naming the
        argument; a bad checkpoint CheckpointError naming the file.
        """
        if options is not None and not isinstance(options, InferenceOptions):  # from_checkpoint(path, "cpu")
            options, fields = None, {"device": options, **fields}
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        options = InferenceOptions.of(options, **{"models": tuple(str(p) for p in paths), **fields})
        device = options_device(options)
        dtype, note = resolve_amp_dtype(device, options.amp, options.amp_dtype)
        networks, similarities, loaded = [], [], {}
        for model in options.models:
            if model in loaded:  # the same weights twice: one network
                networks.append(networks[loaded[model]])
                similarities.append(similarities[loaded[model]])
                continue
            loaded[model] = len(networks)
            network = prepare_for_inference(load_network(model, device=device))
            # the read's similarity is the weights' own; kept here because an exported backend (below) does
            # not carry it
            similarities.append(network_similarity_of(options, network, model))
            if options.backend != "pytorch":
                network = exported_network(network, options.backend, options.onnx_dir, precision=precision_label(dtype))
            elif options.compile:
                network = compile_network(network)
            networks.append(network)
        predictor = cls(networks, options, amp_dtype=dtype if options.backend == "pytorch" else None)
        predictor.similarities = similarities  # the exported networks' too
        predictor.note = note
        return predictor

    @property
    def similarity(self) -> str:
        """The memory read's similarity: the weights' own ("l2" for released weights)."""
        return self.similarities[0]

    def variants(self) -> list[Variant]:
        """The propagations of an ensemble: every network x shorter side x flip, in that order (the
        order of the average); `kernel_sigma` for the sides above KERNEL_ABOVE_SIDE (supplementary E)."""
        options = self.inference_options
        sigma = options.kernel_sigma
        return [Variant(name, side, flip, sigma if side is not None and side > KERNEL_ABOVE_SIDE else None)
                for name in self.names for side in (options.scales or (None,))
                for flip in ((False, True) if options.flip else (False,))]

    def new_core(self) -> InferenceCore | EnsembleCore:
        """A fresh core with this predictor's network(s) and options: an InferenceCore, or for an ensemble
        (several networks, scales or flip) an EnsembleCore of one core per variant, each with its own memory."""
        cores = [InferenceCore(net, amp=self.amp_dtype is not None, amp_dtype=self.amp_dtype, similarity=similarity,
                               **self.options) for net, similarity in zip(self.networks, self.similarities)]
        if not self.inference_options.is_ensemble:
            return cores[0]
        variants = self.variants()
        per_network = len(variants) // len(cores)  # the variants are network x side x flip, in that order
        return EnsembleCore([variant_core(cores[i // per_network], v.kernel_sigma) for i, v in enumerate(variants)],
                            variants)

    def new_stream(self, start_only: bool = False) -> Stream:
        """One video, streamed: `step` every frame in order.

        start_only: the evaluation datasets' rule for a mask instead of the module docstring's: a mask only
        starts objects (its ids not tracked yet, or the `start_labels` given with it,
        `starting_objects`); the tracked ids in it are left to the propagation, never corrected."""
        return Stream(self, start_only)

    def network_size(self, h: int, w: int) -> tuple[int, int]:
        """(H, W) of a frame of size (h, w) at the network."""
        return resized_shape(h, w, self.size)

    def step_batch(self, items: Sequence[tuple[Stream, Frame] | tuple[Stream, Frame, Any]]) -> list[np.ndarray]:
        """Step several streams (videos) on one frame each, in one forward pass of the key encoder, the
        decoder and the value encoder (`step_cores`; frames of different
        padded sizes go in separate passes of the same call).

        items: (stream, frame) or (stream, frame, mask), each stream of this predictor and at most
        once. Returns each stream's label map, in order, as `stream.step(frame, mask)` would: the same
        arithmetic per stream (only the summation order of batched convolutions differs, ~1e-6 on
        the probabilities). Streams may track different numbers of objects and memory frames.
        """
        streams = []
        for n, item in enumerate(items):
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3) or not isinstance(item[0], Stream):
                raise PredictorError("items", f"item {n} is not (stream, frame) or (stream, frame, mask)",
                                     "pass a list of (stream, frame[, mask]) tuples")
            if item[0].predictor is not self:
                raise PredictorError("items", f"item {n}: the stream belongs to another predictor",
                                     "step each predictor's streams with its own step_batch")
            if any(item[0] is s for s in streams):
                raise PredictorError("items", f"item {n}: the stream is given twice", "give each stream once per call")
            if isinstance(item[0].core, EnsembleCore):
                raise PredictorError("items", f"item {n}: the stream runs an ensemble",
                                     "step an ensemble's streams one at a time (stream.step)")
            streams.append(item[0])
        prepared = [stream.prepare(*item[1:]) for stream, item in zip(streams, items)]
        probs = advance_together(streams, prepared)
        return [stream.finish(p, prob) for stream, p, prob in zip(streams, prepared, probs)]

    # -------------------------------------------------------------------------- offline
    def segment(self, frames: Frames, masks: Mapping[int, Any], bidirectional: bool = False
                ) -> Iterator[tuple[int, np.ndarray]]:
        """Segment a whole video; yields (frame index, H x W label map) in frame order.

        frames: a folder of images (in frame order, numbers in names by value: `image_files`), a
            video file (.mp4, ...; decoded one frame at a time, as displayed: `util.video`) or a sequence
            of H x W x 3 uint8 frames. masks: frame index -> label map of that
            frame (the rule of the module docstring: new ids start there, tracked ids are corrected).
        bidirectional: also propagate every object backward from the frame where it is first
            annotated to frame 0 (module docstring). This runs the backward pass first and keeps its
            probabilities (at the network size) and, for a video file, its decoded frames up to the
            last first-annotation frame in memory.
        """
        source = _frame_source(frames)
        masks = _check_masks(masks, source.length)
        self.notes = []
        if not bidirectional:
            stream = self.new_stream()
            stream.notes = self.notes  # its mask notes are this call's
            for t, frame in enumerate(source.forward()):
                yield t, stream.step(frame, masks.get(t))
            _check_masks(masks, stream.frame_index + 1)
            return
        colours = MaskReader()  # both passes see the same ids: colour masks read once, in frame order
        masks = {t: colour_ids(masks[t], colours, f"mask of frame {t}") for t in sorted(masks)}
        self.notes.extend(colours.notes)
        both = Bidirectional(first_frames((t, _mask_ids(masks[t])) for t in sorted(masks)))
        if both.last > 0:
            frames = source.upto(both.last)
            backward = self.new_stream()

            def step_backward(t: int) -> tuple[Tensor, list[int]]:
                backward.step(frames[t], masks.get(t))
                return backward.network_probabilities, backward.objects

            both.run_backward(step_backward)
        stream = self.new_stream()
        stream.notes = self.notes  # the forward pass sees every mask (the backward pass the same ones, reversed)
        for t, frame in enumerate(source.forward()):
            prepared = stream.prepare(frame, masks.get(t))
            yield t, stream.finish(prepared, stream.advance(prepared), backward=both)


def advance_together(streams: Sequence[Stream], prepared: Sequence[StepInput]) -> list[Tensor]:
    """`Stream.advance` of several streams of one predictor (single cores), the network parts in one batch
    (`step_cores`): each stream's probabilities at the network size, in order."""
    return step_cores([BatchItem(stream.core, p.image, p.mask, p.start or None, p.end)
                       for stream, p in zip(streams, prepared)])


def _mask_ids(mask: Any) -> list[int]:
    """The non-zero ids of a label map (numpy, tensor or PIL image)."""
    arr = np.asarray(mask) if not isinstance(mask, Tensor) else mask.cpu().numpy()
    return [int(v) for v in np.unique(arr).tolist() if v != 0]


def _check_masks(masks: Mapping[int, Any], length: int | None) -> dict[int, Any]:
    if not isinstance(masks, Mapping):
        raise PredictorError("masks", f"expected a mapping frame index -> label map, got {type(masks).__name__}",
                             "pass e.g. {0: first_mask}")
    for t in masks:
        if not isinstance(t, (int, np.integer)) or t < 0:
            raise PredictorError("masks", f"key {t!r} is not a frame index", "use frame indices 0, 1, ... as keys")
        if length is not None and t >= length:
            raise PredictorError("masks", f"frame {t} is past the end of the video ({length} frames)",
                                 "annotate frames of the video")
    return {int(t): m for t, m in masks.items()}


def _frame_source(frames: Frames) -> FrameSource:
    """`segment`'s frames: a folder of images, a video file (DataError naming the file when it is no
    video) or a sequence or iterable of frames; PredictorError for a path that is neither."""
    if not isinstance(frames, (str, os.PathLike)):
        return FrameSource.in_memory(frames)
    path = Path(frames)
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise PredictorError("frames", f"{path}: no images in the folder", "pass a folder of frames")
        return FrameSource.images(files)
    if path.is_file():
        return FrameSource.video_file(VideoReader(path))
    raise PredictorError("frames", f"{path}: no such folder or video file", "check the path")


# --------------------------------------------------------------------------------- stream
@dataclass
class StepInput:
    """One frame prepared for the core (what a batched step needs of a stream)."""

    image: Tensor | ScaledFrame  # 3, h, w normalised, at the network size (an ensemble: at each of its sides)
    mask: Tensor | dict | None  # h, w long: the objects that start here (an ensemble: at each side), or None
    start: list[int]  # the ids that start here
    annotation: Tensor | None  # h, w long: the whole given mask when it also corrects tracked ids
    size: tuple[int, int]  # the frame's own (H, W)
    lost: list[LostObject] = field(default_factory=list)  # objects of the mask with no pixel at the network size
    end: bool = False  # the video's last frame to process: its memory value is not computed


class Stream:
    """One video given frame by frame (`step`), with corrections (`correct`) and removal (`remove`).

    Label maps are H x W at the frame's size in the caller's ids, uint8 while every id is <= 255,
    else uint16 (ids up to 65535). `probabilities` are those of the last frame.
    """

    def __init__(self, predictor: Predictor, start_only: bool = False) -> None:
        self.predictor = predictor
        self.start_only = start_only  # a mask only starts objects (`Predictor.new_stream`)
        self.core = predictor.new_core()
        self.frame_size: tuple[int, int] | None = None  # (H, W) of the video
        self._image: Tensor | None = None  # the last frame at the network size
        self._prob: Tensor | None = None  # its probabilities (1 + K, h, w)
        self.lost: list[LostObject] = []  # objects of the last frame's mask too small for the network size
        self.notes: list[str] = []  # `note:` lines for the user about the masks given (module docstring)
        self._colours = MaskReader()  # colour masks: colour -> id, kept for the video

    def reset(self) -> None:
        """Forget the video: a fresh core (no memory, no objects), ready for the first frame of another."""
        self.__init__(self.predictor, self.start_only)

    @property
    def frame_index(self) -> int:
        """Index of the last frame given to `step` (-1 before the first)."""
        return self.core.frame_index

    @property
    def objects(self) -> list[int]:
        """The tracked ids, in the order of the probability channels (after the background)."""
        return list(self.core.objects.ids)

    @property
    def network_probabilities(self) -> Tensor:
        """The last frame's probabilities at the network size, (1 + K, h, w), background first (an
        ensemble: their average at the frame's size, `EnsembleCore`)."""
        if self._prob is None:
            raise PredictorError("probabilities", "no frame given yet", "call step(frame) first")
        return self._prob

    @property
    def probabilities(self) -> dict[int, np.ndarray]:
        """The last frame's probabilities at its size: id -> H x W float32 (0: the background);
        they sum to one at each pixel."""
        prob = resize_probabilities(self.network_probabilities, self.frame_size).cpu().numpy()
        return {obj: prob[c] for c, obj in enumerate([0, *self.objects])}

    def labels(self, backward: Bidirectional | None = None) -> np.ndarray:
        """The last frame's label map (H x W, the caller's ids); objects of its mask lost at the network
        size keep their given pixels (module docstring). backward: the backward pass of a bidirectional
        run, whose result for this frame is merged in (`Bidirectional.merge`)."""
        prob, label_map = self.network_probabilities, self.core.label_map()
        if backward is not None:
            prob, label_map = backward.merge(self.frame_index, prob, self.objects)
        return keep_lost(probabilities_to_labels(prob, self.frame_size, label_map), self.lost)

    # ------------------------------------------------------------------------------ step
    def step(self, frame: Frame, mask: Any = None) -> np.ndarray:
        """Segment the next frame; `mask` (H x W ids, optional): see the module docstring's rule."""
        prepared = self.prepare(frame, mask)
        return self.finish(prepared, self.advance(prepared))

    def needs_frame(self, required: bool) -> bool:
        """Whether the next frame must be processed: its labels are wanted (`required`), or it is memory
        (`InferenceCore.needs_frame`). A frame that need not be is passed over with `skip`."""
        return self.core.needs_frame(required)

    def skip(self) -> None:
        """Pass over the next frame without processing it; `labels` and `probabilities` stay the last
        processed frame's."""
        self.core.skip()

    def advance(self, prepared: StepInput) -> Tensor:
        """The core's step on a prepared frame (the network work): probabilities at the network size
        (an ensemble: at the frame's size), background first."""
        return self.core.step(prepared.image, prepared.mask, labels=prepared.start or None, end=prepared.end)

    def prepare(self, frame: Frame, mask: Any = None, start_labels: Sequence[int] | None = None,
                end: bool = False) -> StepInput:
        """Check and convert a frame and its mask for the core (no network work), on the core's device.

        start_labels: with `start_only`, the ids of `mask` that start here (None: every id not tracked
        yet). end: the last frame to process (its memory value is not computed)."""
        rgb = as_rgb(frame)
        size = (int(rgb.shape[0]), int(rgb.shape[1]))
        if self.frame_size is not None and size != self.frame_size:
            raise PredictorError("frame", f"is {size[1]}x{size[0]} but this stream's frames are "
                                 f"{self.frame_size[1]}x{self.frame_size[0]}", "start a new stream for another video")
        net_size = self.predictor.network_size(*size)
        if min(net_size) < MIN_SHORT_SIDE:
            raise PredictorError("frame", f"is {net_size[1]}x{net_size[0]} at the network size, below its minimum "
                                 f"shorter side of {MIN_SHORT_SIDE} pixels",
                                 f"pass larger frames or size>={MIN_SHORT_SIDE}")
        where = f"mask of frame {self.frame_index + 1}"
        given = None if mask is None else self._label_map(mask, size, where)
        ensemble = isinstance(self.core, EnsembleCore)
        device = self.core.device
        if ensemble:  # every side the variants read, resized from the original frame
            x = normalise(rgb)
            shapes = {side: net_size if side is None else resized_shape(*size, side) for side in self.core.sides}
            image = ScaledFrame({side: resize_frame(x, shape, self.predictor.antialias).to(device)
                                 for side, shape in shapes.items()}, size)
        else:
            image = resize_frame(normalise(rgb), net_size, self.predictor.antialias).to(device)
        if given is None:
            return StepInput(image, None, [], None, size, end=end)
        labels = resize_labels(given, net_size)
        if self.start_only:  # the ids that start here; the tracked ones are left to the propagation
            tracked_ids = self.core.labels
            starting = present_ids(given) if start_labels is None else start_labels
            lost = self._lost_objects(where, given, labels, [v for v in starting if v not in tracked_ids])
            start_mask, new = starting_objects(labels, start_labels, tracked_ids)
            tracked = []
        else:
            lost = self._lost_objects(where, given, labels)
            tracked, new = self.core.objects.split(present_ids(labels))
        if not new and not tracked:
            return StepInput(image, None, [], None, size, lost, end)
        if ensemble:
            if tracked:
                raise PredictorError("mask", f"ids {tracked} are tracked already: an ensemble's stream is not "
                                     "corrected", "give each object's mask on the frame where it first appears only")
            keep = torch.tensor(new)
            masks = {side: torch.where(torch.isin(m, keep), m, 0).to(device) for side, m in
                     ((side, resize_labels(given, shape)) for side, shape in shapes.items())}
            return StepInput(image, masks, new, None, size, lost, end)
        if not self.start_only:
            start_mask = None
            if new:  # the core starts the new ids from their pixels; `finish` corrects the tracked ones
                start_mask = labels if not tracked else torch.where(torch.isin(labels, torch.tensor(new)), labels, 0)
        return StepInput(image, None if start_mask is None else start_mask.to(device), new,
                         labels if tracked else None, size, lost, end)

    def _single_core(self, what: str) -> None:
        if isinstance(self.core, EnsembleCore):
            raise PredictorError(what, "changes one core's memory, and this stream runs an ensemble",
                                 "use a predictor of one network at one size, without flip")

    def _label_map(self, mask: Any, size: tuple[int, int], where: str) -> Tensor:
        """`as_label_map` with this video's colour -> id map; its note (which colour became which id) to `notes`."""
        labels = as_label_map(mask, size, colours=self._colours, where=where)
        self.notes.extend(self._colours.notes)
        self._colours.notes.clear()
        return labels

    def _lost_objects(self, where: str, given: Tensor, at_network: Tensor,
                      ids: Sequence[int] | None = None) -> list[LostObject]:
        """The objects of a mask (among `ids`; None: all) with no pixel at the network size, told in one line
        of `notes`."""
        lost = lost_objects(given, at_network, ids)
        if lost:
            self.notes.append(lost_objects_note(
                where, lost, tuple(at_network.shape), f"to track {'them' if len(lost) > 1 else 'it'}: a larger size, "
                "None for the frames' own size, or a larger object in the mask"))
        return lost

    def finish(self, prepared: StepInput, prob: Tensor, labels: bool = True,
               backward: Bidirectional | None = None) -> np.ndarray | None:
        """After the core's step: correct the tracked ids of the mask, keep the probabilities; the label map
        (None when not `labels`). backward: a bidirectional run's backward pass, merged into the labels."""
        self.frame_size = prepared.size
        self._image = prepared.image
        self._prob = prob
        self.lost = prepared.lost
        if prepared.annotation is not None:
            self._prob = self.core.correct(prepared.image, prepared.annotation, prob)
        return self.labels(backward) if labels else None

    # ----------------------------------------------------------------------- corrections
    def correct(self, mask: Any, frame_index: int | None = None) -> np.ndarray:
        """Replace the masks of the tracked ids in `mask` on the current frame (the last stepped one).

        Every id of `mask` must be tracked (new objects: `step(frame, mask)`); each becomes exactly
        its pixels, the other objects give way on the labelled pixels, and the frame becomes
        permanent memory (its values re-encoded from the corrected masks; never dropped by a memory
        bound), so the following frames follow the correction. frame_index: if given, it must be
        the current frame's (past frames are not kept). Returns the corrected label map.
        """
        if self._image is None:
            raise PredictorError("correct", "no frame given yet", "call step(frame) first")
        self._single_core("correct")
        if frame_index is not None and frame_index != self.frame_index:
            raise PredictorError("frame_index", f"{frame_index} is not the current frame ({self.frame_index})",
                                 "correct a frame right after step() gave it")
        where = f"correction of frame {self.frame_index}"
        labels = self._label_map(mask, self.frame_size, where)
        ids = present_ids(labels)
        if not ids:
            raise PredictorError("mask", "holds no object", "label the corrected objects with their ids")
        unknown = [v for v in ids if v not in self.core.objects]
        if unknown:
            raise PredictorError("mask", f"ids {unknown} are not tracked (tracked: {self.objects})",
                                 "add new objects with step(frame, mask)")
        net_labels = resize_labels(labels, tuple(self._image.shape[-2:]))
        self.lost = [*self.lost, *self._lost_objects(where, labels, net_labels)]
        self._prob = self.core.correct(self._image, net_labels, self._prob)
        return self.labels()

    def remove(self, obj_id: int) -> None:
        """Stop tracking `obj_id`: it leaves the registry and the memory; from the next frame on it is
        background (and in `probabilities` of the current frame its share goes to the background)."""
        self._single_core("remove")
        if obj_id not in self.core.objects:
            raise PredictorError("obj_id", f"{obj_id!r} is not tracked (tracked: {self.objects})", "pass a tracked id")
        channel = 1 + self.core.objects.index(obj_id)
        self.core.remove(obj_id)
        if self._prob is not None:
            prob = self._prob.clone()
            prob[0] += prob[channel]
            self._prob = torch.cat([prob[:channel], prob[channel + 1 :]])
