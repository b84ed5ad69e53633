"""Resize YouTube-VOS train to 480p, the resolution STCN trains at.

Reads ``<src>/{JPEGImages,Annotations}/<video>/`` and writes the same tree under ``<dst>`` with the
shorter side at --size (the longer one truncated): frames with PIL's bicubic, saved as JPEG with
PIL's defaults (quality 75), palette masks nearest with their palette, as the original STCN's
resize_youtube.py made the train_480p its models were trained on. Videos are
processed in parallel; each is written to a temporary folder and renamed when finished, so a
rerun skips the videos already done. Top-level files (meta.json) are copied.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from downloads.resize import (
    DEFAULT_SIZE,
    DEFAULT_WORKERS,
    PARTIAL_PREFIX,
    ResizeError,
    check_destination,
    resize_file,
    run_parallel,
)
from util import layouts

FRAMES = layouts.FRAMES
MASKS = layouts.MASKS
DEFAULT_SRC = Path(layouts.default_path('youtube_train'))
DEFAULT_DST = Path(layouts.default_path('youtube_train_480p'))
JPEG_QUALITY = None  # PIL's defaults (quality 75): the original saved its frames without options


def _resize_video(task: tuple[Path, Path, str, int]) -> None:
    """Resize one video's masks, then its frames; each folder appears only when complete."""
    src, dst, video, size = task
    for sub in (MASKS, FRAMES):  # frames last: their folder marks the video as done
        in_dir, out_dir = src / sub / video, dst / sub / video
        if not in_dir.is_dir() or out_dir.is_dir():
            continue
        tmp_dir = dst / sub / (PARTIAL_PREFIX + video)
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
        tmp_dir.mkdir(parents=True)
        for path in sorted(in_dir.iterdir()):
            if path.is_file():
                resize_file(path, tmp_dir / path.name, size, jpeg_quality=JPEG_QUALITY)
        os.replace(tmp_dir, out_dir)


def resize_youtube(src: Path = DEFAULT_SRC, dst: Path = DEFAULT_DST, size: int = DEFAULT_SIZE,
                   workers: int = DEFAULT_WORKERS, progress: bool = True) -> int:
    """Resize every video not yet in ``dst``; returns how many videos were processed."""
    src, dst = Path(src), Path(dst)
    if not (src / FRAMES).is_dir():
        raise ResizeError(src / FRAMES, 'not found', 'point --src at a YouTube-VOS split folder')
    check_destination(src, dst, '--dst')
    videos = sorted(p.name for p in (src / FRAMES).iterdir()
                    if p.is_dir() and not p.name.startswith(PARTIAL_PREFIX))
    pending = [v for v in videos if not (dst / FRAMES / v).is_dir()]
    print(f'{len(videos)} videos in {src}, {len(videos) - len(pending)} already in {dst}, '
          f'resizing {len(pending)} with {workers} worker(s)', flush=True)
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():  # meta.json and friends
        if path.is_file() and not (dst / path.name).exists():
            shutil.copyfile(path, dst / path.name)
    run_parallel(_resize_video, [(src, dst, v, size) for v in pending], workers, progress)
    return len(pending)
