"""The evaluation commands' flags: argparse builders that import nothing heavy.

The commands build their parsers from these and parse before importing torch, so that `--help` and
a mistyped flag are answered at once; the defaults and choices come from util/defaults.py, the
flags' meaning from the modules that read them (evaluation/run_video.py, evaluation/ensembles.py).
"""
from __future__ import annotations

import argparse

from util.cli import HelpFormatter
from util.defaults import (
    BACKENDS,
    CACHE_ENV,
    EVAL_SHORT_SIDE,
    KERNEL_ABOVE_SIDE,
    KERNEL_SIGMA,
    MEM_EVERY,
    MIN_SHORT_SIDE,
    NATIVE_SIZE,
    SIMILARITIES,
    TOP_K,
)
from util.launch import add_local_rank_arg


class ModelPaths(argparse.Action):
    """`--model a.pth [b.pth ...]`: `args.model` stays the first path (what every script names as an
    input), `args.models` holds them all."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        namespace.model = values[0]
        namespace.models = list(values)


def add_common_args(parser: argparse.ArgumentParser, model_default: str = "saves/stcn.pth") -> None:
    """The flags every evaluation script shares (names as in the original STCN scripts); `--help` shows
    the defaults."""
    parser.formatter_class = HelpFormatter
    parser.add_argument("--model", default=model_default, nargs="+", action=ModelPaths,
                        help="network weights (released format); several: an ensemble averaging their probabilities")
    parser.set_defaults(models=[model_default])  # every --model path (ModelPaths)
    parser.add_argument("--output", required=True, help="folder for the result masks")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into existing folders that are not a previous result (replacing only the "
                             "files written) and replace existing files; never an input")
    parser.add_argument("--top", type=int, default=TOP_K, help="top-k memory entries read (section 3.3)")
    parser.add_argument("--amp", action="store_true", help="run the network under autocast (mixed precision)")
    parser.add_argument("--amp_dtype", choices=("float16", "bfloat16"), default=None,
                        help="autocast dtype (default: float16 on CUDA as the original; on CPU bfloat16 "
                             "where the CPU has native bf16 (AVX-512 BF16, AMX, Arm BF16), else fp32)")
    parser.add_argument("--mem_every", type=int, default=MEM_EVERY, help="every this many frames become memory")
    parser.add_argument("--include_last", action="store_true", help="keep the previous frame as temporary memory")
    add_similarity_arg(parser)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:i")
    # passed by the old `python -m torch.distributed.launch` (evaluation/sharding.py)
    add_local_rank_arg(parser)
    add_ensemble_args(parser)
    long = parser.add_argument_group("long videos and memory (off by default: the paper's setting)")
    long.add_argument("--max_mem_frames", type=int, default=None,
                      help="keep at most this many memory frames: the annotated frames always, then the most recent")
    long.add_argument("--max_mem_mb", type=float, default=None,
                      help="keep the memory's keys and values under this many MiB (same policy)")
    long.add_argument("--chunk_size", type=_chunk_size, default="auto",
                      help="query positions per memory-read chunk; auto (default): the whole query when its "
                           "affinity fits a quarter of the free memory, else chunks; none: always whole. "
                           "Same result")
    long.add_argument("--object_batch", type=int, default=None,
                      help="objects value-encoded and decoded per batch (default: all at once), same result")
    speed = parser.add_argument_group("backends (default: PyTorch fp32; README, 'Speed')")
    speed.add_argument("--backend", choices=BACKENDS, default="pytorch",
                       help="run the encoders and decoder with PyTorch, or exported to ONNX with onnxruntime or "
                            "OpenVINO (CPU, fp32; --amp: OpenVINO in bf16), same masks within float rounding")
    speed.add_argument("--onnx_dir", default=None,
                       help="exports of --model from scripts/export.py (default: exported on first use into "
                            f"the cache, ${CACHE_ENV} or ~/.cache/stcn/onnx)")
    speed.add_argument("--compile", action="store_true",
                       help="torch.compile the encoders and decoder (pytorch backend; slow first frames)")


def add_video_batch_arg(parser: argparse.ArgumentParser) -> None:
    """`--video_batch N`: segment N videos side by side, their frames in one batch (1: one video at a time)."""
    parser.add_argument("--video_batch", type=int, default=1,
                        help="videos segmented side by side, the network run on one frame of each in one batch "
                             "(pytorch backend; same masks as 1, the default: one video at a time)")


def add_size_arg(parser: argparse.ArgumentParser) -> None:
    """`--size`: the shorter side frames are resized to for the network (480 as the paper, -1 native).

    With `--antialias` (`add_antialias_arg`).
    """
    parser.add_argument("--size", type=int, default=EVAL_SHORT_SIDE,
                        help=f"shorter side the frames are resized to for the network ({EVAL_SHORT_SIDE} as the "
                             f"original, at least {MIN_SHORT_SIDE}; {NATIVE_SIZE}: native size); masks are written "
                             "at the original size")
    add_antialias_arg(parser)


def add_antialias_arg(parser: argparse.ArgumentParser, native: bool = False) -> None:
    """`--antialias`: resize frames with antialiasing, as the original code does under torchvision >= 0.17
    (the default is the paper's plain bicubic; see `util.frames.resize_frame`). native: the dataset is
    evaluated at its own size (DAVIS), so the flag reaches only the frames `--scales` resizes."""
    parser.add_argument("--antialias", action="store_true",
                        help="antialiased bicubic resize, as the original code gives under torchvision >= 0.17 "
                             "(default: plain bicubic on the normalised frame, as for the paper's numbers)"
                             + ("; DAVIS frames are resized only for --scales" if native else ""))


def add_bidirectional_arg(parser: argparse.ArgumentParser) -> None:
    """`--bidirectional` (eval_generic.py, segment_video.py): objects annotated on a later frame also backwards."""
    parser.add_argument("--bidirectional", action="store_true",
                        help="also propagate each object backwards, from the frame where it is first annotated to "
                             "the first frame (its own memory, the frames in reverse); frames before an object's "
                             "annotation take it from that pass")


def add_ensemble_args(parser: argparse.ArgumentParser) -> None:
    """--scales, --flip and --kernel_sigma (--model takes several paths: see add_common_args)."""
    group = parser.add_argument_group("multi-scale, flip and ensembles (supplementary E; docs/experiments.md)")
    group.add_argument("--scales", type=int, nargs="+", default=None, metavar="SIDE",
                       help="run each network at each of these shorter sides (e.g. 480 600, as Table 10), each "
                            "with its own memory, and average the probabilities at the original size (default: "
                            "the video's own network size only)")
    group.add_argument("--flip", action="store_true",
                       help="also run every network and scale on the mirrored video and average it in")
    group.add_argument("--kernel_sigma", type=float, nargs="?", const=KERNEL_SIGMA, default=None, metavar="SIGMA",
                       help=f"kernelized memory reading (KMN, the paper's [22]) for the scales above "
                            f"{KERNEL_ABOVE_SIDE}, Gaussian std in stride-16 cells (default {KERNEL_SIGMA:g}, "
                            "MiVOS's); off unless given")


def add_similarity_arg(parser: argparse.ArgumentParser) -> None:
    """`--similarity`: a check of the weights' similarity (they carry it; released weights are L2)."""
    parser.add_argument("--similarity", choices=SIMILARITIES, default=None,
                        help="the memory read's similarity (section 4, Table 2); default: the one --model was "
                             "trained with (stored by train.py; released weights: l2). A different value is refused")


def _chunk_size(text: str) -> int | str | None:
    if text in ("auto", "none"):
        return None if text == "none" else text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of query positions, auto or none, got {text!r}") from None
