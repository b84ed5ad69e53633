"""Thin-plate-spline (TPS) warping of an image and its mask (supplementary F.3.1).

A 2-D TPS is the smoothest map f: R^2 -> R^2 (least bending energy) that sends n control points
c_i exactly to targets t_i:

    f(x) = a_0 + A x + sum_i w_i U(|x - c_i|),    U(r) = r^2 log r^2,

with the side conditions sum_i w_i = 0 and sum_i w_i c_i = 0 (no affine part hidden in the w_i).
The coefficients solve one (n + 3) x (n + 3) linear system per output coordinate:

    [ K   P ] [ w ]   [ t ]        K_ij = U(|c_i - c_j|),  P = [1, c_i]  (n x 3)
    [ P^T 0 ] [ a ] = [ 0 ]

cv2.remap pulls pixels: output(x) = input(map(x)). To move the content at `src` to `dst` we therefore
fit the spline from `dst` to `src` (the backward map) and evaluate it on the output pixel grid.
Coordinates are (x, y) in pixels, x along the width. The image is interpolated bilinearly and the mask
with nearest neighbour through the same map, so they stay aligned.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "TPS_PROBABILITY", "TPS_NUM_POINTS", "TPS_SCALE", "ThinPlateSpline", "dense_map", "tps_warp",
    "RandomThinPlateSpline",
]

# supplementary F.3.1: probability 33%, 12 control points, displacement std 0.02 x image size
TPS_PROBABILITY = 1 / 3
TPS_NUM_POINTS = 12
TPS_SCALE = 0.02


def _kernel(d2: np.ndarray) -> np.ndarray:
    """U(r) = r^2 log r^2 evaluated from squared distances; U(0) = 0 (0 * log(tiny) = 0)."""
    return d2 * np.log(np.maximum(d2, np.finfo(d2.dtype).tiny))


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances (m, n) between points a (m, 2) and b (n, 2)."""
    return np.square(a[:, 0:1] - b[:, 0]) + np.square(a[:, 1:2] - b[:, 1])


@dataclass(frozen=True)
class ThinPlateSpline:
    """A fitted TPS f with f(centres[i]) = targets[i]; coordinates are divided by `norm` inside."""

    centres: np.ndarray  # n, 2 (normalised)
    weights: np.ndarray  # n, 2
    affine: np.ndarray  # 3, 2
    norm: float

    @classmethod
    def fit(cls, centres: np.ndarray, targets: np.ndarray, norm: float = 1.0) -> ThinPlateSpline:
        """Solve the TPS system above; `norm` (e.g. the image size) only improves conditioning."""
        c = np.asarray(centres, dtype=np.float64).reshape(-1, 2) / norm
        t = np.asarray(targets, dtype=np.float64).reshape(-1, 2) / norm
        n = len(c)
        p = np.concatenate([np.ones((n, 1)), c], axis=1)
        system = np.zeros((n + 3, n + 3))
        system[:n, :n] = _kernel(_sq_dist(c, c))
        system[:n, n:] = p
        system[n:, :n] = p.T
        rhs = np.concatenate([t, np.zeros((3, 2))], axis=0)
        # lstsq rather than solve: coincident control points make the system singular, not invalid
        coef = np.linalg.lstsq(system, rhs, rcond=None)[0]
        return cls(centres=c, weights=coef[:n], affine=coef[n:], norm=float(norm))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Map points (m, 2) in pixels; returns (m, 2) in pixels."""
        x = np.asarray(points, dtype=np.float64).reshape(-1, 2) / self.norm
        out = self.affine[0] + x @ self.affine[1:] + _kernel(_sq_dist(x, self.centres)) @ self.weights
        return out * self.norm


def dense_map(spline: ThinPlateSpline, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate `spline` at every pixel centre: (map_x, map_y), each float32 (height, width).

    Exact per pixel: random control points can lie a few pixels apart with independent displacements,
    so the warp bends sharply there and a coarse grid + interpolation would be off by pixels.
    """
    ys, xs = np.mgrid[0:height, 0:width]
    values = spline(np.stack([xs.ravel(), ys.ravel()], axis=1)).astype(np.float32).reshape(height, width, 2)
    return np.ascontiguousarray(values[..., 0]), np.ascontiguousarray(values[..., 1])


def tps_warp(
    image: np.ndarray,
    mask: np.ndarray | None,
    src: np.ndarray,
    dst: np.ndarray,
    image_fill: int | tuple[int, ...] = 0,
    mask_fill: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Warp `image` (H, W[, C]) and `mask` (H, W) so that the content at src[i] lands on dst[i].

    src, dst: (n, 2) pixel coordinates (x, y). Pixels mapped from outside the input get the fill values.
    """
    h, w = image.shape[:2]
    backward = ThinPlateSpline.fit(dst, src, norm=float(max(h, w)))
    map_x, map_y = dense_map(backward, h, w)
    if isinstance(image_fill, (int, float)):
        image_fill = (image_fill,) * (image.shape[2] if image.ndim == 3 else 1)
    warped = cv2.remap(
        image, map_x, map_y, interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in image_fill),
    )
    warped_mask = None
    if mask is not None:
        warped_mask = cv2.remap(
            mask, map_x, map_y, interpolation=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT, borderValue=float(mask_fill),
        )
    return warped, warped_mask


class RandomThinPlateSpline:
    """With probability `p`, warp an image (3, H, W) uint8 and its mask ([1,] H, W) with a random TPS.

    `num_points` control points are drawn uniformly over the image and each is displaced by
    Normal(0, scale * size) along x (size = width) and y (size = height), supplementary F.3.1.
    Randomness comes from torch's global generator (seeded per DataLoader worker).
    """

    def __init__(
        self,
        p: float = TPS_PROBABILITY,
        num_points: int = TPS_NUM_POINTS,
        scale: float = TPS_SCALE,
        image_fill: tuple[int, ...] | int = 0,
    ) -> None:
        self.p = p
        self.num_points = num_points
        self.scale = scale
        self.image_fill = image_fill

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if torch.rand(()).item() >= self.p:
            return image, mask
        _, h, w = image.shape
        size = torch.tensor([w, h], dtype=torch.float64)
        src = torch.rand(self.num_points, 2, dtype=torch.float64) * (size - 1)
        dst = src + torch.randn(self.num_points, 2, dtype=torch.float64) * self.scale * size
        im_np = np.ascontiguousarray(image.as_subclass(Tensor).permute(1, 2, 0).numpy())
        mask_np = np.ascontiguousarray(mask.as_subclass(Tensor).reshape(h, w).numpy())
        im_out, mask_out = tps_warp(im_np, mask_np, src.numpy(), dst.numpy(), image_fill=self.image_fill)
        if im_out.ndim == 2:  # cv2 drops a single channel axis
            im_out = im_out[..., None]
        new_image = torch.from_numpy(im_out).permute(2, 0, 1).contiguous()
        new_mask = torch.from_numpy(mask_out).reshape(mask.shape)
        return new_image, new_mask
