"""Thin-plate-spline warp: exact interpolation, identity, affine reproduction, control points land on targets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dataset.tps import RandomThinPlateSpline, ThinPlateSpline, dense_map, tps_warp

H, W = 48, 64


def _points(rng: np.random.Generator, n: int = 8, margin: int = 8) -> np.ndarray:
    return np.stack([rng.uniform(margin, W - margin, n), rng.uniform(margin, H - margin, n)], axis=1)


def _textured(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def test_spline_interpolates_its_control_points():
    rng = np.random.default_rng(0)
    src = _points(rng)
    dst = src + rng.normal(0, 3, src.shape)
    spline = ThinPlateSpline.fit(src, dst, norm=max(H, W))
    np.testing.assert_allclose(spline(src), dst, atol=1e-6)


def test_spline_reproduces_an_affine_map_exactly():
    """Affine maps have zero bending energy, so the TPS must be that map everywhere (w = 0)."""
    rng = np.random.default_rng(1)
    src = _points(rng)
    matrix = np.array([[1.05, 0.1], [-0.08, 0.95]])
    shift = np.array([2.0, -1.5])
    spline = ThinPlateSpline.fit(src, src @ matrix.T + shift, norm=max(H, W))
    probe = rng.uniform(0, W, (50, 2))
    np.testing.assert_allclose(spline(probe), probe @ matrix.T + shift, atol=1e-6)
    np.testing.assert_allclose(spline.weights, 0, atol=1e-8)


def test_dense_map_is_the_spline_at_every_pixel():
    rng = np.random.default_rng(6)
    src = _points(rng, 12, margin=0)
    spline = ThinPlateSpline.fit(src, src + rng.normal(0, 2, src.shape), norm=max(H, W))
    map_x, map_y = dense_map(spline, H, W)
    assert map_x.shape == map_y.shape == (H, W) and map_x.dtype == np.float32
    y, x = 17, 41
    np.testing.assert_allclose([map_x[y, x], map_y[y, x]], spline(np.array([[x, y]]))[0], atol=1e-4)


def test_zero_displacement_is_identity():
    rng = np.random.default_rng(2)
    image = _textured(rng)
    mask = rng.integers(0, 3, (H, W), dtype=np.uint8)
    src = _points(rng, 12, margin=0)
    out, out_mask = tps_warp(image, mask, src, src.copy())
    # the map equals the pixel grid up to float rounding: bilinear can move a value by at most 1
    assert np.abs(out.astype(int) - image.astype(int)).max() <= 1
    np.testing.assert_array_equal(out_mask, mask)


@pytest.mark.parametrize("seed", [3, 4])
def test_control_points_move_to_their_targets(seed):
    rng = np.random.default_rng(seed)
    src = np.array([[16.0, 12.0], [48.0, 12.0], [16.0, 36.0], [48.0, 36.0], [32.0, 24.0]])
    dst = src + rng.uniform(-3, 3, src.shape)
    for (sx, sy), (tx, ty) in zip(src, dst):
        image = np.zeros((H, W), np.uint8)
        image[int(sy) - 1 : int(sy) + 2, int(sx) - 1 : int(sx) + 2] = 255  # 3x3 dot centred on the point
        mask = (image > 0).astype(np.uint8)
        out, out_mask = tps_warp(image, mask, src, dst)
        ys, xs = np.nonzero(out > 0)
        weights = out[ys, xs].astype(float)
        centre = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
        np.testing.assert_allclose(centre, [tx, ty], atol=0.75)
        mys, mxs = np.nonzero(out_mask)  # the mask follows the same map
        np.testing.assert_allclose([mxs.mean(), mys.mean()], [tx, ty], atol=1.5)


def test_warp_keeps_image_and_mask_aligned():
    rng = np.random.default_rng(5)
    ys, xs = np.mgrid[0:H, 0:W]
    mask = (((ys - 24) / 12.0) ** 2 + ((xs - 30) / 16.0) ** 2 <= 1).astype(np.uint8)
    image = np.repeat((mask * 255)[..., None], 3, axis=2).astype(np.uint8)
    src = _points(rng, 12, margin=0)
    dst = src + rng.normal(0, 0.05 * W, src.shape)
    out, out_mask = tps_warp(image, mask, src, dst)
    bright = out[..., 0] >= 128
    assert out_mask.sum() > 0
    assert (bright != (out_mask > 0)).sum() <= 0.02 * mask.sum() + 4  # only boundary pixels may differ


def test_random_tps_probability_shapes_and_seeding():
    image = torch.randint(0, 256, (3, H, W), dtype=torch.uint8)
    mask = torch.randint(0, 2, (1, H, W), dtype=torch.uint8)
    same_im, same_mask = RandomThinPlateSpline(p=0.0)(image, mask)
    assert same_im is image and same_mask is mask

    warp = RandomThinPlateSpline(p=1.0, image_fill=(124, 116, 104))
    torch.manual_seed(0)
    out1, m1 = warp(image, mask)
    torch.manual_seed(0)
    out2, m2 = warp(image, mask)
    assert out1.shape == image.shape and out1.dtype == torch.uint8
    assert m1.shape == mask.shape and m1.dtype == torch.uint8
    assert torch.equal(out1, out2) and torch.equal(m1, m2)
    assert not torch.equal(out1, image)
    assert set(m1.unique().tolist()) <= {0, 1}
