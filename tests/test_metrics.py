"""Exact tests of the DAVIS J / F measures and their per-object statistics on hand-made masks."""
from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics import (
    boundary_f_measure,
    boundary_precision_recall,
    boundary_radius,
    decay_bins,
    disk,
    region_similarity,
    seg2bmap,
    sequence_statistics,
)

H, W = 48, 64  # diagonal 80 -> tolerance ceil(0.008 * 80) = 1 pixel


def rect(top: int, left: int, height: int, width: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + height, left : left + width] = True
    return mask


def test_boundary_radius():
    assert boundary_radius((H, W)) == 1
    assert boundary_radius((480, 854)) == 8  # DAVIS 480p: ceil(0.008 * 979.6)
    assert boundary_radius((200, 200)) == 3  # ceil(2.26)
    assert boundary_radius((H, W), bound_th=5) == 5  # >= 1 means pixels


@pytest.mark.parametrize("radius", [0, 1, 2, 3, 5, 8])
def test_disk_matches_definition(radius):
    span = range(-radius, radius + 1)
    expected = np.array([[1 if x * x + y * y <= radius * radius else 0 for x in span] for y in span], dtype=np.uint8)
    got = disk(radius)
    assert got.dtype == np.uint8 and got.shape == (2 * radius + 1, 2 * radius + 1)
    np.testing.assert_array_equal(got, expected)


def test_disk_small_explicit():
    np.testing.assert_array_equal(disk(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    np.testing.assert_array_equal(
        disk(2),
        [[0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]],
    )


def test_seg2bmap_single_pixel_and_ring():
    mask = np.zeros((6, 7), dtype=bool)
    mask[2, 3] = True
    # the pixel itself and its upper/left/upper-left neighbours (boundary offset towards the origin)
    expected = {(2, 3), (1, 3), (2, 2), (1, 2)}
    assert set(zip(*np.nonzero(seg2bmap(mask)))) == expected

    # a rectangle rows r0..r1, cols c0..c1 gives the one-pixel ring of rows r0-1..r1, cols c0-1..c1
    r = rect(10, 20, 20, 10)
    b = seg2bmap(r)
    ring = np.zeros_like(r)
    ring[9:30, 19:30] = True
    ring[10:29, 20:29] = False
    np.testing.assert_array_equal(b, ring)
    assert b.sum() == 2 * (20 + 10)


def test_seg2bmap_full_and_border_masks():
    assert not seg2bmap(np.ones((5, 5), dtype=bool)).any()
    assert not seg2bmap(np.zeros((5, 5), dtype=bool)).any()
    # an object filling the right half: only its left edge (the background column before it) is marked
    mask = np.zeros((5, 6), dtype=bool)
    mask[:, 3:] = True
    expected = np.zeros_like(mask)
    expected[:, 2] = True
    np.testing.assert_array_equal(seg2bmap(mask), expected)


def test_perfect_prediction():
    gt = rect(10, 20, 20, 10)
    assert region_similarity(gt, gt) == 1.0
    assert boundary_f_measure(gt, gt) == 1.0


def test_disjoint_far_apart():
    gt = rect(5, 5, 10, 10)
    pred = rect(30, 40, 10, 10)  # > 1 pixel (the tolerance) away everywhere
    assert region_similarity(gt, pred) == 0.0
    assert boundary_precision_recall(gt, pred) == (0.0, 0.0)
    assert boundary_f_measure(gt, pred) == 0.0


def test_empty_cases():
    empty = np.zeros((H, W), dtype=bool)
    obj = rect(10, 20, 20, 10)
    assert region_similarity(empty, empty) == 1.0
    assert boundary_f_measure(empty, empty) == 1.0
    # object present, nothing predicted: P = 1, R = 0 -> F = 0
    assert region_similarity(obj, empty) == 0.0
    assert boundary_precision_recall(obj, empty) == (1.0, 0.0)
    assert boundary_f_measure(obj, empty) == 0.0
    # object absent, something predicted: P = 0, R = 1 -> F = 0
    assert region_similarity(empty, obj) == 0.0
    assert boundary_precision_recall(empty, obj) == (0.0, 1.0)
    assert boundary_f_measure(empty, obj) == 0.0


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_horizontal_shift_iou_is_analytic(shift):
    height, width = 20, 10
    gt = rect(10, 20, height, width)
    pred = rect(10, 20 + shift, height, width)
    # overlap width - shift columns, union width + shift columns
    assert region_similarity(gt, pred) == (width - shift) / (width + shift)


def test_shift_within_tolerance_keeps_f_one():
    gt = rect(10, 20, 20, 10)
    assert boundary_f_measure(gt, rect(10, 21, 20, 10)) == 1.0  # 1 px shift, tolerance 1 px
    assert boundary_f_measure(gt, rect(11, 20, 20, 10)) == 1.0
    big = (200, 200)  # tolerance 3 px
    gt_big = rect(50, 60, 80, 40, big)
    assert boundary_f_measure(gt_big, rect(50, 63, 80, 40, big)) == 1.0
    assert boundary_f_measure(gt_big, rect(50, 64, 80, 40, big)) < 1.0


def test_shift_beyond_tolerance_known_value():
    """A rectangle (height h, width w) shifted right by 2 px with a 1 px (cross-shaped) tolerance.

    Both boundaries are rings of 2(h + w) pixels. A predicted pixel matches when a GT boundary
    pixel is at most 1 px away horizontally or vertically. Unmatched predicted pixels: the far
    end of the top and bottom rows (1 each), the left column except its pixels next to the top
    and bottom rows (h - 3), the whole right column inside the rows (h - 1). So 2w + 2 pixels match
    and P = (2w + 2) / (2(h + w)); R is the same by symmetry, and F = P = R = (w + 1) / (h + w).
    """
    height, width = 20, 10
    gt = rect(10, 20, height, width)
    pred = rect(10, 22, height, width)
    expected = (width + 1) / (height + width)  # 11/30
    precision, recall = boundary_precision_recall(gt, pred)
    assert precision == pytest.approx(expected, abs=1e-12)
    assert recall == pytest.approx(expected, abs=1e-12)
    assert boundary_f_measure(gt, pred) == pytest.approx(expected, abs=1e-12)


def test_void_pixels_are_left_out():
    gt = rect(10, 20, 20, 10)
    pred = rect(10, 20, 20, 12)  # two extra columns
    void = np.zeros_like(gt)
    assert region_similarity(gt, pred) == 200 / 240
    void[:, 30:32] = True
    assert region_similarity(gt, pred, void) == 1.0
    void_all = np.ones_like(gt)
    assert region_similarity(gt, pred, void_all) == 1.0  # empty union -> 1


def test_stacks():
    gt = np.stack([rect(10, 20, 20, 10), np.zeros((H, W), bool)])
    pred = np.stack([rect(10, 22, 20, 10), np.zeros((H, W), bool)])
    np.testing.assert_allclose(region_similarity(gt, pred), [8 / 12, 1.0])
    np.testing.assert_allclose(boundary_f_measure(gt, pred), [11 / 30, 1.0])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        region_similarity(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError):
        boundary_f_measure(np.zeros((4, 4)), np.zeros((5, 4)))


def test_decay_bins_and_statistics():
    # n = 8: edges round(linspace(1, 8, 5)) - 1 = [0, 2, 4, 5, 7]; bins share their edge frame
    assert decay_bins(8) == [(0, 3), (2, 5), (4, 6), (5, 8)]
    values = np.array([1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.5])
    mean, recall, decay = sequence_statistics(values)
    assert mean == pytest.approx(5.5 / 8)
    assert recall == 5 / 8  # 0.5 itself does not count (strictly greater)
    assert decay == pytest.approx(1.0 - (0.4 + 0.2 + 0.5) / 3)


def test_statistics_short_sequences():
    assert sequence_statistics(np.array([0.7])) == (0.7, 1.0, 0.0)
    # n = 3: linspace(1, 3, 5) = [1, 1.5, 2, 2.5, 3] rounds half up (the + 1e-10) to [1, 2, 2, 3, 3]
    # -> edges [0, 1, 1, 2, 2]: first bin frames 0..1, last bin frame 2
    assert decay_bins(3) == [(0, 2), (1, 2), (1, 3), (2, 3)]
    mean, recall, decay = sequence_statistics(np.array([0.9, 0.4, 0.3]))
    assert decay == pytest.approx(0.65 - 0.3)
    assert recall == pytest.approx(1 / 3)
