"""Time the key encoder, value encoder and decoder on every CPU backend (one frame, 480p by default).

    python scripts/benchmark_backends.py --height 480 --width 854 --objects 2 --threads 2 --repeats 5

Backends: PyTorch fp32 (default layout and channels-last, the evaluation default), PyTorch bf16
autocast, optionally torch.compile (--compile, inductor: minutes of compiling first), onnxruntime
fp32 (graph optimisation levels basic and all) and OpenVINO (latency hint, fp32 and bf16
inference precision). Each row is the median of --repeats calls after one warm-up call, and the
largest difference of its outputs from PyTorch fp32. Random weights (seeded) unless --model.
Prints one markdown table and the machine (CPU model, instruction set features, versions).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from util.cli import HelpFormatter  # noqa: E402
from util.defaults import STRIDE  # noqa: E402
from util.outputs import run_command  # noqa: E402


def import_network_modules() -> None:
    """torch and the network's modules, bound as this module's globals once the flags are read: they take
    seconds to import, and `--help` or a mistyped flag needs none of them."""
    global torch, ExportedNetwork, cached_export, checked_export, onnxruntime_runner, openvino_runner
    global STCN, load_network, PART_FILES, cpu_features
    import torch

    from inference_core.backends import (
        ExportedNetwork,
        cached_export,
        checked_export,
        onnxruntime_runner,
        openvino_runner,
    )
    from model import STCN
    from model.checkpoint import load_network
    from model.export import PART_FILES
    from util.device import cpu_features


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", default=None, help="checkpoint (default: seeded random weights)")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=854)
    p.add_argument("--objects", type=int, default=2, help="objects value-encoded and decoded in one call")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (inductor)")
    p.add_argument("--onnx_dir", default=None, help="exports from scripts/export.py (default: the export cache)")
    return p


def part_inputs(h: int, w: int, k: int) -> dict[str, dict[str, torch.Tensor]]:
    """One frame's inputs of each part at the padded size h x w (multiples of 16), K objects."""
    g = torch.Generator().manual_seed(0)
    h16, w16 = h // STRIDE, w // STRIDE
    masks = torch.rand(1, k, h, w, generator=g)
    return {
        "key_encoder": {"frame": torch.randn(1, 3, h, w, generator=g)},
        "value_encoder": {"frame": torch.randn(1, 3, h, w, generator=g),
                          "f16": torch.randn(1, 1024, h16, w16, generator=g),
                          "masks": masks, "others": masks.sum(1, keepdim=True) - masks},
        "decoder": {"readout16": torch.randn(k, 512, h16, w16, generator=g),
                    "qv16": torch.randn(1, 512, h16, w16, generator=g),
                    "f8": torch.randn(1, 512, 2 * h16, 2 * w16, generator=g),
                    "f4": torch.randn(1, 256, 4 * h16, 4 * w16, generator=g)},
    }


METHODS = {"key_encoder": "encode_key", "value_encoder": "encode_value", "decoder": "decode"}


def call(net, part: str, inputs: dict[str, torch.Tensor], amp: bool = False) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = getattr(net, METHODS[part])(**inputs)
    return tuple(o.float() for o in (out if isinstance(out, tuple) else (out,)))


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocations, OpenVINO's compile for this shape, inductor's compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def machine() -> str:
    """The CPU model and features (`cpu_features`), threads, versions."""
    import onnxruntime
    import openvino

    return (f"{cpu_features().describe()}; {torch.get_num_threads()} threads; torch {torch.__version__}, "
            f"onnxruntime {onnxruntime.__version__}, openvino {openvino.__version__.split('-')[0]}")


# flag -> smallest value; a frame of any positive size runs (padded to multiples of 16)
MINIMUMS = {"height": 1, "width": 1, "objects": 1, "threads": 1, "repeats": 1}


def main(argv: list[str] | None = None) -> int:
    """A bad flag or file is one `error:` line, Ctrl-C one `interrupted` line (`run_command`)."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    for flag, least in MINIMUMS.items():  # before the export and the timing runs, which take minutes
        if getattr(args, flag) < least:
            parser.error(f"--{flag} {getattr(args, flag)}: must be at least {least}")
    import_network_modules()
    return run_command(lambda: benchmark(args))


def benchmark(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = load_network(args.model) if args.model else STCN(pretrained=False)
    net.eval()
    folder = checked_export(net, args.onnx_dir) if args.onnx_dir else cached_export(net)
    h, w = (-(-s // STRIDE) * STRIDE for s in (args.height, args.width))
    inputs = part_inputs(h, w, args.objects)

    def exported(make) -> ExportedNetwork:
        return ExportedNetwork({p: make(folder / f) for p, f in PART_FILES.items()}, net.single_object)

    channels_last = copy.deepcopy(net).to(memory_format=torch.channels_last)
    variants: list[tuple[str, str, object, bool]] = [
        ("PyTorch", "fp32", net, False),
        ("PyTorch channels-last (default)", "fp32", channels_last, False),
        ("PyTorch channels-last autocast", "bf16", channels_last, True),
    ]
    if args.compile:
        from inference_core.backends import compile_network

        variants.append(("PyTorch torch.compile (inductor), channels-last", "fp32",
                         compile_network(copy.deepcopy(channels_last)), False))
    import onnxruntime as ort

    def ort_level(level):
        def make(path):
            opts = ort.SessionOptions()
            opts.graph_optimization_level = level
            opts.intra_op_num_threads = args.threads
            opts.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            return (lambda feed: session.run(None, feed)), [i.name for i in session.get_inputs()]
        return make

    variants += [
        ("onnxruntime, optimisation basic", "fp32",
         exported(ort_level(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)), False),
        ("onnxruntime, optimisation all", "fp32", exported(lambda p: onnxruntime_runner(p, args.threads)), False),
        ("OpenVINO, latency hint", "fp32", exported(lambda p: openvino_runner(p, args.threads, "fp32")), False),
        ("OpenVINO, latency hint", "bf16", exported(lambda p: openvino_runner(p, args.threads, "bf16")), False),
    ]
    print(f"machine: {machine()}")
    print(f"frame {args.width}x{args.height} padded to {w}x{h}, {args.objects} objects; median of {args.repeats}")
    print("| backend | precision | key encoder (ms) | value encoder (ms) | decoder (ms) | sum (ms) | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    reference = {part: call(net, part, inputs[part]) for part in METHODS}
    for name, precision, model, amp in variants:
        times, diff = [], 0.0
        for part in METHODS:
            times.append(median_ms(lambda m=model, p=part, a=amp: call(m, p, inputs[p], a), args.repeats))
            out = call(model, part, inputs[part], amp)
            diff = max(diff, *(float((o - r).abs().max()) for o, r in zip(out, reference[part])))
        print(f"| {name} | {precision} | {times[0]:.0f} | {times[1]:.0f} | {times[2]:.0f} | {sum(times):.0f} | "
              f"{diff:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
