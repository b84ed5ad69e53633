"""Resize every image under a folder so that its shorter side has a given length.

    python scripts/resize_length.py ../static/BIG_small ../static/BIG_480 --size 480

Images bicubic, masks nearest with their palette; the folder tree is mirrored and files already in
the output are skipped, so an interrupted run can simply be restarted (downloads/resize.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ''):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from downloads.resize import add_resize_args, parse_resize_args, resize_folder  # noqa: E402
from util.outputs import run_command  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Resize all images under a folder to a given shorter side (masks: nearest, '
                    'palette kept); files already in the output are skipped.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('src', type=Path, help='input folder')
    parser.add_argument('dst', type=Path, help='output folder (mirrors the input tree)')
    add_resize_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_resize_args(get_args_parser(), argv)

    def body() -> int:
        count = resize_folder(args.src, args.dst, args.size, args.workers, not args.quiet)
        print(f'resized {count} files from {args.src} into {args.dst} (shorter side {args.size})')
        return 0

    return run_command(body, resume_hint='rerun the same command to continue (finished files are kept and skipped)')


if __name__ == '__main__':
    sys.exit(main())
