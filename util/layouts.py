"""Where the datasets live: the one registry of dataset folders and the sub-paths read inside them.

Every folder is written once here, relative to `DATA_ROOT` (the original STCN README's layout: the
datasets sit next to the code, in ``..``). Evaluation, training and its layout checks, the downloads and
the scorer all read them from here, so they cannot drift apart.

    ../static/                              static image sets (stage 0)
    ../BL30K/{JPEGImages,Annotations}/      BL30K (stage 1)
    ../DAVIS/2016/                          DAVIS 2016 (evaluation)
    ../DAVIS/2017/trainval/, test-dev/      DAVIS 2017 (training: trainval 480p; evaluation)
    ../YouTube/train/, train_480p/          YouTube-VOS 2019 train (training reads train_480p)
    ../YouTube/valid/, all_frames/          YouTube-VOS 2019 valid (evaluation)
    ../YouTube2018/                         YouTube-VOS 2018 valid (evaluation)
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

DATA_ROOT = Path("..")  # default of download_datasets.py --root, download_bl30k.py --root

FRAMES = "JPEGImages"
MASKS = "Annotations"
RESOLUTION = "480p"  # DAVIS's frames and masks: <root>/{JPEGImages,Annotations}/480p

# dataset -> its folder relative to DATA_ROOT
FOLDERS: dict[str, str] = {
    "static": "static",
    "bl30k": "BL30K",
    "davis": "DAVIS",
    "davis16": "DAVIS/2016",
    "davis17": "DAVIS/2017",
    "davis17_trainval": "DAVIS/2017/trainval",
    "davis17_testdev": "DAVIS/2017/test-dev",
    "youtube": "YouTube",  # 2019
    "youtube_train": "YouTube/train",
    "youtube_train_480p": "YouTube/train_480p",
    "youtube_valid": "YouTube/valid",
    "youtube_valid_all": "YouTube/all_frames/valid_all_frames",
    "youtube18": "YouTube2018",
    "youtube18_valid": "YouTube2018/valid",
    "youtube18_valid_all": "YouTube2018/all_frames/valid_all_frames",
}


def folder(name: str) -> str:
    """`name`'s folder relative to DATA_ROOT, e.g. "DAVIS/2017/trainval"."""
    return FOLDERS[name]


def default_path(name: str) -> str:
    """`name`'s folder in the default layout, as a command-line default, e.g. "../DAVIS/2017"."""
    return str(DATA_ROOT / FOLDERS[name])


def sub_path(name: str, root: str) -> str:
    """`name`'s folder relative to `root`'s (e.g. sub_path("davis17_trainval", "davis") == "2017/trainval";
    siblings give "../2017/trainval")."""
    return PurePosixPath(os.path.relpath(FOLDERS[name], FOLDERS[root])).as_posix()
