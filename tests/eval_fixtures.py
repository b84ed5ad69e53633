"""Tiny synthetic evaluation datasets (moving textured shapes) in each layout the scripts read.

    make_davis(root)       root/2017/trainval (val list, all frames annotated), root/2017/test-dev
                           (first frames only), root/2016 (greyscale, 255 = object); the 2016 val
                           list lives in root/2017/trainval/ImageSets/2016/val.txt as in DAVIS
    make_youtube(root)     valid/{meta.json, JPEGImages (every 5th frame), Annotations},
                           all_frames/valid_all_frames/JPEGImages; object 3 appears mid-video, ids 1, 3
    make_generic(root)     JPEGImages/<video>/*.jpg, Annotations/<video>/*.png on first appearances

The palette is made up here (not DAVIS's), so tests can check that outputs keep the data's own.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# label -> colour; anything not DAVIS's palette, and no colour a blend of two others
TEST_PALETTE = [0, 0, 0, 200, 30, 40, 20, 180, 60, 40, 60, 220, 230, 200, 20] + [
    (37 * i) % 256 for i in range(15, 768)
]


@dataclass(frozen=True)
class VideoSpec:
    name: str
    height: int
    width: int
    frames: int
    starts: dict[int, int]  # label -> first frame where it appears


def render(spec: VideoSpec, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGB frames (H, W, 3 uint8) and label maps (H, W uint8) of shapes moving over a texture."""
    rng = np.random.default_rng(seed)
    h, w = spec.height, spec.width
    texture = (rng.random((h // 4 + 1, w // 4 + 1, 3)) * 120 + 40).astype(np.uint8)
    bg = np.kron(texture, np.ones((4, 4, 1), dtype=np.uint8))[:h, :w]
    yy, xx = np.mgrid[:h, :w]
    images, labels = [], []
    for t in range(spec.frames):
        img = bg.copy()
        lab = np.zeros((h, w), dtype=np.uint8)
        for n, (label, start) in enumerate(sorted(spec.starts.items())):
            if t < start:
                continue
            cy = 8 + (n * 15) % max(1, h - 16)
            cx = 8 + 2 * t + 11 * n
            if n % 2 == 0:
                inside = (abs(yy - cy) <= 5) & (abs(xx - cx) <= 6)
            else:
                inside = ((yy - cy) / 6.0) ** 2 + ((xx - cx) / 7.0) ** 2 <= 1
            colour = np.array(TEST_PALETTE[3 * label : 3 * label + 3], dtype=np.uint8)
            img[inside] = colour
            lab[inside] = label
        images.append(img)
        labels.append(lab)
    return images, labels


def save_jpg(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=95)


def save_indexed(path: Path, labels: np.ndarray, palette=TEST_PALETTE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.frombytes("P", (labels.shape[1], labels.shape[0]), np.ascontiguousarray(labels, np.uint8).tobytes())
    img.putpalette(palette)
    img.save(path)


def save_grey(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8)).save(path)


def save_rgb(path: Path, labels: np.ndarray, palette=TEST_PALETTE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colours = np.array(palette, dtype=np.uint8).reshape(-1, 3)
    Image.fromarray(colours[labels]).save(path)


# --------------------------------------------------------------------------------------- DAVIS
DAVIS_VIDEOS = (
    VideoSpec("cat", 48, 64, 7, {1: 0, 2: 0}),
    VideoSpec("odd", 50, 70, 6, {1: 0}),  # not a multiple of 16
)


def make_davis(root: Path) -> Path:
    """root/2017/{trainval,test-dev} and root/2016; returns root."""
    trainval, testdev, d16 = root / "2017" / "trainval", root / "2017" / "test-dev", root / "2016"
    for k, spec in enumerate(DAVIS_VIDEOS):
        images, labels = render(spec, seed=k)
        for t, (img, lab) in enumerate(zip(images, labels)):
            name = f"{t:05d}"
            for base in (trainval, testdev, d16):
                save_jpg(base / "JPEGImages" / "480p" / spec.name / f"{name}.jpg", img)
            save_indexed(trainval / "Annotations" / "480p" / spec.name / f"{name}.png", lab)
            if t == 0:
                save_indexed(testdev / "Annotations" / "480p" / spec.name / f"{name}.png", lab)
            save_grey(d16 / "Annotations" / "480p" / spec.name / f"{name}.png", np.where(lab > 0, 255, 0))
    names = "".join(s.name + "\n" for s in DAVIS_VIDEOS)
    for path in (trainval / "ImageSets" / "2017" / "val.txt", trainval / "ImageSets" / "2016" / "val.txt",
                 testdev / "ImageSets" / "2017" / "test-dev.txt"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(names)
    return root


# --------------------------------------------------------------------------------- YouTube-VOS
YT_VIDEOS = (
    VideoSpec("yv_a", 64, 96, 12, {1: 0, 3: 5}),  # object 3 appears on frame 5; ids 1 and 3
    VideoSpec("yv_b", 48, 64, 6, {2: 0}),
)
YT_EVERY = 5  # YouTube-VOS annotates (and lists in meta.json) every 5th frame


def make_youtube(root: Path, split: str = "valid") -> Path:
    meta: dict = {"videos": {}}
    for k, spec in enumerate(YT_VIDEOS):
        images, labels = render(spec, seed=10 + k)
        listed = [t for t in range(spec.frames) if t % YT_EVERY == 0]
        for t, img in enumerate(images):
            save_jpg(root / "all_frames" / f"{split}_all_frames" / "JPEGImages" / spec.name / f"{t:05d}.jpg", img)
            if t in listed:
                save_jpg(root / split / "JPEGImages" / spec.name / f"{t:05d}.jpg", img)
        objects = {}
        for label, start in spec.starts.items():
            lab = np.where(labels[start] == label, label, 0)  # only the objects starting there, as YouTube-VOS
            path = root / split / "Annotations" / spec.name / f"{start:05d}.png"
            if path.exists():
                lab = np.maximum(lab, np.array(Image.open(path)))
            save_indexed(path, lab)
            objects[str(label)] = {"category": "thing", "frames": [f"{t:05d}" for t in listed if t >= start]}
        meta["videos"][spec.name] = {"objects": objects}
    (root / split / "meta.json").write_text(json.dumps(meta))
    return root


# ------------------------------------------------------------------------------------- generic
GENERIC_VIDEOS = (
    VideoSpec("clip", 48, 64, 8, {1: 0, 2: 3}),  # object 2 is annotated on frame 3
)


def make_generic(root: Path, videos: Sequence[VideoSpec] = GENERIC_VIDEOS, seed: int = 20) -> Path:
    """A generic layout of `videos` (video k rendered with seed + k)."""
    for k, spec in enumerate(videos):
        images, labels = render(spec, seed=seed + k)
        for t, img in enumerate(images):
            save_jpg(root / "JPEGImages" / spec.name / f"{t:05d}.jpg", img)
        for start in sorted(set(spec.starts.values())):
            save_indexed(root / "Annotations" / spec.name / f"{start:05d}.png", labels[start])
    return root


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def davis_template(tmp_path_factory) -> Path:
    return make_davis(tmp_path_factory.mktemp("davis_template"))


@pytest.fixture(scope="session")
def youtube_template(tmp_path_factory) -> Path:
    return make_youtube(tmp_path_factory.mktemp("yv_template"))


@pytest.fixture(scope="session")
def generic_template(tmp_path_factory) -> Path:
    return make_generic(tmp_path_factory.mktemp("generic_template"))
