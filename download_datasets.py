"""Download the static image sets, DAVIS and YouTube-VOS into the layout the loaders read.

    python download_datasets.py                          # everything, into ../static ../DAVIS ...
    python download_datasets.py --only davis17 yv19_valid_all --yes

Each part is fetched, extracted, its archive deleted, and marked finished with a hidden marker
file in its folder, so a rerun skips it. YouTube-VOS 2019 train is then resized to train_480p.
BL30K is separate (download_bl30k.py): it needs about 1 TB.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from downloads.fetch import (
    GB,
    ArchiveJob,
    check_free_space,
    confirm,
    format_gb,
    free_gb_arg,
    is_done,
    mark_done,
    needed_bytes,
    run_archive_job,
)
from downloads.resize import DEFAULT_SIZE, DEFAULT_WORKERS
from downloads.resize_youtube import resize_youtube
from util import layouts
from util.outputs import run_command

FRAMES = (layouts.FRAMES,)
FRAMES_MASKS = (layouts.FRAMES, layouts.MASKS)

# Paths are relative to --root. download_gb: rough archive sizes, only for the free-space
# estimate. Archive names are unique so that a --mirror can be one flat folder.
PARTS: dict[str, ArchiveJob] = {job.name: job for job in (
    ArchiveJob('static', '1wUJq3HcLdN-z1t4CsUhjeZ9BVDb9YKLd',
               archive='static/static_data.zip',
               target=layouts.folder('static'), download_gb=2.0, strip_top=False),
    ArchiveJob('davis16', '198aRlh5CpAoFz0hfRgYbiNenn_K8DxWD',
               archive='DAVIS/DAVIS-data.zip',
               target=layouts.folder('davis16'), download_gb=2.0, expect=FRAMES_MASKS),
    ArchiveJob('davis17', '1kiaxrX_4GuW6NmiVuKGSGVoKGWjOdp6d',
               archive='DAVIS/2017/DAVIS-2017-trainval-480p.zip',
               target=layouts.folder('davis17_trainval'), download_gb=1.0, expect=FRAMES_MASKS),
    ArchiveJob('davis17_testdev', '1fmkxU2v9cQwyb62Tj1xFDdh2p4kDsUzD',
               archive='DAVIS/2017/DAVIS-2017-test-dev-480p.zip',
               target=layouts.folder('davis17_testdev'), download_gb=0.5, expect=FRAMES_MASKS),
    ArchiveJob('davis17_scribbles', '1JzIQSu36h7dVM8q0VoE4oZJwBXvrZlkl',
               archive='DAVIS/2017/DAVIS-2017-scribbles-trainval.zip',
               target=layouts.folder('davis17_trainval'), download_gb=0.1),
    ArchiveJob('yv19_train', '13Eqw0gVK-AO5B-cqvJ203mZ2vzWck9s4',
               archive='YouTube/yv2019_train.zip',
               target=layouts.folder('youtube_train'), download_gb=15.0, expect=FRAMES_MASKS),
    ArchiveJob('yv19_valid', '1o586Wjya-f2ohxYf9C1RlRH-gkrzGS8t',
               archive='YouTube/yv2019_valid.zip',
               target=layouts.folder('youtube_valid'), download_gb=2.0, expect=FRAMES_MASKS),
    ArchiveJob('yv19_valid_all', '1rWQzZcMskgpEQOZdJPJ7eTmLCBEIIpEN',
               archive='YouTube/all_frames/yv2019_valid_all_frames.zip',
               target=layouts.folder('youtube_valid_all'), download_gb=10.0, expect=FRAMES),
    ArchiveJob('yv18_valid', '1-QrceIl5sUNTKz7Iq0UsWC6NLZq7girr',
               archive='YouTube2018/yv2018_valid.zip',
               target=layouts.folder('youtube18_valid'), download_gb=2.0, expect=FRAMES_MASKS),
    ArchiveJob('yv18_valid_all', '1yVoHM6zgdcL348cFpolFcEl4IC1gorbV',
               archive='YouTube2018/all_frames/yv2018_valid_all_frames.zip',
               target=layouts.folder('youtube18_valid_all'), download_gb=10.0, expect=FRAMES),
)}
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
        formatter_class=argparse.RawDescriptionHelpFormatter)
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
    pending = [name for name in names if not part_done(root, name)]
    for name in names:
        if name not in pending:
            print(f'[{name}] already done, skipping')
    if not pending:
        print(f'nothing to do: all selected parts are in {root}')
        return 0

    extra_gb = RESIZED_YV_GB if RESIZED_YV[0] in pending else 0.0
    estimate = needed_bytes([PARTS[n] for n in pending], extra_gb)
    required = estimate if args.min_free_gb is None else args.min_free_gb * GB
    check_free_space(root, required, 'choose another --root, or pass --min_free_gb N to override '
                                     'the estimate')
    print(f'will download into {root.resolve()} (about {format_gb(estimate)} of disk needed):')
    for name in pending:
        print(f'  {name:18s} {DESCRIPTIONS[name]}')
    print('\nterms of use:')
    for key in dict.fromkeys(_terms_key(name) for name in pending):
        print(f'  - {TERMS[key]}')
    confirm('Do you accept these terms and want to start?', args.yes)

    for name in pending:
        run_archive_job(PARTS[name], root, mirror=args.mirror, keep_archive=args.keep_archives)
        if name == RESIZED_YV[0]:
            src, dst = root / PARTS[name].target, root / RESIZED_YV[1]
            print(f'[{name}] resizing {src} -> {dst} (shorter side {DEFAULT_SIZE})')
            resize_youtube(src, dst, DEFAULT_SIZE, args.workers)
            mark_done(dst, RESIZED_YV[2])
    print(f'finished: {", ".join(pending)} in {root}')
    return 0


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)

    # OSError (e.g. unwritable --root) and interrupts: one line (util/outputs.py)
    return run_command(lambda: run(args), resume_hint='rerun the same command to continue where it stopped')


if __name__ == '__main__':
    sys.exit(main())
