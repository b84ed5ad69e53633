"""ONNX export of the network's three per-frame parts: key encoder, value encoder, decoder.

Each part is a thin module around the STCN method the inference core calls, with the tensors it
passes (batch 1: one frame at a time; K objects; padded frame H, W multiples of 16, h = H/16):

    key_encoder    frame (1, 3, H, W)                              -> k16, qv16, f16, f8, f4
    value_encoder  frame (1, 3, H, W), f16 (1, 1024, h, w),
                   masks (1, K, H, W), others (1, K, H, W)          -> mv16 (1, K, 512, h, w)
    decoder        readout16 (K, 512, h, w), qv16 (1, 512, h, w),
                   f8 (1, 512, 2h, 2w), f4 (1, 256, 4h, 4w)        -> logits (K, 1, H, W)

The frame size and K are dynamic axes. The stage-0 (single-object) network has no `others` input.
The memory read (top-k softmax over the memory, 3% of a frame's time) stays in PyTorch.

Exporters: "dynamo" (torch.export, torch >= 2.5 with onnxscript; the default since torch 2.9)
or "torchscript" (the tracing exporter, every torch >= 2.1; deprecated since 2.9 and faster to
run). Both trace the objects-batched path of `ResBlock.forward_cat` (the shared half computed
once), which for K = 1 differs from PyTorch's concatenating path by float summation order only.
"""
from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from model.modules import F16_DIM, VALUE_DIM
from model.network import STCN
from util.defaults import EXPORTERS

OPSETS = {"dynamo": 18, "torchscript": 17}  # dynamo: its lowest; torchscript: the highest torch 2.1 writes
EXPORT_VERSION = 1  # bump when the exported graphs change: cached exports are then rebuilt
MANIFEST = "manifest.json"
PART_FILES = {"key_encoder": "key_encoder.onnx", "value_encoder": "value_encoder.onnx", "decoder": "decoder.onnx"}
# example sizes the graphs are traced at (any others run: the axes are dynamic)
EXAMPLE_CELLS = (3, 4)  # h, w of the stride-16 map: a 48 x 64 frame
EXAMPLE_OBJECTS = 2  # K; >= 2 so that the traced graph is the objects-batched one
MAX_CELLS = 1024  # largest h or w the dynamo exporter is told about (16384 pixels)
KEY_OUTPUTS = ("k16", "qv16", "f16", "f8", "f4")


class KeyEncoderPart(nn.Module):
    def __init__(self, net: STCN) -> None:
        super().__init__()
        self.net = net

    def forward(self, frame: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return self.net.encode_key(frame)


class ValueEncoderPart(nn.Module):
    def __init__(self, net: STCN) -> None:
        super().__init__()
        self.net = net

    def forward(self, frame: Tensor, f16: Tensor, masks: Tensor, others: Tensor) -> Tensor:
        return self.net.encode_value(frame, f16, masks, others)


class SingleObjectValueEncoderPart(ValueEncoderPart):
    def forward(self, frame: Tensor, f16: Tensor, masks: Tensor) -> Tensor:  # type: ignore[override]
        return self.net.encode_value(frame, f16, masks)


class DecoderPart(nn.Module):
    def __init__(self, net: STCN) -> None:
        super().__init__()
        self.net = net

    def forward(self, readout16: Tensor, qv16: Tensor, f8: Tensor, f4: Tensor) -> Tensor:
        return self.net.decode(readout16, qv16, f8, f4)


def example_inputs(part: str, single_object: bool = False) -> dict[str, Tensor]:
    """Random inputs of one part at the example size, by input name (see the module docstring)."""
    h, w = EXAMPLE_CELLS
    k = EXAMPLE_OBJECTS
    g = torch.Generator().manual_seed(0)
    if part == "key_encoder":
        return {"frame": torch.randn(1, 3, 16 * h, 16 * w, generator=g)}
    if part == "value_encoder":
        masks = torch.rand(1, k, 16 * h, 16 * w, generator=g)
        inputs = {"frame": torch.randn(1, 3, 16 * h, 16 * w, generator=g),
                  "f16": torch.randn(1, F16_DIM, h, w, generator=g), "masks": masks}
        if not single_object:
            inputs["others"] = masks.sum(dim=1, keepdim=True) - masks
        return inputs
    if part == "decoder":
        return {"readout16": torch.randn(k, VALUE_DIM, h, w, generator=g),
                "qv16": torch.randn(1, VALUE_DIM, h, w, generator=g),
                "f8": torch.randn(1, 512, 2 * h, 2 * w, generator=g),
                "f4": torch.randn(1, 256, 4 * h, 4 * w, generator=g)}
    raise ValueError(f"unknown part {part!r}; one of {sorted(PART_FILES)}")


def output_names(part: str) -> tuple[str, ...]:
    return {"key_encoder": KEY_OUTPUTS, "value_encoder": ("mv16",), "decoder": ("logits",)}[part]


def _module(part: str, net: STCN) -> nn.Module:
    if part == "key_encoder":
        return KeyEncoderPart(net).eval()
    if part == "value_encoder":
        return (SingleObjectValueEncoderPart if net.single_object else ValueEncoderPart)(net).eval()
    return DecoderPart(net).eval()


def _axes(part: str) -> dict[str, dict[int, tuple[str, int]]]:
    """Dynamic axes of each input: axis -> (symbol, multiplier), size = multiplier * symbol."""
    frame = {2: ("h16", 16), 3: ("w16", 16)}
    cells = {2: ("h16", 1), 3: ("w16", 1)}
    if part == "key_encoder":
        return {"frame": frame}
    if part == "value_encoder":
        per_object = {1: ("K", 1), **frame}
        return {"frame": frame, "f16": cells, "masks": per_object, "others": per_object}
    return {"readout16": {0: ("K", 1), **cells}, "qv16": cells,
            "f8": {2: ("h16", 2), 3: ("w16", 2)}, "f4": {2: ("h16", 4), 3: ("w16", 4)}}


def dynamo_available() -> bool:
    """Whether torch.onnx.export has the torch.export-based exporter and onnxscript is installed."""
    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        return False
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def export_part(part: str, net: STCN, path: Path, exporter: str = "auto") -> Path:
    """Write one part of `net` (on CPU, fp32) as an ONNX model at `path`."""
    if exporter == "auto":
        exporter = "dynamo" if dynamo_available() else "torchscript"
    inputs = example_inputs(part, net.single_object)
    names = list(inputs)
    axes = {name: spec for name, spec in _axes(part).items() if name in inputs}
    module = _module(part, net)
    args = tuple(inputs.values())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracing exporter's deprecation and tracer notices
        if exporter == "dynamo":
            from torch.export import Dim

            dims = {s: Dim(s, min=1, max=MAX_CELLS if s != "K" else 4096) for s in ("h16", "w16", "K")}
            shapes = {name: {ax: m * dims[s] if m > 1 else dims[s] for ax, (s, m) in spec.items()}
                      for name, spec in axes.items()}
            arg_names = list(inspect.signature(module.forward).parameters)
            torch.onnx.export(module, args, str(path), dynamo=True, opset_version=OPSETS["dynamo"], input_names=names,
                              output_names=list(output_names(part)), verbose=False, external_data=False,
                              dynamic_shapes={a: shapes.get(n) for a, n in zip(arg_names, names)})
        elif exporter == "torchscript":
            dynamic = {name: {ax: s if m == 1 else f"{m}*{s}" for ax, (s, m) in spec.items()}
                       for name, spec in axes.items()}
            kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
            torch.onnx.export(module, args, str(path), opset_version=OPSETS["torchscript"], input_names=names,
                              output_names=list(output_names(part)), dynamic_axes=dynamic, **kwargs)
        else:
            raise ValueError(f"unknown exporter {exporter!r}; one of {EXPORTERS}")
    return path


def weights_digest(state_dict: Mapping[str, Tensor]) -> str:
    """SHA-256 (hex, 16 characters) of a state dict's names, shapes and values (fp32, CPU)."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu", torch.float32).contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def export_network(net: STCN, folder: str | os.PathLike, exporter: str = "auto") -> dict:
    """Write the three parts and `manifest.json` into `folder` (which must exist); returns the manifest.

    The network is copied to CPU, fp32, default memory layout first; `net` itself is untouched.
    """
    folder = Path(folder)
    cpu = copy.deepcopy(net).to("cpu", torch.float32).to(memory_format=torch.contiguous_format).eval()
    used = exporter if exporter != "auto" else ("dynamo" if dynamo_available() else "torchscript")
    for part, name in PART_FILES.items():
        with _naming(folder / name):
            export_part(part, cpu, folder / name, used)
    manifest = {"export_version": EXPORT_VERSION, "weights": weights_digest(cpu.state_dict()),
                "single_object": cpu.single_object, "exporter": used, "opset": OPSETS[used],
                "torch": torch.__version__, "parts": PART_FILES}
    with _naming(folder / MANIFEST):
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError without a file name raised inside (a failed write: a full disk, ...) gets `path` as its
    file, so that the command's error line names the file being written."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest of an export folder, or None when there is none (or it cannot be read)."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None
