"""Tiny synthetic datasets in every layout the loaders read, for tests (CPU, fast, deterministic).

Each video is a textured background panning slowly with 1-3 coloured, striped shapes (ellipses or
rectangles) moving over it; later objects occlude earlier ones. Video masks are palette PNGs
(0 = background, 1..K objects); static masks are grey PNGs with 0/255. Everything is generated from
`seed`, so the same call writes the same files. Each `make_*` function returns the dataset root to
pass to the code under test (e.g. `make_davis_root(tmp_path)` returns `tmp_path / "DAVIS"`, the value
of `--davis_root`).

    render_clip(...)               -> (frames, masks) in memory
    make_static_root(root)         -> root/static/{fss/<class>,DUTS-TR,DUTS-TE,ecssd,BIG_small,HRSOD_small}
    make_davis_root(root)          -> root/DAVIS/2017/trainval/{JPEGImages,Annotations}/480p, ImageSets/2017
    make_davis2016_root(root)      -> root/DAVIS/2016/..., list in 2017/trainval/ImageSets/2016/val.txt
    make_davis_testdev_root(root)  -> root/DAVIS/2017/test-dev/... (first-frame annotations only)
    make_youtube_root(root)        -> root/YouTube/{train_480p,valid,all_frames/valid_all_frames}
    make_bl30k_root(root)          -> root/BL30K/{JPEGImages,Annotations}
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "DEFAULT_SIZE",
    "DAVIS_NAMES",
    "palette",
    "render_clip",
    "save_jpg",
    "save_palette_png",
    "make_static_root",
    "make_davis_root",
    "make_davis2016_root",
    "make_davis_testdev_root",
    "make_youtube_root",
    "make_bl30k_root",
]

DEFAULT_SIZE = (64, 96)  # H, W
DAVIS_NAMES = ("bear", "bike-packing", "camel", "dog-agility", "elephant", "flamingo", "goat", "horsejump-high")
YOUTUBE_STRIDE = 5  # YouTube-VOS keeps every 5th frame in train and valid
TINY_SIDE = 6  # a 6 x 6 = 36 pixel object, under BL30K's 100-pixel threshold


def palette() -> list[int]:
    """The 256-colour PASCAL VOC / DAVIS palette (label bits spread over the colour bits)."""
    pal = []
    for label in range(256):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        pal.extend([r, g, b])
    return pal


_PALETTE = palette()


def save_jpg(path: Path, image: np.ndarray) -> None:
    """Write an RGB uint8 image (H, W, 3) as JPEG, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=92)


def save_palette_png(path: Path, labels: np.ndarray) -> None:
    """Write label indices (H, W) as a palette PNG with the DAVIS colours, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    im = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.tobytes())
    im.putpalette(_PALETTE)
    im.save(path)


def _save_binary_png(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(labels > 0, 255, 0).astype(np.uint8)).save(path)


def render_clip(
    num_frames: int,
    size: tuple[int, int] = DEFAULT_SIZE,
    num_objects: int = 2,
    seed: int = 0,
    ids: Sequence[int] | None = None,
    appear_at: Sequence[int] | None = None,
    tiny_last: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames (H, W, 3) uint8 and label masks (H, W) uint8 of a synthetic video.

    ids: label of each object (default 1..num_objects); appear_at: first frame of each object
    (default 0); tiny_last: make the last object a TINY_SIDE square (for BL30K's size filter).
    """
    rng = np.random.default_rng(seed)
    h, w = size
    ids = list(ids) if ids is not None else list(range(1, num_objects + 1))
    appear_at = list(appear_at) if appear_at is not None else [0] * len(ids)
    # background: a few random sinusoids per channel plus fixed noise, panning one pixel per frame
    ys, xs = np.mgrid[0 : h + num_frames, 0 : w + num_frames].astype(np.float32)
    background = np.empty((h + num_frames, w + num_frames, 3), np.float32)
    for ch in range(3):
        fy, fx, phase = rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3), rng.uniform(0, 2 * np.pi)
        background[..., ch] = 110 + 50 * np.sin(fy * ys + fx * xs + phase)
    background += rng.uniform(-15, 15, background.shape)

    objects = []
    for k, label in enumerate(ids):
        tiny = tiny_last and k == len(ids) - 1
        half_h = TINY_SIDE / 2 if tiny else rng.uniform(0.15, 0.3) * h
        half_w = TINY_SIDE / 2 if tiny else rng.uniform(0.1, 0.22) * w
        objects.append({
            "label": label,
            "ellipse": (not tiny) and bool(rng.integers(2)),
            "half": (half_h, half_w),
            "centre": np.array([rng.uniform(half_h, h - half_h), rng.uniform(half_w, w - half_w)]),
            "velocity": rng.uniform(-2.5, 2.5, 2),
            "colour": rng.integers(0, 256, 3).astype(np.float32),
            "stripes": rng.uniform(0.3, 0.8),
        })

    fy, fx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames, masks = [], []
    for t in range(num_frames):
        image = background[t : t + h, t : t + w].copy()
        labels = np.zeros((h, w), np.uint8)
        for k, obj in enumerate(objects):
            if t < appear_at[k]:
                continue
            cy, cx = obj["centre"] + obj["velocity"] * t
            (hh, hw) = obj["half"]
            cy, cx = np.clip(cy, hh, h - hh), np.clip(cx, hw, w - hw)  # stays inside the frame
            if obj["ellipse"]:
                inside = ((fy - cy) / hh) ** 2 + ((fx - cx) / hw) ** 2 <= 1
            else:
                inside = (np.abs(fy - cy) <= hh) & (np.abs(fx - cx) <= hw)
            texture = obj["colour"] * (0.75 + 0.25 * np.sin(obj["stripes"] * (fx + fy)))[..., None]
            image[inside] = texture[inside]
            labels[inside] = obj["label"]
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
        masks.append(labels)
    return frames, masks


def _objects_for(i: int, num_objects: int | Sequence[int] | None) -> int:
    if num_objects is None:
        return i % 3 + 1  # video 0: one object, video 1: two, video 2: three, ...
    if isinstance(num_objects, int):
        return num_objects
    return num_objects[i]


def _video_names(videos: int | Sequence[str], default: Sequence[str]) -> list[str]:
    if isinstance(videos, int):
        return [default[i] if i < len(default) else f"video-{i:02d}" for i in range(videos)]
    return list(videos)


def _write_video(
    im_dir: Path, gt_dir: Path | None, frames: list[np.ndarray], masks: list[np.ndarray],
    names: Sequence[str], annotate: Sequence[int] | None = None, binary: bool = False,
) -> None:
    for t, name in enumerate(names):
        save_jpg(im_dir / f"{name}.jpg", frames[t])
        if gt_dir is not None and (annotate is None or t in annotate):
            (_save_binary_png if binary else save_palette_png)(gt_dir / f"{name}.png", masks[t])


def make_static_root(
    root: str | Path, images_per_set: int = 2, fss_classes: int = 2, size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0
) -> Path:
    """static/{fss/<class>,DUTS-TR,DUTS-TE,ecssd,BIG_small,HRSOD_small}/<n>.jpg + <n>.png (0/255)."""
    out = Path(root) / "static"
    folders = [out / "fss" / f"class{c}" for c in range(fss_classes)]
    folders += [out / name for name in ("DUTS-TR", "DUTS-TE", "ecssd", "BIG_small", "HRSOD_small")]
    k = 0
    for folder in folders:
        for n in range(images_per_set):
            frames, masks = render_clip(1, size, num_objects=1 + k % 2, seed=seed * 1000 + k)
            save_jpg(folder / f"{n + 1}.jpg", frames[0])
            _save_binary_png(folder / f"{n + 1}.png", masks[0])
            k += 1
    return out


def make_davis_root(
    root: str | Path, videos: int | Sequence[str] = 3, frames: int = 6, size: tuple[int, int] = DEFAULT_SIZE,
    num_objects: int | Sequence[int] | None = None, seed: int = 0,
) -> Path:
    """DAVIS/2017/trainval/{JPEGImages,Annotations}/480p/<video>/00000.jpg|png and ImageSets/2017.

    Every frame is annotated. Videos with even index go to train.txt, odd ones to val.txt; by default
    video i has i % 3 + 1 objects (so the first one has a single object).
    """
    out = Path(root) / "DAVIS"
    base = out / "2017" / "trainval"
    names = _video_names(videos, DAVIS_NAMES)
    for i, video in enumerate(names):
        clip = render_clip(frames, size, _objects_for(i, num_objects), seed=seed * 1000 + 100 + i)
        _write_video(base / "JPEGImages" / "480p" / video, base / "Annotations" / "480p" / video, *clip,
                     [f"{t:05d}" for t in range(frames)])
    sets = base / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "train.txt").write_text("".join(f"{v}\n" for v in names[0::2]))
    (sets / "val.txt").write_text("".join(f"{v}\n" for v in names[1::2]))
    return out


def make_davis2016_root(
    root: str | Path, videos: int | Sequence[str] = 2, frames: int = 6, size: tuple[int, int] = DEFAULT_SIZE,
    seed: int = 0,
) -> Path:
    """DAVIS/2016/{JPEGImages,Annotations}/480p (one object, masks 0/255), list in
    2017/trainval/ImageSets/2016/val.txt."""
    out = Path(root) / "DAVIS"
    names = _video_names(videos, DAVIS_NAMES)
    for i, video in enumerate(names):
        clip = render_clip(frames, size, 1, seed=seed * 1000 + 200 + i)
        _write_video(out / "2016" / "JPEGImages" / "480p" / video, out / "2016" / "Annotations" / "480p" / video,
                     *clip, [f"{t:05d}" for t in range(frames)], binary=True)
    sets = out / "2017" / "trainval" / "ImageSets" / "2016"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "val.txt").write_text("".join(f"{v}\n" for v in names))
    return out


def make_davis_testdev_root(
    root: str | Path, videos: int | Sequence[str] = 2, frames: int = 6, size: tuple[int, int] = DEFAULT_SIZE,
    num_objects: int | Sequence[int] | None = None, seed: int = 0,
) -> Path:
    """DAVIS/2017/test-dev/{JPEGImages,Annotations}/480p with the first frame annotated, ImageSets/2017/test-dev.txt."""
    out = Path(root) / "DAVIS"
    base = out / "2017" / "test-dev"
    names = _video_names(videos, [f"test-{n}" for n in DAVIS_NAMES])
    for i, video in enumerate(names):
        clip = render_clip(frames, size, _objects_for(i, num_objects), seed=seed * 1000 + 300 + i)
        _write_video(base / "JPEGImages" / "480p" / video, base / "Annotations" / "480p" / video, *clip,
                     [f"{t:05d}" for t in range(frames)], annotate=[0])
    sets = base / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "test-dev.txt").write_text("".join(f"{v}\n" for v in names))
    return out


def _youtube_names(n: int, offset: int) -> list[str]:
    return [f"{0x0a1b2c3d40 + offset + i:010x}" for i in range(n)]


def make_youtube_root(
    root: str | Path, videos: int = 3, frames: int = 4, size: tuple[int, int] = DEFAULT_SIZE,
    num_objects: int | Sequence[int] | None = None, seed: int = 0, valid_videos: int = 2, name: str = "YouTube",
) -> Path:
    """YouTube-VOS: train_480p, valid (+ meta.json) and all_frames/valid_all_frames under root/<name>.

    train_480p: `frames` frames per video named 00000, 00005, ... (every 5th video frame), all annotated.
    valid: the same naming; video i has objects with non-contiguous ids (1, 3) or (2, 5, 6) that appear
    at different frames, and each object's mask is given only at its first frame (an annotation PNG
    holds only the objects that appear there). all_frames/valid_all_frames/JPEGImages has every frame.
    """
    out = Path(root) / name
    for i, video in enumerate(_youtube_names(videos, 0)):
        clip = render_clip(frames, size, _objects_for(i, num_objects), seed=seed * 1000 + 400 + i)
        train = out / "train_480p"
        _write_video(train / "JPEGImages" / video, train / "Annotations" / video, *clip,
                     [f"{YOUTUBE_STRIDE * t:05d}" for t in range(frames)])

    meta: dict = {"videos": {}}
    full = (frames - 1) * YOUTUBE_STRIDE + 1
    for i, video in enumerate(_youtube_names(valid_videos, 0x100)):
        ids = (1, 3) if i % 2 == 0 else (2, 5, 6)
        first = [min(k, frames - 1) for k in range(len(ids))]  # in listed (every 5th) frames
        all_frames, all_masks = render_clip(
            full, size, ids=ids, appear_at=[YOUTUBE_STRIDE * f for f in first], seed=seed * 1000 + 500 + i
        )
        for t in range(full):
            save_jpg(out / "all_frames" / "valid_all_frames" / "JPEGImages" / video / f"{t:05d}.jpg", all_frames[t])
        objects = {}
        for k, label in enumerate(ids):
            objects[str(label)] = {
                "category": "shape",
                "frames": [f"{YOUTUBE_STRIDE * t:05d}" for t in range(first[k], frames)],
            }
        meta["videos"][video] = {"objects": objects}
        for t in range(frames):
            frame = YOUTUBE_STRIDE * t
            save_jpg(out / "valid" / "JPEGImages" / video / f"{frame:05d}.jpg", all_frames[frame])
            new = [label for k, label in enumerate(ids) if first[k] == t]
            if new:
                labels = np.where(np.isin(all_masks[frame], new), all_masks[frame], 0)
                save_palette_png(out / "valid" / "Annotations" / video / f"{frame:05d}.png", labels)
    (out / "valid").mkdir(parents=True, exist_ok=True)
    (out / "valid" / "meta.json").write_text(json.dumps(meta, indent=1))
    return out


def make_bl30k_root(
    root: str | Path, videos: int = 2, frames: int = 6, size: tuple[int, int] = DEFAULT_SIZE,
    num_objects: int | Sequence[int] | None = 2, tiny_object: bool = True, seed: int = 0,
) -> Path:
    """BL30K/{JPEGImages,Annotations}/<video>/00000.jpg|png; with `tiny_object` the last object is 36 pixels."""
    out = Path(root) / "BL30K"
    for i in range(videos):
        video = f"a{i:04d}"
        clip = render_clip(frames, size, _objects_for(i, num_objects), seed=seed * 1000 + 600 + i,
                           tiny_last=tiny_object)
        _write_video(out / "JPEGImages" / video, out / "Annotations" / video, *clip,
                     [f"{t:05d}" for t in range(frames)])
    return out
