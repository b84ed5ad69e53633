"""DAVIS region similarity J and boundary accuracy F, with the official toolkit's definitions.

The definitions follow the DAVIS 2017 evaluation toolkit (davisvideochallenge/davis2017-evaluation,
`davis2017/metrics.py` and `davis2017/utils.py`), itself after Perazzi et al., "A Benchmark Dataset
and Evaluation Methodology for Video Object Segmentation" (CVPR 2016), section 3:

    J = |M ∩ G| / |M ∪ G|                     region similarity (IoU); 1 when both are empty
    F = 2 P R / (P + R)                       boundary F-measure, with a matching tolerance of
                                              BOUNDARY_TOLERANCE of the image diagonal

Per object sequence, each measure is summarised by its Mean, Recall (fraction of frames above
RECALL_THRESHOLD) and Decay (mean of the first quarter of the frames minus mean of the last).

All functions are pure numpy (+ cv2.dilate for the boundary matching); masks are boolean or 0/1
arrays of shape H, W (or T, H, W where stated). Nothing here reads files.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

BOUNDARY_TOLERANCE = 0.008  # DAVIS toolkit `bound_th`: fraction of the image diagonal (CVPR 2016, sec. 3)
RECALL_THRESHOLD = 0.5  # DAVIS toolkit: a frame "recalls" the object when its J (or F) exceeds 0.5
DECAY_BINS = 4  # DAVIS toolkit: the frames are split into 4 quantiles for the decay


def _as_bool(mask: np.ndarray) -> np.ndarray:
    return np.asarray(mask).astype(bool, copy=False)


def _check_same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ ({a.shape} vs {b.shape})")


def region_similarity(
    gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None
) -> float | np.ndarray:
    """Region similarity J (Jaccard index / IoU) of one mask (H, W) or a stack (T, H, W).

    Pixels marked in `void` are left out of both the intersection and the union. A frame whose
    union is empty (object absent and nothing predicted) scores 1, as in the toolkit.
    Returns a float for one mask, a float array of length T for a stack.
    """
    gt, pred = _as_bool(gt), _as_bool(pred)
    _check_same_shape(gt, pred, "region_similarity")
    valid = np.ones_like(gt) if void is None else ~_as_bool(void)
    if void is not None:
        _check_same_shape(gt, valid, "region_similarity void")
    inter = np.count_nonzero(gt & pred & valid, axis=(-2, -1))
    union = np.count_nonzero((gt | pred) & valid, axis=(-2, -1))
    empty = union == 0
    j = np.where(empty, 1.0, inter / np.maximum(union, 1))
    return float(j) if j.ndim == 0 else j


def boundary_radius(shape: tuple[int, int], bound_th: float = BOUNDARY_TOLERANCE) -> int:
    """Matching tolerance in pixels: `bound_th` itself when >= 1, else ceil(bound_th * diagonal).

    For a 480 x 854 DAVIS frame: ceil(0.008 * 979.6) = 8 pixels.
    """
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * float(np.linalg.norm(np.asarray(shape[:2], dtype=np.float64)))))


def disk(radius: int) -> np.ndarray:
    """Disk structuring element as skimage.morphology.disk: the offsets with x^2 + y^2 <= r^2.

    Returns a (2r+1, 2r+1) uint8 array of 0/1.
    """
    offsets = np.arange(-radius, radius + 1)
    yy, xx = np.meshgrid(offsets, offsets, indexing="ij")
    return (xx * xx + yy * yy <= radius * radius).astype(np.uint8)


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of a binary mask, as the toolkit's `_seg2bmap` (D. Martin, BSDS).

    A pixel is a boundary pixel when it differs from its right, lower or lower-right neighbour,
    comparing only with neighbours inside the image. The boundary therefore sits half a pixel
    towards the origin of the true contour: foreground pixels on the right/bottom side of an
    object and background pixels on its left/top side are marked. A mask touching the right or
    bottom image border gets no boundary along that border; the bottom-right pixel is never one.

    Implemented by replicating the last row and column (a replicated neighbour equals the pixel
    itself or its in-image neighbour, so it adds no difference).
    """
    seg = _as_bool(mask)
    if seg.ndim != 2:
        raise ValueError(f"seg2bmap expects an H x W mask, got shape {seg.shape}")
    padded = np.pad(seg, ((0, 1), (0, 1)), mode="edge")
    right = padded[:-1, 1:]
    down = padded[1:, :-1]
    down_right = padded[1:, 1:]
    return (seg != right) | (seg != down) | (seg != down_right)


def _dilate(bmap: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.dilate(bmap.astype(np.uint8), kernel).astype(bool)


def boundary_precision_recall(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = BOUNDARY_TOLERANCE,
) -> tuple[float, float]:
    """Boundary precision and recall of one predicted mask against one GT mask (both H, W).

    Precision: fraction of predicted boundary pixels within the tolerance disk of a GT boundary
    pixel; recall: fraction of GT boundary pixels within the disk of a predicted one. Void pixels
    are removed from both masks before their boundaries are taken. Special cases (toolkit):
    no predicted and no GT boundary -> (1, 1); no predicted boundary only -> (1, 0); no GT
    boundary only -> (0, 1).
    """
    gt, pred = _as_bool(gt), _as_bool(pred)
    _check_same_shape(gt, pred, "boundary_precision_recall")
    if gt.ndim != 2:
        raise ValueError(f"boundary_precision_recall expects H x W masks, got shape {gt.shape}")
    if void is not None:
        valid = ~_as_bool(void)
        _check_same_shape(gt, valid, "boundary_precision_recall void")
        gt, pred = gt & valid, pred & valid

    pred_b = seg2bmap(pred)
    gt_b = seg2bmap(gt)
    n_pred = int(np.count_nonzero(pred_b))
    n_gt = int(np.count_nonzero(gt_b))
    if n_pred == 0 and n_gt == 0:
        return 1.0, 1.0
    if n_pred == 0:
        return 1.0, 0.0
    if n_gt == 0:
        return 0.0, 1.0

    kernel = disk(boundary_radius(gt.shape, bound_th))
    pred_matched = np.count_nonzero(pred_b & _dilate(gt_b, kernel))
    gt_matched = np.count_nonzero(gt_b & _dilate(pred_b, kernel))
    return pred_matched / n_pred, gt_matched / n_gt


def boundary_f_measure(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = BOUNDARY_TOLERANCE,
) -> float | np.ndarray:
    """Boundary accuracy F = 2PR / (P + R) (0 when P + R = 0) of one mask (H, W) or a stack (T, H, W).

    Returns a float for one mask, a float array of length T for a stack.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    _check_same_shape(gt, pred, "boundary_f_measure")
    if gt.ndim == 3:
        return np.array(
            [
                boundary_f_measure(gt[t], pred[t], None if void is None else void[t], bound_th)
                for t in range(gt.shape[0])
            ],
            dtype=np.float64,
        )
    precision, recall = boundary_precision_recall(gt, pred, void, bound_th)
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def decay_bins(n: int) -> list[tuple[int, int]]:
    """The DECAY_BINS frame ranges [start, stop) of the toolkit's decay for n per-frame values.

    Bin edges are np.round(np.linspace(1, n, 5) + 1e-10) - 1, and bin i covers frames
    edges[i] .. edges[i+1] inclusive, so neighbouring bins share their edge frame.
    (The toolkit casts the edges to uint8, which overflows for n >= 256 values and makes its decay
    NaN; we keep integer edges. DAVIS sequences are far shorter, so the numbers agree there.)
    """
    edges = (np.round(np.linspace(1, n, DECAY_BINS + 1) + 1e-10) - 1).astype(np.int64)
    return [(int(edges[i]), int(edges[i + 1]) + 1) for i in range(DECAY_BINS)]


def sequence_statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """Mean, Recall and Decay of one object's per-frame J (or F) values, as the toolkit.

    Mean = nanmean(values); Recall = nanmean(values > RECALL_THRESHOLD);
    Decay = nanmean(first bin) - nanmean(last bin) over `decay_bins(len(values))`.
    """
    values = np.asarray(per_frame, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("sequence_statistics needs at least one per-frame value")
    mean = float(np.nanmean(values))
    recall = float(np.nanmean(values > RECALL_THRESHOLD))
    bins = decay_bins(values.size)
    first, last = bins[0], bins[-1]
    decay = float(np.nanmean(values[first[0] : first[1]]) - np.nanmean(values[last[0] : last[1]]))
    return mean, recall, decay
