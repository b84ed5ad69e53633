"""scripts/demo.py (`bash scripts/demo.sh`): a newcomer's first command, offline included."""
from __future__ import annotations

import re

import torch

import downloads.fetch as fetch
from model.network import STCN
from scripts import demo
from tests.helpers import file_hashes, one_error, run_main


def demo_flags() -> set[str]:
    return {flag for action in demo.get_args_parser()._actions for flag in action.option_strings}


def test_offline_error_says_how_to_try_without_the_weights(tmp_path, capsys, monkeypatch):
    def refused(address, timeout):
        raise ConnectionRefusedError("Connection refused")
    monkeypatch.setattr(fetch.socket, "create_connection", refused)
    monkeypatch.setattr(fetch.urllib.request, "getproxies", dict)
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_main(demo.main, ["--data", tmp_path / "d", "--output", tmp_path / "o"], capsys)
    line = one_error(rc, err, "--random_weights", "--size")
    assert set(re.findall(r"--\w+", line)) <= demo_flags(), line  # every suggestion is a real flag
    assert not (tmp_path / "saves" / "stcn.pth").exists()


def test_random_weights_run_every_step_at_a_small_size(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # eval_generic.py runs as a child process
    rc, out, err = run_main(demo.main, ["--random_weights", "--size", "32", "--device", "cpu",
                                        "--data", tmp_path / "d", "--output", tmp_path / "o"], capsys)
    assert rc == 0, err
    assert "meaningless" in out
    masks = list((tmp_path / "o").glob("*/*.png"))
    assert masks and list((tmp_path / "o" / "overlays").glob("*.mp4"))
    assert not list(tmp_path.glob("*.pth")) and not (tmp_path / "saves").exists()  # the weights were temporary


def test_own_weights_are_used_as_they_are_and_nothing_is_written_beside_them(tmp_path, capsys, monkeypatch):
    """A file given to --model is used as it is: no sha256 sidecar written beside it (that made the demo refuse
    the file once the user changed it, suggesting a --force the demo does not have)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mine = tmp_path / "mine"
    mine.mkdir()
    torch.manual_seed(1)
    torch.save(STCN(single_object=False, pretrained=False).state_dict(), mine / "my.pth")
    before = file_hashes(mine / "my.pth")
    argv = ["--model", mine / "my.pth", "--size", "32", "--device", "cpu", "--data", tmp_path / "d"]
    rc, _, err = run_main(demo.main, argv + ["--output", tmp_path / "o"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in mine.iterdir()) == ["my.pth"] and file_hashes(mine / "my.pth") == before


def test_random_weights_and_model_together_are_refused(tmp_path, capsys):
    rc, _, err = run_main(demo.main, ["--random_weights", "--model", tmp_path / "x.pth",
                                      "--data", tmp_path / "d", "--output", tmp_path / "o"], capsys)
    one_error(rc, err, "--random_weights")
    assert not (tmp_path / "d").exists()
