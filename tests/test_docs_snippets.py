"""Every ```python block of README.md and docs/*.md runs, exactly as printed, from a folder outside the clone.

The folder holds what the snippets name: random weights as `saves/stcn.pth` (masks meaningless, every step
runs), a tiny video `clip.mp4` with its indexed first mask `first.png`, a frame folder `frames/` with
`mask_00006.png`, the synthetic DAVIS layout at `../DAVIS` with results at `../output/d17`, and training
layouts at `../static`, `../BL30K`, `../DAVIS/2017/trainval` and `../YouTube` (video names from the paper's lists).
The snippet runs in a fresh interpreter whose only link to the clone is the clone on `PYTHONPATH` (what the editable
install of `scripts/env.sh` / `pip install -e .` provides). One change to the run, none to the text: the
Predictor's default network size is 64 instead of 480 so that the test takes seconds on a CPU.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from model.network import STCN
from tests.eval_fixtures import DAVIS_VIDEOS, VideoSpec, make_davis, render, save_indexed, save_jpg
from tests.helpers import child_env, write_video
from tests.synthetic_data import make_bl30k_root, make_davis_root, make_static_root, make_youtube_root

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
DAVIS_TRAIN = ("bear", "boat")  # in dataset/subsets/davis_subset.txt
YOUTUBE_TRAIN = ("003234408d", "0043f083b5")  # in dataset/subsets/yv_subset.txt
CLIP = VideoSpec("clip", 48, 64, 10, {1: 0, 2: 0})  # two objects from frame 0: the README removes object 2

RUNNER = """
import sys
import inference_core.predictor as p
_from_checkpoint = p.Predictor.from_checkpoint.__func__
p.Predictor.from_checkpoint = classmethod(
    lambda cls, path, *a, **kw: _from_checkpoint(cls, path, *a, **{"size": 64, **kw}))
code = sys.stdin.read()
exec(compile(code, "<snippet>", "exec"), {"__name__": "__main__"})
"""


def snippets() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for k, match in enumerate(FENCE.finditer(doc.read_text(encoding="utf-8"))):
            found.append((f"{doc.relative_to(ROOT)}#{k + 1}", match.group(1)))
    return found


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """tmp/work (the current folder of every snippet) and its neighbours ../DAVIS, ../output."""
    top = tmp_path_factory.mktemp("docs")
    work = top / "work"
    (work / "saves").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(STCN(single_object=False, pretrained=False).state_dict(), work / "saves" / "stcn.pth")
    frames, labels = render(CLIP, seed=3)
    write_video(work / "clip.mp4", frames)
    save_indexed(work / "first.png", labels[0])
    for t, frame in enumerate(frames[:8]):
        save_jpg(work / "frames" / f"{t:05d}.jpg", frame)
    save_indexed(work / "mask_00006.png", labels[6])
    make_davis(top / "DAVIS")
    for spec in DAVIS_VIDEOS:  # the ground truth as the results: every score is 1
        shutil.copytree(top / "DAVIS" / "2017" / "trainval" / "Annotations" / "480p" / spec.name,
                        top / "output" / "d17" / spec.name)
    make_static_root(top)
    make_bl30k_root(top)
    make_davis_root(top / "DAVIS-train", videos=DAVIS_TRAIN)  # the paper's video lists name these
    for kind in ("JPEGImages", "Annotations"):  # beside the evaluation videos (their val.txt stays)
        for video in DAVIS_TRAIN:
            shutil.copytree(top / "DAVIS-train" / "DAVIS" / "2017" / "trainval" / kind / "480p" / video,
                            top / "DAVIS" / "2017" / "trainval" / kind / "480p" / video)
    train = make_youtube_root(top, videos=2) / "train_480p"
    for kind in ("JPEGImages", "Annotations"):
        for video, name in zip(sorted((train / kind).iterdir()), YOUTUBE_TRAIN):
            video.rename(video.with_name(name))
    return work


def test_the_docs_have_snippets():
    names = [name for name, _ in snippets()]
    assert sum(name.startswith("README.md") for name in names) >= 2, names


@pytest.mark.parametrize("name,code", snippets(), ids=[name for name, _ in snippets()])
def test_snippet_runs_as_printed(workspace: Path, tmp_path: Path, name: str, code: str):
    """Each snippet in a fresh copy of the workspace (one snippet's outputs do not help another)."""
    shutil.copytree(workspace.parent, tmp_path / "top")
    workspace = tmp_path / "top" / "work"
    assert not workspace.resolve().is_relative_to(ROOT)
    env = {**child_env(), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", RUNNER], input=code, cwd=workspace, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{name} failed:\n{code}\n{result.stderr[-3000:]}"

    if name == "README.md#1":  # palette PNGs in first.png's colours (not 0..K greys that look black), an overlay
        check_masks(sorted((workspace / "out").glob("*.png")), CLIP.frames)
        assert (workspace / "out" / "overlay.mp4").stat().st_size > 0
    if name == "README.md#2":
        check_masks(sorted((workspace / "bidir").glob("*.png")), 8)


def check_masks(paths: list[Path], count: int) -> None:
    colours = Image.open(paths[0].parents[1] / "first.png").getpalette()[:9]
    assert len(paths) == count
    for path in paths:
        img = Image.open(path)
        assert img.mode == "P" and img.getpalette()[:9] == colours, path
