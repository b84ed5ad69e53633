"""Score a folder of DAVIS results against the ground truth, as the official DAVIS 2017 toolkit.

Layouts:
    <results>/<video>/<frame>.png                  indexed PNG (palette or grayscale), 0 = background
    <davis_root>/Annotations/480p/<video>/<frame>.png
    <davis_root>/ImageSets/2017/<split>.txt         the videos of a split (DAVIS 2017)
  or, layout="generic", eval_generic.py's --data_path folder with a mask for every frame:
    <root>/JPEGImages/<video>/<frame>.jpg           the frames (their order is the video's)
    <root>/Annotations/<video>/<frame>.png          the ground truth of every frame, named as the frame;
                                                   the videos are the folders of Annotations/

Semi-supervised protocol (toolkit `DAVISEvaluation._evaluate_semisupervised`):
- the objects of a video are 1..K with K the largest id in its first GT frame (255 counts as
  background in DAVIS 2017 GT); in DAVIS 2016 mode there is one object: any non-zero pixel, in
  GT (0/255) and in the prediction alike;
- the first and the last frame of every video are not scored (the first is given as input);
- every object is one row `<video>_<id>`; J and F per frame come from `evaluation.metrics`, and their
  Mean/Recall/Decay per object from `evaluation.metrics.sequence_statistics`;
- the global J-Mean is the mean of all objects' J-Means (F likewise, so a video with more objects
  weighs more) and J&F-Mean = (J-Mean + F-Mean) / 2.

Where we differ from the toolkit on bad input (it exits or crashes), we say so:
- a predicted id that is not a GT object (e.g. 255, or K+1) is ignored with an
  `UnknownObjectWarning` (the toolkit refuses the whole video);
- a GT object never predicted is scored with an empty mask (0 where the object is visible; the
  toolkit refuses because its object count differs);
- only the scored frames (all but first and last) must exist in the results folder.
"""
from __future__ import annotations

import csv
import multiprocessing
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.metrics import boundary_f_measure, region_similarity, sequence_statistics
from util import layouts
from util.atomic import atomic_path
from util.errors import UserError
from util.io import DataError, frame_order, image_files, single_object_mask

RESOLUTION = "480p"  # the toolkit's default resolution; STCN's numbers are on 480p
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")
CSV_DECIMALS = 6
PRINT_DECIMALS = 1  # printed scores: percentages with one decimal, as the paper's tables
PAPER_COLUMNS = (("J&F", "J&F-Mean"), ("J", "J-Mean"), ("F", "F-Mean"))  # the paper's DAVIS columns
TOOLKIT_VOID_LABEL = 255  # DAVIS 2017 GT: 255 marks void pixels; the toolkit reads them as background
YEARS = ("2016", "2017")
LAYOUTS = ("davis", "generic")  # DAVIS's <root>/Annotations/480p, or eval_generic's <root>/Annotations
SINGLE_OBJECT_ID = 1


class ScoringError(UserError, RuntimeError):
    """A results folder or dataset that cannot be scored (`where` is the path)."""


class UnknownObjectWarning(UserWarning):
    """The prediction contains object ids that the ground truth of its video does not have."""


@dataclass(frozen=True)
class ObjectScore:
    """Per-frame J and F of one object of one video (scored frames only)."""

    name: str  # `<video>_<id>`, as the toolkit's per-sequence csv
    j_frames: np.ndarray
    f_frames: np.ndarray

    @property
    def j_stats(self) -> tuple[float, float, float]:
        """(Mean, Recall, Decay) of J."""
        return sequence_statistics(self.j_frames)

    @property
    def f_stats(self) -> tuple[float, float, float]:
        """(Mean, Recall, Decay) of F."""
        return sequence_statistics(self.f_frames)


@dataclass
class DavisScores:
    """Everything one evaluation produced: per-object scores and the global row."""

    split: str
    objects: list[ObjectScore] = field(default_factory=list)

    def global_results(self) -> dict[str, float]:
        """The toolkit's global row: means over all objects of each object's statistics."""
        if not self.objects:
            raise ScoringError(f"split {self.split}", "no objects were scored",
                               "check that the ground-truth first frames contain objects")
        j = np.array([o.j_stats for o in self.objects])  # objects, (M, R, D)
        f = np.array([o.f_stats for o in self.objects])
        j_mean, j_recall, j_decay = (float(v) for v in j.mean(axis=0))
        f_mean, f_recall, f_decay = (float(v) for v in f.mean(axis=0))
        values = ((j_mean + f_mean) / 2.0, j_mean, j_recall, j_decay, f_mean, f_recall, f_decay)
        return dict(zip(GLOBAL_COLUMNS, values))

    def per_sequence_results(self) -> list[tuple[str, float, float]]:
        """(`<video>_<id>`, J-Mean, F-Mean) per object, in evaluation order."""
        return [(o.name, o.j_stats[0], o.f_stats[0]) for o in self.objects]


# ---------------------------------------------------------------------------------------------
# Sequence lists and layout checks


def _normalise_year(year: str | int) -> str:
    year = str(year)
    if year not in YEARS:
        raise ScoringError(f"year {year}", "unsupported DAVIS version", "use 2017 or 2016")
    return year


def _read_sequence_list(path: Path) -> list[str]:
    """Video names from an ImageSets list: one name a line, or DAVIS 2016 `/JPEGImages/480p/<video>/x.jpg ...` lines."""
    names: list[str] = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoringError(path, f"cannot read the sequence list ({exc})", "check the file") from None
    for line in lines:
        token = line.strip().split()[0] if line.strip() else ""
        if not token:
            continue
        if "/" in token:  # DAVIS 2016 ImageSets/480p/<split>.txt: frame paths
            parts = [p for p in token.split("/") if p]
            token = parts[-2] if len(parts) >= 2 else parts[-1]
        if token not in names:
            names.append(token)
    if not names:
        raise ScoringError(path, "the sequence list is empty", "give a list with one video name a line")
    return names


def sequence_list_candidates(davis_root: str | os.PathLike, split: str, year: str | int = "2017") -> list[Path]:
    """Where the video list of a split is looked for, in order.

    2017: <root>/ImageSets/2017/<split>.txt. 2016: <root>/ImageSets/2016/<split>.txt, then the
    DAVIS 2017 copy next to a DAVIS/2016 root (<root>/../2017/trainval/ImageSets/2016/<split>.txt,
    the layout STCN uses), then DAVIS 2016's own <root>/ImageSets/480p/<split>.txt.
    """
    root = Path(davis_root)
    if _normalise_year(year) == "2017":
        return [root / "ImageSets" / "2017" / f"{split}.txt"]
    return [
        root / "ImageSets" / "2016" / f"{split}.txt",
        root.parent / "2017" / "trainval" / "ImageSets" / "2016" / f"{split}.txt",
        root / "ImageSets" / RESOLUTION / f"{split}.txt",
    ]


def list_sequences(
    davis_root: str | os.PathLike,
    split: str = "val",
    year: str | int = "2017",
    imset: str | os.PathLike | None = None,
    layout: str = "davis",
) -> list[str]:
    """The videos of `split`: from `imset` when given, else from the dataset's ImageSets (a generic
    layout: every video folder of its Annotations/)."""
    if imset is not None:
        path = Path(imset)
        if not path.is_file():
            raise ScoringError(path, "no such sequence list", "pass an existing file to --imset")
        return _read_sequence_list(path)
    if _layout(layout) == "generic":
        folder = Path(davis_root) / layouts.MASKS
        names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if folder.is_dir() else []
        if not names:
            raise ScoringError(folder, "no video folders of ground truth",
                               "point --data_path at a folder with Annotations/<video>/<frame>.png for every frame")
        return names
    candidates = sequence_list_candidates(davis_root, split, year)
    for path in candidates:
        if path.is_file():
            return _read_sequence_list(path)
    expected = " or ".join(str(p) for p in candidates)
    hint = "DAVIS/2017/trainval" if _normalise_year(year) == "2017" else "DAVIS/2016"
    raise ScoringError(
        candidates[0],
        f"no sequence list for split '{split}' (looked for {expected})",
        f"point --davis_path at {hint}, or pass --imset FILE / --from_results",
    )


def sequences_in_results(results_dir: str | os.PathLike) -> list[str]:
    """The video folders present in a results folder, sorted."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ScoringError(root, "no such results folder", "pass the folder holding <video>/<frame>.png")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise ScoringError(root, "no video folders in the results folder", "expected <results>/<video>/<frame>.png")
    return names


def _layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ScoringError(f"layout {layout}", "unknown dataset layout", f"use one of {', '.join(LAYOUTS)}")
    return layout


def _gt_frames(davis_root: Path, video: str, layout: str = "davis") -> tuple[Path, list[str]]:
    """The ground-truth folder of `video` and its frames in order (every frame must have a mask)."""
    if _layout(layout) == "generic":
        return _generic_gt_frames(davis_root, video)
    gt_dir = davis_root / "Annotations" / RESOLUTION / video
    if not gt_dir.is_dir():
        raise ScoringError(
            gt_dir,
            f"no ground truth for video '{video}'",
            f"point --davis_path at the dataset root (with Annotations/{RESOLUTION}) or drop the video from the list",
        )
    frames = sorted((p.stem for p in gt_dir.glob("*.png")), key=frame_order)
    jpg_dir = davis_root / "JPEGImages" / RESOLUTION / video
    n_images = len(list(jpg_dir.glob("*.jpg"))) if jpg_dir.is_dir() else len(frames)
    if len(frames) < 3 or len(frames) != n_images:
        raise ScoringError(
            gt_dir,
            f"{len(frames)} annotated frame(s) for {n_images} image(s)",
            "scoring needs every frame annotated and at least 3 (the first and last are not scored): use a split "
            "with full ground truth (train/val), test-dev is scored by the DAVIS server",
        )
    return gt_dir, frames


def _generic_gt_frames(root: Path, video: str) -> tuple[Path, list[str]]:
    """A generic layout: the frames of JPEGImages/<video> in the order eval_generic.py reads them
    (`util.io.image_files`; without that folder, the masks' names in frame order), each with its mask."""
    gt_dir = root / layouts.MASKS / video
    fix = ("scoring needs a ground-truth mask for every frame (Annotations/<video>/<frame>.png, named as the "
           "frame) and at least 3 frames (the first and last are not scored)")
    if not gt_dir.is_dir():
        raise ScoringError(gt_dir, f"no ground truth for video '{video}'",
                           "point --data_path at the folder holding Annotations/<video>/, or drop the video")
    frame_dir = root / layouts.FRAMES / video
    masks = {p.stem for p in gt_dir.glob("*.png")}
    frames = [p.stem for p in image_files(frame_dir)] if frame_dir.is_dir() else sorted(masks, key=frame_order)
    missing = [f for f in frames if f not in masks]
    if missing or len(frames) < 3:
        raise ScoringError(gt_dir, f"{len(frames) - len(missing)} of {len(frames)} frame(s) have a ground-truth "
                                   f"mask" + (f" (none for {missing[0]})" if missing else ""), fix)
    return gt_dir, frames


def ground_truth_available(
    davis_root: str | os.PathLike,
    split: str = "val",
    year: str | int = "2017",
    imset: str | os.PathLike | None = None,
    sequences: Sequence[str] | None = None,
    layout: str = "davis",
) -> bool:
    """True when every video of the split has ground truth for all its frames (so it can be scored)."""
    try:
        videos = list(sequences) if sequences is not None else list_sequences(davis_root, split, year, imset, layout)
        for video in videos:
            _gt_frames(Path(davis_root), video, layout)
    except ScoringError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Reading masks


def _read_png(path: Path, what: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            array = np.array(image)
    except FileNotFoundError:
        raise ScoringError(path, f"missing {what}", "write every frame of the video") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ScoringError(
            path,
            f"cannot be read as a PNG {what} ({type(exc).__name__})",
            "re-write the file",
        ) from None
    return array


def _single_object(array: np.ndarray) -> np.ndarray:
    """DAVIS 2016: any non-zero pixel (of any channel) is the one object (`single_object_mask`)."""
    return single_object_mask(array).astype(np.uint8) * SINGLE_OBJECT_ID


def _read_gt(path: Path, year: str) -> np.ndarray:
    """GT object ids (H, W); 2017: void 255 -> background as the toolkit; 2016: non-zero -> object 1."""
    array = _read_png(path, "ground-truth mask")
    if year == "2016":
        return _single_object(array)
    if array.ndim == 3:
        raise ScoringError(
            path,
            "ground truth is a colour image, not an indexed PNG",
            "use the DAVIS 2017 annotations (palette PNGs with object ids)",
        )
    array = array.astype(np.int64)
    array[array == TOOLKIT_VOID_LABEL] = 0
    return array


def _read_prediction(path: Path, year: str) -> np.ndarray:
    """Predicted object ids (H, W); 2016: any non-zero pixel is object 1."""
    array = _read_png(path, "result mask")
    if year == "2016":
        return _single_object(array)
    if array.ndim == 3:
        raise ScoringError(
            path,
            f"result is a colour ({array.shape[-1]}-channel) image, not an indexed PNG",
            "save masks as palette or grayscale PNGs whose pixel values are the object ids",
        )
    return array.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class _VideoTask:
    video: str
    gt_dir: Path
    res_dir: Path
    frames: tuple[str, ...]  # all GT frames; the first and last are not scored
    year: str


@dataclass(frozen=True)
class _VideoResult:
    objects: list[ObjectScore]
    warnings: list[str]


def _score_video(task: _VideoTask) -> _VideoResult:
    """J and F per object and scored frame of one video (top level so a Pool can run it)."""
    first_gt = _read_gt(task.gt_dir / f"{task.frames[0]}.png", task.year)
    n_objects = int(first_gt.max())  # toolkit: objects 1..K, K = max id of the first GT frame
    notes: list[str] = []
    if n_objects == 0:
        notes.append(f"{task.gt_dir}: the first ground-truth frame has no object; the video is not scored")
        return _VideoResult([], notes)

    scored = task.frames[1:-1]
    j = np.zeros((n_objects, len(scored)))
    f = np.zeros((n_objects, len(scored)))
    unknown: set[int] = set()
    for t, frame in enumerate(scored):
        gt_path = task.gt_dir / f"{frame}.png"
        res_path = task.res_dir / f"{frame}.png"
        gt = _read_gt(gt_path, task.year)
        pred = _read_prediction(res_path, task.year)
        if pred.shape != gt.shape:
            raise ScoringError(
                res_path,
                f"result is {pred.shape[1]}x{pred.shape[0]} but the ground truth {gt_path} is "
                f"{gt.shape[1]}x{gt.shape[0]} (width x height)",
                "write masks at the annotation's resolution",
            )
        ids = np.unique(pred)
        unknown.update(int(i) for i in ids if i != 0 and not 1 <= i <= n_objects)
        for k in range(n_objects):
            gt_k = gt == k + 1
            pred_k = pred == k + 1
            j[k, t] = region_similarity(gt_k, pred_k)
            f[k, t] = boundary_f_measure(gt_k, pred_k)
    if unknown:
        notes.append(
            f"{task.res_dir}: predicted object id(s) {sorted(unknown)} not in the ground truth "
            f"(objects 1..{n_objects}); those pixels are ignored"
        )
    objects = [ObjectScore(f"{task.video}_{k + 1}", j[k], f[k]) for k in range(n_objects)]
    return _VideoResult(objects, notes)


def _plan(results_dir: Path, davis_root: Path, videos: Sequence[str], year: str, layout: str = "davis"
          ) -> list[_VideoTask]:
    """Check every video's GT and results before scoring anything; the first problem becomes one ScoringError."""
    tasks = []
    missing: list[Path] = []
    for video in videos:
        gt_dir, frames = _gt_frames(davis_root, video, layout)
        res_dir = results_dir / video
        if not res_dir.is_dir():
            raise ScoringError(
                res_dir,
                f"no results for video '{video}' of the sequence list",
                "run inference on every video of the split, or score a subset with --sequences / --from_results",
            )
        missing += [res_dir / f"{frame}.png" for frame in frames[1:-1] if not (res_dir / f"{frame}.png").is_file()]
        tasks.append(_VideoTask(video, gt_dir, res_dir, tuple(frames), year))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ScoringError(
            missing[0],
            f"missing result frame{more}",
            "every annotated frame except the first and last must have a result mask with the same name",
        )
    return tasks


def score_results(
    results_dir: str | os.PathLike,
    davis_root: str | os.PathLike,
    split: str = "val",
    year: str | int = "2017",
    sequences: Sequence[str] | None = None,
    imset: str | os.PathLike | None = None,
    workers: int = 0,
    layout: str = "davis",
) -> DavisScores:
    """Score every video of the split (or of `sequences`) and return the per-object scores.

    workers > 1 scores videos in a process pool; 0 or 1 scores them in this process.
    layout: "davis" (`davis_root`/Annotations/480p, ImageSets) or "generic" (`davis_root` is an
    eval_generic.py --data_path with a mask for every frame; module docstring).
    """
    year = _normalise_year(year)
    if not Path(results_dir).is_dir():
        raise ScoringError(results_dir, "no such results folder", "pass the folder holding <video>/<frame>.png")
    if not Path(davis_root).is_dir():
        raise ScoringError(
            davis_root,
            "no such dataset folder",
            "pass --data_path (a folder with JPEGImages/<video>/ and Annotations/<video>/)"
            if _layout(layout) == "generic" else
            f"pass --davis_path (e.g. {layouts.default_path('davis17_trainval')} or {layouts.default_path('davis16')})",
        )
    videos = list(sequences) if sequences is not None else list_sequences(davis_root, split, year, imset, layout)
    if not videos:
        raise ScoringError(results_dir, "no videos to score", "give a non-empty sequence list")
    tasks = _plan(Path(results_dir), Path(davis_root), videos, year, layout)

    results: Iterable[_VideoResult]
    if workers > 1 and len(tasks) > 1:
        context = multiprocessing.get_context("spawn")  # fork + cv2/torch threads can deadlock
        with context.Pool(min(workers, len(tasks))) as pool:
            results = pool.map(_score_video, tasks, chunksize=1)
    else:
        results = (_score_video(task) for task in tasks)

    scores = DavisScores(split=split)
    for result in results:
        for note in result.warnings:
            warnings.warn(note, UnknownObjectWarning, stacklevel=2)
        scores.objects.extend(result.objects)
    return scores


# ---------------------------------------------------------------------------------------------
# Output


def _fmt(value: float) -> str:
    return f"{value:.{CSV_DECIMALS}f}"


def _write_csv(path: Path, rows: list[Sequence[str]]) -> None:
    with open(path, "w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())


def csv_paths(out_dir: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """`global_results-<split>.csv` and `per-sequence_results-<split>.csv` in `out_dir` (the toolkit's names)."""
    return Path(out_dir) / f"global_results-{split}.csv", Path(out_dir) / f"per-sequence_results-{split}.csv"


def write_csvs(scores: DavisScores, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write `global_results-<split>.csv` and `per-sequence_results-<split>.csv` atomically.

    Both files are first written as temporaries in `out_dir`, then renamed into place.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScoringError(out, f"cannot create the output folder ({exc})", "choose a writable folder") from None
    global_row = scores.global_results()
    global_rows = [list(GLOBAL_COLUMNS), [_fmt(global_row[c]) for c in GLOBAL_COLUMNS]]
    seq_rows = [list(SEQUENCE_COLUMNS)] + [[n, _fmt(j), _fmt(f)] for n, j, f in scores.per_sequence_results()]
    targets = csv_paths(out, scores.split)
    try:  # both written before either replaces its target
        with atomic_path(targets[0]) as global_tmp, atomic_path(targets[1]) as seq_tmp:
            _write_csv(global_tmp, global_rows)
            _write_csv(seq_tmp, seq_rows)
    except OSError as exc:
        raise ScoringError(out, f"cannot write the result csv files ({exc})", "choose a writable folder") from None
    return targets


def percent(value: float) -> str:
    """A score as the paper's tables print it: a percentage with one decimal (0.8537 -> "85.4")."""
    return f"{100.0 * value:.{PRINT_DECIMALS}f}"


def format_table(scores: DavisScores, per_sequence: bool = True) -> str:
    """The toolkit's console summary, in percent as the paper's tables: the global row, then J-Mean
    and F-Mean per object (the csv files keep the toolkit's fractions)."""
    global_row = scores.global_results()
    widths = [len(c) for c in GLOBAL_COLUMNS]
    lines = [
        f"{'-' * 23} Global results for {scores.split} (percent) {'-' * 23}",
        " ".join(c.rjust(w) for c, w in zip(GLOBAL_COLUMNS, widths)),
        " ".join(percent(global_row[c]).rjust(w) for c, w in zip(GLOBAL_COLUMNS, widths)),
    ]
    if per_sequence:
        rows = scores.per_sequence_results()
        name_w = max([len(SEQUENCE_COLUMNS[0])] + [len(n) for n, _, _ in rows])
        lines += ["", f"{'-' * 10} Per sequence results for {scores.split} (percent) {'-' * 10}"]
        value_w = max(len(c) for c in SEQUENCE_COLUMNS[1:])
        lines.append(" ".join([SEQUENCE_COLUMNS[0].rjust(name_w)] + [c.rjust(value_w) for c in SEQUENCE_COLUMNS[1:]]))
        for name, j, f in rows:
            lines.append(f"{name.rjust(name_w)} {percent(j).rjust(value_w)} {percent(f).rjust(value_w)}")
    return "\n".join(lines)


def paper_line(global_row: dict[str, float]) -> str:
    """The columns of the paper's DAVIS tables, in percent: `J&F 85.4  J 82.2  F 88.6`."""
    return "  ".join(f"{label} {percent(global_row[key])}" for label, key in PAPER_COLUMNS)


def evaluate_davis(
    results_dir: str | os.PathLike,
    davis_root: str | os.PathLike,
    split: str = "val",
    year: str | int = "2017",
    out_dir: str | os.PathLike | None = None,
    sequences: Sequence[str] | None = None,
    imset: str | os.PathLike | None = None,
    workers: int = 0,
    print_table: bool = True,
    per_sequence: bool = True,
    layout: str = "davis",
) -> dict[str, float]:
    """Score `results_dir`, write the two csv files into `out_dir` (default: `results_dir`), print
    the summary table, and return the global row {"J&F-Mean": ..., "J-Mean": ..., ...} (fractions
    in [0, 1], as the toolkit; the paper reports them x100).

    Raises ScoringError (message `<path>: <problem>; <fix>`) for a missing/incomplete results folder,
    a size mismatch, unreadable files or a dataset without full ground truth.
    """
    scores = score_results(results_dir, davis_root, split, year, sequences, imset, workers, layout)
    write_csvs(scores, results_dir if out_dir is None else out_dir)
    if print_table:
        print(format_table(scores, per_sequence=per_sequence), flush=True)
    return scores.global_results()


def score(output: Path, davis_root: Path, split: str, year: str) -> tuple[Path, Path]:
    """Score finished results against the ground truth, print the table and the paper's columns
    (`paper_line`), and return the two csv files written into `output`."""
    print(f"Scoring {output} against {davis_root} ...")
    try:
        result = evaluate_davis(output, davis_root, split, year=year, out_dir=output)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise DataError(
            output, f"scoring failed ({type(exc).__name__}: {exc})",
            "the masks are complete; fix the ground truth and run python scripts/score_davis.py",
        ) from None
    print(paper_line(result))
    return csv_paths(output, split)
