"""Inference speed and memory benchmark on synthetic videos (no dataset, no download).

For every (length, objects, precision) it propagates a synthetic video of moving textured shapes
through a `Stream` of the Python predictor and reports frames per second (the network work of each
frame, `Stream.advance`; frame synthesis and `Stream.prepare` excluded, the GPU synchronised before the
clock is read), peak memory (CUDA max allocated, or the
process' peak RSS on CPU) and the number of memory frames at the end. `--baseline` also times the
dense, unoptimised transcription of the original computation (inference_core/reference.py).

    python scripts/benchmark_inference.py --height 480 --lengths 50 200 --objects 1 2 4 --precision fp32 amp

Long videos: `--budgets none 20` runs every configuration unbounded and with at most 20 memory
frames; `--report_at` prints rows while one long video runs (FPS over the frames since the
previous row, peak memory so far), so one 10,000-frame run gives the whole curve:

    python scripts/benchmark_inference.py --height 64 --lengths 10000 --report_at 100 1000 10000 \
        --objects 2 --precision fp32 --budgets none 20

Several videos per batch: `--video_batch 1 2 4` propagates, for each batch size B, B synthetic videos
side by side (`advance_together`: one batch through the key encoder, decoder and value encoder per
frame index) and reports the throughput over all videos (B x length frames over
the total time) and the peak memory, in a table of its own:

    python scripts/benchmark_inference.py --height 480 --lengths 50 --objects 2 --precision fp32 amp \
        --video_batch 1 2 4
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from util.cli import HelpFormatter  # noqa: E402
from util.defaults import BACKENDS, MEM_EVERY, TOP_K  # noqa: E402
from util.io import DataError  # noqa: E402
from util.outputs import run_command  # noqa: E402


def import_network_modules() -> None:
    """torch and the network's modules, bound as this module's globals once the flags are read: they take
    seconds to import, and `--help` or a mistyped flag needs none of them."""
    global torch, InferenceCore, Predictor, compile_network, exported_network, advance_together
    global ReferencePropagation, STCN, load_network, cpu_features, precision_label, prepare_for_inference
    global resolve_amp_dtype, resolve_device, synchronize
    import torch

    from inference_core import InferenceCore, Predictor
    from inference_core.backends import compile_network, exported_network
    from inference_core.predictor import advance_together
    from inference_core.reference import ReferencePropagation
    from model import STCN
    from model.checkpoint import load_network
    from util.device import (
        cpu_features,
        precision_label,
        prepare_for_inference,
        resolve_amp_dtype,
        resolve_device,
        synchronize,
    )


ASPECT = 854 / 480  # DAVIS 480p frames are 854 x 480


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--model", default=None, help="checkpoint (default: random weights; speed does not depend on them)")
    p.add_argument("--height", type=int, default=480, help="frame height; width = height * 854/480")
    p.add_argument("--lengths", type=int, nargs="+", default=[50, 200])
    p.add_argument("--objects", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--precision", nargs="+", choices=["fp32", "amp"], default=["fp32", "amp"])
    p.add_argument("--amp_dtype", choices=["float16", "bfloat16"], default=None,
                   help="autocast dtype (default as --amp in the evaluation scripts: float16 on CUDA, bfloat16 "
                        "on a CPU with native bf16, else fp32)")
    p.add_argument("--backend", choices=BACKENDS, default="pytorch",
                   help="encoders and decoder in PyTorch or exported (CPU); amp = OpenVINO bf16, not for onnxruntime")
    p.add_argument("--onnx_dir", default=None, help="exports from scripts/export.py (default: the export cache)")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoders and decoder (pytorch backend)")
    p.add_argument("--baseline", action="store_true", help="also time the dense reference propagation (fp32)")
    p.add_argument("--top", type=int, default=TOP_K)
    p.add_argument("--mem_every", type=int, default=MEM_EVERY)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--warmup", type=int, default=2, help="frames of a short run before timing")
    p.add_argument("--budgets", nargs="+", default=["none"],
                   help="memory bounds to compare: none (unbounded, the paper) or a number of memory frames")
    p.add_argument("--profile", action="store_true",
                   help="also print where the time goes (key encoder, memory read, decoder, value encoder, rest)")
    p.add_argument("--report_at", type=int, nargs="+", default=None,
                   help="also print a row after these many frames of each video (a memory/speed curve; from 1 "
                        "to the longest of --lengths)")
    p.add_argument("--video_batch", type=int, nargs="+", default=None,
                   help="videos stepped side by side in one batch (e.g. 1 2 4): throughput over all videos and "
                        "peak memory per batch size, instead of the per-video table (pytorch backend)")
    return p


class SyntheticVideo:
    """Moving textured squares over a textured background, made on the fly (seeded)."""

    def __init__(self, height: int, width: int, objects: int, device: torch.device, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.h, self.w = height, width
        self.background = (torch.rand(3, height, width, generator=g) - 0.5).to(device)
        self.texture = (torch.rand(objects, 3, 1, 1, generator=g) * 2 - 1).to(device)
        self.objects = objects
        self.side = max(8, height // 6)

    def rgb(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame t as a stream takes it: H x W x 3 uint8 (on the device) and its H x W label map."""
        img, labels = self.frame(t)
        return ((img + 1) * 127.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0), labels

    def frame(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame t as 3 x H x W floats around 0 (the dense reference's input) and its H x W label map."""
        img = self.background.roll(shifts=t % self.w, dims=2).clone()
        labels = torch.zeros(self.h, self.w, dtype=torch.long, device=img.device)
        for o in range(self.objects):
            cy = int((0.5 + 0.3 * math.sin(0.05 * t + o)) * (self.h - self.side))
            cx = int((0.5 + 0.4 * math.cos(0.03 * t + 2 * o)) * (self.w - self.side))
            img[:, cy : cy + self.side, cx : cx + self.side] = self.texture[o]
            labels[cy : cy + self.side, cx : cx + self.side] = o + 1
        return img, labels


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:  # Linux: reset the peak resident set size of this process
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StageTimer:
    """Times the network's stages by wrapping the bound methods of one network and memory bank.

    Each wrapped call synchronises the device before and after, so the split is exact but the
    total is slightly slower than an unprofiled run; "rest" is the frame time outside the stages
    (aggregation, padding, Python).
    """

    STAGES = ("key encoder", "memory read", "decoder", "value encoder")

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = dict.fromkeys(self.STAGES, 0.0)

    def wrap(self, obj, attr: str, stage: str) -> None:
        fn = getattr(obj, attr)

        def timed(*a, **kw):
            synchronize(self.device)
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            synchronize(self.device)
            self.seconds[stage] += time.perf_counter() - t0
            return out

        setattr(obj, attr, timed)

    def attach(self, net: STCN, core) -> None:
        for attr, stage in (("encode_key", "key encoder"), ("decode", "decoder"), ("encode_value", "value encoder")):
            self.wrap(net, attr, stage)
        if isinstance(core, InferenceCore):
            self.wrap(core.memory, "read", "memory read")

    def detach(self, net: STCN) -> None:
        for attr in ("encode_key", "decode", "encode_value"):
            net.__dict__.pop(attr, None)

    def report(self, total: float, frames: int) -> str:
        parts = [f"{k} {1000 * v / frames:.1f} ms ({100 * v / total:.0f}%)" for k, v in self.seconds.items()]
        rest = total - sum(self.seconds.values())
        parts.append(f"rest {1000 * rest / frames:.1f} ms ({100 * rest / total:.0f}%)")
        return "per frame: " + ", ".join(parts)


def predictor_of(net, args, amp_dtype: torch.dtype | None, budget: int | None) -> Predictor:
    """The predictor the flags ask for on `net` (under `amp_dtype` autocast, None: fp32; at most `budget`
    memory frames)."""
    return Predictor(net, amp_dtype=amp_dtype, top_k=args.top, mem_every=args.mem_every, max_mem_frames=budget)


def run_once(
    net: STCN, args, device, length: int, objects: int, amp_dtype: torch.dtype | None, baseline: bool,
    budget: int | None,
) -> list[dict]:
    """Propagate one synthetic video under `amp_dtype` autocast (None: fp32); one result row per
    `--report_at` point (and at the end)."""
    video = SyntheticVideo(args.height, round(args.height * ASPECT), objects, device)

    def make():
        if baseline:
            return ReferencePropagation(net, objects, top_k=args.top, mem_every=args.mem_every)
        return predictor_of(net, args, amp_dtype if args.backend == "pytorch" else None, budget).new_stream()

    def step(runner, t: int, last: int) -> float:
        """Frame t through `runner` (a stream, or the dense reference); the seconds of its network work."""
        if baseline:
            img, lab = video.frame(t)
        else:  # synthesis and preparation: not timed
            prepared = runner.prepare(*video.rgb(t), end=t == last) if t == 0 else runner.prepare(
                video.rgb(t)[0], end=t == last)
        synchronize(device)
        start = time.perf_counter()
        if baseline:
            runner.step(img, lab) if t == 0 else runner.step(img, end=t == last)
        else:
            runner.finish(prepared, runner.advance(prepared), labels=False)
        synchronize(device)
        return time.perf_counter() - start

    warm = make()  # warm-up: allocator, kernels, autotuning
    for t in range(min(args.warmup, length)):
        step(warm, t, -1)
    del warm
    reset_peak_memory(device)
    runner = make()
    timer = StageTimer(device) if args.profile and not baseline else None
    if timer is not None:
        timer.attach(net, runner.core)
    marks = sorted({n for n in (args.report_at or []) if 0 < n < length} | {length})
    rows, total, since, whole = [], 0.0, 0, 0.0
    for t in range(length):
        seconds = step(runner, t, length - 1)
        total += seconds
        whole += seconds
        if t + 1 in marks:
            mem_frames = len(runner.mem_k) if baseline else runner.core.memory.num_frames
            mem_mib = (sum(x.nelement() * x.element_size() for x in runner.mem_k + runner.mem_v) if baseline
                       else runner.core.memory.nbytes) / 2**20
            rows.append({"frames": t + 1, "fps": (t + 1 - since) / total, "peak_mb": peak_memory_mb(device),
                         "mem_frames": mem_frames, "mem_mib": mem_mib})
            total, since = 0.0, t + 1
    if timer is not None:
        timer.detach(net)
        rows[-1]["profile"] = timer.report(whole, length)
    return rows


def run_batch(
    net: STCN, args, device, length: int, objects: int, amp_dtype: torch.dtype | None, budget: int | None,
    videos: int,
) -> dict:
    """Propagate `videos` synthetic videos (seeds 0, 1, ...) side by side with `advance_together`, one call
    per frame index; returns the throughput over all videos and the peak memory."""
    clips = [SyntheticVideo(args.height, round(args.height * ASPECT), objects, device, seed=v) for v in range(videos)]

    def make() -> list:
        predictor = predictor_of(net, args, amp_dtype, budget)
        return [predictor.new_stream() for _ in range(videos)]

    def step_all(streams: list, t: int, last: int) -> float:
        frames = [clip.rgb(t) for clip in clips]  # synthesis and preparation: not timed
        prepared = [s.prepare(rgb, lab if t == 0 else None, end=t == last) for s, (rgb, lab) in zip(streams, frames)]
        synchronize(device)
        start = time.perf_counter()
        for s, p, prob in zip(streams, prepared, advance_together(streams, prepared)):
            s.finish(p, prob, labels=False)
        synchronize(device)
        return time.perf_counter() - start

    warm = make()  # warm-up: allocator, kernels, autotuning at this batch size
    for t in range(min(args.warmup, length)):
        step_all(warm, t, length - 1)
    del warm
    reset_peak_memory(device)
    streams = make()
    total = sum(step_all(streams, t, length - 1) for t in range(length))
    return {"frames": videos * length, "fps": videos * length / total, "peak_mb": peak_memory_mb(device),
            "mem_frames": streams[0].core.memory.num_frames}


def print_batch_table(args, nets, precisions, device) -> None:
    """The `--video_batch` table: one row per (length, objects, precision, bound, videos per batch)."""
    print("| precision | objects | memory bound | frames per video | videos per batch | FPS (all videos) "
          "| peak memory (MB) | memory frames per video |")
    print("|---|---|---|---|---|---|---|---|")
    budgets = [None if b.lower() == "none" else int(b) for b in args.budgets]
    for length in args.lengths:
        for objects in args.objects:
            for flag in args.precision:
                precision, amp_dtype = precisions[flag]
                for budget in budgets:
                    for videos in args.video_batch:
                        r = run_batch(nets[flag], args, device, length, objects, amp_dtype, budget, videos)
                        bound = "none" if budget is None else f"{budget} frames"
                        print(f"| {precision} | {objects} | {bound} | {length} | {videos} | {r['fps']:.2f} | "
                              f"{r['peak_mb']:.0f} | {r['mem_frames']} |", flush=True)


def precision_row(flag: str, device: torch.device, requested: str | None) -> tuple[str, torch.dtype | None]:
    """(row label, autocast dtype) of `--precision` fp32 or amp, the dtype chosen as the evaluation
    scripts' `--amp` does: 'amp (bf16)', or 'amp -> fp32 (no native bf16)' where --amp falls back."""
    if flag == "fp32":
        return "fp32", None
    dtype, _ = resolve_amp_dtype(device, True, requested)
    return (f"amp ({precision_label(dtype)})" if dtype is not None else "amp -> fp32 (no native bf16)"), dtype


# flag -> smallest value of each of its numbers (--threads and --report_at may be left out); a frame of any
# positive size runs (padded to multiples of 16)
MINIMUMS = {"height": 1, "lengths": 1, "objects": 1, "threads": 1, "warmup": 0, "top": 1, "mem_every": 1,
            "report_at": 1}


def check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """argparse's error (one line, exit 2) for a number below its flag's minimum or a --budgets entry that
    is neither none nor a positive number of memory frames."""
    for flag, least in MINIMUMS.items():
        value = getattr(args, flag)
        for number in value if isinstance(value, list) else [] if value is None else [value]:
            if number < least:
                parser.error(f"--{flag} {number}: must be at least {least}")
    for budget in args.budgets:
        if budget.lower() != "none" and not (budget.isdigit() and int(budget) >= 1):
            parser.error(f"--budgets {budget}: must be none or a number of memory frames (at least 1)")


def main(argv: list[str] | None = None) -> int:
    """A bad flag or file is one `error:` line, Ctrl-C one `interrupted` line (util/outputs.py run_command)."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    check_numbers(parser, args)
    import_network_modules()
    return run_command(lambda: benchmark(args))


def check_report_at(points: list[int] | None, lengths: list[int]) -> None:
    """`--report_at` (each at least 1, checked by the parser): DataError for a point past every length (it
    would print no row); one `note:` line for points past some lengths only (those videos' rows lack them)."""
    if not points:
        return
    bad = [n for n in points if n > max(lengths)]
    if bad:
        raise DataError("--report_at", f"{bad[0]} is outside every video (--lengths {' '.join(map(str, lengths))}), "
                        "so no row would be printed for it", f"pass frame counts from 1 to {max(lengths)}")
    partly = sorted({n for n in points if n > min(lengths)})
    if partly:
        shorter = sorted({m for m in lengths if m < max(partly)})
        print(f"note: --report_at {' '.join(map(str, partly))}: past the end of the "
              f"{', '.join(map(str, shorter))}-frame videos, whose rows stop at their last frame", file=sys.stderr)


def benchmark(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)  # a missing CUDA: DeviceError, one line (run_command)
    except RuntimeError:  # torch.device's own "Expected one of cpu, cuda, ..."
        raise DataError("--device", f"unknown device {args.device!r}", "choose auto, cpu, cuda or cuda:i") from None
    check_report_at(args.report_at, args.lengths)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)  # random weights: the same every run (one cached export for --backend)
    net = load_network(args.model, device) if args.model else STCN(pretrained=False).to(device)
    net = prepare_for_inference(net)
    if args.compile:
        net = compile_network(net)
    if args.video_batch is not None:
        if min(args.video_batch) < 1:
            raise DataError("--video_batch", "every batch size must be at least 1", "pass positive batch sizes")
        if args.backend != "pytorch" or args.baseline or args.profile or args.report_at:
            raise DataError("--video_batch", "runs the pytorch backend's core only (the exported graphs have a batch "
                            "of one frame)", "leave out --backend, --baseline, --profile and --report_at")
    if args.backend == "onnxruntime" and "amp" in args.precision:
        raise DataError("--precision amp", "onnxruntime runs the exported networks in fp32 only",
                        "pass --precision fp32")
    precisions = {p: precision_row(p, device, args.amp_dtype) for p in {*args.precision, "fp32"}}
    nets = {p: net if args.backend == "pytorch" else
            exported_network(net, args.backend, args.onnx_dir, precision=precision_label(precisions[p][1]))
            for p in args.precision}
    width = round(args.height * ASPECT)
    width += (-width) % 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; {torch.get_num_threads()} CPU threads; "
          f"frames {width}x{args.height} (padded to multiples of 16)")
    print(f"cpu: {cpu_features().describe()}")
    if args.video_batch is not None:
        print_batch_table(args, nets, precisions, device)
        return 0
    print("| path | precision | objects | memory bound | frames | FPS | peak memory (MB) | memory frames "
          "| memory (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    budgets = [None if b.lower() == "none" else int(b) for b in args.budgets]
    core_path = "core" if args.backend == "pytorch" and not args.compile else (
        f"core ({args.backend}{', compiled' if args.compile else ''})")
    runs = [(core_path, p, b) for p in args.precision for b in budgets]
    runs += [("dense reference", "fp32", None)] if args.baseline else []
    for length in args.lengths:
        for objects in args.objects:
            for path, flag, budget in runs:
                precision, amp_dtype = precisions[flag]
                baseline = path == "dense reference"
                rows = run_once(net if baseline else nets[flag], args, device, length, objects, amp_dtype,
                                baseline, budget)
                for r in rows:
                    bound = "none" if budget is None else f"{budget} frames"
                    print(f"| {path} | {precision} | {objects} | {bound} | {r['frames']} | {r['fps']:.2f} | "
                          f"{r['peak_mb']:.0f} | {r['mem_frames']} | {r['mem_mib']:.1f} |", flush=True)
                    if "profile" in r:
                        print(f"<!-- {path} {precision} {objects} objects: {r['profile']} -->", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
