"""Memory coverage (section 4.1, Figure 4): the largest weight each memory node ever contributes.

A *memory node* is one position of the stride-16 key map of one memory frame of one video (the
cells that cover the padding to a multiple of 16 included, as they are stored and read like any
other). Its contribution to a query position is its weight in that query's top-k filtered softmax
over the memory (section 3.3, k = 20): the softmax weight when it is one of the k selected nodes, 0
otherwise. Its *maximum contribution* is the largest such weight over every query position of every
frame that read it during its lifetime. Object groups (objects entering at the same frame, see
`MemoryBank`) each read the suffix of the memory since their annotated frame, so
a node has one weight per group and query; its maximum is over the reads of all groups.

Conventions (the paper's setting has neither a temporary frame nor a memory bound):
- the temporary last frame (`--include_last`) is not a memory node: it is read, but its weights are
  not recorded (it is replaced by the next frame and never becomes memory);
- a frame dropped from a bounded memory (`--max_mem_frames` / `--max_mem_mb`) counts with the
  maximum it reached while it was stored;
- a memory frame never read (or a node never among the top k of any query) counts with maximum 0.

Only one running maximum per node is kept (T x h*w values per video), never a T*h*w x h*w affinity.

Statistics, for the n maximum contributions x_1 .. x_n of all nodes:
    curve(t)   = #{i : x_i > t}, t in [0, 1]        ("contributed above t at least once", Figure 4)
    share(l)   = #{i : x_i <= l} / n                 (never above 1% / 10%: l = 0.01, 0.1)
    Gini       = sum_i sum_j |x_i - x_j| / (2 n^2 mean(x))
               = 2 sum_i i x_(i) / (n sum_i x_i) - (n + 1) / n    (x_(1) <= ... <= x_(n), i from 1)
The paper reports, on DAVIS 2017 val: Gini 44.0 (dot product) and 31.8 (L2); never above 1%:
about 3% (dot) and 0.06% (L2); never above 10%: 31% (dot) and 7% (L2).
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from evaluation.datasets import EvalVideo
from evaluation.loop import frames_to_step
from inference_core.memory_bank import MemoryBank
from inference_core.predictor import Stream
from util.atomic import atomic_write_text
from util.io import atomic_save_image

THRESHOLD_STEPS = 1000  # the curve is sampled at t = 0, 0.001, ..., 1
PAPER_LEVELS = (0.01, 0.10)  # section 4.1: nodes that never contribute more than 1% / 10%
PAPER_GINI = {"dot": 44.0, "l2": 31.8}  # section 4.1, DAVIS 2017 val, in percent


# ------------------------------------------------------------------------------------- recording
class CoverageRecorder:
    """The running maximum contribution of every memory node of one video; a `MemoryBank.observer`.

    Keeps, per memory frame (by its video frame index, so that frames dropped from a bounded memory
    keep their value), one h*w vector on the memory's device.
    """

    def __init__(self, bank: MemoryBank) -> None:
        self.bank = bank
        self.maxima: dict[int, Tensor] = {}

    def __call__(self, weights: Tensor, indices: Tensor, start: int, query_offset: int) -> None:
        """One group's top-k read (MemoryBank's observer): weights, indices 1, m, k over its suffix."""
        bank = self.bank
        hw, frames = bank.positions_per_frame, bank.num_frames
        stored = frames * hw  # positions after these belong to the temporary frame
        position = indices.reshape(-1) + start
        weight = weights.reshape(-1).float()
        kept = position < stored
        best = torch.zeros(stored, device=weight.device, dtype=torch.float32)
        best.scatter_reduce_(0, position[kept], weight[kept], reduce="amax")
        for frame_id, row in zip(bank.frame_ids, best.view(frames, hw)):
            old = self.maxima.get(frame_id)
            # a clone, not a view that would keep this call's whole `best` alive
            self.maxima[frame_id] = row.clone() if old is None else torch.maximum(old, row)

    def result(self) -> np.ndarray:
        """The maxima of every node of every frame that was memory (frame order), float32."""
        for frame_id in self.bank.frame_ids:  # stored frames no query read: maximum 0
            if frame_id not in self.maxima:
                self.maxima[frame_id] = torch.zeros(self.bank.positions_per_frame)
        if not self.maxima:
            return np.zeros(0, dtype=np.float32)
        return torch.cat([self.maxima[f].cpu() for f in sorted(self.maxima)]).numpy()


def record_video(stream: Stream, video: EvalVideo) -> np.ndarray:
    """Propagate `video` with `stream` as an evaluation run does (same frames, same annotations, no output
    written) and return the maximum contribution of each of its memory nodes."""
    stream.reset()
    video.prepare()
    recorder = CoverageRecorder(stream.core.memory)
    stream.core.memory.observer = recorder
    for frame in frames_to_step(stream, video):
        stream.finish(frame.prepared, stream.advance(frame.prepared), labels=False)
    return recorder.result()


# ------------------------------------------------------------------------------------ statistics
def thresholds(steps: int = THRESHOLD_STEPS) -> np.ndarray:
    return np.linspace(0.0, 1.0, steps + 1)


def exceedance_curve(maxima: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """#{nodes whose maximum contribution is above t} for every t of `levels` (Figure 4)."""
    ordered = np.sort(np.asarray(maxima, dtype=np.float64))
    return ordered.size - np.searchsorted(ordered, levels, side="right")


def share_at_most(maxima: np.ndarray, level: float) -> float:
    """Share of nodes (0..1) that never contributed more than `level`."""
    maxima = np.asarray(maxima)
    return float(np.count_nonzero(maxima <= level)) / maxima.size if maxima.size else float("nan")


def gini(values: np.ndarray) -> float:
    """Gini coefficient (0..1) of non-negative values (module docstring); 0 when all are zero."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, total = x.size, x.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(2.0 * np.dot(ranks, x) / (n * total) - (n + 1) / n)


def summary(maxima: np.ndarray) -> dict[str, float]:
    """Nodes, Gini and the shares of section 4.1, in percent as the paper prints them."""
    row = {"nodes": float(np.asarray(maxima).size), "gini": 100.0 * gini(maxima)}
    for level in PAPER_LEVELS:
        row[f"never_above_{100 * level:g}pct"] = 100.0 * share_at_most(maxima, level)
    return row


# --------------------------------------------------------------------------------------- outputs
def write_curve_csv(path: Path, levels: np.ndarray, curves: dict[str, np.ndarray]) -> None:
    """threshold, then one column of node counts per model."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["threshold", *curves])
    for i, t in enumerate(levels):
        writer.writerow([f"{t:.6g}", *(int(c[i]) for c in curves.values())])
    atomic_write_text(path, buf.getvalue())


def write_summary_csv(path: Path, rows: dict[str, dict[str, float]], checkpoints: dict[str, str]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    keys = list(next(iter(rows.values())))
    writer.writerow(["model", "checkpoint", *keys])
    for label, row in rows.items():
        writer.writerow([label, checkpoints[label], *(int(row[k]) if k == "nodes" else f"{row[k]:.4f}" for k in keys)])
    atomic_write_text(path, buf.getvalue())


PLOT_SIZE = (720, 480)
PLOT_MARGINS = (80, 30, 30, 60)  # left, top, right, bottom, pixels
PLOT_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
THOUSANDS = 10_000  # counts from here on are written in thousands, "(K)", as Figure 4


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed bitmap font
        return ImageFont.load_default()


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values 0, s, 2s, ... covering [0, top], s = 1, 2 or 5 times a power of ten."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(int(math.ceil(top / step - 1e-9)) + 1)]


def plot_curves(path: Path, levels: np.ndarray, curves: dict[str, np.ndarray], title: str = "") -> None:
    """A Figure-4-style PNG (one line per model), drawn with PIL: nodes above t against t."""
    width, height = PLOT_SIZE
    left, top, right, bottom = PLOT_MARGINS
    img = Image.new("RGB", PLOT_SIZE, "white")
    draw = ImageDraw.Draw(img)
    font, small = _font(14), _font(12)
    peak = max([int(c.max()) for c in curves.values() if c.size] + [1])
    in_k = peak >= THOUSANDS
    yticks = nice_ticks(peak / 1000 if in_k else peak)
    ymax = yticks[-1] * (1000 if in_k else 1)
    x0, x1, y0, y1 = left, width - right, height - bottom, top

    def xy(t: float, n: float) -> tuple[float, float]:
        return x0 + (x1 - x0) * t, y0 - (y0 - y1) * n / ymax

    for t in np.linspace(0, 1, 6):
        x, _ = xy(t, 0)
        draw.line([(x, y0), (x, y0 + 5)], fill="black")
        draw.text((x, y0 + 8), f"{t:.1f}", fill="black", font=small, anchor="mt")
    for v in yticks:
        _, y = xy(0, v * (1000 if in_k else 1))
        draw.line([(x0, y), (x1, y)], fill=(230, 230, 230))
        draw.line([(x0 - 5, y), (x0, y)], fill="black")
        draw.text((x0 - 8, y), f"{v:g}", fill="black", font=small, anchor="rm")
    draw.rectangle([x0, y1, x1, y0], outline="black")
    draw.text(((x0 + x1) / 2, height - 18), "Have contribution weights more than", fill="black", font=font, anchor="mm")
    ylabel = "No. of memory nodes" + (" (K)" if in_k else "")
    label_img = Image.new("RGB", (int(draw.textlength(ylabel, font=font)) + 4, 20), "white")
    ImageDraw.Draw(label_img).text((2, 2), ylabel, fill="black", font=font)
    rotated = label_img.rotate(90, expand=True)
    img.paste(rotated, (8, int((y0 + y1) / 2 - rotated.height / 2)))
    if title:
        draw.text(((x0 + x1) / 2, top / 2), title, fill="black", font=font, anchor="mm")
    for k, (label, curve) in enumerate(curves.items()):
        colour = PLOT_COLOURS[k % len(PLOT_COLOURS)]
        draw.line([xy(float(t), float(n)) for t, n in zip(levels, curve)], fill=colour, width=2)
        ly = y1 + 14 + 20 * k
        draw.line([(x1 - 170, ly), (x1 - 140, ly)], fill=colour, width=3)
        draw.text((x1 - 132, ly), label, fill="black", font=small, anchor="lm")
    atomic_save_image(img, path)


def unique_labels(paths: Sequence[str], labels: Sequence[str] | None = None) -> list[str]:
    """One legend name per model: the given labels, else the checkpoint's file stem (numbered if repeated)."""
    names = list(labels) if labels else [Path(p).stem for p in paths]
    out: list[str] = []
    for name in names:
        unique, n = name, 1
        while unique in out:
            n += 1
            unique = f"{name}-{n}"
        out.append(unique)
    return out
