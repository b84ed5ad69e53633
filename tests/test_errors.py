"""The one base of the user-facing errors (util/errors.py) and the one reporter (util/outputs.run_command)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from dataset.util import DatasetLayoutError
from downloads.fetch import DownloadError
from downloads.resize import ResizeError
from evaluation.davis_scoring import ScoringError
from model.checkpoint import CheckpointError
from model.network import CheckpointMismatchError
from model.resnet import WeightsUnavailableError
from training.checkpoints import SaveError
from training.config import ConfigError
from training.trainer import NonFiniteLossError
from util.device import DeviceError, resolve_device
from util.errors import UserError, format_error
from util.io import DataError, single_object_mask
from util.outputs import run_command

ALL = [DataError, DeviceError, CheckpointMismatchError, WeightsUnavailableError, CheckpointError, DatasetLayoutError,
       ConfigError, NonFiniteLossError, SaveError, ScoringError, DownloadError, ResizeError]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_user_facing_error_has_where_problem_fix(cls):
    exc = cls("some/file.png", "is broken", "replace it")
    assert isinstance(exc, UserError)
    assert (exc.where, exc.problem, exc.fix) == ("some/file.png", "is broken", "replace it")
    assert str(exc) == "some/file.png: is broken; replace it"
    copy = pickle.loads(pickle.dumps(exc))  # crosses process boundaries (DataLoader / Pool workers)
    assert type(copy) is cls and str(copy) == str(exc)


def test_format_leaves_out_an_empty_fix():
    assert format_error("--lr 0", "must be positive") == "--lr 0: must be positive"
    assert str(ConfigError("--lr 0", "must be positive")) == "--lr 0: must be positive"


def test_run_command_reports_any_user_error_in_one_line(capsys):
    def body() -> int:
        raise ScoringError("results/", "no video folders\n in the results folder", "run inference first")

    assert run_command(body, prefix="[rank 1] ") == 1
    err = capsys.readouterr().err
    assert err == "error: [rank 1] results/: no video folders in the results folder; run inference first\n"


def test_a_missing_device_names_the_flag():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError) as info:
        resolve_device("cuda")
    assert info.value.where == "--device cuda" and "CUDA is not available" in info.value.problem


def test_davis_2016_single_object_is_every_non_zero_pixel():
    grey = np.array([[0, 1, 127], [128, 255, 0]], np.uint8)
    assert single_object_mask(grey).tolist() == [[False, True, True], [True, True, False]]
    rgb = np.zeros((1, 2, 4), np.uint8)
    rgb[0, 1, 2] = 3  # blue only
    rgb[0, 0, 3] = 255  # alpha only: not an object
    assert single_object_mask(rgb).tolist() == [[False, True]]
