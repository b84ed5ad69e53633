"""Bad input to every command: one `error:` line naming the file or flag, no traceback, nothing changed.

Each case builds a small workspace (copies of the synthetic datasets of tests/eval_fixtures.py, a
short video file, a static image set), spoils one thing as a user might, runs the command's
`main(argv)` in-process and checks:
  - the exit code is non-zero (2 for argparse's own errors, 1 for the others);
  - exactly one line holds `error:`, it starts with `error:` (or `<prog>: error:` from argparse,
    after its usage line) and names the offending path or flag;
  - no `Traceback` anywhere in the output;
  - every file and folder of the workspace, inputs and anything already there, is unchanged
    (sha256 of each file before and after) and nothing new was written (a mistake found only
    while a video runs, `mid_run`, may leave the empty output folder the writer made).
Most cases stop before the network is loaded; the few that get past it run a random network on
48x64 frames.
"""
from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import download_bl30k
import download_datasets
import download_model
import eval_davis
import eval_davis_2016
import eval_generic
import eval_youtube
import segment_video
import train
from scripts import (
    benchmark_backends,
    benchmark_inference,
    make_sample_video,
    memory_coverage,
    resize_length,
    resize_youtube,
    score_davis,
)
from scripts import export as export_script
from tests.eval_fixtures import VideoSpec, davis_template, generic_template, save_indexed, save_jpg, youtube_template  # noqa: F401  (fixtures)
from tests.helpers import error_lines, run_main, snapshot, write_clip
from tests.synthetic_data import make_static_root
from tests.test_download import fake_checkpoint, resnet18_shapes
from util.defaults import MIN_SHORT_SIDE

torch.set_num_threads(1)

CLIP = VideoSpec("clip", 48, 64, 6, {1: 0, 2: 0})


# ------------------------------------------------------------------------------ the workspace
@pytest.fixture(scope="session")
def video_template(tmp_path_factory) -> Path:
    """clip.mp4 (6 frames, 64x48) and first.png, its first frame's two objects."""
    return write_clip(tmp_path_factory.mktemp("video_template"), CLIP)


@pytest.fixture(scope="session")
def static_template(tmp_path_factory) -> Path:
    return make_static_root(tmp_path_factory.mktemp("static_template"), size=(48, 64))


@pytest.fixture(scope="session")
def model_file(released_checkpoint) -> Path:
    """A random network in the released format (outside every workspace: torch only reads it)."""
    return released_checkpoint


class Workspace:
    """A folder holding what a user has on disk; the datasets are copied in when first asked for."""

    def __init__(self, root: Path, request: pytest.FixtureRequest) -> None:
        self.root = root
        self._request = request

    def _copy(self, fixture: str, name: str) -> Path:
        target = self.root / name
        if not target.exists():
            shutil.copytree(self._request.getfixturevalue(fixture), target)
        return target

    @property
    def model(self) -> Path:
        return self._request.getfixturevalue("model_file")

    @property
    def davis(self) -> Path:  # <root>/DAVIS/{2017/trainval, 2017/test-dev, 2016}
        return self._copy("davis_template", "DAVIS")

    @property
    def youtube(self) -> Path:  # <root>/YouTube/{valid, all_frames}
        return self._copy("youtube_template", "YouTube")

    @property
    def generic(self) -> Path:  # <root>/data/{JPEGImages, Annotations}/clip
        return self._copy("generic_template", "data")

    @property
    def video(self) -> Path:  # <root>/video/{clip.mp4, first.png}
        return self._copy("video_template", "video")

    @property
    def static(self) -> Path:  # <root>/static/{fss, DUTS-TR, ...}
        return self._copy("static_template", "static")

    @property
    def out(self) -> Path:
        """Where results would go (absent: a refused command writes nothing)."""
        return self.root / "out"

    def file(self, name: str, content: bytes | str = b"") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path


# ------------------------------------------------------------------------ spoiling helpers
def blank_mask(path: Path, like: Path | None = None, size: tuple[int, int] | None = None) -> Path:
    """Overwrite (or write) an indexed PNG with no object, the size of `like` or `size` (H, W)."""
    if size is None:
        with Image.open(like or path) as img:
            size = (img.height, img.width)
    save_indexed(path, np.zeros(size, dtype=np.uint8))
    return path


def truncate(path: Path, keep: int = 40) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def grey_blank(path: Path) -> Path:
    """A DAVIS 2016 style greyscale mask with no object (every pixel 0)."""
    with Image.open(path) as img:
        Image.fromarray(np.zeros((img.height, img.width), dtype=np.uint8)).save(path)
    return path


def edit_meta(yv: Path, change: Callable[[dict], None]) -> Path:
    meta_path = yv / "valid" / "meta.json"
    meta = json.loads(meta_path.read_text())
    change(meta["videos"])
    meta_path.write_text(json.dumps(meta))
    return meta_path


def add_blank_generic_video(data: Path, name: str = "zz_blank") -> Path:
    """A second generic video (after `clip` in name order) whose only mask holds no object."""
    src = data / "JPEGImages" / "clip"
    shutil.copytree(src, data / "JPEGImages" / name)
    return blank_mask(data / "Annotations" / name / "00000.png", like=src / "00000.jpg")


def tiny_generic(ws: Workspace, h: int = 20, w: int = 24) -> Path:
    """A generic dataset whose frames are smaller than the network's minimum."""
    data = ws.root / "tiny"
    for t in range(3):
        save_jpg(data / "JPEGImages" / "small" / f"{t:05d}.jpg", np.full((h, w, 3), 90 + 10 * t, np.uint8))
    labels = np.zeros((h, w), np.uint8)
    labels[5:15, 6:18] = 1
    save_indexed(data / "Annotations" / "small" / "00000.png", labels)
    return data


def resnet_file(ws: Workspace, name: str) -> Path:
    """A torch file with a ResNet-18's keys and shapes (not STCN)."""
    return fake_checkpoint(ws.root / name, resnet18_shapes())


def jpeg_mask(ws: Workspace) -> Path:
    """The first-frame mask saved as a JPEG (colour, with compression artefacts)."""
    with Image.open(ws.video / "first.png") as img:
        rgb = img.convert("RGB")
    path = ws.root / "first.jpg"
    rgb.save(path, format="JPEG", quality=75)
    return path


def static_all_blank(ws: Workspace) -> Path:
    """The static sets with every mask empty."""
    for png in ws.static.rglob("*.png"):
        blank_mask(png)
    return ws.static


def static_without(ws: Workspace, name: str) -> Path:
    root = ws.static
    shutil.rmtree(root / name)
    return root


# ---------------------------------------------------------------------------------- the cases
Build = Callable[[Workspace], tuple[list, str]]  # -> (argv, text the error line must name)


@dataclass(frozen=True)
class Case:
    id: str
    main: Callable[[list[str]], int]
    build: Build
    code: int = 1  # 2: argparse's own error
    spoil: Callable[[Workspace], object] | None = None  # the user's mistake, made before the snapshot
    mid_run: bool = False  # found only while the video runs: its empty output folder may be left


def seg(ws: Workspace, *extra) -> list:
    return ["--device", "cpu", "--size", "32", "--model", ws.model, "--video", ws.video / "clip.mp4",
            "--output", ws.out, *extra]


def seg_mask(ws: Workspace, *extra) -> list:
    return seg(ws, "--mask", ws.video / "first.png", *extra)


def gen(ws: Workspace, *extra) -> list:
    return ["--device", "cpu", "--size", "32", "--model", ws.model, "--data_path", ws.generic,
            "--output", ws.out, *extra]


def d17(ws: Workspace, *extra) -> list:
    return ["--device", "cpu", "--model", ws.model, "--davis_path", ws.davis / "2017", "--output", ws.out, *extra]


def d16(ws: Workspace, *extra) -> list:
    return ["--device", "cpu", "--model", ws.model, "--davis_path", ws.davis / "2016", "--output", ws.out, *extra]


def yv(ws: Workspace, *extra) -> list:
    return ["--device", "cpu", "--size", "32", "--model", ws.model, "--yv_path", ws.youtube, "--output", ws.out, *extra]


def cov(ws: Workspace, *extra) -> list:
    return ["--device", "cpu", "--model", ws.model, "--davis_path", ws.davis / "2017", "--output", ws.out, *extra]


def export_dir(ws: Workspace) -> Path:
    """A folder holding an export's manifest (never read: each case is refused before the network)."""
    return ws.file("onnx/manifest.json", "{}").parent


def tr(ws: Workspace, *extra) -> list:
    return ["--id", "NULL", "--no_pretrained", "--num_workers", "0", "--batch_size", "1", "--iterations", "1",
            "--save_dir", ws.root / "saves", "--static_root", ws.static, *extra]


CASES = [
    # ------------------------------------------------------------------- segment_video.py
    Case("segment/no-object-in-mask", segment_video.main,
         lambda ws: (seg(ws, "--mask", blank_mask(ws.video / "first.png")), str(ws.video / "first.png"))),
    Case("segment/no-object-in-any-mask_dir-mask", segment_video.main,
         lambda ws: (seg(ws, "--mask_dir", blank_mask(ws.root / "masks" / "00000.png", ws.video / "first.png").parent),
                     str(ws.root / "masks" / "00000.png"))),
    Case("segment/size-7", segment_video.main, lambda ws: (seg_mask(ws, "--size", "7"), "--size")),
    Case("segment/size-0", segment_video.main, lambda ws: (seg_mask(ws, "--size", "0"), "--size")),
    Case("segment/size-not-a-number", segment_video.main, lambda ws: (seg_mask(ws, "--size", "big"), "--size"), 2),
    Case("segment/missing-video", segment_video.main,
         lambda ws: (["--device", "cpu", "--video", ws.root / "nope.mp4", "--mask", ws.video / "first.png",
                      "--output", ws.out], str(ws.root / "nope.mp4"))),
    Case("segment/video-is-a-text-file", segment_video.main,
         lambda ws: (["--device", "cpu", "--video", ws.file("notes.mp4", "not a video"), "--mask",
                      ws.video / "first.png", "--output", ws.out], str(ws.root / "notes.mp4"))),
    Case("segment/truncated-video", segment_video.main,
         lambda ws: (seg_mask(ws), str(ws.video / "clip.mp4")), spoil=lambda ws: truncate(ws.video / "clip.mp4", 300)),
    Case("segment/missing-mask", segment_video.main,
         lambda ws: (seg(ws, "--mask", ws.root / "first.png"), str(ws.root / "first.png"))),
    Case("segment/no-mask-given", segment_video.main, lambda ws: (seg(ws), "--mask")),
    Case("segment/jpeg-as-mask", segment_video.main,
         lambda ws: (seg(ws, "--mask", jpeg_mask(ws)), str(ws.root / "first.jpg"))),
    Case("segment/corrupt-mask", segment_video.main,
         lambda ws: (seg(ws, "--mask", truncate(ws.video / "first.png")), str(ws.video / "first.png"))),
    Case("segment/mask-of-another-size", segment_video.main,
         lambda ws: (seg(ws, "--mask", save_mask_of_size(ws.root / "big.png", (96, 128))), str(ws.root / "big.png"))),
    Case("segment/mask_dir-missing", segment_video.main,
         lambda ws: (seg(ws, "--mask_dir", ws.root / "masks"), str(ws.root / "masks"))),
    Case("segment/mask_dir-file-not-named-by-index", segment_video.main,
         lambda ws: (seg(ws, "--mask_dir", copy_to(ws.video / "first.png", ws.root / "masks" / "first.png").parent),
                     str(ws.root / "masks" / "first.png"))),
    Case("segment/mask_dir-past-the-end", segment_video.main,
         lambda ws: (seg(ws, "--mask_dir", copy_to(ws.video / "first.png", ws.root / "masks" / "00099.png").parent),
                     str(ws.root / "masks" / "00099.png"))),
    Case("segment/unknown-device", segment_video.main, lambda ws: (seg_mask(ws, "--device", "tpu"), "--device")),
    Case("segment/top-0", segment_video.main, lambda ws: (seg_mask(ws, "--top", "0"), "--top")),
    Case("segment/mem_every-negative", segment_video.main,
         lambda ws: (seg_mask(ws, "--mem_every", "-1"), "--mem_every")),
    Case("segment/max_mem_mb-0", segment_video.main, lambda ws: (seg_mask(ws, "--max_mem_mb", "0"), "--max_mem_mb")),
    Case("segment/chunk_size-word", segment_video.main,
         lambda ws: (seg_mask(ws, "--chunk_size", "lots"), "--chunk_size"), 2),
    Case("segment/model-is-a-text-file", segment_video.main,
         lambda ws: (seg_mask(ws, "--model", ws.file("stcn.pth", "hello")), str(ws.root / "stcn.pth"))),
    Case("segment/model-with-wrong-keys", segment_video.main,
         lambda ws: (seg_mask(ws, "--model", resnet_file(ws, "resnet.pth")), str(ws.root / "resnet.pth"))),
    Case("segment/model-missing", segment_video.main,
         lambda ws: (seg_mask(ws, "--model", ws.root / "saves" / "stcn.pth"), str(ws.root / "saves" / "stcn.pth"))),
    Case("segment/video-flag-missing", segment_video.main, lambda ws: (["--output", ws.out], "--video"), 2),
    # --------------------------------------------------------------------- eval_generic.py
    Case("generic/no-object", eval_generic.main,
         lambda ws: (gen(ws), str(ws.generic / "Annotations" / "clip" / "00000.png")),
         spoil=lambda ws: blank_both_clip_masks(ws)),
    Case("generic/one-video-of-two-without-object", eval_generic.main,
         lambda ws: (gen(ws), "zz_blank"),
         spoil=lambda ws: add_blank_generic_video(ws.generic)),
    Case("generic/missing-data_path", eval_generic.main,
         lambda ws: (gen(ws, "--data_path", ws.root / "nope"), str(ws.root / "nope"))),
    Case("generic/no-Annotations-folder", eval_generic.main,
         lambda ws: (gen(ws), str(ws.generic / "Annotations")),
         spoil=lambda ws: remove(ws.generic / "Annotations")),
    Case("generic/jpeg-annotation", eval_generic.main,
         lambda ws: (gen(ws), str(ws.generic / "Annotations" / "clip" / "00000.jpg")),
         spoil=lambda ws: jpeg_annotations(ws.generic)),
    Case("generic/annotation-without-frame", eval_generic.main,
         lambda ws: (gen(ws), "frame_x.png"),
         spoil=lambda ws: copy_to(ws.generic / "Annotations" / "clip" / "00000.png",
                                  ws.generic / "Annotations" / "clip" / "frame_x.png")),
    Case("generic/corrupt-first-frame", eval_generic.main,
         lambda ws: (gen(ws), str(ws.generic / "JPEGImages" / "clip" / "00000.jpg")),
         spoil=lambda ws: truncate(ws.generic / "JPEGImages" / "clip" / "00000.jpg", 10)),
    Case("generic/corrupt-later-frame", eval_generic.main,
         lambda ws: (gen(ws, "--size", "-1"), str(ws.generic / "JPEGImages" / "clip" / "00005.jpg")),
         spoil=lambda ws: truncate(ws.generic / "JPEGImages" / "clip" / "00005.jpg", 200), mid_run=True),
    Case("generic/later-frame-of-another-size", eval_generic.main,
         lambda ws: (gen(ws, "--size", "-1"), str(ws.generic / "JPEGImages" / "clip" / "00004.jpg")),
         spoil=lambda ws: resize_frame(ws.generic / "JPEGImages" / "clip" / "00004.jpg"), mid_run=True),
    Case("generic/mask-of-another-size", eval_generic.main,
         lambda ws: (gen(ws), str(ws.generic / "Annotations" / "clip" / "00003.png")),
         spoil=lambda ws: save_mask_of_size(ws.generic / "Annotations" / "clip" / "00003.png", (24, 32))),
    Case("generic/empty-video-folder", eval_generic.main,
         lambda ws: (gen(ws), str(ws.generic / "JPEGImages" / "empty")),
         spoil=lambda ws: mkdir(ws.generic / "JPEGImages" / "empty")),
    Case("generic/two-frames-of-one-name", eval_generic.main,
         lambda ws: (gen(ws), "two frames named 00003 (00003.jpg and 00003.png)"),
         spoil=lambda ws: png_twin(ws.generic / "JPEGImages" / "clip" / "00003.jpg")),
    Case("generic/size-7", eval_generic.main, lambda ws: (gen(ws, "--size", "7"), "--size")),
    Case("generic/size-minus-2", eval_generic.main, lambda ws: (gen(ws, "--size", "-2"), "--size")),
    Case("generic/native-frames-below-minimum", eval_generic.main,
         lambda ws: (gen(ws, "--data_path", tiny_generic(ws), "--size", "-1"),
                     str(ws.root / "tiny" / "JPEGImages" / "small" / "00000.jpg"))),
    Case("generic/overlay_fps-0", eval_generic.main,
         lambda ws: (gen(ws, "--overlay", ws.root / "ov", "--overlay_fps", "0", "--size", "32"), "--overlay_fps")),
    Case("generic/object_batch-0", eval_generic.main, lambda ws: (gen(ws, "--object_batch", "0"), "--object_batch")),
    Case("generic/ensemble-member-missing", eval_generic.main,
         lambda ws: (gen(ws, "--model", ws.model, ws.root / "nope.pth"), str(ws.root / "nope.pth"))),
    Case("generic/scales-below-minimum", eval_generic.main, lambda ws: (gen(ws, "--scales", "32", "7"), "--scales")),
    Case("generic/video_batch-0", eval_generic.main, lambda ws: (gen(ws, "--video_batch", "0"), "--video_batch")),
    Case("generic/video_batch-with-bidirectional", eval_generic.main,
         lambda ws: (gen(ws, "--video_batch", "2", "--bidirectional"), "--video_batch")),
    Case("generic/onnx_dir-without-backend", eval_generic.main,
         lambda ws: (gen(ws, "--onnx_dir", export_dir(ws)), "--onnx_dir")),
    Case("generic/onnx_dir-with-an-ensemble", eval_generic.main,
         lambda ws: (gen(ws, "--model", ws.model, ws.model, "--backend", "onnxruntime", "--onnx_dir", export_dir(ws)),
                     "--onnx_dir")),
    Case("generic/output-inside-the-onnx_dir", eval_generic.main,
         lambda ws: (gen(ws, "--backend", "onnxruntime", "--onnx_dir", export_dir(ws), "--output",
                         ws.root / "onnx" / "masks", "--overwrite"), str(ws.root / "onnx" / "masks"))),
    # ----------------------------------------------------------------------- eval_davis.py
    Case("davis/first-annotation-without-object", eval_davis.main,
         lambda ws: (d17(ws), str(ws.davis / "2017/trainval/Annotations/480p/odd/00000.png")),
         spoil=lambda ws: blank_mask(ws.davis / "2017/trainval/Annotations/480p/odd/00000.png")),
    Case("davis/missing-davis_path", eval_davis.main,
         lambda ws: (d17(ws, "--davis_path", ws.root / "DAVIS2017"), str(ws.root / "DAVIS2017"))),
    Case("davis/unknown-split", eval_davis.main, lambda ws: (d17(ws, "--split", "train"), "--split"), 2),
    Case("davis/listed-video-missing", eval_davis.main,
         lambda ws: (d17(ws), str(ws.davis / "2017/trainval/JPEGImages/480p/odd")),
         spoil=lambda ws: remove(ws.davis / "2017/trainval/JPEGImages/480p/odd")),
    Case("davis/missing-first-annotation", eval_davis.main,
         lambda ws: (d17(ws, "--split", "testdev"), str(ws.davis / "2017/test-dev/Annotations/480p/cat/00000.png")),
         spoil=lambda ws: remove(ws.davis / "2017/test-dev/Annotations/480p/cat/00000.png")),
    Case("davis/empty-video-list", eval_davis.main,
         lambda ws: (d17(ws), str(ws.root / "DAVIS/2017/trainval/ImageSets/2017/val.txt")),
         spoil=lambda ws: (ws.davis / "2017/trainval/ImageSets/2017/val.txt").write_text("\n")),
    Case("davis/video_batch-0", eval_davis.main, lambda ws: (d17(ws, "--video_batch", "0"), "--video_batch")),
    Case("davis/flip-ensemble-member-is-a-text-file", eval_davis.main,
         lambda ws: (d17(ws, "--flip", "--model", ws.model, ws.file("b.pth", "weights")), str(ws.root / "b.pth"))),
    # ------------------------------------------------------------------ eval_davis_2016.py
    Case("davis16/first-annotation-without-object", eval_davis_2016.main,
         lambda ws: (d16(ws), str(ws.davis / "2016/Annotations/480p/cat/00000.png")),
         spoil=lambda ws: grey_blank(ws.davis / "2016/Annotations/480p/cat/00000.png")),
    Case("davis16/video-list-not-found", eval_davis_2016.main,
         lambda ws: (d16(ws, "--davis17_path", ws.root / "nowhere"), str(ws.root / "nowhere"))),
    # --------------------------------------------------------------------- eval_youtube.py
    Case("youtube/meta-lists-no-object", eval_youtube.main,
         lambda ws: (yv(ws), "yv_b"),
         spoil=lambda ws: edit_meta(ws.youtube, lambda v: v["yv_b"].update(objects={}))),
    Case("youtube/missing-meta", eval_youtube.main,
         lambda ws: (yv(ws), str(ws.youtube / "valid" / "meta.json")),
         spoil=lambda ws: remove(ws.youtube / "valid" / "meta.json")),
    Case("youtube/meta-not-json", eval_youtube.main,
         lambda ws: (yv(ws), str(ws.root / "YouTube" / "valid" / "meta.json")),
         spoil=lambda ws: (ws.youtube / "valid/meta.json").write_text("{videos: ")),
    Case("youtube/object-not-in-its-annotation", eval_youtube.main,
         lambda ws: (yv(ws), str(ws.youtube / "valid/Annotations/yv_a/00005.png")),
         spoil=lambda ws: blank_mask(ws.youtube / "valid/Annotations/yv_a/00005.png")),
    Case("youtube/size-7", eval_youtube.main, lambda ws: (yv(ws, "--size", "7"), "--size")),
    Case("youtube/unknown-split", eval_youtube.main, lambda ws: (yv(ws, "--split", "train"), "--split"), 2),
    # ---------------------------------------------------------------------------- train.py
    Case("train/missing-static-root", train.main,
         lambda ws: (tr(ws, "--static_root", ws.root / "static_nope"), str(ws.root / "static_nope"))),
    Case("train/static-set-missing", train.main,
         lambda ws: (tr(ws, "--static_root", static_without(ws, "ecssd")), "ecssd")),
    Case("train/missing-davis-root", train.main,
         lambda ws: (tr(ws, "--stage", "3", "--davis_root", ws.root / "DAVIS_nope", "--yv_root", ws.root / "yv"),
                     str(ws.root / "DAVIS_nope"))),
    Case("train/missing-bl30k-root", train.main,
         lambda ws: (tr(ws, "--stage", "1", "--bl_root", ws.root / "BL30K"), str(ws.root / "BL30K"))),
    Case("train/id-is-a-path", train.main, lambda ws: (tr(ws, "--id", "../../escaped"), "--id ../../escaped")),
    Case("train/every-static-mask-empty", train.main,
         lambda ws: (tr(ws, "--static_root", static_all_blank(ws)), str(ws.root / "static"))),
    Case("train/unknown-stage", train.main, lambda ws: (tr(ws, "--stage", "7"), "--stage")),
    Case("train/crop_size-not-multiple-of-16", train.main, lambda ws: (tr(ws, "--crop_size", "100"), "--crop_size")),
    Case("train/iterations-0", train.main, lambda ws: (tr(ws, "--iterations", "0"), "--iterations")),
    Case("train/lr-negative", train.main, lambda ws: (tr(ws, "--lr", "-0.1"), "--lr")),
    Case("train/batch_size-0", train.main, lambda ws: (tr(ws, "--batch_size", "0"), "--batch_size")),
    Case("train/num_workers-negative", train.main, lambda ws: (tr(ws, "--num_workers", "-1"), "--num_workers")),
    Case("train/load_network-missing", train.main,
         lambda ws: (tr(ws, "--load_network", ws.root / "w.pth"), str(ws.root / "w.pth"))),
    Case("train/load_network-text-file", train.main,
         lambda ws: (tr(ws, "--load_network", ws.file("w.pth", "weights")), str(ws.root / "w.pth"))),
    Case("train/load_network-wrong-keys", train.main,
         lambda ws: (tr(ws, "--load_network", resnet_file(ws, "resnet.pth")), str(ws.root / "resnet.pth"))),
    Case("train/load_model-is-weights-only", train.main,
         lambda ws: (tr(ws, "--load_model", fake_checkpoint(ws.root / "stcn.pth")), str(ws.root / "stcn.pth"))),
    # ---------------------------------------------------------------------- download_model.py
    Case("download_model/resnet-at-target", download_model.main,
         lambda ws: (["--output", resnet_file(ws, "saves/stcn.pth")], str(ws.root / "saves" / "stcn.pth"))),
    Case("download_model/text-file-at-target", download_model.main,
         lambda ws: (["--output", ws.file("saves/stcn.pth", "not a model")], str(ws.root / "saves" / "stcn.pth"))),
    Case("download_model/unknown-model", download_model.main, lambda ws: (["--model", "s99"], "--model"), 2),
    # ------------------------------------------------------------------- download_datasets.py
    Case("download_datasets/unknown-part", download_datasets.main,
         lambda ws: (["--root", ws.root / "data_root", "--only", "davis2099", "--yes"], "davis2099"), 2),
    Case("download_datasets/negative-min_free_gb", download_datasets.main,
         lambda ws: (["--root", ws.root / "data_root", "--only", "davis16", "--min_free_gb", "-5", "--yes",
                      "--mirror", "http://127.0.0.1:9"], "--min_free_gb"), 2),
    Case("download_datasets/root-is-a-file", download_datasets.main,
         lambda ws: (["--root", ws.file("data_root", "x"), "--only", "davis16", "--min_free_gb", "0", "--yes",
                      "--mirror", "http://127.0.0.1:9"], str(ws.root / "data_root"))),
    # ---------------------------------------------------------------------- download_bl30k.py
    Case("download_bl30k/unknown-segment", download_bl30k.main,
         lambda ws: (["--root", ws.root / "data_root", "--only", "z"], "--only"), 2),
    Case("download_bl30k/no-terminal-no-yes", download_bl30k.main,
         lambda ws: (["--root", ws.root / "data_root", "--only", "a", "--min_free_gb", "0"], "--yes")),
    # ---------------------------------------------------------------------- scripts/score_davis.py
    Case("score_davis/missing-results", score_davis.main,
         lambda ws: (["--results", ws.root / "results", "--davis_path", ws.davis / "2017" / "trainval"],
                     str(ws.root / "results"))),
    Case("score_davis/missing-davis_path", score_davis.main,
         lambda ws: (["--results", results_for(ws), "--davis_path", ws.root / "DAVIS_nope"],
                     str(ws.root / "DAVIS_nope"))),
    Case("score_davis/result-video-missing", score_davis.main,
         lambda ws: (["--results", results_for(ws, drop="odd"), "--davis_path", ws.davis / "2017" / "trainval"],
                     "odd")),
    Case("score_davis/result-not-a-png", score_davis.main,
         lambda ws: (["--results", results_for(ws, spoil="cat/00002.png"),
                      "--davis_path", ws.davis / "2017" / "trainval"],
                     "00002.png")),
    Case("score_davis/workers-negative", score_davis.main,
         lambda ws: (["--results", results_for(ws), "--davis_path", ws.davis / "2017" / "trainval", "--workers", "-2"],
                     "--workers"), 2),
    # ------------------------------------------------------------ scripts/resize_youtube.py
    Case("resize_youtube/missing-src", resize_youtube.main,
         lambda ws: (["--src", ws.root / "train", "--dst", ws.root / "train_480p", "--quiet"], str(ws.root / "train"))),
    Case("resize_youtube/size-0", resize_youtube.main,
         lambda ws: (["--src", ws.youtube / "valid", "--dst", ws.root / "r", "--size", "0", "--quiet"], "--size"), 2),
    Case("resize_youtube/dst-is-src", resize_youtube.main,
         lambda ws: (["--src", ws.youtube / "valid", "--dst", ws.youtube / "valid", "--quiet"], "--dst")),
    # ------------------------------------------------------------- scripts/resize_length.py
    Case("resize_length/missing-src", resize_length.main,
         lambda ws: ([ws.root / "imgs", ws.root / "imgs480", "--quiet"], str(ws.root / "imgs"))),
    Case("resize_length/dst-inside-src", resize_length.main,
         lambda ws: ([ws.static, ws.static / "small", "--quiet"], str(ws.static / "small"))),
    Case("resize_length/size-negative", resize_length.main,
         lambda ws: ([ws.static, ws.root / "small", "--size", "-5", "--quiet"], "--size"), 2),
    # -------------------------------------------------------------------- scripts/export.py
    Case("export/model-missing", export_script.main,
         lambda ws: (["--model", ws.root / "nope.pth", "--output", ws.out], str(ws.root / "nope.pth"))),
    Case("export/output-holds-user-files", export_script.main,
         lambda ws: (["--model", ws.model, "--output", ws.file("mine/notes.txt", "mine").parent],
                     str(ws.root / "mine"))),
    Case("export/output-holds-the-model", export_script.main,
         lambda ws: (["--model", ws.file("saves/stcn.pth", "w"), "--output", ws.root / "saves", "--overwrite"],
                     str(ws.root / "saves"))),
    Case("export/output-is-a-file", export_script.main,
         lambda ws: (["--model", ws.model, "--output", ws.file("onnx", "x")], str(ws.root / "onnx"))),
    Case("export/unknown-exporter", export_script.main,
         lambda ws: (["--model", ws.model, "--output", ws.out, "--exporter", "tf"], "--exporter"), 2),
    Case("export/single_object-from-multi-object-weights", export_script.main,
         lambda ws: (["--model", ws.model, "--output", ws.out, "--single_object"], "--single_object")),
    # ------------------------------------------------------------- scripts/memory_coverage.py
    Case("memory_coverage/labels-not-one-per-model", memory_coverage.main,
         lambda ws: (cov(ws, "--label", "a", "--label", "b"), "--label")),
    Case("memory_coverage/output-holds-user-files", memory_coverage.main,
         lambda ws: (cov(ws, "--output", ws.file("mine/notes.txt", "mine").parent), str(ws.root / "mine"))),
    Case("memory_coverage/missing-davis_path", memory_coverage.main,
         lambda ws: (cov(ws, "--davis_path", ws.root / "DAVIS_nope"), str(ws.root / "DAVIS_nope"))),
    Case("memory_coverage/output-inside-the-data", memory_coverage.main,
         lambda ws: (cov(ws, "--output", ws.davis / "2017" / "coverage"), str(ws.davis / "2017" / "coverage"))),
    Case("memory_coverage/first-annotation-without-object", memory_coverage.main,
         lambda ws: (cov(ws), str(ws.davis / "2017/trainval/Annotations/480p/odd/00000.png")),
         spoil=lambda ws: blank_mask(ws.davis / "2017/trainval/Annotations/480p/odd/00000.png")),
    # ------------------------------------------------- scripts/benchmark_inference.py, _backends.py
    Case("benchmark_inference/model-missing", benchmark_inference.main,
         lambda ws: (["--device", "cpu", "--model", ws.root / "nope.pth"], str(ws.root / "nope.pth"))),
    Case("benchmark_inference/video_batch-0", benchmark_inference.main,
         lambda ws: (["--device", "cpu", "--height", "32", "--video_batch", "0"], "--video_batch")),
    Case("benchmark_inference/unknown-device", benchmark_inference.main,
         lambda ws: (["--device", "tpu"], "--device")),
    Case("benchmark_inference/report_at-past-every-length", benchmark_inference.main,
         lambda ws: (["--device", "cpu", "--height", "32", "--lengths", "3", "4", "--report_at", "2", "9"],
                     "--report_at")),
    Case("benchmark_inference/report_at-0", benchmark_inference.main,
         lambda ws: (["--device", "cpu", "--height", "32", "--lengths", "3", "--report_at", "0"], "--report_at"), 2),
    Case("benchmark_backends/model-missing", benchmark_backends.main,
         lambda ws: (["--model", ws.root / "nope.pth"], str(ws.root / "nope.pth"))),
    Case("benchmark_backends/onnx_dir-not-an-export", benchmark_backends.main,
         lambda ws: (["--onnx_dir", ws.file("onnx/notes.txt", "x").parent], "--onnx_dir")),
    Case("benchmark_backends/repeats-0", benchmark_backends.main, lambda ws: (["--repeats", "0"], "--repeats"), 2),
    Case("benchmark_backends/width-negative", benchmark_backends.main, lambda ws: (["--width", "-16"], "--width"), 2),
    Case("benchmark_backends/threads-0", benchmark_backends.main, lambda ws: (["--threads", "0"], "--threads"), 2),
    Case("benchmark_inference/lengths-0", benchmark_inference.main,
         lambda ws: (["--device", "cpu", "--lengths", "0"], "--lengths"), 2),
    Case("benchmark_inference/height-0", benchmark_inference.main,
         lambda ws: (["--device", "cpu", "--height", "0"], "--height"), 2),
    Case("benchmark_inference/top-0", benchmark_inference.main,
         lambda ws: (["--device", "cpu", "--top", "0"], "--top"), 2),
    Case("benchmark_inference/budgets-not-a-number", benchmark_inference.main,
         lambda ws: (["--device", "cpu", "--budgets", "none", "lots"], "--budgets"), 2),
    Case("benchmark_inference/report_at-negative", benchmark_inference.main,
         lambda ws: (["--device", "cpu", "--height", "32", "--lengths", "2", "--objects", "1", "--precision", "fp32",
                      "--report_at", "-5"], "--report_at"), 2),
    # --------------------------------------------------------- scripts/make_sample_video.py
    Case("make_sample_video/output-holds-user-files", make_sample_video.main,
         lambda ws: (["--output", ws.file("mine/JPEGImages/shapes/00000.jpg", "my frame").parents[2], "--frames", "2"],
                     str(ws.root / "mine"))),
    Case("make_sample_video/frames-0", make_sample_video.main,
         lambda ws: (["--output", ws.out, "--frames", "0"], "--frames"), 2),
    Case("make_sample_video/height-0", make_sample_video.main,
         lambda ws: (["--output", ws.out, "--height", "0"], "--height"), 2),
    Case("make_sample_video/width-negative", make_sample_video.main,
         lambda ws: (["--output", ws.out, "--width", "-40"], "--width"), 2),
]


# ----------------------------------------------------------------------- small builders
def copy_to(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def remove(path: Path) -> Path:
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    return path


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def save_mask_of_size(path: Path, size: tuple[int, int]) -> Path:
    labels = np.zeros(size, np.uint8)
    labels[2:10, 2:12] = 1
    save_indexed(path, labels)
    return path


def blank_both_clip_masks(ws: Workspace) -> bool:
    for png in sorted((ws.generic / "Annotations" / "clip").glob("*.png")):
        blank_mask(png)
    return True


def jpeg_annotations(data: Path) -> bool:
    """Every annotation of `clip` saved as JPEG instead of PNG (the PNGs removed)."""
    for png in sorted((data / "Annotations" / "clip").glob("*.png")):
        with Image.open(png) as img:
            img.convert("RGB").save(png.with_suffix(".jpg"), quality=90)
        png.unlink()
    return True


def png_twin(path: Path) -> Path:
    """The frame saved again as a PNG of the same name (`00003.jpg` and `00003.png`)."""
    with Image.open(path) as img:
        img.save(path.with_suffix(".png"))
    return path.with_suffix(".png")


def resize_frame(path: Path) -> Path:
    with Image.open(path) as img:
        img.load()
        img.resize((img.width * 2, img.height * 2)).save(path)
    return path


def results_for(ws: Workspace, drop: str | None = None, spoil: str | None = None) -> Path:
    """A results folder for DAVIS 2017 val: the ground truth itself, with one video dropped or one file spoiled."""
    results = ws.root / "results"
    shutil.copytree(ws.davis / "2017" / "trainval" / "Annotations" / "480p", results)
    if drop:
        shutil.rmtree(results / drop)
    if spoil:
        (results / spoil).write_text("not a png")
    return results


ERROR_LINE = re.compile(r"^(\S+: )?error: ")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_error_line_and_changes_nothing(case: Case, tmp_path, request, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative defaults (saves/, ../DAVIS) land in the workspace
    ws = Workspace(tmp_path / "ws", request)
    ws.root.mkdir()
    if case.spoil is not None:
        case.spoil(ws)
    argv, names = case.build(ws)
    before = snapshot(ws.root, dirs=True)
    capsys.readouterr()
    threads = torch.get_num_threads()  # the benchmarks set it (and seed) for their process: not for later tests
    with torch.random.fork_rng(devices=[]):
        try:
            code, out, err = run_main(case.main, argv, capsys)
        finally:
            torch.set_num_threads(threads)
    text = out + err
    assert "Traceback" not in text, text
    errors = error_lines(text)
    assert len(errors) == 1, text
    assert ERROR_LINE.match(errors[0]), errors[0]
    assert names in errors[0], (names, errors[0])
    assert code == case.code, (code, text)
    after = snapshot(ws.root, dirs=True)
    changed = sorted(k for k in before if after.get(k) != before[k])
    added = sorted(set(after) - set(before))
    if case.mid_run:  # the frames before the bad one were processed: no file of theirs may remain
        added = [k for k in added if after[k] != "dir"]
    assert not changed and not added, (changed, added)


def test_report_at_past_some_lengths_is_one_note(capsys):
    """A `--report_at` point that only the longer videos reach: their rows have it, one note says so."""
    argv = ["--device", "cpu", "--height", "32", "--lengths", "2", "3", "--objects", "1", "--precision", "fp32",
            "--warmup", "0", "--report_at", "1", "3"]
    with torch.random.fork_rng(devices=[]):  # the benchmark seeds torch for its process
        code, out, err = run_main(benchmark_inference.main, argv, capsys)
    notes = [line for line in err.splitlines() if line.strip()]
    assert code == 0 and len(notes) == 1 and notes[0].startswith("note: --report_at 3: "), err
    assert "2-frame videos" in notes[0]
    assert [line.split(" | ")[4] for line in out.splitlines() if line.startswith("| core |")] == ["1", "2", "1", "3"]


def test_the_battery_covers_every_command():
    covered = {c.main.__module__ for c in CASES}
    assert covered >= {
        "eval_davis", "eval_davis_2016", "eval_youtube", "eval_generic", "segment_video", "train",
        "download_model", "download_datasets", "download_bl30k", "scripts.score_davis",
        "scripts.resize_youtube", "scripts.resize_length", "scripts.make_sample_video", "scripts.export",
        "scripts.memory_coverage", "scripts.benchmark_inference", "scripts.benchmark_backends",
    }
    assert len(CASES) >= 40


def test_minimum_size_is_two_cells_of_the_coarsest_features():
    from util.tensor_util import STRIDE

    assert MIN_SHORT_SIDE == 2 * STRIDE == 32


@pytest.mark.parametrize("size, expected", [(-1, None), (32, 32), (33, 33), (480, 480), (31, "error"), (0, "error"),
                                            (-2, "error")])
def test_size_flag_boundary(size, expected):
    from evaluation.flags import options_from_args
    from util.errors import UserError

    args = eval_generic.get_args_parser().parse_args(["--data_path", "d", "--output", "o", "--size", str(size)])
    if expected == "error":
        with pytest.raises(UserError, match=r"^--size: .* minimum shorter side of 32"):
            options_from_args(args)
    else:
        assert options_from_args(args).size == expected


@pytest.mark.parametrize("h, w, short, ok", [(32, 40, None, True), (40, 31, None, False), (20, 24, 32, True),
                                             (48, 64, None, True)])
def test_check_videos_network_size_boundary(tmp_path, h, w, short, ok):
    from evaluation.datasets import EvalVideo, Frame
    from evaluation.loop import check_videos
    from util.io import DataError

    save_jpg(tmp_path / "00000.jpg", np.full((h, w, 3), 100, np.uint8))
    labels = np.zeros((h, w), np.uint8)
    labels[4:12, 4:12] = 1
    save_indexed(tmp_path / "00000.png", labels)
    video = EvalVideo("v", [Frame("00000", tmp_path / "00000.jpg", tmp_path / "00000.png")], short_side=short)
    if ok:
        check_videos([video])
        assert video.object_labels == [1]
    else:
        with pytest.raises(DataError, match="below its minimum shorter side of 32"):
            check_videos([video])
