"""A small synthetic sample video in the generic layout (JPEGImages/<video>/*.jpg + first-frame
Annotations): two textured shapes move over a textured background; the first frame's mask is a
palette PNG with objects 1 and 2, for the demo and for trying the tools without a dataset.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from util.outputs import OutputDir

MIN_SIDE = 2  # pixels: --video_file crops to even sizes (4:2:0), which leaves nothing of a 1-pixel side
DAVIS_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128, 0, 128, 128]


def render(t: int, h: int, w: int, rng_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(rng_seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(40, 90, size=(h // 8 + 1, w // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:h, :w]
    img = (base + 30 * np.sin((xx + 3 * t) / 9.0)[..., None]).clip(0, 255).astype(np.uint8)
    mask = np.zeros((h, w), dtype=np.uint8)
    r = min(h, w) // 7
    cy, cx = h * (0.5 + 0.25 * math.sin(t / 6)), w * (0.25 + 0.5 * t / 60)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    stripes = (xx % 7 < 3)[..., None] * np.array([0, 40, 0])  # texture that moves with nothing
    img[disc] = (np.array([220, 60, 40]) + stripes[disc]).astype(np.uint8)
    mask[disc] = 1
    sy, sx = int(h * 0.2 + 2 * t) % (h - 2 * r), int(w * 0.7 - 3 * t) % (w - 2 * r)
    square = np.zeros_like(disc)
    square[sy : sy + 2 * r, sx : sx + 2 * r] = True
    square &= ~disc
    bands = (yy % 6 < 3)[..., None] * np.array([0, 60, 0])
    img[square] = (np.array([40, 90, 210]) + bands[square]).astype(np.uint8)
    mask[square] = 2
    return img, mask


def write_sample(output: Path, name: str = "shapes", frames: int = 30, height: int = 240, width: int = 427) -> Path:
    """Write the sample video; returns the dataset folder (with JPEGImages/ and Annotations/)."""
    images = output / "JPEGImages" / name
    annotations = output / "Annotations" / name
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        img, mask = render(t, height, width)
        Image.fromarray(img).save(images / f"{t:05d}.jpg", quality=95)
        if t == 0:
            png = Image.fromarray(mask).convert("P")
            png.putpalette(DAVIS_PALETTE + [0] * (768 - len(DAVIS_PALETTE)))
            png.save(annotations / f"{t:05d}.png")
    return output


def write_video_file(output: Path, name: str = "shapes", fps: float = 24.0) -> Path:
    """Encode the frames written by `write_sample` into <output>/<name>.mp4 and copy the first mask
    to <output>/<name>_first.png (both cropped to even sizes, as 4:2:0 video needs); returns the video."""
    from util.video import VideoWriter  # noqa: PLC0415 - only this option needs PyAV

    frames = sorted((output / "JPEGImages" / name).glob("*.jpg"))
    path = output / f"{name}.mp4"
    with VideoWriter(path, fps=fps) as writer:
        for f in frames:
            with Image.open(f) as img:
                writer.write(np.asarray(img.convert("RGB")))
    with Image.open(output / "Annotations" / name / f"{frames[0].stem}.png") as mask:
        w, h = mask.size
        mask.crop((0, 0, w // 2 * 2, h // 2 * 2)).save(output / f"{name}_first.png")  # as the video (even size)
    return path


def write_sample_output(output: Path, flag: str = "--output", name: str = "shapes", frames: int = 30, height: int = 240,
                        width: int = 427, video_file: bool = False, overwrite: bool = False) -> Path:
    """`write_sample` (and `write_video_file`) under the output contract: `output` must be
    absent, empty or a previous result (replaced whole), or any folder with `overwrite` (files of the same
    names replaced, nothing else touched); written into a partial folder beside it, moved in when complete."""
    out = OutputDir(output, flag, (), overwrite)
    with out, out.partial() as tmp:
        write_sample(tmp, name, frames, height, width)
        if video_file:
            write_video_file(tmp, name)
    return out.path
