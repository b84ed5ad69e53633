"""Inference backends: the network's encoders and decoder on PyTorch, onnxruntime or OpenVINO.

`ExportedNetwork` has the three methods `InferenceCore` calls (`encode_key`, `encode_value`,
`decode`, with the tensors of the ONNX export) and runs them as exported ONNX models, so the core
runs unchanged; the memory read stays in PyTorch. Both runtimes run on the CPU in fp32 by default
(OpenVINO is told so: on CPUs with AMX or AVX-512 BF16 it would otherwise infer in bf16).

Exports come from the export command's `--output DIR` (`onnx_dir`), or are made on first use into a
cache folder this module creates and owns: $STCN_ONNX_CACHE, else $XDG_CACHE_HOME/stcn/onnx, else
~/.cache/stcn/onnx, one subfolder per weights digest. Nothing is written into a folder the user named.

`--compile` (PyTorch backend only) wraps the same three methods in torch.compile.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from model.export import EXPORT_VERSION, PART_FILES, export_network, read_manifest, weights_digest
from model.network import STCN
from util.atomic import settle
from util.defaults import BACKENDS, CACHE_ENV
from util.io import DataError
from util.outputs import clean_stale, partial_dir, remove_partial

OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # our name -> INFERENCE_PRECISION_HINT
OPENVINO_MAX_SHAPES = 16  # compiled input-shape variants kept per part (frame sizes x object counts)
COMPILED_METHODS = ("encode_key", "encode_value", "decode")

Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
REEXPORT = "export it again: python scripts/export.py --model <the weights> --output {folder}"


class UnreadableModel(DataError):
    """An exported part its runtime cannot read: a truncated, zeroed or otherwise damaged .onnx file."""

    def __init__(self, path: Path, runtime: str, reason: str) -> None:
        reason = " ".join(reason.split()).rstrip(".") or "no reason given"
        super().__init__(path, f"{runtime} cannot read it ({reason}): the file is incomplete or damaged",
                         REEXPORT.format(folder=Path(path).parent))


# ------------------------------------------------------------------------------------ runtimes
def onnxruntime_runner(path: Path, threads: int | None = None) -> tuple[Runner, list[str]]:
    """An onnxruntime CPU session (all graph optimisations, `threads` intra-op threads) and its input names."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidGraph, InvalidProtobuf

    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except (InvalidProtobuf, InvalidArgument, InvalidGraph, Fail) as exc:  # a truncated or zeroed file, ...
        raise UnreadableModel(path, "onnxruntime", str(exc).rpartition("failed:")[2]) from None

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return session.run(None, inputs)

    return run, [i.name for i in session.get_inputs()]


def openvino_runner(path: Path, threads: int | None = None, precision: str = "fp32") -> tuple[Runner, list[str]]:
    """An OpenVINO CPU model compiled for latency with `threads` threads and the given inference precision.

    The model is compiled once per set of input shapes (frame size, object count), on first use:
    static shapes are OpenVINO's fast path, and with the object count dynamic its CPU plugin
    (2026.4) fails on the decoder's batch-1 skip features broadcast over the objects.
    """
    import openvino as ov
    from openvino.frontend import FrontEndManager

    # checked by the ONNX reader first: given a file that is no ONNX model (e.g. zeroed), read_model
    # tries every other format's reader, and TensorFlow's prints its parse errors to stderr
    if not FrontEndManager().load_by_framework("onnx").supported(str(path)):
        raise UnreadableModel(path, "OpenVINO", "not an ONNX model")
    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except RuntimeError as exc:  # e.g. a truncated file; the reason is the message's last line
        raise UnreadableModel(path, "OpenVINO", str(exc).strip().rpartition("\n")[2]) from None
    names = [next(iter(p.get_names())) for p in model.inputs]
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
              "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision]}
    requests: dict[tuple, object] = {}

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        shapes = tuple(inputs[n].shape for n in names)
        request = requests.get(shapes)
        if request is None:
            if len(requests) >= OPENVINO_MAX_SHAPES:
                requests.pop(next(iter(requests)))  # the oldest
            static = model.clone()
            static.reshape(dict(zip(names, map(list, shapes))))
            request = requests[shapes] = core.compile_model(static, "CPU", config).create_infer_request()
        request.infer(inputs)
        return [request.get_output_tensor(i).data.copy() for i in range(len(model.outputs))]  # buffers are reused

    return run, names


def _array(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


class ExportedNetwork:
    """The STCN methods the inference core calls, run by onnxruntime or OpenVINO (CPU, batch 1)."""

    device = torch.device("cpu")

    def __init__(self, runners: dict[str, tuple[Runner, list[str]]], single_object: bool = False) -> None:
        self.runners = runners
        self.single_object = single_object

    def eval(self) -> ExportedNetwork:
        return self

    def _run(self, part: str, **inputs: Tensor | None) -> list[Tensor]:
        run, names = self.runners[part]
        return [torch.from_numpy(a) for a in run({n: _array(inputs[n]) for n in names})]

    def encode_key(self, frame: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return tuple(self._run("key_encoder", frame=frame))  # type: ignore[return-value]

    def encode_value(self, frame: Tensor, f16: Tensor, masks: Tensor, others: Tensor | None = None) -> Tensor:
        if others is None and not self.single_object:
            others = masks.sum(dim=1, keepdim=True) - masks
        return self._run("value_encoder", frame=frame, f16=f16, masks=masks, others=others)[0]

    def decode(self, readout16: Tensor, qv16: Tensor, f8: Tensor, f4: Tensor) -> Tensor:
        return self._run("decoder", readout16=readout16, qv16=qv16, f8=f8, f4=f4)[0]


# ------------------------------------------------------------------------------------ exports
def cache_root() -> Path:
    """Where exports made on the fly are kept (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stcn" / "onnx"


def cached_export(net: STCN, root: Path | None = None) -> Path:
    """The cache folder holding `net`'s export, made first if missing (atomically: a folder is renamed in)."""
    root = cache_root() if root is None else root
    digest = weights_digest(net.state_dict())
    folder = root / f"{digest}-{'single' if net.single_object else 'multi'}-v{EXPORT_VERSION}"
    if _usable(folder, digest, net.single_object) is not None:
        root.mkdir(parents=True, exist_ok=True)
        clean_stale(folder, inside=False)  # the half export of a run that was killed
        tmp = partial_dir(folder)
        try:
            export_network(net, tmp)
            if _usable(folder, digest, net.single_object) is None:  # made meanwhile by another process (e.g. a
                shutil.rmtree(tmp, ignore_errors=True)  # torchrun rank of sharded evaluation), maybe in use
                return folder
            shutil.rmtree(folder, ignore_errors=True)  # an incomplete or outdated one (ours: inside the cache)
            settle(tmp, folder)  # renamed into place, its proof of being unfinished dropped
        except BaseException as exc:
            remove_partial(tmp)
            # a failure is ours unless another process's complete export is now in place; an interrupt always is
            if not isinstance(exc, Exception) or _usable(folder, digest, net.single_object) is not None:
                raise
    return folder


def _usable(folder: Path, digest: str, single_object: bool) -> str | None:
    """None when `folder` holds a complete export of these weights; else why not."""
    manifest = read_manifest(folder)
    if manifest is None:
        return f"no readable {folder / 'manifest.json'}: not a folder written by scripts/export.py"
    if manifest.get("export_version") != EXPORT_VERSION:
        return f"written by export version {manifest.get('export_version')}, this code reads {EXPORT_VERSION}"
    differences = []
    if manifest.get("weights") != digest:
        differences.append("from other weights than --model")
    if manifest.get("single_object") != single_object:
        flag = " (scripts/export.py --single_object)" if manifest.get("single_object") else ""
        differences.append(f"as {_network_kind(manifest.get('single_object'))}{flag}, but "
                           f"{_network_kind(single_object)} is run")
    if differences:
        return "exported " + " and ".join(differences)
    missing = [name for name in PART_FILES.values() if not (folder / name).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    return None


def _network_kind(single_object: object) -> str:
    """Which of the two networks (STCN's `single_object`) an export or a loaded STCN is."""
    return "the single-object (stage-0) network" if single_object else "the multi-object network"


def checked_export(net: STCN, onnx_dir: str | os.PathLike) -> Path:
    """`onnx_dir` if it holds an export of `net`'s weights; DataError naming the folder otherwise."""
    folder = Path(onnx_dir)
    problem = _usable(folder, weights_digest(net.state_dict()), net.single_object)
    if problem is not None:
        raise DataError("--onnx_dir", f"{folder}: {problem}",
                        f"export these weights with python scripts/export.py --model M"
                        f"{' --single_object' if net.single_object else ''} --output DIR, "
                        "or leave --onnx_dir out to export into the cache")
    return folder


# ----------------------------------------------------------------------------------- backends
def exported_network(
    net: STCN,
    backend: str,
    onnx_dir: str | os.PathLike | None = None,
    threads: int | None = None,
    precision: str = "fp32",
) -> ExportedNetwork:
    """`net`'s parts as onnxruntime sessions or OpenVINO models (exported or read from `onnx_dir`).

    precision: OpenVINO's inference precision (fp32, bf16, fp16); onnxruntime runs fp32 only.
    """
    folder = cached_export(net) if onnx_dir is None else checked_export(net, onnx_dir)
    if backend == "onnxruntime":
        if precision != "fp32":
            raise ValueError("onnxruntime runs the exported models in fp32 only")
        make = lambda p: onnxruntime_runner(p, threads)  # noqa: E731
    elif backend == "openvino":
        make = lambda p: openvino_runner(p, threads, precision)  # noqa: E731
    else:
        raise ValueError(f"unknown exported backend {backend!r}; one of {BACKENDS[1:]}")
    try:
        runners = {part: make(folder / name) for part, name in PART_FILES.items()}
    except UnreadableModel as exc:
        if onnx_dir is not None:
            raise
        raise DataError(exc.path, exc.problem, f"remove {folder} (the export cache): the next run exports the "
                        "network again") from None
    return ExportedNetwork(runners, net.single_object)


def compile_network(net: STCN, backend: str = "inductor", **options) -> STCN:
    """Wrap `net`'s encode_key, encode_value and decode in torch.compile (in place; returns `net`).

    The compiled functions shadow the methods on this instance only; `options` go to torch.compile.
    """
    for name in COMPILED_METHODS:
        setattr(net, name, torch.compile(getattr(net, name), backend=backend, **options))
    return net
