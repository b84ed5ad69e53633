"""Download the static image sets, DAVIS and YouTube-VOS into the layout the loaders read.

    python download_datasets.py                          # everything, into ../static ../DAVIS ...
    python download_datasets.py --only davis17 yv19_valid_all --yes

Each part is fetched, extracted, its archive deleted, and marked finished with a hidden marker
file in its folder, so a rerun skips it. YouTube-VOS 2019 train is then resized to train_480p.
BL30K is separate (download_bl30k.py): it needs about 1 TB.
"""
from __future__ import annotations

import argparse
import posixpath
import sys
from pathlib import Path

from downloads.fetch import (
    ArchiveJob,
    confirm_plan,
    format_gb,
    free_gb_arg,
    is_done,
    mark_done,
    needed_bytes,
    pending_steps,
    run_archive_job,
    run_download_command,
)
from downloads.resize import DEFAULT_SIZE, DEFAULT_WORKERS
from downloads.resize_youtube import resize_youtube
from util import layouts
from util.cli import HelpFormatter
from util.outputs import wrote_line

FRAMES = (layouts.FRAMES,)
FRAMES_MASKS = (layouts.FRAMES, layouts.MASKS)

# name -> Google Drive id of its archive
GDRIVE_IDS = {
    'static': '1wUJq3HcLdN-z1t4CsUhjeZ9BVDb9YKLd',
    'davis16': '198aRlh5CpAoFz0hfRgYbiNenn_K8DxWD',
    'davis17': '1kiaxrX_4GuW6NmiVuKGSGVoKGWjOdp6d',
    'davis17_testdev': '1fmkxU2v9cQwyb62Tj1xFDdh2p4kDsUzD',
    'davis17_scribbles': '1JzIQSu36h7dVM8q0VoE4oZJwBXvrZlkl',
    'yv19_train': '13Eqw0gVK-AO5B-cqvJ203mZ2vzWck9s4',
    'yv19_valid': '1o586Wjya-f2ohxYf9C1RlRH-gkrzGS8t',
    'yv19_valid_all': '1rWQzZcMskgpEQOZdJPJ7eTmLCBEIIpEN',
    'yv18_valid': '1-QrceIl5sUNTKz7Iq0UsWC6NLZq7girr',
    'yv18_valid_all': '1yVoHM6zgdcL348cFpolFcEl4IC1gorbV',
}
# (name, dataset folder it is extracted into (`util.layouts`), rough archive size in GB for the
# free-space estimate, entries the folder must hold afterwards, archive file). The archive is saved
# beside that folder, in its parent; the names are unique so that a --mirror can be one flat folder.
PART_TABLE: tuple[tuple[str, str, float, tuple[str, ...], str], ...] = (
    ('static', 'static', 2.0, (), 'static/static_data.zip'),
    ('davis16', 'davis16', 2.0, FRAMES_MASKS, 'DAVIS-data.zip'),
    ('davis17', 'davis17_trainval', 1.0, FRAMES_MASKS, 'DAVIS-2017-trainval-480p.zip'),
    ('davis17_testdev', 'davis17_testdev', 0.5, FRAMES_MASKS, 'DAVIS-2017-test-dev-480p.zip'),
    ('davis17_scribbles', 'davis17_trainval', 0.1, ('Scribbles',), 'DAVIS-2017-scribbles-trainval.zip'),
    ('yv19_train', 'youtube_train', 15.0, FRAMES_MASKS, 'yv2019_train.zip'),
    ('yv19_valid', 'youtube_valid', 2.0, FRAMES_MASKS, 'yv2019_valid.zip'),
    ('yv19_valid_all', 'youtube_valid_all', 10.0, FRAMES, 'yv2019_valid_all_frames.zip'),
    ('yv18_valid', 'youtube18_valid', 2.0, FRAMES_MASKS, 'yv2018_valid.zip'),
    ('yv18_valid_all', 'youtube18_valid_all', 10.0, FRAMES, 'yv2018_valid_all_frames.zip'),
)
UNWRAPPED = ('static',)  # archives whose top level is the content itself: never stripped


def _part(name: str, dataset: str, download_gb: float, expect: tuple[str, ...], archive: str) -> ArchiveJob:
    """The `ArchiveJob` of one `PART_TABLE` row (paths relative to --root)."""
    target = layouts.folder(dataset)
    return ArchiveJob(name, GDRIVE_IDS[name], archive=posixpath.join(posixpath.dirname(target), archive),
                      target=target, download_gb=download_gb, strip_top=name not in UNWRAPPED, expect=expect)


PARTS: dict[str, ArchiveJob] = {row[0]: _part(*row) for row in PART_TABLE}
DESCRIPTIONS = {
    'static': 'static image sets: FSS-1000, DUTS-TR/TE, ECSSD, BIG_small, HRSOD_small (stage 0)',
    'davis16': 'DAVIS 2016 (evaluation; its video list comes with davis17)',
    'davis17': 'DAVIS 2017 trainval, 480p (training and evaluation)',
    'davis17_testdev': 'DAVIS 2017 test-dev, 480p (evaluation)',
    'davis17_scribbles': 'DAVIS 2017 trainval scribbles (interactive use)',
    'yv19_train': 'YouTube-VOS 2019 train, then resized to train_480p (training)',
    'yv19_valid': 'YouTube-VOS 2019 valid (evaluation)',
    'yv19_valid_all': 'YouTube-VOS 2019 valid, all frames (evaluation)',
    'yv18_valid': 'YouTube-VOS 2018 valid (evaluation)',
    'yv18_valid_all': 'YouTube-VOS 2018 valid, all frames (evaluation)',
}
GROUPS = {
    'davis': ('davis16', 'davis17', 'davis17_testdev', 'davis17_scribbles'),
    'yv19': ('yv19_train', 'yv19_valid', 'yv19_valid_all'),
    'yv18': ('yv18_valid', 'yv18_valid_all'),
}
TERMS = {
    'static': 'Static image sets (FSS-1000, DUTS, ECSSD, BIG, HRSOD), as repackaged by the STCN '
              'authors: each keeps the terms of its original publisher (academic research use); '
              'cite the original papers.',
    'davis': 'DAVIS (https://davischallenge.org): read the terms of use on the DAVIS website and '
             'cite the DAVIS 2016/2017 papers.',
    'yv': 'YouTube-VOS (https://youtube-vos.org): for non-commercial research only; the videos '
          'belong to their YouTube owners and the annotations are licensed CC BY 4.0 by the '
          'organisers. Read the terms on the website.',
}
RESUME_HINT = 'rerun the same command to continue where it stopped'
# yv19_train is only finished once resized; this marker (in train_480p) records that
RESIZED_YV = ('yv19_train', layouts.folder('youtube_train_480p'), 'resize')
RESIZED_YV_GB = 6.0  # train_480p


def _terms_key(name: str) -> str:
    return 'davis' if name.startswith('davis') else 'yv' if name.startswith('yv') else name


def expand_parts(selected: list[str] | None) -> list[str]:
    """Part names in canonical order from names and group names (all when none given)."""
    if not selected:
        return list(PARTS)
    wanted = set()
    for name in selected:
        wanted.update(GROUPS.get(name, (name,)))
    return [name for name in PARTS if name in wanted]


def part_done(root: Path, name: str) -> bool:
    job = PARTS[name]
    done = is_done(root / job.target, job.name)
    if name == RESIZED_YV[0]:
        done = done and is_done(root / RESIZED_YV[1], RESIZED_YV[2])
    return done


def get_args_parser() -> argparse.ArgumentParser:
    parts = '\n'.join(f'  {name:18s} {DESCRIPTIONS[name]}' for name in PARTS)
    groups = '\n'.join(f'  {name:18s} {" ".join(members)}' for name, members in GROUPS.items())
    parser = argparse.ArgumentParser(
        description='Download the STCN training/evaluation datasets (not BL30K: see '
                    'download_bl30k.py). Reruns skip finished parts.',
        epilog=f'parts:\n{parts}\ngroups:\n{groups}',
        formatter_class=HelpFormatter)
    parser.add_argument('--root', type=Path, default=layouts.DATA_ROOT,
                        help='folder that receives static/ DAVIS/ YouTube/ YouTube2018/ '
                             '(default: .., next to the code, as the loaders expect)')
    parser.add_argument('--only', nargs='+', metavar='PART',
                        choices=list(PARTS) + list(GROUPS),
                        help='download only these parts or groups (default: all; see below)')
    parser.add_argument('--yes', action='store_true',
                        help='accept the datasets\' terms without asking (non-interactive use)')
    parser.add_argument('--list', action='store_true', help='show parts and their state, then exit')
    parser.add_argument('--min_free_gb', type=free_gb_arg, default=None,
                        help='free space required before starting (default: an estimate for '
                             'the selected parts; 0 disables the check)')
    parser.add_argument('--keep_archives', action='store_true',
                        help='keep the downloaded archives after extraction')
    parser.add_argument('--mirror', default=None,
                        help='http(s) folder holding the archives under the file names this '
                             'script gives them (see --list) to use instead of Google Drive')
    parser.add_argument('--workers', type=int, default=DEFAULT_WORKERS,
                        help=f'processes for the YouTube-VOS resize (default: {DEFAULT_WORKERS})')
    return parser


def run(args: argparse.Namespace) -> int:
    root = args.root
    names = expand_parts(args.only)
    if args.list:
        for name in PARTS:
            state = 'done' if part_done(root, name) else 'to do'
            job = PARTS[name]
            print(f'{name:18s} {state:6s} {root / job.target}  (archive: {Path(job.archive).name})')
        return 0
    pending = pending_steps(names, lambda name: part_done(root, name))
    if not pending:
        print(f'nothing to do: all selected parts are in {root}')
        return 0

    extra_gb = RESIZED_YV_GB if RESIZED_YV[0] in pending else 0.0
    estimate = needed_bytes([PARTS[n] for n in pending], extra_gb)
    plan = [f'will download into {root.resolve()} (about {format_gb(estimate)} of disk needed):']
    plan += [f'  {name:18s} {DESCRIPTIONS[name]}' for name in pending]
    terms = [TERMS[key] for key in dict.fromkeys(_terms_key(name) for name in pending)]
    confirm_plan(root, estimate, args.min_free_gb, '\n'.join(plan), terms, args.yes)

    for name in pending:
        run_archive_job(PARTS[name], root, mirror=args.mirror, keep_archive=args.keep_archives)
        if name == RESIZED_YV[0]:
            src, dst = root / PARTS[name].target, root / RESIZED_YV[1]
            print(f'[{name}] resizing {src} -> {dst} (shorter side {DEFAULT_SIZE})')
            resize_youtube(src, dst, DEFAULT_SIZE, args.workers)
            mark_done(dst, RESIZED_YV[2])
    print(wrote_line(*((name, [root / PARTS[name].target, *([root / RESIZED_YV[1]] if name == RESIZED_YV[0] else [])])
                       for name in pending)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_download_command(get_args_parser(), argv, run, RESUME_HINT)


if __name__ == '__main__':
    sys.exit(main())
