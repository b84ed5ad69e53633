"""One registry of dataset folders (util/layouts.py): the commands' defaults, the training layout checks and
the downloads all point at the same places."""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

import download_bl30k
import download_datasets
import eval_davis
import eval_davis_2016
import eval_youtube
import train
from dataset.util import LAYOUTS
from downloads import resize_youtube
from scripts import score_davis
from util import layouts


@pytest.mark.parametrize("name, root, expected", [
    ("davis17_trainval", "davis", "2017/trainval"),
    ("davis17_testdev", "davis17", "test-dev"),
    ("davis17_trainval", "davis16", "../2017/trainval"),
    ("youtube_train_480p", "youtube", "train_480p"),
])
def test_sub_path(name, root, expected):
    assert layouts.sub_path(name, root) == expected


def test_default_path_is_the_folder_next_to_the_code():
    assert layouts.default_path("davis17") == "../DAVIS/2017"  # the original README's layout
    assert layouts.default_path("bl30k") == "../BL30K"


def _defaults(parser) -> dict:
    return {action.dest: action.default for action in parser._actions}


def _downloaded() -> list[PurePosixPath]:
    """Every folder the download commands fill, relative to their --root."""
    targets = [job.target for job in download_datasets.PARTS.values()]
    targets += [download_datasets.RESIZED_YV[1], download_bl30k.TARGET]
    return [PurePosixPath(t) for t in targets]


def _under_a_download(path: str) -> bool:
    rel = PurePosixPath(path).relative_to(PurePosixPath(layouts.DATA_ROOT))
    return any(rel == t or t in rel.parents for t in _downloaded())


def test_training_reads_what_the_downloads_write():
    defaults = _defaults(train.get_args_parser())
    for name, (images, masks, flag) in LAYOUTS.items():
        root = defaults[flag.lstrip("-")]
        for sub in (images, masks):
            path = str(PurePosixPath(root, sub)) if sub else root
            assert _under_a_download(path), (name, path)


def test_the_evaluation_defaults_are_downloaded_folders():
    davis17 = _defaults(eval_davis.get_args_parser())["davis_path"]
    for folder, _ in eval_davis.SPLITS.values():
        assert _under_a_download(f"{davis17}/{folder}")
    davis16 = _defaults(eval_davis_2016.get_args_parser())["davis_path"]
    assert _under_a_download(davis16)
    assert _under_a_download(os.path.normpath(Path(davis16) / eval_davis_2016.DAVIS17_FROM_16))
    yv = _defaults(eval_youtube.get_args_parser())["yv_path"]
    assert _under_a_download(f"{yv}/valid")
    for path in score_davis.DEFAULT_DAVIS_PATH.values():
        assert _under_a_download(path)
    assert _under_a_download(str(resize_youtube.DEFAULT_SRC)) and _under_a_download(str(resize_youtube.DEFAULT_DST))


def test_a_folder_outside_the_downloads_is_noticed():
    assert not _under_a_download("../DAVIS/2018/trainval")
