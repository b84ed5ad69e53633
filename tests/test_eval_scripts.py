"""Every evaluation CLI end to end on CPU: tiny synthetic datasets, a random network in the released format."""
from __future__ import annotations

import json
import re
import shutil
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval_davis
import eval_davis_2016
import eval_generic
import eval_youtube
from tests.eval_fixtures import (  # noqa: F401  (fixtures)
    DAVIS_VIDEOS,
    TEST_PALETTE,
    YT_VIDEOS,
    davis_template,
    generic_template,
    save_rgb,
    youtube_template,
)
from tests.helpers import run_main

torch.set_num_threads(1)

TIMING = re.compile(
    r"^Total processing time: (\S+)\nTotal processed frames: (\d+)\nFPS: (\S+)$", re.MULTILINE
)


run = partial(run_main, device="cpu")  # every command here runs on the CPU


def processed_frames(out: str) -> int:
    m = TIMING.search(out)
    assert m, out
    assert float(m.group(1)) > 0 and float(m.group(3)) > 0
    return int(m.group(2))


def assert_one_error(rc: int, err: str, names: str) -> None:
    assert rc != 0
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and names in lines[0], lines[0]
    assert "Traceback" not in err


def assert_palette_video(folder: Path, names: list[str], size: tuple[int, int], palette=TEST_PALETTE) -> None:
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.png" for n in names)
    for n in names:
        img = Image.open(folder / f"{n}.png")
        assert img.mode == "P" and (img.height, img.width) == size
        assert img.getpalette()[: len(palette)] == list(palette)


def no_partial_left(root: Path) -> bool:
    return not any(p.name.startswith(".partial-") for p in root.rglob("*"))


def last_line(stdout: str) -> str:
    lines = stdout.strip().splitlines()
    assert lines, stdout
    return lines[-1]


PAPER_ROW = re.compile(r"^J&F (\d+\.\d)  J (\d+\.\d)  F (\d+\.\d)$", re.MULTILINE)


def assert_paper_row(stdout: str, global_csv: Path) -> None:
    """The printed J&F, J, F are the csv's fractions in percent with one decimal, as the paper's tables."""
    m = PAPER_ROW.search(stdout)
    assert m, stdout
    header, values = global_csv.read_text().splitlines()[:2]
    row = dict(zip(header.split(","), (float(v) for v in values.split(","))))
    for printed, key in zip(m.groups(), ("J&F-Mean", "J-Mean", "F-Mean")):
        assert 0.0 <= row[key] <= 1.0  # the csv keeps the toolkit's fractions
        assert abs(float(printed) - 100 * row[key]) <= 0.05 + 1e-4, (printed, row[key])


@pytest.fixture()
def davis(tmp_path, davis_template):
    return Path(shutil.copytree(davis_template, tmp_path / "DAVIS"))


# ---------------------------------------------------------------------------------- DAVIS 2017
def test_davis_val_writes_masks_and_scores(davis, released_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = run(eval_davis.main, ["--model", released_checkpoint, "--davis_path", davis / "2017",
                                            "--output", out, "--split", "val"], capsys)
    assert rc == 0, err
    for spec in DAVIS_VIDEOS:
        assert_palette_video(out / spec.name, [f"{t:05d}" for t in range(spec.frames)], (spec.height, spec.width))
        first = np.array(Image.open(out / spec.name / "00000.png"))
        gt = np.array(Image.open(davis / "2017" / "trainval" / "Annotations" / "480p" / spec.name / "00000.png"))
        assert (first == gt).mean() > 0.99  # the given frame reproduces its annotation
    assert processed_frames(stdout) == sum(s.frames for s in DAVIS_VIDEOS)
    assert (out / "global_results-val.csv").is_file() and (out / "per-sequence_results-val.csv").is_file()
    assert "J&F-Mean" in (out / "global_results-val.csv").read_text()
    assert_paper_row(stdout, out / "global_results-val.csv")
    frames = sum(s.frames for s in DAVIS_VIDEOS)
    assert last_line(stdout) == (f"wrote {frames} masks of 2 videos to {out} and the scores to "
                                 f"{out / 'global_results-val.csv'}, {out / 'per-sequence_results-val.csv'}")
    assert no_partial_left(out)


def test_davis_testdev_amp_include_last_not_scored(davis, released_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = run(eval_davis.main, ["--model", released_checkpoint, "--davis_path", davis / "2017",
                                            "--output", out, "--split", "testdev", "--amp", "--amp_dtype", "bfloat16",
                                            "--include_last", "--mem_every", "3", "--top", "5"], capsys)
    assert rc == 0, err
    assert_palette_video(out / "odd", [f"{t:05d}" for t in range(6)], (50, 70))
    assert not list(out.glob("*.csv")) and "J&F" not in stdout
    processed_frames(stdout)
    # the zip to upload to the DAVIS server: the videos' folders at its top, as eval_youtube's zip
    zipped = tmp_path / "out.zip"
    with zipfile.ZipFile(zipped) as zf:
        masks = sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.png"))
        assert sorted(zf.namelist()) == masks and "odd/00005.png" in masks
        assert zf.read("odd/00003.png") == (out / "odd" / "00003.png").read_bytes()
    assert last_line(stdout) == (f"wrote {len(masks)} masks of 2 videos to {out} and their zip to {zipped}; DAVIS 2017 "
                                 "test-dev is scored by its evaluation server (no public ground truth): upload the zip "
                                 "there")
    # a rerun replaces the zip it wrote (listed in the result's marker) without --overwrite
    rc, stdout, err = run(eval_davis.main, ["--model", released_checkpoint, "--davis_path", davis / "2017",
                                            "--output", out, "--split", "testdev"], capsys)
    assert rc == 0, err
    assert zipfile.ZipFile(zipped).namelist() and last_line(stdout).endswith("upload the zip there")


# ---------------------------------------------------------------------------------- DAVIS 2016
def test_davis_2016_finds_list_in_2017_folder(davis, released_checkpoint, tmp_path, capsys):
    out = tmp_path / "out16"
    rc, stdout, err = run(eval_davis_2016.main, ["--model", released_checkpoint, "--davis_path", davis / "2016",
                                                 "--output", out], capsys)
    assert rc == 0, err
    spec = DAVIS_VIDEOS[1]
    folder = out / spec.name
    assert len(list(folder.glob("*.png"))) == spec.frames
    first = Image.open(folder / "00000.png")
    assert first.mode == "P" and (first.height, first.width) == (spec.height, spec.width)
    assert set(np.unique(np.array(first))) == {0, 255}  # the ground truth's object value
    assert (out / "global_results-val.csv").is_file()
    processed_frames(stdout)
    assert_paper_row(stdout, out / "global_results-val.csv")
    assert last_line(stdout) == (f"wrote {sum(s.frames for s in DAVIS_VIDEOS)} masks of 2 videos to {out} and the "
                                 f"scores to {out / 'global_results-val.csv'}, {out / 'per-sequence_results-val.csv'}")


def test_davis_2016_without_list_explains(tmp_path, davis, released_checkpoint, capsys):
    args = ["--model", released_checkpoint, "--davis_path", davis / "2016", "--davis17_path", tmp_path / "elsewhere",
            "--output", tmp_path / "o"]
    rc, _, err = run(eval_davis_2016.main, args, capsys)
    assert_one_error(rc, err, "ImageSets/2016/val.txt")
    assert "--davis17_path" in err


# --------------------------------------------------------------------------------- YouTube-VOS
def test_youtube_meta_subset_resize_and_zip(tmp_path, youtube_template, released_checkpoint, capsys):
    out = tmp_path / "yv_out"
    rc, stdout, err = run(eval_youtube.main, ["--model", released_checkpoint, "--yv_path", youtube_template,
                                              "--output", out, "--size", "32"], capsys)
    assert rc == 0, err
    a, b = YT_VIDEOS
    assert_palette_video(out / "Annotations" / a.name, ["00000", "00005", "00010"], (a.height, a.width))
    assert_palette_video(out / "Annotations" / b.name, ["00000", "00005"], (b.height, b.width))
    assert set(np.unique(np.array(Image.open(out / "Annotations" / a.name / "00005.png")))) <= {0, 1, 3}
    with zipfile.ZipFile(tmp_path / "yv_out.zip") as zf:
        names = sorted(zf.namelist())
    assert names == sorted(
        [f"Annotations/{a.name}/{n}.png" for n in ("00000", "00005", "00010")]
        + [f"Annotations/{b.name}/{n}.png" for n in ("00000", "00005")]
    )
    # frames neither listed nor memory are skipped: yv_a 0, 5, 10 and yv_b 0, 5
    assert processed_frames(stdout) == 5
    assert last_line(stdout) == (f"wrote 5 masks of 2 videos to {out / 'Annotations'} and their zip to "
                                 f"{tmp_path / 'yv_out.zip'}; YouTube-VOS valid is scored by its evaluation server "
                                 "(no public ground truth): upload the zip there")


def test_youtube_output_all(tmp_path, youtube_template, released_checkpoint, capsys):
    out = tmp_path / "all"
    rc, stdout, err = run(eval_youtube.main, ["--model", released_checkpoint, "--yv_path", youtube_template,
                                              "--output", out, "--output_all", "--size", "-1"], capsys)
    assert rc == 0, err
    for spec in YT_VIDEOS:
        assert_palette_video(out / "Annotations" / spec.name, [f"{t:05d}" for t in range(spec.frames)],
                             (spec.height, spec.width))
    before = np.array(Image.open(out / "Annotations" / "yv_a" / "00004.png"))
    assert 3 not in np.unique(before)  # object 3 does not exist before its first frame
    assert processed_frames(stdout) == sum(s.frames for s in YT_VIDEOS)
    with zipfile.ZipFile(tmp_path / "all.zip") as zf:
        assert len(zf.namelist()) == sum(s.frames for s in YT_VIDEOS)


def test_youtube_missing_first_annotation_of_an_object(tmp_path, youtube_template, released_checkpoint, capsys):
    yv = Path(shutil.copytree(youtube_template, tmp_path / "YouTube"))
    (yv / "valid" / "Annotations" / "yv_a" / "00005.png").unlink()  # object 3 starts there
    rc, _, err = run(eval_youtube.main, ["--model", released_checkpoint, "--yv_path", yv, "--output", tmp_path / "o",
                                         "--size", "32"], capsys)
    assert_one_error(rc, err, "yv_a/00005.png")
    assert "object 3" in err and not (tmp_path / "o" / "Annotations" / "yv_a").exists()


# ------------------------------------------------------------------------------------- generic
def test_generic_objects_start_on_any_frame(tmp_path, generic_template, released_checkpoint, capsys):
    out = tmp_path / "gen"
    rc, stdout, err = run(eval_generic.main, ["--model", released_checkpoint, "--data_path", generic_template,
                                              "--output", out, "--size", "32"], capsys)
    assert rc == 0, err
    assert_palette_video(out / "clip", [f"{t:05d}" for t in range(8)], (48, 64))
    lab3 = np.array(Image.open(out / "clip" / "00003.png"))
    gt3 = np.array(Image.open(generic_template / "Annotations" / "clip" / "00003.png"))
    assert (lab3[gt3 == 2] == 2).mean() > 0.8  # object 2 starts on frame 3 (network at 32 px: resize loss)
    assert 2 not in np.unique(np.array(Image.open(out / "clip" / "00002.png")))
    assert processed_frames(stdout) == 8
    assert last_line(stdout) == f"wrote 8 masks of 1 video to {out}"


def test_generic_rgb_mask_converted_with_its_colours(tmp_path, generic_template, released_checkpoint, capsys):
    data = Path(shutil.copytree(generic_template, tmp_path / "data"))
    for png in (data / "Annotations" / "clip").glob("*.png"):
        save_rgb(png, np.array(Image.open(png)))
    out = tmp_path / "gen"
    rc, _, err = run(eval_generic.main, ["--model", released_checkpoint, "--data_path", data, "--output", out,
                                         "--size", "-1"], capsys)
    assert rc == 0, err
    first = Image.open(out / "clip" / "00000.png")
    colours = np.array(first.getpalette()[:768]).reshape(-1, 3)[np.array(first)]
    rgb = np.array(Image.open(data / "Annotations" / "clip" / "00000.png").convert("RGB"))
    assert (colours == rgb).all(-1).mean() > 0.99  # the output shows the input's colours
    # one note per mask that brings new colours, saying which colour became which id
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    colour = {k: tuple(TEST_PALETTE[3 * k : 3 * k + 3]) for k in (1, 2)}
    assert notes == [f"note: {data / 'Annotations/clip/00000.png'}: colour (RGB) mask, objects numbered by colour: "
                     f"{colour[1]} -> 1 (an indexed PNG keeps the ids you choose)",
                     f"note: {data / 'Annotations/clip/00003.png'}: colour (RGB) mask, objects numbered by colour: "
                     f"{colour[2]} -> 2 (an indexed PNG keeps the ids you choose)"], err


def test_generic_object_lost_at_the_network_size_is_noted_and_kept_on_its_frame(tmp_path, generic_template,
                                                                                  released_checkpoint, capsys):
    """A 1-pixel object of a first mask has no pixel at --size 32: one note names it and its size, the first
    frame's output keeps its pixel, and every other pixel of every frame is what the mask without it gives."""
    from util.frames import resize_labels
    from util.io import resized_shape

    data = Path(shutil.copytree(generic_template, tmp_path / "data"))
    first = data / "Annotations" / "clip" / "00000.png"
    labels = np.array(Image.open(first))
    net = resized_shape(*labels.shape, 32)
    for y, x in zip(*np.nonzero(labels == 0)):
        mask = labels.copy()
        mask[y, x] = 5
        if 5 not in resize_labels(torch.from_numpy(mask.astype(np.int64)), net).unique().tolist():
            break
    img = Image.open(first)
    lost = Image.frombytes("P", img.size, mask.tobytes())
    lost.putpalette(img.getpalette())
    lost.save(first)
    outs = {}
    for name, root in (("plain", generic_template), ("lost", data)):
        outs[name] = tmp_path / name
        rc, _, err = run(eval_generic.main, ["--model", released_checkpoint, "--data_path", root, "--output",
                                             outs[name], "--size", "32"], capsys)
        assert rc == 0, err
        notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {first}: object 5 (1 pixel, 1x1) has no pixel at the network size 42x32, so the "
                     "network cannot follow it: the given pixels are kept on this frame only (to track it: a larger "
                     "--size, -1 for the frames' own size, or a larger object in the mask)"], err
    for png in sorted((outs["plain"] / "clip").glob("*.png")):
        want, got = np.array(Image.open(png)), np.array(Image.open(outs["lost"] / "clip" / png.name))
        if png.name == "00000.png":
            assert got[y, x] == 5
            got[y, x] = want[y, x]
        assert np.array_equal(got, want), png.name


# ----------------------------------------------------------------------------------- bad input
def _davis_args(davis, ckpt, out):
    return ["--model", ckpt, "--davis_path", davis / "2017", "--output", out, "--split", "val", "--no_score"]


def test_missing_first_frame_annotation(davis, released_checkpoint, tmp_path, capsys):
    (davis / "2017" / "trainval" / "Annotations" / "480p" / "odd" / "00000.png").unlink()
    rc, _, err = run(eval_davis.main, _davis_args(davis, released_checkpoint, tmp_path / "o"), capsys)
    assert_one_error(rc, err, "odd/00000.png")
    assert not (tmp_path / "o").exists()


def test_mask_size_mismatch(davis, released_checkpoint, tmp_path, capsys):
    ann = davis / "2017" / "trainval" / "Annotations" / "480p" / "odd" / "00000.png"
    img = Image.open(ann)
    img.resize((64, 48), Image.NEAREST).save(ann)
    rc, _, err = run(eval_davis.main, _davis_args(davis, released_checkpoint, tmp_path / "o"), capsys)
    assert_one_error(rc, err, "odd/00000.png")
    assert "64x48" in err and not (tmp_path / "o" / "odd").exists()


def test_empty_video_folder(davis, released_checkpoint, tmp_path, capsys):
    for jpg in (davis / "2017" / "trainval" / "JPEGImages" / "480p" / "odd").glob("*.jpg"):
        jpg.unlink()
    rc, _, err = run(eval_davis.main, _davis_args(davis, released_checkpoint, tmp_path / "o"), capsys)
    assert_one_error(rc, err, "JPEGImages/480p/odd")
    assert "empty video folder" in err


def test_corrupt_frame_mid_video_leaves_no_partial_result(davis, released_checkpoint, tmp_path, capsys):
    (davis / "2017" / "trainval" / "JPEGImages" / "480p" / "odd" / "00003.jpg").write_bytes(b"\xff\xd8garbage")
    out = tmp_path / "o"
    rc, stdout, err = run(eval_davis.main, _davis_args(davis, released_checkpoint, out), capsys)
    assert_one_error(rc, err, "odd/00003.jpg")
    assert len(list((out / "cat").glob("*.png"))) == DAVIS_VIDEOS[0].frames  # the video before is complete
    assert not (out / "odd").exists() and no_partial_left(out)
    assert "Total processed frames" not in stdout


def test_checkpoint_of_wrong_shape(davis, stcn_net, tmp_path, capsys):
    state = dict(stcn_net.state_dict())
    state["key_proj.key_proj.weight"] = torch.zeros(32, 1024, 3, 3)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    rc, _, err = run(eval_davis.main, _davis_args(davis, bad, tmp_path / "o"), capsys)
    assert_one_error(rc, err, "bad.pth")
    assert not (tmp_path / "o").exists()


def test_antialiased_rgb_annotation_is_refused(tmp_path, generic_template, released_checkpoint, capsys):
    data = Path(shutil.copytree(generic_template, tmp_path / "data"))
    png = data / "Annotations" / "clip" / "00000.png"
    lab = np.array(Image.open(png))
    rgb = np.array(TEST_PALETTE, np.uint8).reshape(-1, 3)[lab].astype(np.float32)
    edge = (lab > 0) & ~np.pad(lab > 0, 1)[2:, 1:-1]  # the bottom row of each object
    rgb[edge] *= 0.5
    Image.fromarray(rgb.astype(np.uint8)).save(png)
    rc, _, err = run(eval_generic.main, ["--model", released_checkpoint, "--data_path", data,
                                         "--output", tmp_path / "o", "--size", "-1"], capsys)
    assert_one_error(rc, err, "clip/00000.png")
    assert not (tmp_path / "o" / "clip").exists()


def test_youtube_meta_json_unreadable(tmp_path, youtube_template, released_checkpoint, capsys):
    yv = Path(shutil.copytree(youtube_template, tmp_path / "YouTube"))
    (yv / "valid" / "meta.json").write_text("{not json")
    rc, _, err = run(eval_youtube.main, ["--model", released_checkpoint, "--yv_path", yv, "--output", tmp_path / "o"],
                     capsys)
    assert_one_error(rc, err, "meta.json")
    json.loads((youtube_template / "valid" / "meta.json").read_text())  # the template is untouched


def test_later_annotation_starts_only_new_objects():
    from inference_core.objects import starting_objects

    mask = torch.tensor([[0, 1, 1], [2, 2, 0], [3, 0, 1]])
    kept, start = starting_objects(mask, None, tracked=[1])
    assert start == [2, 3] and kept.tolist() == [[0, 0, 0], [2, 2, 0], [3, 0, 0]]
    kept, start = starting_objects(mask, (3,), tracked=[1])
    assert start == [3] and kept.tolist() == [[0, 0, 0], [0, 0, 0], [3, 0, 0]]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_one_error(davis, released_checkpoint, tmp_path, capsys):
    rc = eval_davis.main([*map(str, _davis_args(davis, released_checkpoint, tmp_path / "o")), "--device", "cuda:0"])
    _, err = capsys.readouterr()
    assert_one_error(rc, err, "--device")
