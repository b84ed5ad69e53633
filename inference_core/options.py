"""Every inference option in one frozen object, checked once where it is built, with its command-line flag.

`InferenceOptions` holds what a `Predictor` and the evaluation commands
configure: the memory schedule and bounds of section 3.3 / 4, the frame size, the precision and
backend, the device, and the ensemble of supplementary E (networks x shorter sides x flip, kernelized
reading for the large sides). Building one checks every field and every combination; a mistake
raises `PredictorError` naming the field.

Each field's metadata is its row of the flag table: `flag` (the evaluation commands' name for it),
`help`, `group` (the block of `--help` it is listed in) and the argparse keywords beyond the default
(the commands' parsers are built from these rows; `options_from_args` reads them back). An
error's text names options as `{field}` or `{field=value}`: `field` / `field=value` for Python,
`--flag` / `--flag value` on the command line (`PredictorError.on_command_line`), so one check
serves both.

Torch-free: the commands' `--help` imports this module before torch.
"""
from __future__ import annotations

import argparse
import dataclasses
import numbers
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from util.defaults import (
    BACKENDS,
    CACHE_ENV,
    EVAL_SHORT_SIDE,
    KERNEL_ABOVE_SIDE,
    KERNEL_SIGMA,
    MEM_EVERY,
    MIN_FEATURE_CELLS,
    MIN_SHORT_SIDE,
    NATIVE_SIZE,
    SIMILARITIES,
    STRIDE,
    TOP_K,
)
from util.errors import UserError

AMP_DTYPES = ("float16", "bfloat16")
TABLE10_SCALES = (480, 600)  # supplementary E: "480p/600p and original/flipped images"


class PredictorError(UserError, ValueError):
    """A bad argument to the Python API; `where` names the argument (an option's field, `mask`, ...).

    `problem` and `fix` may name options as `{field}` / `{field=value}` (module docstring).
    """

    def __init__(self, where: str, problem: str, fix: str = "") -> None:
        self.parts = (str(where), problem, fix)
        super().__init__(where, _render(problem, cli=False), _render(fix, cli=False))

    def on_command_line(self) -> UserError:
        """The same error in the evaluation commands' words: the flag for the field, `--flag value`."""
        where, problem, fix = self.parts
        return UserError(flag_of(where), _render(problem, cli=True), _render(fix, cli=True))


def _render(text: str, cli: bool) -> str:
    def name(match: re.Match) -> str:
        key, value = match.group(1), match.group(2)
        if key not in FIELDS:
            return match.group(0)
        if not cli:
            return key if value is None else f"{key}={value}"
        shown = re.sub(r"[()\[\]',]", "", value) if value is not None else None
        return flag_of(key) + (f" {shown}" if shown else "")

    return re.sub(r"\{(\w+)(?:=([^{}]*))?\}", name, text)


def _row(default: Any, flag: str, help: str, group: str = "main", core: bool = False, **argparse: Any) -> Any:
    """A field of InferenceOptions and its row of the flag table. core: an InferenceCore argument."""
    return field(default=default, metadata=dict(flag=flag, help=help, group=group, core=core, argparse=argparse))


def parse_chunk_size(text: str) -> int | str | None:
    """`--chunk_size`: a number of query positions, auto or none."""
    if text in ("auto", "none"):
        return None if text == "none" else text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of query positions, auto or none, got {text!r}") from None


@dataclass(frozen=True)
class InferenceOptions:
    """The inference options, checked when built (PredictorError naming the field); defaults: the paper's.

    Field order is the order of `--help`. `size` -1 is kept as None (frames at their own size);
    integers given as numpy integers become ints, `scales` and `models` tuples.
    """

    models: tuple[str, ...] = _row(
        (), "--model", "network weights (released format); several: an ensemble averaging their probabilities",
        group="models")
    top_k: int = _row(TOP_K, "--top", "top-k memory entries read (section 3.3)", core=True, type=int)
    amp: bool = _row(False, "--amp", "run the network under autocast (mixed precision)", action="store_true")
    amp_dtype: str | None = _row(
        None, "--amp_dtype", "autocast dtype (default: float16 on CUDA as the original; on CPU bfloat16 where the "
        "CPU has native bf16 (AVX-512 BF16, AMX, Arm BF16), else fp32)", choices=AMP_DTYPES)
    mem_every: int = _row(MEM_EVERY, "--mem_every", "every this many frames become memory", core=True, type=int)
    include_last: bool = _row(False, "--include_last", "keep the previous frame as temporary memory", core=True,
                              action="store_true")
    similarity: str | None = _row(
        None, "--similarity", "the memory read's similarity (section 4, Table 2); default: the one --model was "
        "trained with (stored by train.py; released weights: l2). A different value is refused", choices=SIMILARITIES)
    device: Any = _row("auto", "--device", "auto (CUDA when present), cpu, cuda or cuda:i")
    scales: tuple[int, ...] | None = _row(
        None, "--scales", "run each network at each of these shorter sides (e.g. 480 600, as Table 10), each with "
        "its own memory, and average the probabilities at the original size (default: the video's own network "
        "size only)", group="ensemble", type=int, nargs="+", metavar="SIDE")
    flip: bool = _row(False, "--flip", "also run every network and scale on the mirrored video and average it in",
                      group="ensemble", action="store_true")
    kernel_sigma: float | None = _row(
        None, "--kernel_sigma", f"kernelized memory reading (KMN, the paper's [22]) for the scales above "
        f"{KERNEL_ABOVE_SIDE}, Gaussian std in stride-16 cells (default {KERNEL_SIGMA:g}, MiVOS's); off unless given",
        group="ensemble", type=float, nargs="?", const=KERNEL_SIGMA, metavar="SIGMA")
    max_mem_frames: int | None = _row(
        None, "--max_mem_frames", "keep at most this many memory frames: the annotated frames always, then the "
        "most recent", group="long", core=True, type=int)
    max_mem_mb: float | None = _row(None, "--max_mem_mb", "keep the memory's keys and values under this many MiB "
                                    "(same policy)", group="long", core=True, type=float)
    chunk_size: int | str | None = _row(
        "auto", "--chunk_size", "query positions per memory-read chunk; auto (default): the whole query when its "
        "affinity fits a quarter of the free memory, else chunks; none: always whole. Same result", group="long",
        core=True, type=parse_chunk_size)
    object_batch: int | None = _row(None, "--object_batch", "objects value-encoded and decoded per batch (default: "
                                    "all at once), same result", group="long", core=True, type=int)
    backend: str = _row(
        "pytorch", "--backend", "run the encoders and decoder with PyTorch, or exported to ONNX with onnxruntime or "
        "OpenVINO (CPU, fp32; --amp: OpenVINO in bf16), same masks within float rounding", group="speed",
        choices=BACKENDS)
    onnx_dir: Any = _row(None, "--onnx_dir", "exports of --model from scripts/export.py (default: exported on first "
                         f"use into the cache, ${CACHE_ENV} or ~/.cache/stcn/onnx)", group="speed")
    compile: bool = _row(False, "--compile", "torch.compile the encoders and decoder (pytorch backend; slow first "
                         "frames)", group="speed", action="store_true")
    size: int | None = _row(
        EVAL_SHORT_SIDE, "--size", f"shorter side the frames are resized to for the network ({EVAL_SHORT_SIDE} as "
        f"the original, at least {MIN_SHORT_SIDE}; {NATIVE_SIZE}: native size); masks are written at the original "
        "size", group="size", type=int)
    antialias: bool = _row(
        False, "--antialias", "antialiased bicubic resize, as the original code gives under torchvision >= 0.17 "
        "(default: plain bicubic on the normalised frame, as for the paper's numbers)", group="size",
        action="store_true")

    @classmethod
    def of(cls, options: InferenceOptions | None = None, **fields: Any) -> InferenceOptions:
        """`options` (default: the paper's) with `fields` replaced; PredictorError for an unknown name."""
        for name in fields:
            if name not in FIELDS:
                raise PredictorError(name, "is not an inference option", f"choose from {', '.join(sorted(FIELDS))}")
        if options is not None and not isinstance(options, InferenceOptions):
            raise PredictorError("options", f"expected InferenceOptions, got {type(options).__name__}",
                                 "build it with InferenceOptions(...) or pass the options as keywords")
        return dataclasses.replace(options, **fields) if options is not None else cls(**fields)

    def __post_init__(self) -> None:
        for name, value in _checked(self).items():
            object.__setattr__(self, name, value)

    @property
    def is_ensemble(self) -> bool:
        """More than one propagation per video: several networks, `scales` or `flip` (supplementary E)."""
        return self.scales is not None or self.flip or len(self.models) > 1

    def core_options(self) -> dict[str, Any]:
        """The InferenceCore arguments among the fields (those marked `core` in the table)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["core"]}


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(InferenceOptions)}


def flag_of(name: str) -> str:
    """The command-line flag of the field `name` (the name itself when it is no field)."""
    return FIELDS[name].metadata["flag"] if name in FIELDS else name


def dest_of(name: str) -> str:
    """The argparse attribute the flag of field `name` is parsed into (`--top` -> `top`)."""
    return flag_of(name).lstrip("-")


def fields_of_group(group: str) -> Iterator[dataclasses.Field]:
    """The fields listed in one block of `--help`, in order."""
    return (f for f in FIELDS.values() if f.metadata["group"] == group)


# ------------------------------------------------------------------------------ the checks
def is_integer(value: Any) -> bool:
    """The one rule of the integer options: a Python or numpy integer; floats (even 480.0) and booleans are not."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _number(value: Any) -> bool:
    """A real number that is no boolean (Python or numpy)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _integer(name: str, value: Any, positive: bool = False, optional: bool = False) -> int | None:
    """`value` as an int (`is_integer`; None kept when `optional`), at least 1 when `positive`."""
    if value is None and optional:
        return None
    if not is_integer(value):
        hint = (f"pass {name}={int(value)}" if _number(value) and float(value).is_integer()
                else "pass a whole number (int or numpy integer)")
        raise PredictorError(name, f"must be an integer (got {value!r})", hint)
    if positive and value < 1:
        if optional:
            raise PredictorError(name, "must be at least 1", "pass a positive value or leave it out")
        raise PredictorError(name, f"must be at least 1 (got {value})", "pass a positive value")
    return int(value)


def _checked(o: InferenceOptions) -> dict[str, Any]:
    """The normalised values of the fields; PredictorError for the first mistake (module docstring)."""
    out: dict[str, Any] = {}
    out["top_k"] = _integer("top_k", o.top_k, positive=True)
    out["mem_every"] = _integer("mem_every", o.mem_every, positive=True)
    out["max_mem_frames"] = _integer("max_mem_frames", o.max_mem_frames, positive=True, optional=True)
    if not (o.chunk_size is None or (isinstance(o.chunk_size, str) and o.chunk_size == "auto")):
        if isinstance(o.chunk_size, str):
            raise PredictorError("chunk_size", f"must be an integer, 'auto' or None (got {o.chunk_size!r})",
                                 "pass a positive number of query positions, 'auto' or None")
        out["chunk_size"] = _integer("chunk_size", o.chunk_size, positive=True, optional=True)
    out["object_batch"] = _integer("object_batch", o.object_batch, positive=True, optional=True)
    if o.max_mem_mb is not None:
        if not _number(o.max_mem_mb):
            raise PredictorError("max_mem_mb", f"must be a number of MiB or None (got {o.max_mem_mb!r})",
                                 "pass a positive budget in MiB or leave it out")
        if not o.max_mem_mb > 0:
            raise PredictorError("max_mem_mb", "must be positive", "pass a positive budget in MiB or leave it out")
    size = _integer("size", o.size, optional=True)
    if size is not None and size != NATIVE_SIZE and size < MIN_SHORT_SIDE:
        raise PredictorError(
            "size", f"{size} is below the network's minimum shorter side of {MIN_SHORT_SIDE} pixels "
            f"({MIN_FEATURE_CELLS} cells of its stride-{STRIDE} features)",
            f"pass {{size={MIN_SHORT_SIDE}}} or more ({EVAL_SHORT_SIDE} as the paper), "
            f"or {NATIVE_SIZE} for the native size")
    out["size"] = None if size == NATIVE_SIZE else size
    out["models"] = tuple(str(m) for m in ([o.models] if isinstance(o.models, str) else o.models))
    _check_ensemble(o, out)
    for name, value, choices in (("similarity", o.similarity, SIMILARITIES), ("backend", o.backend, BACKENDS)):
        if (value is not None or name == "backend") and value not in choices:
            raise PredictorError(name, f"unknown {name} {value!r}", f"choose one of {', '.join(choices)}")
    amp_dtype = o.amp_dtype if o.amp_dtype is None or isinstance(o.amp_dtype, str) else str(o.amp_dtype).rpartition(
        ".")[2]  # a torch.dtype: its name
    if amp_dtype is not None and amp_dtype not in AMP_DTYPES:
        raise PredictorError("amp_dtype", f"unknown autocast dtype {amp_dtype!r}", f"choose {' or '.join(AMP_DTYPES)}")
    out["amp_dtype"] = amp_dtype
    _check_backend(o)
    if len(out["models"]) > 1 and o.onnx_dir is not None:
        raise PredictorError("onnx_dir", "holds the export of one network, and several {models} are given",
                             "leave {onnx_dir} out (each network is exported into the cache)")
    return out


def _check_ensemble(o: InferenceOptions, out: dict[str, Any]) -> None:
    """`scales` (each at least MIN_SHORT_SIDE, once, holding `size` unless it is the default) and
    `kernel_sigma` (positive, for a scale above KERNEL_ABOVE_SIDE)."""
    if o.scales is not None:
        scales = tuple(_integer("scales", s) for s in ([o.scales] if is_integer(o.scales) else o.scales))
        shown = " ".join(map(str, scales))
        low = [s for s in scales if s < MIN_SHORT_SIDE]
        if low:
            raise PredictorError("scales", f"{low[0]} is below the network's minimum shorter side of {MIN_SHORT_SIDE}",
                                 f"pass shorter sides of {MIN_SHORT_SIDE} pixels or more (480 600 as Table 10)")
        if not scales:
            raise PredictorError("scales", "is empty", "give at least one shorter side, or leave {scales} out")
        if len(set(scales)) != len(scales):
            raise PredictorError("scales", f"a scale is given twice ({shown})", "give each shorter side once")
        size = o.size
        # size: the network size (the default or native: any scales); scales: the variants'
        if size not in (EVAL_SHORT_SIDE, NATIVE_SIZE, None) and size not in scales:
            raise PredictorError("size", f"{{size={size}}} is not one of {{scales={scales}}}",
                                 "pass the sizes in {scales} only (or include {size} among them)")
        out["scales"] = scales
    if o.kernel_sigma is not None:
        if not (_number(o.kernel_sigma) and o.kernel_sigma > 0):
            shown = f"{o.kernel_sigma:g}" if _number(o.kernel_sigma) else repr(o.kernel_sigma)
            raise PredictorError("kernel_sigma", f"must be positive (got {shown})", "pass a standard deviation in "
                                 f"stride-16 cells ({KERNEL_SIGMA:g} as KMN) or leave it out")
        if not any(s > KERNEL_ABOVE_SIDE for s in out.get("scales") or ()):
            raise PredictorError("kernel_sigma", f"applies to the scales above {KERNEL_ABOVE_SIDE}p and none is given",
                                 f"add {{scales={TABLE10_SCALES}}} (Table 10), or leave {{kernel_sigma}} out")


def _check_backend(o: InferenceOptions) -> None:
    """What the backend rules out (the device, which needs torch, is checked where it is resolved)."""
    if o.backend == "pytorch":
        if o.onnx_dir is not None:
            raise PredictorError("onnx_dir", "is read by the exported backends only",
                                 "add {backend='onnxruntime'} or openvino, or leave {onnx_dir} out")
        return
    if o.compile:
        raise PredictorError("compile", f"applies to the pytorch backend, not {o.backend}",
                             "leave {compile} out or use {backend='pytorch'}")
    if o.amp and o.backend == "onnxruntime":
        raise PredictorError("amp", "onnxruntime runs the exported networks in fp32 only",
                             "leave {amp} out, or use {backend='openvino'} (bf16) or pytorch")

