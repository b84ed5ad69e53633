"""Static-image pre-training data (stage 0, supplementary F.3.1).

Each sample is a fake three-frame video made from one image + binary mask: one augmentation of the
base image shared by the frames, then an independent affine, colour jitter, resize + crop and (with
probability 1/3) a thin-plate-spline warp per frame.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset

from dataset.tps import RandomThinPlateSpline
from dataset.transforms import (
    DEFAULT_CROP_SIZE,
    IMAGE_FILL,
    static_base_transform,
    static_frame_transform,
    to_model_input,
    tv_tensors,
)
from dataset.util import NUM_FRAMES, STATIC_SUBSETS, DatasetLayoutError, check_dataset_root, list_frames, read_image
from util.io import read_binary_mask

__all__ = ["StaticTransformDataset", "static_datasets", "HIGH_QUALITY_REPEAT"]

HIGH_QUALITY_REPEAT = 5  # BIG and HRSOD appear five times as often (supplementary F.3.1)
HIGH_QUALITY_SETS = ("BIG_small", "HRSOD_small")


class StaticTransformDataset(Dataset):
    """Image + mask pairs `<root>/<n>.jpg` + `<root>/<n>.png` (or `<root>/<class>/<n>.jpg` if nested).

    Sample dict:
      rgb     float32 (3, 3, S, S)  normalised frames (S = crop_size)
      gt      float32 (3, 1, S, S)  object mask in {0, 1}
      cls_gt  int64   (3, S, S)     0 = background, 1 = object
      info    {"name": image path}
    """

    def __init__(self, root: str | os.PathLike, nested: bool = False, crop_size: int = DEFAULT_CROP_SIZE) -> None:
        self.root = Path(root)
        self.crop_size = crop_size
        folders = [self.root]
        if nested:
            if not self.root.is_dir():
                raise DatasetLayoutError(self.root, "no such folder", f"expected {self.root}/<class>/<n>.jpg + .png")
            folders = [self.root / d for d in sorted(os.listdir(self.root)) if (self.root / d).is_dir()]
        self.images: list[Path] = []
        for folder in folders:
            if not folder.is_dir():
                raise DatasetLayoutError(folder, "no such folder", f"expected {folder}/<n>.jpg + <n>.png")
            names = set(os.listdir(folder))
            for im in list_frames(folder):
                gt = Path(im).stem + ".png"
                if gt not in names:
                    raise DatasetLayoutError(folder / gt, f"missing mask for {im}", "every <n>.jpg needs <n>.png")
                self.images.append(folder / im)
        if not self.images:
            raise DatasetLayoutError(self.root, "no image + mask pairs", f"expected {self.root}/<n>.jpg + <n>.png")

        self.base_transform = static_base_transform()
        self.frame_transform = static_frame_transform(crop_size)
        self.tps = RandomThinPlateSpline(image_fill=IMAGE_FILL)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> dict:
        path = self.images[idx]
        image = tv_tensors.Image(torch.from_numpy(read_image(path)).permute(2, 0, 1).contiguous())
        binary = read_binary_mask(path.with_suffix(".png"))
        mask = tv_tensors.Mask(torch.from_numpy(binary)[None])  # 1, H, W

        image, mask = self.base_transform(image, mask)
        frames: list[Tensor] = []
        masks: list[Tensor] = []
        for _ in range(NUM_FRAMES):
            this_im, this_mask = self.frame_transform(image, mask)
            this_im, this_mask = self.tps(this_im, this_mask)
            frames.append(to_model_input(this_im))
            masks.append(this_mask.as_subclass(Tensor).reshape(1, self.crop_size, self.crop_size))

        gt = torch.stack(masks, 0).float()  # 3, 1, S, S
        return {
            "rgb": torch.stack(frames, 0),  # 3, 3, S, S
            "gt": gt,
            "cls_gt": gt[:, 0].long(),  # 3, S, S
            "info": {"name": str(path)},
        }


def static_datasets(static_root: str | os.PathLike, crop_size: int = DEFAULT_CROP_SIZE) -> ConcatDataset:
    """All static image sets of F.3.1 under `static_root`, BIG and HRSOD repeated five times."""
    root = check_dataset_root(static_root, "static").root
    parts: list[Dataset] = []
    for name, nested in STATIC_SUBSETS:
        dataset = StaticTransformDataset(root / name, nested=nested, crop_size=crop_size)
        parts.extend([dataset] * (HIGH_QUALITY_REPEAT if name in HIGH_QUALITY_SETS else 1))
    return ConcatDataset(parts)
