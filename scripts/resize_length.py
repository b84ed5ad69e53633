"""Resize every image under a folder so that its shorter side has a given length.

    python scripts/resize_length.py ../static/BIG_small ../static/BIG_480 --size 480

Images bicubic, masks nearest with their palette; the folder tree is mirrored and files already in
the output are skipped, so an interrupted run can simply be restarted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ''):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from downloads.resize import resize_folder, resize_parser, run_resize_command  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    return resize_parser('Resize all images under a folder to a given shorter side (masks: nearest, '
                         'palette kept); files already in the output are skipped.',
                         [('src', {'help': 'input folder'}),
                          ('dst', {'help': 'output folder (mirrors the input tree)'})])


def resize(args: argparse.Namespace) -> str:
    count = resize_folder(args.src, args.dst, args.size, args.workers, not args.quiet)
    return f'resized {count} files from {args.src} into {args.dst} (shorter side {args.size})'


def main(argv: list[str] | None = None) -> int:
    return run_resize_command(get_args_parser(), argv, resize,
                              resume_hint='rerun the same command to continue (finished files are kept and skipped)')


if __name__ == '__main__':
    sys.exit(main())
