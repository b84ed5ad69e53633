"""Download BL30K (the synthetic pre-training set of MiVOS, used by STCN stage 1) into ../BL30K.

    python download_bl30k.py                 # all six segments, a to f
    python download_bl30k.py --only a b      # some of them (e.g. split across runs)

Each segment (a tar of about 115 GB) is downloaded, extracted and deleted before the next one
starts, and marked finished so that a rerun continues with the next segment. All of it needs
about 1 TB of free disk space (700 GB of data plus room for one archive while it is extracted).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from downloads.fetch import (
    ArchiveJob,
    check_free_space,
    confirm_plan,
    format_gb,
    free_gb_arg,
    is_done,
    needed_bytes,
    pending_steps,
    run_archive_job,
    run_download_command,
)
from util import layouts
from util.cli import HelpFormatter
from util.outputs import wrote_line

TARGET = layouts.folder('bl30k')
SEGMENT_GB = 115  # project README: "each segment is about 115GB in size"
SEGMENT_IDS = {
    'a': '1z9V5zxLOJLNt1Uj7RFqaP2FZWKzyXvVc',
    'b': '11-IzgNwEAPxgagb67FSrBdzZR7OKAEdJ',
    'c': '1ZfIv6GTo-OGpXpoKen1fUvDQ0A_WoQ-Q',
    'd': '1G4eXgYS2kL7_Cc0x3N1g1x7Zl8D_aU_-',
    'e': '1Y8q0V_oBwJIY27W_6-8CD1dRqV2gNTdE',
    'f': '1nawBAazf_unMv46qGBHhWcQ4JXZ5883r',
}
SEGMENTS = {
    letter: ArchiveJob(f'bl30k_{letter}', gdrive_id, f'{TARGET}/BL30K_{letter}.tar', TARGET,
                       SEGMENT_GB, expect=('JPEGImages', 'Annotations'))
    for letter, gdrive_id in SEGMENT_IDS.items()
}
RESUME_HINT = 'rerun the same command to continue with the unfinished segment'
TERMS = ('BL30K (https://github.com/hkchengrex/MiVOS) is rendered with Blender from ShapeNet '
         'objects and is meant for research; read the terms on the MiVOS page (ShapeNet\'s '
         'own terms of use apply to its models) and cite MiVOS when you use it.')


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Download BL30K segment by segment (download, extract, delete); reruns '
                    'continue after the last finished segment.',
        formatter_class=HelpFormatter)
    parser.add_argument('--root', type=Path, default=layouts.DATA_ROOT,
                        help=f'folder that receives {TARGET}/ (default: .., next to the code, '
                             'as the loaders expect)')
    parser.add_argument('--only', nargs='+', choices=list(SEGMENTS), metavar='SEGMENT',
                        default=list(SEGMENTS),
                        help='segments to fetch, among a b c d e f (default: all)')
    parser.add_argument('--min_free_gb', type=free_gb_arg, default=None,
                        help='free space required before starting (default: about 1 TB for all '
                             f'six segments, {SEGMENT_GB} GB per segment plus extraction room; '
                             '0 disables the check)')
    parser.add_argument('--yes', action='store_true',
                        help='accept the terms without asking (non-interactive use)')
    parser.add_argument('--keep_archives', action='store_true',
                        help='keep each tar after extraction (doubles the space needed)')
    parser.add_argument('--mirror', default=None,
                        help='http(s) folder holding BL30K_a.tar ... BL30K_f.tar to use instead '
                             'of Google Drive')
    return parser


def run(args: argparse.Namespace) -> int:
    target = args.root / TARGET
    jobs = {SEGMENTS[letter].name: SEGMENTS[letter] for letter in sorted(set(args.only))}
    pending = [jobs[name] for name in pending_steps(list(jobs), lambda name: is_done(target, name))]
    if not pending:
        print(f'nothing to do: the selected segments are in {target}')
        return 0
    estimate = needed_bytes(pending)
    plan = (f'will fetch {len(pending)} segment(s) of about {SEGMENT_GB} GB into {target.resolve()}, '
            f'one at a time (about {format_gb(estimate)} of disk needed)')
    confirm_plan(args.root, estimate, args.min_free_gb, plan, [TERMS], args.yes)
    for job in pending:
        if args.min_free_gb is None:  # the disk may have filled up since the first check
            check_free_space(args.root, needed_bytes([job]),
                             'choose another --root, or pass --min_free_gb 0 to skip this check')
        run_archive_job(job, args.root, mirror=args.mirror, keep_archive=args.keep_archives)
    print(wrote_line((', '.join(job.name for job in pending), target)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_download_command(get_args_parser(), argv, run, RESUME_HINT)


if __name__ == '__main__':
    sys.exit(main())
