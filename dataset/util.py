"""Shared dataset helpers: image reading (masks: `util.io`), frame listing, subset lists, layout checks,
worker seeding.

Layout checks (`check_dataset_root`) run in the trainer's main process before any DataLoader worker
starts, so a wrong `--davis_root` ends in one line naming the path and the expected layout instead of
a traceback from inside a worker.
"""
from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from util import io, layouts
from util.errors import UserError

__all__ = [
    "DatasetLayoutError",
    "DatasetRoot",
    "LAYOUTS",
    "STATIC_SUBSETS",
    "DAVIS_SUBSET_FILE",
    "YOUTUBE_SUBSET_FILE",
    "IMAGE_EXTENSIONS",
    "NUM_FRAMES",
    "read_image",
    "list_frames",
    "load_subset",
    "check_dataset_root",
    "scan",
    "worker_init_fn",
]

NUM_FRAMES = 3  # section 5: three temporally ordered frames per training sample
IMAGE_EXTENSIONS = (".jpg", ".jpeg")
MASK_EXTENSION = ".png"

_HERE = Path(__file__).resolve().parent
# The training videos of the paper (main training, supplementary F.3.2): 59 DAVIS 2017 train videos and
# 3464 YouTube-VOS 2019 train videos (the rest of YouTube-VOS train is held out).
DAVIS_SUBSET_FILE = _HERE / "subsets" / "davis_subset.txt"
YOUTUBE_SUBSET_FILE = _HERE / "subsets" / "yv_subset.txt"

# Static image sets (supplementary F.3.1) as `(folder, nested)`: nested means <folder>/<class>/<n>.jpg.
STATIC_SUBSETS: tuple[tuple[str, bool], ...] = (
    ("fss", True),
    ("DUTS-TR", False),
    ("DUTS-TE", False),
    ("ecssd", False),
    ("BIG_small", False),
    ("HRSOD_small", False),
)


class DatasetLayoutError(UserError, RuntimeError):
    """A dataset root that is missing or not laid out as the loaders expect: `where` is the path,
    `fix` the expected layout."""


@dataclass(frozen=True)
class DatasetRoot:
    """Resolved folders of one training dataset (for `static`, both are the root itself)."""

    layout: str
    root: Path
    im_root: Path
    gt_root: Path


# layout name -> (images relative to the root, annotations relative to the root, flag of train.py)
_DAVIS_TRAIN = layouts.sub_path("davis17_trainval", "davis")  # 2017/trainval
_YOUTUBE_TRAIN = layouts.sub_path("youtube_train_480p", "youtube")  # train_480p
LAYOUTS: dict[str, tuple[str, str, str]] = {
    "davis": (f"{_DAVIS_TRAIN}/{layouts.FRAMES}/{layouts.RESOLUTION}",
              f"{_DAVIS_TRAIN}/{layouts.MASKS}/{layouts.RESOLUTION}", "--davis_root"),
    "youtube": (f"{_YOUTUBE_TRAIN}/{layouts.FRAMES}", f"{_YOUTUBE_TRAIN}/{layouts.MASKS}", "--yv_root"),
    "bl30k": (layouts.FRAMES, layouts.MASKS, "--bl_root"),
    "static": ("", "", "--static_root"),
}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an RGB image as uint8 (H, W, 3) (`util.io.read_image`: a bad file raises DataError)."""
    return np.array(io.read_image(path))


def list_frames(folder: str | os.PathLike) -> list[str]:
    """The JPEG file names in `folder` in frame order (numbers in names compared by value, `frame_order`)."""
    return sorted((f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS)), key=io.frame_order)


def scan(fn: Callable, items: Iterable) -> list:
    """`[fn(item) for item in items]` on a few threads (image decoding releases the GIL): the start-up
    checks that read one mask per video or image of a training set."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(fn, items))


def load_subset(path: str | os.PathLike) -> set[str]:
    """Video names listed one per line in a text file (blank lines and `#` comments ignored)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError:
        raise DatasetLayoutError(path, "cannot read the video list", "pass an existing subset file") from None
    return {line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")}


def _expected(layout: str, root: Path) -> str:
    if layout == "static":
        folders = ", ".join(name for name, _ in STATIC_SUBSETS)
        return (
            f"expected {root}/<set>/<n>.jpg with <n>.png beside it for each set in {{{folders}}} "
            f"(FSS-1000 one level deeper: {root}/fss/<class>/<n>.jpg)"
        )
    im_rel, gt_rel, flag = LAYOUTS[layout]
    return (
        f"expected {root}/{im_rel}/<video>/00000.jpg and {root}/{gt_rel}/<video>/00000.png "
        f"(see 'Data preparation' in the README, or pass {flag})"
    )


def _check_image_mask_folder(folder: Path, layout: str, root: Path) -> None:
    if not folder.is_dir():
        raise DatasetLayoutError(folder, "no such folder", _expected(layout, root))
    images = list_frames(folder)
    if not images:
        raise DatasetLayoutError(folder, "no .jpg images", _expected(layout, root))
    mask = folder / (Path(images[0]).stem + MASK_EXTENSION)
    if not mask.is_file():
        raise DatasetLayoutError(mask, f"missing mask for {images[0]}", _expected(layout, root))


def check_dataset_root(path: str | os.PathLike, layout_name: str) -> DatasetRoot:
    """Check that `path` (the value of --static_root/--bl_root/--davis_root/--yv_root) has the layout.

    layout_name: one of `LAYOUTS` ("static", "bl30k", "davis", "youtube"). Only cheap checks: the
    folders exist, and the first video (or image set) has a frame and its annotation. Returns the
    resolved image/annotation folders; raises `DatasetLayoutError` naming the path and the expected
    layout otherwise.
    """
    if layout_name not in LAYOUTS:
        raise ValueError(f"unknown dataset layout {layout_name!r}; expected one of {sorted(LAYOUTS)}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(root, "no such folder", _expected(layout_name, root))
    if layout_name == "static":
        for name, nested in STATIC_SUBSETS:
            folder = root / name
            if nested:
                if not folder.is_dir():
                    raise DatasetLayoutError(folder, "no such folder", _expected(layout_name, root))
                classes = sorted(d for d in os.listdir(folder) if (folder / d).is_dir())
                if not classes:
                    raise DatasetLayoutError(folder, "no class folders", _expected(layout_name, root))
                folder = folder / classes[0]
            _check_image_mask_folder(folder, layout_name, root)
        return DatasetRoot(layout_name, root, root, root)

    im_rel, gt_rel, _ = LAYOUTS[layout_name]
    im_root, gt_root = root / im_rel, root / gt_rel
    for folder in (im_root, gt_root):
        if not folder.is_dir():
            raise DatasetLayoutError(folder, "no such folder", _expected(layout_name, root))
    videos = sorted(d for d in os.listdir(im_root) if (im_root / d).is_dir())
    if not videos:
        raise DatasetLayoutError(im_root, "no video folders", _expected(layout_name, root))
    frames = list_frames(im_root / videos[0])
    if not frames:
        raise DatasetLayoutError(im_root / videos[0], "no .jpg frames", _expected(layout_name, root))
    mask = gt_root / videos[0] / (Path(frames[0]).stem + MASK_EXTENSION)
    if not mask.is_file():
        raise DatasetLayoutError(mask, "missing annotation", _expected(layout_name, root))
    return DatasetRoot(layout_name, root, im_root, gt_root)


def worker_init_fn(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: seed numpy and `random` from torch's per-worker seed.

    PyTorch seeds each worker's torch generator with `base_seed + worker_id`, where `base_seed` is drawn
    from the DataLoader's `generator` (or the global torch RNG) in the main process. The trainer makes
    it rank-dependent, e.g. `DataLoader(..., generator=torch.Generator().manual_seed(seed + rank),
    worker_init_fn=worker_init_fn)`. The datasets draw all their randomness from torch's global
    generator; numpy and `random` are seeded too so third-party code in a worker is reproducible and
    differs between workers (forked workers otherwise share the parent's numpy state).
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    try:  # OpenCV's own thread pool oversubscribes the CPU when every worker uses it
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass
