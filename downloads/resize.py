"""Resize every image under a folder so that its shorter side has a given length.

The folder tree is mirrored into the output. Images are resampled with PIL's bicubic; masks (palette
images, PIL mode 'P', or anything under an ``Annotations`` folder) with nearest neighbour, keeping
their mode and palette so object ids survive. The longer side is truncated (torchvision's rule, the
one the evaluation uses). Other files are copied. Files already in the output are skipped, so an
interrupted run can simply be restarted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from PIL import Image

from util.atomic import atomic_path
from util.cli import HelpFormatter
from util.errors import UserError
from util.io import DataError, resized_shape
from util.outputs import check_not_input, probe_writable, run_command

DEFAULT_SIZE = 480  # evaluation and main training run at 480p
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
MASK_FOLDER = 'Annotations'
JPEG_QUALITY = 95  # None in `resize_file`: PIL's defaults (quality 75)
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)
PARTIAL_PREFIX = '.partial_'


class ResizeError(UserError, RuntimeError):
    """An input that cannot be resized (`where` names it)."""


def target_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the shorter side equal to ``size``, the longer one ``int(size * long / short)``.

    The evaluation's rule (`util.io.resized_shape`, truncated as torchvision's Resize), which is also
    the original STCN's resize_youtube.py: its ``int(w * 480 / min(w, h))`` gives the same sizes
    wherever its float ratio does not drop the shorter side to 479.
    """
    h, w = resized_shape(height, width, size)
    return w, h


def is_mask(path: Path, image: Image.Image) -> bool:
    return image.mode == 'P' or MASK_FOLDER in Path(path).parts


def resize_image(image: Image.Image, size: int, mask: bool) -> Image.Image:
    """Resize so the shorter side is ``size``; masks keep mode (and palette) via nearest."""
    new_size = target_size(*image.size, size)
    if new_size == image.size:
        return image.copy()
    return image.resize(new_size, Image.Resampling.NEAREST if mask else Image.Resampling.BICUBIC)


def resize_file(src: Path, dst: Path, size: int, jpeg_quality: int | None = JPEG_QUALITY) -> None:
    """Resize one image (or copy any other file) to ``dst``, written under a temporary name.

    jpeg_quality: of JPEG outputs; None saves with PIL's defaults (quality 75).
    """
    src, dst = Path(src), Path(dst)
    if src.suffix.lower() not in IMAGE_EXTENSIONS:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return
    try:
        with Image.open(src) as image:
            image.load()
            out = resize_image(image, size, is_mask(src, image))
            file_format = image.format or Image.registered_extensions()[src.suffix.lower()]
    except (OSError, ValueError, KeyError) as e:
        raise ResizeError(src, f'could not resize ({e})', 'replace or remove the file') from None
    options = {'quality': jpeg_quality} if file_format == 'JPEG' and jpeg_quality is not None else {}
    with atomic_path(dst) as tmp:
        out.save(tmp, format=file_format, **options)


def _resize_pair(task: tuple[Path, Path, int]) -> None:
    resize_file(*task)


def run_parallel(func: Callable, tasks: Sequence, workers: int, progress: bool) -> None:
    """``func`` over ``tasks`` in a process pool (in-process for one worker), with progress."""
    import progressbar

    bar = progressbar.ProgressBar(max_value=len(tasks), fd=sys.stderr) if progress else None
    if workers <= 1 or len(tasks) <= 1:
        results: Iterable = map(func, tasks)
        pool = None
    else:
        pool = Pool(min(workers, len(tasks)), initializer=ignore_sigint)
        results = pool.imap_unordered(func, tasks)
    try:
        for done, _ in enumerate(results, 1):
            if bar is not None:
                bar.update(done)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if bar is not None:
            bar.finish()


def ignore_sigint() -> None:
    """Pool workers leave Ctrl-C (sent to the whole process group) to the main process, which stops them."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def check_destination(src: Path, dst: Path, flag: str) -> None:
    """The output contract for a mirrored tree: never an input, never a file, writable.

    Nothing already in ``dst`` is replaced (finished files are skipped), so an existing ``dst`` is fine.
    """
    if dst.exists() and not dst.is_dir():
        raise DataError(dst, 'exists and is a file, not a folder', f'choose another {flag}')
    check_not_input(dst, flag, [src])
    probe_writable(dst, flag)


def resize_folder(src: Path, dst: Path, size: int = DEFAULT_SIZE, workers: int = DEFAULT_WORKERS,
                  progress: bool = True) -> int:
    """Mirror ``src`` into ``dst`` with every image resized; returns the number of files written."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise ResizeError(src, 'not a folder', 'pass the folder to resize')
    check_destination(src, dst, 'dst')
    tasks = []
    for path in sorted(src.rglob('*')):
        if path.is_file() and not path.name.startswith(PARTIAL_PREFIX):
            out = dst / path.relative_to(src)
            if not out.exists():
                tasks.append((path, out, size))
    run_parallel(_resize_pair, tasks, workers, progress)
    return len(tasks)


def add_resize_args(parser: argparse.ArgumentParser) -> None:
    """--size, --workers and --quiet, the options of both resize commands."""
    parser.add_argument('--size', type=int, default=DEFAULT_SIZE, help='shorter side in pixels')
    parser.add_argument('--workers', type=int, default=DEFAULT_WORKERS, help='parallel processes')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def resize_parser(description: str, paths: Sequence[tuple[str, dict[str, Any]]]) -> argparse.ArgumentParser:
    """The parser of a resize command (defaults shown in --help): its folder arguments, given as
    ``(name, add_argument options)`` and read as paths, then `add_resize_args`."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    for name, options in paths:
        parser.add_argument(name, type=Path, **options)
    add_resize_args(parser)
    return parser


def parse_resize_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse `argv`; a --size that is not positive ends as an argparse usage error (exit 2)."""
    args = parser.parse_args(argv)
    if args.size <= 0:
        parser.error('--size must be positive')
    return args


def run_resize_command(parser: argparse.ArgumentParser, argv: list[str] | None,
                       resize: Callable[[argparse.Namespace], str], resume_hint: str) -> int:
    """The main() of a resize command: parse `argv`, run ``resize(args)`` and print the summary it
    returns; user errors, write errors and interrupts end in one line (`util.outputs.run_command`)."""
    args = parse_resize_args(parser, argv)

    def body() -> int:
        print(resize(args))
        return 0

    return run_command(body, resume_hint=resume_hint)
