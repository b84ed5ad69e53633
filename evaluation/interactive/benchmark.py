"""Interactive STCN on the DAVIS-interactive benchmark: MiVOS's answer to each scribble, and the run over
a session's samples (`eval_interactive_davis.py`).

The answer to a scribble (MiVOS, Cheng, Tai and Tang, CVPR 2021, as its DAVIS processor runs it):
- the interacted frame is the first frame holding strokes (a scribble without strokes, the robot's
  answer to a perfect frame, names frame T - 1 with empty maps, as MiVOS's processor ends up doing);
- the strokes of that frame are rasterised at the padded network size (MiVOS reads the frame size
  after padding to multiples of 16), turned into each object's positive and negative maps and given
  to the scribble-to-mask network with the frame's current hard mask (`InteractiveCore.scribble_probabilities`);
- MiVOS's schedule (`PROPAGATING`): interactions 3, 6 and 8 join the memory, propagate and fuse
  (`InteractiveCore.interact`) and let the robot choose among all frames; the others only replace the
  interacted frame's mask (`update_mask_only`) and name that frame as the only candidate, so that the
  robot corrects it again. `propagate_every` propagates on every interaction instead.
A sample gets a fresh core (as MiVOS gets a fresh processor per sample).

Only the method's time counts: from the scribble handed out to its masks, so reading the frames
(before the first scribble) and saving masks are outside it.
"""
from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from evaluation.datasets import EvalVideo
from evaluation.interactive.metrics import ReportRow, SampleInfo
from evaluation.interactive.session import Sample, SampleSpec, Session
from inference_core.interactive import InteractiveCore
from inference_core.predictor import Predictor
from util.frame_source import FrameSource
from util.io import DataError, write_mask
from util.outputs import OutputDir
from util.scribbles import Scribbles, rasterise, read_scribbles, s2m_inputs

PROPAGATING = (3, 6, 8)  # interactions (1-based) that propagate: MiVOS-STCN davis_processor.py, schedule [2, 5, 7]
MASKS_DIR = "masks"  # <output>/masks/<video>/<NNN>/<interaction>/<frame>.png with --save_mask
clock = time.perf_counter  # the method's timer (a module attribute, so that a test can replace it)


def interacted_frame(scribble: Scribbles) -> int:
    """The frame a scribble is on: the first holding strokes; the last frame when none does (MiVOS)."""
    frames = scribble.annotated_frames()
    return frames[0] if frames else scribble.num_frames - 1


def scribble_maps(scribble: Scribbles, frame: int, num_objects: int, size: tuple[int, int]) -> np.ndarray:
    """K x 2 x H x W positive and negative maps of frame `frame`'s strokes rasterised at `size` (`s2m_maps`)."""
    return s2m_inputs(rasterise(scribble, frame, *size), range(1, num_objects + 1))


class MivosMethod:
    """One sample's method: `answer(scribble)` -> (T x H x W label maps, candidate frames or None)."""

    def __init__(self, predictor: Predictor, frames: FrameSource | Sequence, num_objects: int, s2m: torch.nn.Module,
                 fusion: torch.nn.Module | None, propagate_every: bool = False) -> None:
        self.core = InteractiveCore(predictor, frames, num_objects, fusion=fusion)
        self.s2m = s2m
        self.propagate_every = propagate_every
        self.interactions = 0

    def propagates(self, interaction: int) -> bool:
        """Whether interaction `interaction` (1-based) propagates (module docstring)."""
        return self.propagate_every or interaction in PROPAGATING

    def answer(self, scribble: Scribbles) -> tuple[np.ndarray, list[int] | None]:
        frame = interacted_frame(scribble)
        maps = scribble_maps(scribble, frame, self.core.num_objects, self.core.padded_size)
        prob = self.core.scribble_probabilities(frame, self.s2m, maps)
        self.interactions += 1
        if self.propagates(self.interactions):
            self.core.interact(frame, prob=prob)
            candidates = None
        else:
            self.core.update_mask_only(frame, prob=prob)
            candidates = [frame]
        return self.core.all_labels(), candidates


def check_scribbles(specs: Sequence[SampleSpec], videos: dict[str, EvalVideo]) -> None:
    """Every first scribble read and checked against its video before any work (frames, objects of the
    first annotation, coordinates, the video's name): a bad file is one DataError naming it."""
    for spec in specs:
        video = videos[spec.sequence]
        first = video.annotation(0)
        scribble = read_scribbles(spec.scribble_path, num_frames=len(video.frames),
                                  num_objects=int(first.max()) if first is not None else None)
        if scribble.sequence and scribble.sequence != spec.sequence:
            raise DataError(spec.scribble_path, f"is a scribble of {scribble.sequence!r}, not of {spec.sequence!r}",
                            "put each video's scribbles in its own folder")


def check_frames(video: EvalVideo, sample: Sample) -> None:
    """The video's frames must match its ground truth (number and size)."""
    if len(video.frames) != sample.num_frames or video.size != (sample.height, sample.width):
        raise DataError(video.frames[0].image_path.parent,
                        f"{len(video.frames)} frames of {video.size[1]}x{video.size[0]} but the ground truth has "
                        f"{sample.num_frames} of {sample.width}x{sample.height}",
                        "use the DAVIS 2017 trainval frames and annotations as downloaded (480p)")


def run_samples(session: Session, videos: dict[str, EvalVideo], make_method: Callable[..., MivosMethod], *,
                out: OutputDir | None = None, save_masks: bool = False, log: Callable[[str], None] | None = None,
                current: list | None = None) -> None:
    """Every sample of `session`: the method answers each scribble; the session scores and answers.

    make_method(frames, num_objects): a fresh method per sample. With `save_masks` the masks of every
    interaction go to `out/masks/<video>/<NNN>/<interaction>/<frame>.png`, a sample's folder appearing
    once the sample is over. `current[0]` is set to the video being run (for a failure's line); `log`
    gets one line per sample.
    """
    for sample in session:
        video = videos[sample.sequence]
        if current is not None:
            current[0] = video
        check_frames(video, sample)
        frames = [video.original_rgb(t) for t in range(len(video.frames))]  # read before the clock starts
        method = make_method(frames, sample.num_objects)
        if save_masks and out is not None:
            with out.partial(out.path / MASKS_DIR / sample.sequence / f"{sample.scribble_idx:03d}") as folder:
                _run_sample(sample, method, functools.partial(_save, folder, video))
        else:
            _run_sample(sample, method, None)
        if log is not None:
            last = [r.j_and_f for r in session.rows if (r.sequence, r.scribble_idx, r.interaction)
                    == (sample.sequence, sample.scribble_idx, sample.interaction)]
            log(f"{sample.sequence} {sample.scribble_idx:03d}: {sample.interaction} interactions in "
                f"{sample.seconds:.2f} s, J&F {np.mean(last) if last else 0.0:.3f}")


def _run_sample(sample: Sample, method: MivosMethod, save: Callable[[int, np.ndarray], None] | None) -> None:
    scribble = sample.first()
    while scribble is not None:
        start = clock()
        masks, candidates = method.answer(scribble)
        took = clock() - start
        if save is not None:
            save(sample.interaction + 1, masks)
        scribble = sample.submit(masks, seconds=took, candidates=candidates)


def _save(sample_folder: Path, video: EvalVideo, interaction: int, masks: np.ndarray) -> None:
    folder = sample_folder / str(interaction)
    folder.mkdir()
    for frame, labels in zip(video.frames, masks):
        write_mask(folder / f"{frame.name}.png", labels, video.palette)


# ----------------------------------------------------------------------------- sharding
def sample_weights(specs: Sequence[SampleSpec], frames: dict[str, int]) -> tuple[list[str], list[int]]:
    """The videos of `specs` in order and each one's work (frames x samples), for a split by video."""
    order = list(dict.fromkeys(s.sequence for s in specs))
    return order, [frames[name] * sum(s.sequence == name for s in specs) for name in order]


def merge_results(parts: Sequence[tuple[list[ReportRow], list[SampleInfo]]],
                  specs: Sequence[SampleSpec]) -> tuple[list[ReportRow], list[SampleInfo]]:
    """The rows and samples of every rank's share, in the order of `specs` (a single run's order)."""
    position = {(s.sequence, s.scribble_idx): i for i, s in enumerate(specs)}
    rows = sorted((r for part_rows, _ in parts for r in part_rows),
                  key=lambda r: position[(r.sequence, r.scribble_idx)])
    infos = sorted((i for _, part_infos in parts for i in part_infos),
                   key=lambda i: position[(i.sequence, i.scribble_idx)])
    return rows, infos


def report_paths(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Where the report and the summary go in the output folder."""
    return Path(out_dir) / "report.csv", Path(out_dir) / "summary.json"
