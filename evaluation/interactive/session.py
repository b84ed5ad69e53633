"""The DAVIS-interactive session: the samples, the interactions, the time budget, the robot's answers.

The benchmark (`davisinteractive`'s `DavisInteractiveSession` with the local evaluation service, as
MiVOS-STCN's `eval_interactive_davis.py` runs it) evaluates a method on samples = videos x their first
scribbles (DAVIS 2017 val: 30 videos x `<davis>/trainval/Scribbles/<video>/001..003.json`). A sample
starts with the human scribble; the method answers each scribble with masks of every frame; the session
scores them (`metrics`), asks the robot for the next scribble on the worst of the frames the method names
(`robot.worst_frame`: frames the robot already corrected are passed over while others remain), and stops
after `max_interactions` (8) answers or when the method's time on the sample passes its budget,
`seconds_per_interaction` (30) x max_interactions x the video's objects. A submission past the budget is
dropped and ends the sample; interactions a sample did not reach count in the summary with the last
scores at no time (`metrics.summary`).

Only the method's time counts: from the moment a scribble is handed out to the submission of its masks
(or the seconds the method reports, e.g. without saving masks). The budget is the sum of these times.
(The benchmark's own check measured the wall time since the sample began, its scoring and robot
included; with 240 s per object and a second or so per interaction the two never differ in practice.)

Use (the command drives it):

    session = Session.from_davis(root, sequences)            # root: <davis>/trainval
    for sample in session:                                    # one sample at a time, in order
        scribble = sample.first()                             # the human scribble (util.scribbles.Scribbles)
        while scribble is not None:
            masks, candidates = method(sample, scribble)      # (T, H, W) labels; frames or None
            scribble = sample.submit(masks, candidates=candidates)   # the robot's scribble, None when over
    session.write_report(path); session.write_summary(path)  # or session.rows / session.summary()

`submit(masks, seconds=None, candidates=None)`: `seconds` None measures with the session's clock;
`candidates` None or empty lets the robot choose among all frames. A sample left before it is over keeps
the interactions it has. `sample.scribbles` is every scribble of the sample so far (fused), `sample.gt`
the ground truth. Nothing here needs torch.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.interactive import metrics
from evaluation.interactive.robot import Robot
from util.io import DataError, MaskReader
from util.scribbles import Scribbles, read_scribbles

MAX_INTERACTIONS = 8  # MiVOS-STCN's eval_interactive_davis.py
SECONDS_PER_INTERACTION = 30.0  # per object (max_time = 8 x 30 s per object)
SCRIBBLES_DIR = "Scribbles"
ANNOTATIONS_DIR = "Annotations/480p"
SCRIBBLE_FILE = re.compile(r"^(\d{3})\.json$")
VOID_LABEL = 255  # not an object


@dataclass(frozen=True)
class SampleSpec:
    """One sample: a video and one of its first scribbles (the file and its number)."""

    sequence: str
    scribble_idx: int
    scribble_path: Path


def scribble_files(folder: Path) -> list[tuple[int, Path]]:
    """The numbered scribble files `NNN.json` of one video's folder, by number."""
    if not folder.is_dir():
        raise DataError(folder, "no scribbles for this video",
                        "fetch the DAVIS 2017 scribbles (python download_datasets.py --only davis17_scribbles)")
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := SCRIBBLE_FILE.match(p.name)))
    if not found:
        raise DataError(folder, "no scribble files (001.json, ...)",
                        "fetch the DAVIS 2017 scribbles (python download_datasets.py --only davis17_scribbles)")
    return found


def davis_ground_truth(root: Path) -> Callable[[str], np.ndarray]:
    """A loader of a DAVIS video's (T, H, W) label masks from `root/Annotations/480p/<video>/*.png`."""
    def load(sequence: str) -> np.ndarray:
        folder = root / ANNOTATIONS_DIR / sequence
        files = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if not files:
            raise DataError(folder, "no ground-truth masks", "check the DAVIS 2017 trainval layout")
        reader = MaskReader()
        masks = [reader.read(f) for f in files]
        if any(m.shape != masks[0].shape for m in masks):
            raise DataError(folder, "masks of different sizes", "use the 480p annotations as downloaded")
        return np.stack(masks)
    return load


def object_count(gt: np.ndarray) -> int:
    """The video's objects: the largest label of its ground truth (255, void, excluded)."""
    labels = np.unique(gt)
    labels = labels[(labels > 0) & (labels != VOID_LABEL)]
    return int(labels.max()) if labels.size else 0


class Session:
    """The benchmark over `samples`; `ground_truth(sequence)` gives a video's (T, H, W) labels."""

    def __init__(self, samples: Sequence[SampleSpec], ground_truth: Callable[[str], np.ndarray], *,
                 max_interactions: int = MAX_INTERACTIONS, seconds_per_interaction: float = SECONDS_PER_INTERACTION,
                 robot: Robot | None = None, clock: Callable[[], float] = time.perf_counter,
                 threshold: float = metrics.TIME_THRESHOLD) -> None:
        if max_interactions < 1:
            raise ValueError("max_interactions must be at least 1")
        self.specs = list(samples)
        self.ground_truth = ground_truth
        self.max_interactions = max_interactions
        self.seconds_per_interaction = seconds_per_interaction
        self.robot = robot or Robot()
        self.clock = clock
        self.threshold = threshold
        self.rows: list[metrics.ReportRow] = []
        self.infos: list[metrics.SampleInfo] = []
        self.dropped = 0  # submissions past the budget
        self._gt_cache: tuple[str, np.ndarray] | None = None

    @classmethod
    def from_davis(cls, root: str | os.PathLike, sequences: Sequence[str], **kwargs) -> Session:
        """Samples of `sequences` (e.g. the DAVIS 2017 val list) x each video's scribble files under
        `root/Scribbles/<video>/`, ground truth from `root/Annotations/480p` (root: <davis>/trainval)."""
        root = Path(root)
        specs = [SampleSpec(seq, idx, path) for seq in sequences
                 for idx, path in scribble_files(root / SCRIBBLES_DIR / seq)]
        return cls(specs, davis_ground_truth(root), **kwargs)

    @property
    def time_per_object(self) -> float:
        """A sample's budget per object: seconds_per_interaction x max_interactions."""
        return self.seconds_per_interaction * self.max_interactions

    def __len__(self) -> int:
        return len(self.specs)

    def __iter__(self) -> Iterator[Sample]:
        for spec in self.specs:
            sample = Sample(self, spec, self._gt(spec.sequence))
            self.infos.append(metrics.SampleInfo(spec.sequence, spec.scribble_idx, sample.num_objects))
            yield sample
            sample.finished = True

    def _gt(self, sequence: str) -> np.ndarray:
        if self._gt_cache is None or self._gt_cache[0] != sequence:
            self._gt_cache = (sequence, np.asarray(self.ground_truth(sequence)))
        return self._gt_cache[1]

    def summary(self) -> dict:
        """The benchmark's summary of the samples met so far (`metrics.summary`)."""
        return metrics.summary(self.rows, self.infos, self.max_interactions, self.time_per_object, self.threshold)

    def write_report(self, path: str | os.PathLike) -> Path:
        return metrics.write_report(self.rows, path)

    def write_summary(self, path: str | os.PathLike) -> Path:
        return metrics.write_summary(self.summary(), path)


class Sample:
    """One sample being evaluated (see the module docstring): `first()`, then `submit(...)` until None."""

    def __init__(self, session: Session, spec: SampleSpec, gt: np.ndarray) -> None:
        if gt.ndim != 3:
            raise ValueError(f"ground truth of {spec.sequence} must be (T, H, W), got {gt.shape}")
        self.session, self.spec, self.gt = session, spec, gt
        self.sequence, self.scribble_idx = spec.sequence, spec.scribble_idx
        self.num_frames, self.height, self.width = gt.shape
        self.num_objects = object_count(gt)
        self.budget = session.time_per_object * self.num_objects
        self.interaction = 0  # accepted submissions
        self.seconds = 0.0  # the method's time so far
        self.robot_frames: list[int] = []  # frames the robot corrected, in order
        self.scribbles: Scribbles | None = None  # every scribble so far
        self.finished = False
        self._handed_out: float | None = None

    def first(self) -> Scribbles:
        """The sample's human scribble (checked against the video: frames, objects, 0..1); starts the clock."""
        if self.scribbles is not None:
            raise RuntimeError("first() was already called for this sample")
        scribble = read_scribbles(self.spec.scribble_path, num_frames=self.num_frames, num_objects=self.num_objects)
        if scribble.sequence and scribble.sequence != self.sequence:
            raise DataError(self.spec.scribble_path,
                            f"is a scribble of {scribble.sequence!r}, not of {self.sequence!r}",
                            "put each video's scribbles in its own folder")
        self.scribbles = scribble
        self._handed_out = self.session.clock()
        return scribble

    def submit(self, masks: np.ndarray, seconds: float | None = None,
               candidates: Sequence[int] | None = None) -> Scribbles | None:
        """Score the masks (T, H, W labels) answering the last scribble and return the robot's next
        scribble (possibly without strokes when nothing is wrong), or None when the sample is over (the
        last interaction, or a submission past the budget, which is dropped)."""
        now = self.session.clock()
        if self.finished or self._handed_out is None:
            raise RuntimeError("submit() needs a scribble handed out first (first(), or the last submit())")
        masks = np.asarray(masks)
        if masks.shape != self.gt.shape:
            raise ValueError(f"masks of {self.sequence} must have shape {self.gt.shape}, got {masks.shape}")
        took = float(now - self._handed_out if seconds is None else seconds)
        self._handed_out = None
        if self.seconds + took > self.budget:
            self.session.dropped += 1
            self.finished = True
            return None
        self.seconds += took
        self.interaction += 1
        jaccard, contour = metrics.frame_scores(self.gt, masks, self.num_objects)
        self.session.rows += metrics.interaction_rows(self.sequence, self.scribble_idx, self.interaction, took,
                                                      jaccard, contour)
        if self.interaction >= self.session.max_interactions:
            self.finished = True
            return None
        used = set(self.robot_frames)
        frame, scribble = self.session.robot.correct(self.gt, masks, jaccard, contour, self.num_objects, candidates,
                                                     used if len(used) < self.num_frames else (), self.sequence)
        self.robot_frames.append(frame)
        self.scribbles = self.scribbles.fused(scribble)
        self._handed_out = self.session.clock()
        return scribble
