"""The DAVIS-interactive benchmark's scores: per-frame J and F, the report, the curve, AUC and J&F@60s.

After each accepted submission the benchmark scores every frame and object of the video with the DAVIS
region similarity J and boundary accuracy F (`evaluation.metrics`, the official toolkit's definitions;
the benchmark uses no void mask) for objects 1..K, and stores one report row per frame and object
(`REPORT_COLUMNS`; rows frame by frame, objects in order within a frame; j_and_f = 0.5 J + 0.5 F;
timing is the interaction's seconds, repeated on each of its rows).

The summary (`summary`, as the benchmark's `EvaluationService.summarize_report`):

1. each object's rows of one interaction are averaged over the frames;
2. every sample (video x first scribble) is given all interactions 1..max_interactions: an interaction
   the method did not submit (the time budget ran out) repeats the previous interaction's scores at
   zero time (zero scores before the first one);
3. the curve: at each interaction, the mean J&F over all (sample, object) pairs (objects of every
   sample pooled; not first averaged per sample), against the cumulative sum over interactions of the
   mean (over samples) interaction time; the point (0 s, 0) is put first, and the last value is
   extended to the global time budget, the mean number of objects per video times the time budget
   per object (8 x 30 s);
4. AUC = the trapezoidal area under that curve divided by the curve's last time (the global budget);
   J&F@60s = the curve linearly interpolated at 60 s.

`summary.json` holds {"auc", "metric_at_threshold": {"threshold": 60, "J_AND_F"}, "curve": {"time",
"J_AND_F"}}, written as the benchmark writes it (`json.dump` defaults). The report is a CSV with a header
line of `REPORT_COLUMNS`. Both are written atomically.
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np

from evaluation.metrics import boundary_f_measure, region_similarity
from util.atomic import atomic_path, atomic_write_text

REPORT_COLUMNS = ("sequence", "scribble_idx", "interaction", "object_id", "frame",
                  "jaccard", "contour", "j_and_f", "timing")
TIME_THRESHOLD = 60  # s: the J&F@60s point
METRIC = "J_AND_F"  # the benchmark's metric_to_optimize (its default and MiVOS's)


@dataclass(frozen=True)
class ReportRow:
    """One row of the report: one sample, interaction, object and frame."""

    sequence: str
    scribble_idx: int
    interaction: int
    object_id: int
    frame: int
    jaccard: float
    contour: float
    j_and_f: float
    timing: float


@dataclass(frozen=True)
class SampleInfo:
    """What the summary needs of a sample: its video, its first scribble's number and its object count."""

    sequence: str
    scribble_idx: int
    num_objects: int


def frame_scores(gt: np.ndarray, pred: np.ndarray, num_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """J and F of objects 1..num_objects in every frame: two (T, K) float64 arrays from (T, H, W) label maps."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim != 3:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape}: need equal (T, H, W) shapes")
    jaccard = np.empty((gt.shape[0], num_objects), dtype=np.float64)
    contour = np.empty_like(jaccard)
    for k in range(1, num_objects + 1):
        jaccard[:, k - 1] = region_similarity(gt == k, pred == k)
        contour[:, k - 1] = boundary_f_measure(gt == k, pred == k)
    return jaccard, contour


def interaction_rows(sequence: str, scribble_idx: int, interaction: int, timing: float,
                     jaccard: np.ndarray, contour: np.ndarray) -> list[ReportRow]:
    """The report rows of one submission: frame by frame, objects 1..K within a frame."""
    rows = []
    for t in range(jaccard.shape[0]):
        for k in range(jaccard.shape[1]):
            j, f = float(jaccard[t, k]), float(contour[t, k])
            rows.append(ReportRow(sequence, scribble_idx, interaction, k + 1, t, j, f, 0.5 * j + 0.5 * f, timing))
    return rows


def write_report(rows: Iterable[ReportRow], path: str | os.PathLike) -> Path:
    """The report as CSV (header `REPORT_COLUMNS`), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(REPORT_COLUMNS)
        writer.writerows(astuple(row) for row in rows)
    return Path(path)


def read_report(path: str | os.PathLike) -> list[ReportRow]:
    """The rows of a report written by `write_report`."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return [ReportRow(r["sequence"], int(r["scribble_idx"]), int(r["interaction"]), int(r["object_id"]),
                          int(r["frame"]), float(r["jaccard"]), float(r["contour"]), float(r["j_and_f"]),
                          float(r["timing"])) for r in reader]


def filled_scores(rows: Iterable[ReportRow], samples: Sequence[SampleInfo],
                  max_interactions: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1 and 2 of the summary: (I, P) mean J&F per interaction and (sample, object) pair P (the
    samples' objects in order), and (I, S) interaction time per sample, missing interactions filled."""
    sums: dict[tuple, list[float]] = {}
    for r in rows:
        acc = sums.setdefault((r.sequence, r.scribble_idx, r.interaction, r.object_id), [])
        acc.append((r.j_and_f, r.timing))
    pairs = sum(s.num_objects for s in samples)
    scores = np.zeros((max_interactions, pairs), dtype=np.float64)
    times = np.zeros((max_interactions, len(samples)), dtype=np.float64)
    column = 0
    for s_idx, s in enumerate(samples):
        previous = np.zeros(s.num_objects, dtype=np.float64)
        for i in range(1, max_interactions + 1):
            found = [sums.get((s.sequence, s.scribble_idx, i, k)) for k in range(1, s.num_objects + 1)]
            if all(found):
                values = np.asarray([np.mean([v for v, _ in f]) for f in found], dtype=np.float64)
                times[i - 1, s_idx] = np.mean([np.mean([t for _, t in f]) for f in found])
                previous = values
            scores[i - 1, column:column + s.num_objects] = previous
        column += s.num_objects
    return scores, times


def curve(rows: Iterable[ReportRow], samples: Sequence[SampleInfo], max_interactions: int,
          time_per_object: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: the curve's times and J&F values, (0, 0) first and the global budget last.
    `time_per_object` None: the budget is max_interactions x the longest interaction (the benchmark's
    rule without a time limit)."""
    rows = list(rows)
    scores, times = filled_scores(rows, samples, max_interactions)
    metric = np.concatenate([[0.0], scores.mean(axis=1) if scores.size else np.zeros(max_interactions)])
    time = np.concatenate([[0.0], np.cumsum(times.mean(axis=1) if times.size else np.zeros(max_interactions))])
    if time_per_object is not None:
        sequences: dict[str, int] = {}
        for s in samples:
            sequences[s.sequence] = s.num_objects
        budget = sum(sequences.values()) / len(sequences) * time_per_object if sequences else 0.0
    else:
        budget = max_interactions * max((r.timing for r in rows), default=0.0)
    return np.concatenate([time, [budget]]), np.concatenate([metric, metric[-1:]])


def area_under_curve(time: np.ndarray, metric: np.ndarray) -> float:
    """Step 4: the trapezoidal area under (time, metric) divided by the last time (0 when that is 0)."""
    time, metric = np.asarray(time, dtype=np.float64), np.asarray(metric, dtype=np.float64)
    if time.max() == 0:
        return 0.0
    return float(np.sum(np.diff(time) * (metric[1:] + metric[:-1]) / 2.0) / time.max())


def metric_at(time: np.ndarray, metric: np.ndarray, threshold: float = TIME_THRESHOLD) -> float:
    """The curve linearly interpolated at `threshold` seconds (J&F@60s)."""
    return float(np.interp(threshold, time, metric))


def summary(rows: Iterable[ReportRow], samples: Sequence[SampleInfo], max_interactions: int,
            time_per_object: float | None, threshold: float = TIME_THRESHOLD) -> dict:
    """The benchmark's summary: {"auc", "metric_at_threshold", "curve"} (see the module docstring)."""
    time, metric = curve(rows, samples, max_interactions, time_per_object)
    return {
        "auc": area_under_curve(time, metric),
        "metric_at_threshold": {"threshold": threshold, METRIC: metric_at(time, metric, threshold)},
        "curve": {"time": time.tolist(), METRIC: metric.tolist()},
    }


def write_summary(data: dict, path: str | os.PathLike) -> Path:
    """`summary.json` as the benchmark writes it (`json.dump` with its defaults), atomically."""
    return atomic_write_text(path, json.dumps(data))
