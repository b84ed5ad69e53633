"""The one evaluation loop: frames of a video -> InferenceCore -> masks on disk, with timing.

Every evaluation script (DAVIS 2017/2016, YouTube-VOS, generic) builds a dataset of
`TestVideo`s and calls `run_dataset`. Per video, frames are read lazily, given to the core, and
each required mask is resized to the original size and written as soon as it is produced, into
a hidden temporary folder that is renamed to the video's name only when the video is complete; on
any error the temporary folder is removed, so a video folder that exists is always complete.

Timing follows the paper ("FPS ... measured with IO time excluded", STCN README): the clock covers
the network work of a frame and turning its probabilities into the output label map, not reading
the image or writing the PNG; the device is synchronised before each clock reading. FPS is the
total number of processed frames over the total time, whatever the number of objects.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import progressbar
import torch

from evaluation.datasets import EVAL_SHORT_SIDE, TestVideo
from evaluation.ensembles import ModelPaths, add_ensemble_args, annotation_input, ensemble_from_args, frame_input
from evaluation.sinks import FrameSink
from evaluation.video_file import VideoFileVideo
from inference_core.backends import BACKENDS, CACHE_ENV
from inference_core.core import MEM_EVERY, InferenceCore, probabilities_to_labels
from inference_core.objects import starting_objects  # the evaluation rule: later annotations only start objects
from inference_core.predictor import Predictor, PredictorError, merge_directions
from model.memory_util import SIMILARITIES, TOP_K
from util.device import DeviceError, resolve_device, synchronize
from util.frames import MIN_FEATURE_CELLS, MIN_SHORT_SIDE  # the network's smallest shorter side
from util.io import DataError, write_mask
from util.launch import add_local_rank_arg
from util.outputs import OutputDir, as_final, partial_dir, remove_partial, replace_dir, run_command
from util.tensor_util import STRIDE

NATIVE_SIZE = -1  # `--size -1`: frames at their own size


@dataclass
class RunStats:
    """Processed frames and processing time (I/O excluded) over all videos."""

    frames: int = 0
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def print(self, file=None) -> None:
        """The three lines the original STCN scripts printed."""
        file = file or sys.stdout
        print(f"Total processing time: {self.seconds}", file=file)
        print(f"Total processed frames: {self.frames}", file=file)
        print(f"FPS: {self.fps}", file=file)


def frames_to_process(video: TestVideo) -> int:
    """Frames up to the last required or annotated one (later frames are not processed)."""
    needed = [i for i, f in enumerate(video.frames) if f.required or f.mask_path is not None]
    return needed[-1] + 1 if needed else 0


def run_video(
    core: InferenceCore,
    video: TestVideo,
    out_dir: Path,
    stats: RunStats,
    sinks: Sequence[FrameSink] = (),
    on_frame: Callable[[], None] | None = None,
    output: OutputDir | None = None,
    bidirectional: bool = False,
) -> None:
    """Segment one video and write its required frames to `out_dir/<frame>.png` (and to `sinks`).

    output: the checked output folder `out_dir` is (in), which decides how an existing `out_dir`
    is replaced (util/outputs.py); None: replaced whole. Frames after the last required or annotated
    frame are not processed; frames that are neither required nor memory (see
    `InferenceCore.needs_frame`) are skipped. `on_frame` is called after every frame (processed or
    skipped), e.g. to advance a progress bar. bidirectional: objects first annotated on frame m are
    also propagated from m back to frame 0 (`backward_pass`; merged by `merge_directions`).
    """
    core.reset()
    video.prepare()  # reads every annotation: a bad one stops here, before anything is written
    palette = video.palette
    size = video.size
    last = frames_to_process(video) - 1
    backward, starts = backward_pass(core, video, stats) if bidirectional else ({}, {})

    out_dir = Path(out_dir)
    tmp = partial_dir(out_dir)
    started: list[FrameSink] = []
    try:
        for sink in sinks:
            sink.begin(video)
            started.append(sink)
        for i in range(last + 1):
            frame = video.frames[i]
            annotated = frame.mask_path is not None
            if not core.needs_frame(frame.required or annotated):
                core.skip()
                if on_frame is not None:
                    on_frame()
                continue
            image = frame_input(core, video, i)  # I/O: not timed (an ensemble: every size it reads)
            mask, start = None, None
            if annotated:
                mask, start = starting_objects(video.load_mask(i).to(core.device), frame.start_labels, core.labels)
                if not start:
                    mask, start = None, None
                else:
                    mask = annotation_input(core, video, i, mask, start)

            synchronize(core.device)
            t0 = time.perf_counter()
            prob = core.step(image, mask, labels=start, end=i == last)
            label_map = core.label_map()
            if i in backward:  # objects annotated after this frame: from the backward pass
                prob, ids = merge_directions((prob, core.labels), backward.pop(i), starts, i)
                label_map = np.array([0, *ids], dtype=np.int64)
            labels = probabilities_to_labels(prob, size, label_map) if frame.required else None
            synchronize(core.device)
            stats.seconds += time.perf_counter() - t0
            stats.frames += 1  # once per frame, whatever the number of ensemble variants

            if labels is not None:
                write_mask(tmp / f"{frame.name}.png", labels, palette)
                for sink in sinks:
                    sink.add(i, labels)
            if on_frame is not None:
                on_frame()
        for sink in sinks:
            sink.commit()
        (output.replace if output is not None else replace_dir)(tmp, out_dir)
    except BaseException as exc:
        remove_partial(tmp)
        for sink in started:
            sink.abort()
        if isinstance(exc, OSError):  # e.g. a full disk: name the mask's place, not the temporary's
            raise as_final(exc, tmp, out_dir) from None
        raise


def first_starts(video: TestVideo) -> dict[int, int]:
    """Object label -> the first frame whose annotation starts it (the evaluation rule)."""
    starts: dict[int, int] = {}
    for i, frame in enumerate(video.frames):
        if frame.mask_path is not None:
            _, start = starting_objects(video.load_mask(i), frame.start_labels, list(starts))
            starts.update({v: i for v in start})
    return starts


def backward_pass(core: InferenceCore, video: TestVideo, stats: RunStats
                  ) -> tuple[dict[int, tuple[torch.Tensor, list[int]]], dict[int, int]]:
    """`--bidirectional`: the frames from the last frame that starts an object back to frame 0, through
    the core with the annotations taken in that order (the evaluation rule, `starting_objects`).

    Returns (required frame t before that frame -> (probabilities at the network size on the CPU,
    their labels)) and `first_starts`. A video file is decoded once, in order, and its frames up to
    that frame are kept (at the network size) for the reversed pass. Timed as the forward frames.
    """
    starts = first_starts(video)
    last = max(starts.values(), default=0)
    if last == 0:
        return {}, starts
    core.reset()
    sequential = isinstance(video, VideoFileVideo)  # decoding backwards would re-decode from the start
    images = [frame_input(core, video, i) for i in range(last + 1)] if sequential else None
    out = {}
    for i in range(last, -1, -1):
        frame = video.frames[i]
        image = images[i] if images is not None else frame_input(core, video, i)
        mask, start = None, None
        if frame.mask_path is not None:
            mask, start = starting_objects(video.load_mask(i).to(core.device), frame.start_labels, core.labels)
            if not start:
                mask, start = None, None
            else:
                mask = annotation_input(core, video, i, mask, start)
        synchronize(core.device)
        t0 = time.perf_counter()
        prob = core.step(image, mask, labels=start, end=i == 0)
        if i < last and frame.required:
            out[i] = (prob.cpu(), list(core.labels))
        synchronize(core.device)
        stats.seconds += time.perf_counter() - t0
        stats.frames += 1
    core.reset()
    return out, starts


class _CurrentStderr:
    """Writes to whatever sys.stderr is now: progressbar would otherwise keep the stream it saw at import."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()

    def fileno(self) -> int:
        return sys.stderr.fileno()


def run_dataset(
    core: InferenceCore,
    videos: Sequence[TestVideo],
    out_dir_of: Callable[[TestVideo], Path],
    quiet: bool = False,
    sinks: Sequence[FrameSink] = (),
    output: OutputDir | None = None,
    bidirectional: bool = False,
) -> RunStats:
    """Run every video with a progress bar over all frames; returns the totals for the timing lines.

    Every video is checked first (`check_videos`), so a bad one stops the run before any work.
    The bar shows the current video, the size of its memory (frames and MiB of keys and values)
    and the processing frame rate (I/O excluded, as the final FPS line).
    """
    check_videos(videos)
    stats = RunStats()
    if quiet:
        for video in videos:
            run_video(core, video, out_dir_of(video), stats, sinks, output=output, bidirectional=bidirectional)
        return stats

    status = progressbar.FormatCustomText(
        "%(video)s | memory %(mem_frames)d frames, %(mem_mib).1f MiB | %(fps).2f fps",
        dict(video="", mem_frames=0, mem_mib=0.0, fps=0.0),
    )
    widgets = [progressbar.Percentage(), " ", progressbar.SimpleProgress(), " ", progressbar.Bar(), " ",
               status, " ", progressbar.ETA()]
    total = sum(frames_to_process(v) for v in videos)
    bar = progressbar.ProgressBar(max_value=max(total, 1), widgets=widgets, fd=_CurrentStderr())
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        status.update_mapping(mem_frames=core.memory.num_frames, mem_mib=core.memory.nbytes / 2**20,
                              fps=stats.fps if stats.seconds > 0 else 0.0)
        bar.update(min(done, total))

    try:
        for video in videos:
            status.update_mapping(video=video.name)
            run_video(core, video, out_dir_of(video), stats, sinks, on_frame=advance, output=output,
                      bidirectional=bidirectional)
    finally:
        bar.finish(dirty=True)
    return stats


# ------------------------------------------------------------------------ shared CLI pieces
def add_common_args(parser: argparse.ArgumentParser, model_default: str = "saves/stcn.pth") -> None:
    """The flags every evaluation script shares (names as in the original STCN scripts)."""
    parser.add_argument("--model", default=model_default, nargs="+", action=ModelPaths,
                        help="network weights (released format); several: an ensemble averaging their probabilities")
    parser.set_defaults(models=[model_default])  # every --model path (evaluation/ensembles.py ModelPaths)
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


def add_size_arg(parser: argparse.ArgumentParser) -> None:
    """`--size`: the shorter side frames are resized to for the network (480 as the paper, -1 native).

    `--antialias`: resize with antialiasing, as the original code does under torchvision >= 0.17
    (the default is the paper's plain bicubic; see `util.frames.resize_frame`).
    """
    parser.add_argument("--size", type=int, default=EVAL_SHORT_SIDE,
                        help=f"shorter side the frames are resized to for the network ({EVAL_SHORT_SIDE} as the "
                             f"original, at least {MIN_SHORT_SIDE}; {NATIVE_SIZE}: native size); masks are written "
                             "at the original size")
    parser.add_argument("--antialias", action="store_true",
                        help="antialiased bicubic resize, as the original code gives under torchvision >= 0.17 "
                             "(default: plain bicubic on the normalised frame, as for the paper's numbers)")


def add_bidirectional_arg(parser: argparse.ArgumentParser) -> None:
    """`--bidirectional` (eval_generic.py, segment_video.py): objects annotated on a later frame also backwards."""
    parser.add_argument("--bidirectional", action="store_true",
                        help="also propagate each object backwards, from the frame where it is first annotated to "
                             "the first frame (its own memory, the frames in reverse); frames before an object's "
                             "annotation take it from that pass")


def short_side(args: argparse.Namespace) -> int | None:
    """The `--size` flag as a dataset's `short_side` (None: native size); DataError below MIN_SHORT_SIDE."""
    if args.size == NATIVE_SIZE:
        return None
    if args.size < MIN_SHORT_SIDE:
        raise DataError(
            "--size", f"{args.size} is below the network's minimum shorter side of {MIN_SHORT_SIDE} pixels "
            f"({MIN_FEATURE_CELLS} cells of its stride-{STRIDE} features)",
            f"pass --size {MIN_SHORT_SIDE} or more ({EVAL_SHORT_SIDE} as the paper), "
            f"or {NATIVE_SIZE} for the native size",
        )
    return args.size


def check_videos(videos: Sequence[TestVideo]) -> None:
    """Read every video's annotations and check its network size, before any work.

    A mask without any object, a bad annotation, or frames whose shorter side is below
    MIN_SHORT_SIDE at the network size (native-size videos: DAVIS, `--size -1`) stop the run with a
    DataError naming the file, before the network is loaded or anything is written. `prepare`
    keeps what it read, so `run_video` does not read the annotations again.
    """
    for video in videos:
        video.prepare()
        h, w = video.network_size
        if min(h, w) < MIN_SHORT_SIDE:
            raise DataError(
                video.frames[0].image_path,
                f"video {video.name} is {w}x{h} at the network size, below its minimum shorter side of "
                f"{MIN_SHORT_SIDE} pixels ({MIN_FEATURE_CELLS} cells of its stride-{STRIDE} features)",
                f"upscale the frames (--size {MIN_SHORT_SIDE} or more where the script has it)",
            )


def _chunk_size(text: str) -> int | str | None:
    if text in ("auto", "none"):
        return None if text == "none" else text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of query positions, auto or none, got {text!r}") from None


def build_core(args: argparse.Namespace) -> InferenceCore:
    """Device, network and core from the common flags; user mistakes raise UserError (util/errors.py)."""
    ensemble = ensemble_from_args(args, build_core)  # --scales/--flip/several --model; None: one core
    if ensemble is not None:
        return ensemble
    try:
        device = resolve_device(args.device)
    except DeviceError as exc:  # a CUDA device on a machine without CUDA
        raise DataError("--device", exc.problem, "use --device cpu or auto") from None
    except RuntimeError:  # a device string torch does not know
        raise DataError("--device", f"unknown device {args.device!r}", "choose auto, cpu, cuda or cuda:i") from None
    for flag in ("top", "mem_every"):
        if getattr(args, flag) < 1:
            raise DataError(f"--{flag}", f"must be at least 1 (got {getattr(args, flag)})", "pass a positive value")
    for flag in ("max_mem_frames", "chunk_size", "object_batch"):
        if isinstance(getattr(args, flag), int) and getattr(args, flag) < 1:
            raise DataError(f"--{flag}", "must be at least 1", "pass a positive value or leave it out")
    if args.max_mem_mb is not None and not args.max_mem_mb > 0:
        raise DataError("--max_mem_mb", "must be positive", "pass a positive budget in MiB or leave it out")
    device = check_backend_args(args, device)
    predictor = predictor_from_args(args, device)
    check_similarity_flag(args, predictor.similarity)
    return predictor.new_core()


# the Predictor's argument -> the evaluation scripts' flag (for its errors)
FLAG_OF_ARGUMENT = {"top_k": "--top", "device": "--device", "amp": "--amp", "amp_dtype": "--amp_dtype",
                    "backend": "--backend", "onnx_dir": "--onnx_dir", "compile": "--compile"}


def core_options(args: argparse.Namespace) -> dict:
    """The InferenceCore options of the common flags (a new core option: one more entry here)."""
    return dict(top_k=args.top, mem_every=args.mem_every, include_last=args.include_last,
                max_mem_frames=args.max_mem_frames, max_mem_mb=args.max_mem_mb,
                chunk_size=args.chunk_size, object_batch=args.object_batch,
                kernel_sigma=getattr(args, "kernel_sigma", None))


def predictor_from_args(args: argparse.Namespace, device: torch.device) -> Predictor:
    """`Predictor.from_checkpoint` with the common flags (the datasets resize the frames themselves);
    its argument errors become DataErrors naming the flag; the precision note goes to stderr."""
    try:
        predictor = Predictor.from_checkpoint(
            args.model, device=device, amp=args.amp, size=None, amp_dtype=args.amp_dtype,
            backend=args.backend, onnx_dir=args.onnx_dir, compile=args.compile, **core_options(args),
        )
    except PredictorError as exc:
        raise DataError(FLAG_OF_ARGUMENT.get(exc.where, f"--{exc.where}"), exc.problem, exc.fix) from None
    if predictor.note:
        print(predictor.note, file=sys.stderr)
    return predictor


def add_similarity_arg(parser: argparse.ArgumentParser) -> None:
    """`--similarity`: a check of the weights' similarity (they carry it; released weights are L2)."""
    parser.add_argument("--similarity", choices=SIMILARITIES, default=None,
                        help="the memory read's similarity (section 4, Table 2); default: the one --model was "
                             "trained with (stored by train.py; released weights: l2). A different value is refused")


def check_similarity_flag(args: argparse.Namespace, trained: str) -> None:
    """DataError if `--similarity` names another similarity than the one the weights were trained with
    (`trained`; weights trained for one similarity give wrong masks with another)."""
    wanted = getattr(args, "similarity", None)
    if wanted is not None and wanted != trained:
        raise DataError(
            "--similarity", f"{wanted} contradicts {args.model}, which was trained with {trained} "
            "similarity", f"leave --similarity out or pass --similarity {trained}",
        )


def check_backend_args(args: argparse.Namespace, device: torch.device) -> torch.device:
    """The device for `--backend` (exported backends: the CPU, also under --device auto); DataError on conflicts."""
    if args.backend == "pytorch":
        if args.onnx_dir is not None:
            raise DataError("--onnx_dir", "is read by the exported backends only",
                            "add --backend onnxruntime or openvino, or leave --onnx_dir out")
        return device
    if args.compile:
        raise DataError("--compile", f"applies to the pytorch backend, not {args.backend}",
                        "leave --compile out or use --backend pytorch")
    if args.amp and args.backend == "onnxruntime":
        raise DataError("--amp", "onnxruntime runs the exported networks in fp32 only",
                        "leave --amp out, or use --backend openvino (bf16) or pytorch")
    if args.device in (None, "", "auto"):
        return torch.device("cpu")
    if device.type != "cpu":
        raise DataError("--device", f"--backend {args.backend} runs on the CPU", "use --device cpu or auto")
    return device


def report_errors(fn: Callable[[], int]) -> int:
    """Run a script body: a user mistake or a write error becomes one `error:` line on stderr and exit
    code 1, SIGINT / SIGTERM one `interrupted by ...` line and 130 / 143 (util/outputs.py run_command)."""
    return run_command(fn, resume_hint="rerun the same command to redo the unfinished videos")
