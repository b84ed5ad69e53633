"""Video training data: DAVIS 2017 + YouTube-VOS (stages 2/3) and BL30K (stage 1), supplementary F.3.2/F.3.3.

A sample is three frames of one video in temporal order (forwards or backwards), each gap at most the
current maximum skip, augmented identically as a clip and then per frame, with at most two target
objects chosen among those visible in the (augmented) first frame.

The maximum skip follows a curriculum during training. DataLoader workers hold copies of the dataset,
so it lives in shared memory (`multiprocessing.Value`): `dataset.set_max_skip(n)` (or
`set_max_skip(concat_dataset, n)`) in the main process is seen by running workers, including
persistent ones, from their next sample on; batches already prefetched keep the old value.
"""
from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset, Subset

from dataset.transforms import (
    BL30K_CROP_SCALE,
    DEFAULT_CROP_SIZE,
    VOS_CROP_SCALE,
    to_model_input,
    tv_tensors,
    vos_clip_transform,
    vos_frame_transform,
)
from dataset.util import (
    DAVIS_SUBSET_FILE,
    NUM_FRAMES,
    YOUTUBE_SUBSET_FILE,
    DatasetLayoutError,
    check_dataset_root,
    list_frames,
    load_subset,
    read_image,
)
from util.io import read_index_mask

__all__ = [
    "VOSDataset",
    "set_max_skip",
    "main_training_datasets",
    "bl30k_dataset",
    "YOUTUBE_FRAME_STRIDE",
    "DAVIS_REPEAT",
]

MAX_OBJECTS = 2  # supplementary F.3.2: at most two target objects
BL30K_MIN_OBJECT_PIXELS = 100  # supplementary F.3.3: smaller objects in the first frame are discarded
YOUTUBE_FRAME_STRIDE = 5  # YouTube-VOS train frames/annotations are every 5th frame of the video
DAVIS_REPEAT = 5  # supplementary F.3.2: DAVIS videos appear five times as often as YouTube-VOS ones
REVERSE_PROBABILITY = 0.5  # original STCN/MiVOS sampler: clips are played backwards half of the time
TRIALS_PER_VIDEO = 5  # clips drawn from a video before giving up on it (original: 5)
MAX_TRIALS = 100  # then random other videos; past this the dataset has no usable annotation


class VOSDataset(Dataset):
    """Videos `<im_root>/<video>/<frame>.jpg` with palette masks `<gt_root>/<video>/<frame>.png`.

    Args:
        max_skip: maximum temporal distance between consecutive sampled frames, in frames of the
            original video (the curriculum's "skip"). Changeable with `set_max_skip`.
        is_bl: BL30K mode (F.3.3): crop scale (0.25, 1) and objects under 100 pixels in the first
            frame ignored.
        subset: only these videos (a set of names, or the path of a one-name-per-line file, see
            `load_subset`); None for all.
        crop_size: side of the square output crop (384 in the paper).
        frame_stride: how many video frames one listed frame stands for. YouTube-VOS train keeps every
            5th frame, so pass `YOUTUBE_FRAME_STRIDE`: the jump between listed frames is then
            `max(1, max_skip // frame_stride)`, as the original's `max_skip // 5`.

    Sample dict (S = crop_size):
      rgb       float32 (3, 3, S, S)  normalised frames
      gt        float32 (3, 1, S, S)  first target object in {0, 1}
      sec_gt    float32 (3, 1, S, S)  second target object, zeros when there is none
      cls_gt    int64   (3, S, S)     0 background, 1 first object, 2 second object
      selector  float32 (2,)          [1, 1] with two objects, [1, 0] with one
      info      {"name": video, "frames": [3 file names], "num_objects": 1 or 2}
    """

    def __init__(
        self,
        im_root: str | os.PathLike,
        gt_root: str | os.PathLike,
        max_skip: int,
        is_bl: bool = False,
        subset: Iterable[str] | str | os.PathLike | None = None,
        crop_size: int = DEFAULT_CROP_SIZE,
        frame_stride: int = 1,
    ) -> None:
        self.im_root = Path(im_root)
        self.gt_root = Path(gt_root)
        self.is_bl = is_bl
        self.crop_size = crop_size
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        self.frame_stride = frame_stride
        # shared with DataLoader workers (see module docstring); 'i' = C int
        self._max_skip = multiprocessing.Value("i", 1, lock=False)
        self.set_max_skip(max_skip)

        if not self.im_root.is_dir():
            raise DatasetLayoutError(self.im_root, "no such folder", f"expected {self.im_root}/<video>/00000.jpg")
        subset_source = None
        if subset is not None and isinstance(subset, (str, os.PathLike)):
            subset_source, subset = subset, load_subset(subset)
        wanted = None if subset is None else set(subset)

        self.videos: list[str] = []
        self.frames: dict[str, list[str]] = {}
        too_short = 0
        for video in sorted(os.listdir(self.im_root)):
            if wanted is not None and video not in wanted:
                continue
            if not (self.im_root / video).is_dir():
                continue
            frames = list_frames(self.im_root / video)
            if len(frames) < NUM_FRAMES:
                too_short += 1
                continue
            self.videos.append(video)
            self.frames[video] = frames
        if not self.videos:
            what = f"none of the {len(wanted)} videos of {subset_source or 'the subset'}" if wanted else "no video"
            raise DatasetLayoutError(
                self.im_root,
                f"{what} with at least {NUM_FRAMES} frames found",
                f"expected {self.im_root}/<video>/00000.jpg",
            )
        if wanted is not None and len(self.videos) + too_short < len(wanted):
            warnings.warn(
                f"{self.im_root}: {len(wanted) - len(self.videos) - too_short} of the {len(wanted)} videos "
                f"listed in {subset_source or 'the subset'} are missing",
                stacklevel=2,
            )

        crop_scale = BL30K_CROP_SCALE if is_bl else VOS_CROP_SCALE
        self.clip_transform = vos_clip_transform(crop_size, crop_scale)
        self.frame_transform = vos_frame_transform()

    # -- curriculum ------------------------------------------------------------------------------------
    @property
    def max_skip(self) -> int:
        """Current maximum skip in video frames (shared with DataLoader workers)."""
        return int(self._max_skip.value)

    def set_max_skip(self, max_skip: int) -> None:
        if max_skip < 1:
            raise ValueError(f"max_skip must be >= 1, got {max_skip}")
        self._max_skip.value = int(max_skip)

    @property
    def index_jump(self) -> int:
        """Maximum gap between sampled frames, in listed frames."""
        return max(1, self.max_skip // self.frame_stride)

    # -- sampling --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.videos)

    def sample_frame_indices(self, num_frames: int) -> list[int]:
        """Three increasing indices with both gaps in [1, index_jump], then reversed with p = 0.5."""
        jump = self.index_jump
        gap1 = _randint(1, min(jump, num_frames - 2))
        gap2 = _randint(1, min(jump, num_frames - 1 - gap1))
        start = _randint(0, num_frames - 1 - gap1 - gap2)
        indices = [start, start + gap1, start + gap1 + gap2]
        if torch.rand(()).item() < REVERSE_PROBABILITY:
            indices.reverse()
        return indices

    def _load_clip(self, video: str, names: list[str]) -> tuple[Tensor, Tensor]:
        images, masks = [], []
        for name in names:
            images.append(torch.from_numpy(read_image(self.im_root / video / name)))
            gt_path = self.gt_root / video / (Path(name).stem + ".png")
            if not gt_path.is_file():
                raise DatasetLayoutError(
                    gt_path,
                    f"missing annotation for {self.im_root / video / name}",
                    "every training frame needs a palette PNG of the same name",
                )
            masks.append(torch.from_numpy(read_index_mask(gt_path)))
        image = tv_tensors.Image(torch.stack(images, 0).permute(0, 3, 1, 2).contiguous())  # T, 3, H, W
        mask = tv_tensors.Mask(torch.stack(masks, 0))  # T, H, W
        return image, mask

    def _augment(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        image, mask = self.clip_transform(image, mask)  # one draw for the clip
        frames, masks = [], []
        for t in range(image.shape[0]):  # one draw per frame
            im_t, mask_t = self.frame_transform(
                tv_tensors.Image(image[t].as_subclass(Tensor)), tv_tensors.Mask(mask[t : t + 1].as_subclass(Tensor))
            )
            frames.append(im_t.as_subclass(Tensor))
            masks.append(mask_t.as_subclass(Tensor)[0])
        return torch.stack(frames, 0), torch.stack(masks, 0)

    def candidate_objects(self, first_mask: Tensor) -> list[int]:
        """Object labels present in the first frame (BL30K: with at least 100 pixels)."""
        labels, counts = torch.unique(first_mask, return_counts=True)
        keep = labels != 0
        if self.is_bl:
            keep &= counts >= BL30K_MIN_OBJECT_PIXELS
        return [int(v) for v in labels[keep]]

    def __getitem__(self, idx: int) -> dict:
        video = self.videos[idx]
        for trial in range(MAX_TRIALS):
            if trial >= TRIALS_PER_VIDEO:  # this video keeps giving empty first frames: try another
                video = self.videos[_randint(0, len(self.videos) - 1)]
            frames = self.frames[video]
            names = [frames[i] for i in self.sample_frame_indices(len(frames))]
            images, masks = self._augment(*self._load_clip(video, names))
            labels = self.candidate_objects(masks[0])
            if labels:
                break
        else:
            raise RuntimeError(
                f"{self.gt_root}: no object found in the first frame of {MAX_TRIALS} sampled clips; "
                "check that the annotations are palette PNGs with object labels 1..K"
            )

        order = torch.randperm(len(labels))[:MAX_OBJECTS].tolist()
        targets = [labels[i] for i in order]
        gt = (masks == targets[0]).float().unsqueeze(1)  # 3, 1, S, S
        if len(targets) > 1:
            sec_gt = (masks == targets[1]).float().unsqueeze(1)
            selector = torch.tensor([1.0, 1.0])
        else:
            sec_gt = torch.zeros_like(gt)
            selector = torch.tensor([1.0, 0.0])
        cls_gt = torch.zeros(masks.shape, dtype=torch.long)
        cls_gt[gt[:, 0] > 0.5] = 1
        cls_gt[sec_gt[:, 0] > 0.5] = 2
        return {
            "rgb": to_model_input(images),
            "gt": gt,
            "sec_gt": sec_gt,
            "cls_gt": cls_gt,
            "selector": selector,
            "info": {"name": video, "frames": names, "num_objects": len(targets)},
        }


def _randint(low: int, high: int) -> int:
    """Uniform integer in [low, high] (inclusive) from torch's global generator."""
    return int(torch.randint(low, high + 1, ()).item())


def _vos_datasets(dataset: Dataset) -> list[VOSDataset]:
    if isinstance(dataset, VOSDataset):
        return [dataset]
    if isinstance(dataset, ConcatDataset):
        return [d for part in dataset.datasets for d in _vos_datasets(part)]
    if isinstance(dataset, Subset):
        return _vos_datasets(dataset.dataset)
    return []


def set_max_skip(dataset: Dataset, max_skip: int) -> None:
    """Set the maximum skip of every VOSDataset in `dataset` (a VOSDataset, ConcatDataset or Subset)."""
    found = _vos_datasets(dataset)
    if not found:
        raise TypeError(f"{type(dataset).__name__} holds no VOSDataset")
    for d in found:
        d.set_max_skip(max_skip)


def main_training_datasets(
    davis_root: str | os.PathLike,
    yv_root: str | os.PathLike,
    max_skip: int,
    davis_subset: str | os.PathLike | Iterable[str] | None = DAVIS_SUBSET_FILE,
    yv_subset: str | os.PathLike | Iterable[str] | None = YOUTUBE_SUBSET_FILE,
    crop_size: int = DEFAULT_CROP_SIZE,
) -> ConcatDataset:
    """DAVIS 2017 train (x5) + YouTube-VOS train_480p for stages 2/3 (F.3.2).

    `davis_root`/`yv_root` are the --davis_root/--yv_root values (`../DAVIS`, `../YouTube`); the data are
    read from `<davis_root>/2017/trainval` and `<yv_root>/train_480p`. Subsets default to the paper's
    video lists; pass None to use every video (e.g. for a custom dataset).
    """
    davis = check_dataset_root(davis_root, "davis")
    youtube = check_dataset_root(yv_root, "youtube")
    davis_set = VOSDataset(davis.im_root, davis.gt_root, max_skip, subset=davis_subset, crop_size=crop_size)
    yv_set = VOSDataset(
        youtube.im_root, youtube.gt_root, max_skip, subset=yv_subset, crop_size=crop_size,
        frame_stride=YOUTUBE_FRAME_STRIDE,
    )
    return ConcatDataset([davis_set] * DAVIS_REPEAT + [yv_set])


def bl30k_dataset(bl_root: str | os.PathLike, max_skip: int, crop_size: int = DEFAULT_CROP_SIZE) -> VOSDataset:
    """BL30K for stage 1 (F.3.3), read from `<bl_root>/{JPEGImages,Annotations}`."""
    bl = check_dataset_root(bl_root, "bl30k")
    return VOSDataset(bl.im_root, bl.gt_root, max_skip, is_bl=True, crop_size=crop_size)
