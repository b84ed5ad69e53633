"""Download a released model to saves/.

    python download_model.py                      # s012 (with BL30K pre-training) -> saves/stcn.pth
    python download_model.py --model s03          # s03 (without BL30K)            -> saves/stcn_s03.pth
    python download_model.py --model s2m          # interactive: scribble-to-mask  -> saves/s2m.pth
    python download_model.py --model fusion_stcn  # interactive: fusion for STCN   -> saves/fusion_stcn.pth

A file already present is kept when it is the expected model (the released keys and tensor shapes) and
matches the sha256 recorded in ``<file>.sha256`` at its first download; anything else is reported
and replaced only with --force. A downloaded file is checked the same way before it is kept.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from downloads.fetch import run_download_command
from downloads.model import DEFAULT_MODEL, MODELS, ensure_model
from util.cli import HelpFormatter

RESUME_HINT = 'rerun the same command to continue (a partial download is kept as .part)'


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Download a released model (skipped when already present and intact).',
        formatter_class=HelpFormatter)
    parser.add_argument('--model', choices=sorted(MODELS), default=DEFAULT_MODEL,
                        help='; '.join(f'{k}: {v.description}' for k, v in MODELS.items())
                        + f' (default: {DEFAULT_MODEL})')
    parser.add_argument('--output', type=Path, default=None,
                        help='where to save it (default: '
                             + ', '.join(f'{v.default_path} for {k}' for k, v in MODELS.items()) + ')')
    parser.add_argument('--source', default=None,
                        help='Google Drive id or http(s) URL to fetch from instead of the '
                             'official Google Drive file (e.g. a mirror)')
    parser.add_argument('--force', action='store_true',
                        help='download again even if the file is present, replacing it once '
                             'the new copy is complete')
    return parser


def run(args: argparse.Namespace) -> int:
    path = ensure_model(args.output, args.model, source=args.source, force=args.force)
    use = MODELS[args.model].use.format(path=path)
    print(f'the model is {path}; evaluate with, e.g.: {use}')
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_download_command(get_args_parser(), argv, run, RESUME_HINT)


if __name__ == '__main__':
    sys.exit(main())
