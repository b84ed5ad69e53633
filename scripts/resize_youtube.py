"""Resize YouTube-VOS train to 480p, the resolution STCN trains at.

    python scripts/resize_youtube.py --src ../YouTube/train --dst ../YouTube/train_480p

Writes the same JPEGImages/Annotations tree with the shorter side at --size, as the original STCN's
resize_youtube.py made its train_480p; finished videos are skipped on a rerun.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ''):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from downloads.resize import resize_parser, run_resize_command  # noqa: E402
from downloads.resize_youtube import DEFAULT_DST, DEFAULT_SRC, resize_youtube  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    return resize_parser('Resize a YouTube-VOS split (JPEGImages + Annotations) to a shorter side of '
                         '--size pixels, skipping videos already done.',
                         [('--src', {'default': DEFAULT_SRC, 'help': 'input split folder'}),
                          ('--dst', {'default': DEFAULT_DST, 'help': 'output split folder'})])


def resize(args: argparse.Namespace) -> str:
    count = resize_youtube(args.src, args.dst, args.size, args.workers, not args.quiet)
    return f'resized {count} videos from {args.src} into {args.dst} (shorter side {args.size})'


def main(argv: list[str] | None = None) -> int:
    return run_resize_command(get_args_parser(), argv, resize,
                              resume_hint='rerun the same command to continue (finished videos are kept and skipped)')


if __name__ == '__main__':
    sys.exit(main())
