"""`--help`: instant (no torch import) for every command, defaults shown,
the description's examples printed as written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import eval_generic
import segment_video
from scripts import make_sample_video
from tests.helpers import child_env

ROOT = Path(__file__).resolve().parents[1]
# every command (the root *.py files and scripts/*.py): `--help` must not import torch (10-13 s on a cold
# start); the flags' defaults and choices come from util/defaults.py, the evaluation flags from evaluation/flags.py
COMMANDS = sorted([p.name for p in ROOT.glob("*.py")]
                  + [f"scripts/{p.name}" for p in (ROOT / "scripts").glob("*.py") if p.name != "__init__.py"])
PROBE = """
import contextlib, io, os, runpy, sys
sys.argv = [sys.argv[1], "--help"]
sys.path.insert(0, os.path.dirname(sys.argv[0]))  # as `python <script>` does
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code
print(code, "usage:" in out.getvalue(), sorted(m for m in ("torch", "torchvision") if m in sys.modules))
"""


@pytest.mark.parametrize("script", COMMANDS)
def test_help_does_not_import_torch(script, tmp_path):
    result = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / script)], cwd=tmp_path, env=child_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["0", "True", "[]"], result.stdout + result.stderr


def test_help_shows_defaults():
    text = " ".join(make_sample_video.get_args_parser().format_help().split())
    assert "(default: sample_data)" in text and "--frames FRAMES (default: 30)" in text  # a flag without help
    text = " ".join(eval_generic.get_args_parser().format_help().split())
    assert "(default: 20)" in text and "(default: 5)" in text  # --top, --mem_every (the paper's)


def test_segment_video_help_prints_its_examples_as_written():
    lines = segment_video.get_args_parser().format_help().splitlines()
    assert "    python segment_video.py --video clip.mp4 --mask_dir masks/ --output results/clip \\" in lines
    assert "        --overlay results/clip.mp4 --binary_masks results/clip_objects" in lines
