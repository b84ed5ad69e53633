"""Evaluation datasets and mask I/O: layouts, sizes, palettes, and the colour-mask rule."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from evaluation.datasets import DAVISEvalDataset, GenericEvalDataset, YouTubeVOSEvalDataset, resized_shape
from tests.eval_fixtures import (  # noqa: F401  (fixtures)
    TEST_PALETTE,
    VideoSpec,
    davis_template,
    generic_template,
    render,
    save_grey,
    save_indexed,
    save_rgb,
    youtube_template,
)
from util.io import DataError, MaskReader, read_image, write_mask

torch.set_num_threads(1)


def test_resized_shape_matches_torchvision_rule():
    assert resized_shape(720, 1280, 480) == (480, 853)
    assert resized_shape(1280, 720, 480) == (853, 480)
    assert resized_shape(50, 70, None) == (50, 70)
    assert resized_shape(480, 854, 480) == (480, 854)


def test_davis_dataset(davis_template):
    ds = DAVISEvalDataset(davis_template / "2017" / "trainval", imset="2017/val.txt")
    assert [v.name for v in ds.videos] == ["cat", "odd"]
    cat = ds[0]
    assert [f.name for f in cat.frames] == [f"{t:05d}" for t in range(7)]
    assert cat.frames[0].mask_path is not None and all(f.mask_path is None for f in cat.frames[1:])
    assert all(f.required for f in cat.frames)
    assert cat.size == (48, 64) and cat.network_size == (48, 64)
    assert cat.palette[: len(TEST_PALETTE)] == TEST_PALETTE
    image = cat.original_rgb(0)  # frames and annotations at their own size: the stream resizes them
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    mask = cat.annotation(0)
    assert mask.shape == (48, 64) and set(np.unique(mask).tolist()) == {0, 1, 2}
    odd = ds[1]
    assert odd.original_rgb(2).shape == (50, 70, 3)


def test_davis_2016_single_object(davis_template):
    imset = davis_template / "2017" / "trainval" / "ImageSets" / "2016" / "val.txt"
    ds = DAVISEvalDataset(davis_template / "2016", imset=imset, single_object=True)
    mask = ds[0].annotation(0)
    assert set(np.unique(mask).tolist()) == {0, 255}
    assert ds[0].palette[3 * 255 : 3 * 256] == [255, 255, 255]


def test_youtube_dataset_subset_and_resize(youtube_template):
    ds = YouTubeVOSEvalDataset(youtube_template, short_side=32)
    assert ds.uses_all_frames
    a = ds[0]
    assert a.name == "yv_a" and len(a.frames) == 12
    assert [f.name for f in a.frames if f.required] == ["00000", "00005", "00010"]
    starts = {f.name: f.start_labels for f in a.frames if f.mask_path is not None}
    assert starts == {"00000": (1,), "00005": (3,)}
    assert a.size == (64, 96) and a.network_size == (32, 48)
    assert a.original_rgb(3).shape == (64, 96, 3)
    assert set(np.unique(a.annotation(5)).tolist()) == {0, 3}
    all_frames = YouTubeVOSEvalDataset(youtube_template, short_side=None, output_all=True)
    assert all(f.required for f in all_frames[0].frames)
    assert all_frames[0].network_size == (64, 96)


def test_generic_dataset(generic_template):
    ds = GenericEvalDataset(generic_template, short_side=None)
    clip = ds[0]
    assert [f.name for f in clip.frames if f.mask_path is not None] == ["00000", "00003"]
    assert all(f.required for f in clip.frames) and all(f.start_labels is None for f in clip.frames)


def test_layout_errors_name_the_file(tmp_path, davis_template):
    with pytest.raises(DataError, match="no such folder"):
        DAVISEvalDataset(tmp_path / "nowhere")
    root = tmp_path / "d"
    shutil.copytree(davis_template / "2017" / "trainval", root)
    (root / "Annotations" / "480p" / "odd" / "00000.png").unlink()
    with pytest.raises(DataError, match=r"odd/00000\.png: missing first-frame annotation"):
        DAVISEvalDataset(root)
    shutil.rmtree(root / "JPEGImages" / "480p" / "odd")
    (root / "JPEGImages" / "480p" / "odd").mkdir()
    with pytest.raises(DataError, match="empty video folder"):
        DAVISEvalDataset(root)


# ----------------------------------------------------------------------------------- mask I/O
def _labels(h=24, w=32):
    lab = np.zeros((h, w), np.uint8)
    lab[3:10, 4:12] = 1
    lab[12:20, 15:28] = 2
    return lab


def test_indexed_mask_keeps_palette_and_write_roundtrip(tmp_path):
    save_indexed(tmp_path / "m.png", _labels())
    reader = MaskReader()
    lab = reader.read(tmp_path / "m.png")
    np.testing.assert_array_equal(lab, _labels())
    write_mask(tmp_path / "out" / "o.png", lab, reader.palette)
    out = Image.open(tmp_path / "out" / "o.png")
    assert out.mode == "P" and out.getpalette()[:768] == TEST_PALETTE
    np.testing.assert_array_equal(np.array(out), _labels())
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["o.png"]  # no temporary left


def test_clean_rgb_mask_is_converted_consistently(tmp_path):
    save_rgb(tmp_path / "a.png", _labels())
    only_two = np.where(_labels() == 2, 2, 0).astype(np.uint8)
    save_rgb(tmp_path / "b.png", only_two)
    reader = MaskReader()
    a = reader.read(tmp_path / "a.png")
    b = reader.read(tmp_path / "b.png")
    assert set(np.unique(a)) == {0, 1, 2}
    colour_of = {v: tuple(reader.palette[3 * v : 3 * v + 3]) for v in (int(a[5, 6]), int(a[15, 20]))}
    assert colour_of == {int(a[5, 6]): tuple(TEST_PALETTE[3:6]), int(a[15, 20]): tuple(TEST_PALETTE[6:9])}
    assert set(np.unique(b)) == {0, a[15, 20]}  # the same colour gets the same label in another file


def test_antialiased_rgb_mask_is_refused(tmp_path):
    lab = _labels()
    rgb = np.array(TEST_PALETTE, np.uint8).reshape(-1, 3)[lab].astype(np.float32)
    rgb[2, 4:12] = rgb[3, 4:12] * 0.5  # a smoothed top edge of object 1: half-way to black
    Image.fromarray(rgb.astype(np.uint8)).save(tmp_path / "aa.png")
    with pytest.raises(DataError, match=r"aa\.png: colour \(RGB\) mask that is not unambiguous"):
        MaskReader().read(tmp_path / "aa.png")


def test_thin_colours_and_partial_alpha_are_refused(tmp_path):
    lab = _labels()
    rgb = np.array(TEST_PALETTE, np.uint8).reshape(-1, 3)[lab]
    rgb[21, 2:30] = (10, 250, 250)  # a one-pixel line of a colour that is no blend: still an edge
    Image.fromarray(rgb).save(tmp_path / "thin.png")
    with pytest.raises(DataError, match="thin edges"):
        MaskReader().read(tmp_path / "thin.png")
    rgb = np.array(TEST_PALETTE, np.uint8).reshape(-1, 3)[lab]
    rgba = np.concatenate([rgb, np.full((24, 32, 1), 255, np.uint8)], -1)
    rgba[3, 4:12, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    with pytest.raises(DataError, match="partially transparent"):
        MaskReader().read(tmp_path / "alpha.png")


def test_grey_masks(tmp_path):
    save_grey(tmp_path / "g.png", _labels())
    np.testing.assert_array_equal(MaskReader().read(tmp_path / "g.png"), _labels())
    blurred = np.where(_labels() > 0, 255, 0).astype(np.uint8)
    blurred[2, 4:12] = 100  # an anti-aliased edge row
    save_grey(tmp_path / "b.png", blurred)
    with pytest.raises(DataError, match="thin edges"):
        MaskReader().read(tmp_path / "b.png")
    single = MaskReader(single_object=True).read(tmp_path / "b.png")
    assert set(np.unique(single)) == {0, 255}  # DAVIS 2016: one object, no phantom object
    assert (single[2, 4:12] == 255).all()  # every non-zero pixel, the rule of the scorer and the official toolkit


def test_unreadable_image(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match=r"x\.jpg: unreadable image"):
        read_image(tmp_path / "x.jpg")


def test_render_is_deterministic():
    spec = VideoSpec("v", 20, 30, 3, {1: 0, 3: 1})
    a, la = render(spec, seed=1)
    b, lb = render(spec, seed=1)
    assert all((x == y).all() for x, y in zip(a, b)) and set(np.unique(la[2])) == {0, 1, 3}


# ------------------------------------------------------------------------ frame order and names
UNPADDED = [str(t) for t in range(12)]  # 0.jpg ... 11.jpg: by name 0, 1, 10, 11, 2, ...


def test_frames_without_zero_padding_are_in_number_order_everywhere(tmp_path):
    images, labels = render(VideoSpec("v", 24, 32, 12, {1: 0, 2: 9}), seed=5)
    generic = tmp_path / "generic"
    (generic / "JPEGImages" / "v").mkdir(parents=True)
    for name, img in zip(UNPADDED, images):
        Image.fromarray(img).save(generic / "JPEGImages" / "v" / f"{name}.jpg")
    save_indexed(generic / "Annotations" / "v" / "0.png", labels[0])
    save_indexed(generic / "Annotations" / "v" / "10.png", labels[10])
    clip = GenericEvalDataset(generic, short_side=None)[0]
    assert [f.name for f in clip.frames] == UNPADDED
    assert [f.image_path.name for f in clip.frames] == [f"{n}.jpg" for n in UNPADDED]
    assert {f.name: f.mask_path.name for f in clip.frames if f.mask_path} == {"0": "0.png", "10": "10.png"}
    tenth = read_image(generic / "JPEGImages" / "v" / "10.jpg")
    assert np.array_equal(np.asarray(clip.frame_image(10)), np.asarray(tenth))

    # YouTube-VOS: an object listed on frames 9 and 10 starts on 9 (not on "10", first by name)
    yv = tmp_path / "yv"
    (yv / "valid" / "JPEGImages" / "v").mkdir(parents=True)
    for name, img in zip(UNPADDED, images):
        Image.fromarray(img).save(yv / "valid" / "JPEGImages" / "v" / f"{name}.jpg")
    save_indexed(yv / "valid" / "Annotations" / "v" / "0.png", np.where(labels[0] == 1, 1, 0).astype(np.uint8))
    save_indexed(yv / "valid" / "Annotations" / "v" / "9.png", np.where(labels[9] == 2, 2, 0).astype(np.uint8))
    meta = {"videos": {"v": {"objects": {"1": {"frames": ["0", "5", "10"]}, "2": {"frames": ["10", "9"]}}}}}
    (yv / "valid" / "meta.json").write_text(json.dumps(meta))
    video = YouTubeVOSEvalDataset(yv, short_side=None)[0]
    assert [f.name for f in video.frames] == UNPADDED
    assert {f.name: f.start_labels for f in video.frames if f.mask_path} == {"0": (1,), "9": (2,)}
    assert [f.name for f in video.frames if f.required] == ["0", "5", "9", "10"]


def test_a_mask_named_with_other_padding_than_its_frame_is_refused_naming_the_frame(tmp_path):
    images, labels = render(VideoSpec("v", 24, 32, 3, {1: 0}), seed=5)
    (tmp_path / "JPEGImages" / "v").mkdir(parents=True)
    for t, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / "JPEGImages" / "v" / f"{t}.jpg")
    save_indexed(tmp_path / "Annotations" / "v" / "00000.png", labels[0])
    with pytest.raises(DataError, match=r"00000\.png: annotation without a frame of the same name; rename it 0\.png"):
        GenericEvalDataset(tmp_path)


def test_two_frames_of_one_name_are_refused_naming_both(tmp_path, generic_template):
    data = tmp_path / "data"
    shutil.copytree(generic_template, data)
    frames = data / "JPEGImages" / "clip"
    read_image(frames / "00003.jpg").save(frames / "00003.png")
    with pytest.raises(DataError, match=r"00003\.jpg: two frames named 00003 \(00003\.jpg and 00003\.png\)"):
        GenericEvalDataset(data)


# ------------------------------------------------------------------------------ 16-bit frames
def test_sixteen_bit_frames_keep_their_high_byte(tmp_path):
    """A 16-bit grey PNG (mode I;16) reads as its 8 high bits, as Pillow reads 16-bit colour PNGs;
    convert("RGB") alone saturates it to a white frame."""
    deep = (np.arange(24 * 32, dtype=np.uint32).reshape(24, 32) * 85).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode == "I;16"
    rgb = np.asarray(read_image(tmp_path / "deep.png"))
    assert rgb.dtype == np.uint8 and rgb.shape == (24, 32, 3)
    assert np.array_equal(rgb, np.repeat((deep >> 8).astype(np.uint8)[..., None], 3, axis=-1))
    colour = np.stack([deep, deep // 3, 65535 - deep], axis=-1)  # a 16-bit RGB PNG (Pillow reads its high bytes)
    cv2.imwrite(str(tmp_path / "colour.png"), np.ascontiguousarray(colour[..., ::-1]))  # OpenCV writes BGR
    assert np.array_equal(np.asarray(read_image(tmp_path / "colour.png")), (colour >> 8).astype(np.uint8))
    big = Image.fromarray(np.full((4, 4), 70000, np.int32))  # mode I beyond 16 bits: no scale to guess
    big.save(tmp_path / "big.tif")
    with pytest.raises(DataError, match=r"big\.tif: I image with values outside 0\.\.65535"):
        read_image(tmp_path / "big.tif")
