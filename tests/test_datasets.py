"""Training datasets: joint augmentations keep image and mask aligned, sample contract, sampling rules,
layout checks, subsets, the shared curriculum skip and per-worker seeding."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import ConcatDataset, DataLoader

from dataset import (
    DatasetLayoutError,
    StaticTransformDataset,
    VOSDataset,
    bl30k_dataset,
    check_dataset_root,
    load_subset,
    main_training_datasets,
    set_max_skip,
    static_datasets,
    worker_init_fn,
)
from dataset.tps import RandomThinPlateSpline
from dataset.transforms import (
    IMAGE_FILL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    im_denormalization,
    static_base_transform,
    static_frame_transform,
    tv_tensors,
    vos_clip_transform,
    vos_frame_transform,
)
from dataset.util import DAVIS_SUBSET_FILE, YOUTUBE_SUBSET_FILE
from tests.synthetic_data import (
    make_bl30k_root,
    make_davis_root,
    make_static_root,
    make_youtube_root,
    save_jpg,
    save_palette_png,
)
from util.io import DataError, read_binary_mask, read_index_mask

CROP = 48
H, W = 64, 96


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    return {
        "static": make_static_root(base),
        "davis": make_davis_root(base, videos=3, frames=8),
        "youtube": make_youtube_root(base, videos=2, frames=5),
        "bl30k": make_bl30k_root(base),
    }


def _davis_set(roots, **kwargs) -> VOSDataset:
    base = roots["davis"] / "2017" / "trainval"
    kwargs.setdefault("crop_size", CROP)
    return VOSDataset(base / "JPEGImages" / "480p", base / "Annotations" / "480p", **kwargs)


# -- alignment -------------------------------------------------------------------------------------------
def _white_shape(n: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n frames of a white ellipse (label 1) on black; shifts a little per frame."""
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    masks = []
    for t in range(n):
        cy, cx = 30 + 2 * t + seed, 44 + 3 * t
        masks.append(((ys - cy) / 16.0) ** 2 + ((xs - cx) / 22.0) ** 2 <= 1)
    mask = torch.stack(masks).to(torch.uint8)  # n, H, W
    image = (mask * 255)[:, None].expand(n, 3, H, W).contiguous()
    return image, mask


def _misaligned_pixels(image: torch.Tensor, mask: torch.Tensor) -> int:
    """Pixels where 'bright' (the shape) and mask disagree, away from a 2-pixel band around the mask edge.

    image: uint8 (3, h, w) or float in [0, 1]; mask (h, w). Colour jitter and grayscale keep white bright
    and black dark, and the fill colour is mid grey, so brightness > 0.6 marks the shape.
    """
    img = image.float() / 255 if image.dtype == torch.uint8 else image
    bright = img.mean(0) > 0.6
    m = (mask > 0).float()[None, None]
    dilated = F.max_pool2d(m, 5, 1, 2)[0, 0] > 0
    # the frame border counts as an edge (a shape cut by the crop ends there): erode with zero padding
    eroded = -F.max_pool2d(-F.pad(m, (2, 2, 2, 2)), 5, 1, 0)[0, 0] > 0
    band = dilated & ~eroded
    return int(((bright != (mask > 0)) & ~band).sum())


def _check_aligned(image: torch.Tensor, mask: torch.Tensor) -> None:
    assert (mask > 0).any(), "the shape left the crop; choose another seed"
    assert _misaligned_pixels(image, mask) == 0


@pytest.mark.parametrize("seed", range(4))
def test_static_transforms_keep_image_and_mask_aligned(seed):
    torch.manual_seed(seed)
    image, mask = _white_shape()
    im, m = static_base_transform()(tv_tensors.Image(image[0]), tv_tensors.Mask(mask))
    assert isinstance(im, tv_tensors.Image) and isinstance(m, tv_tensors.Mask)
    _check_aligned(im, m[0])
    im, m = static_frame_transform(CROP)(im, m)
    assert im.shape == (3, CROP, CROP) and m.shape == (1, CROP, CROP)
    _check_aligned(im, m[0])
    im, m = RandomThinPlateSpline(p=1.0, image_fill=IMAGE_FILL)(im, m)
    _check_aligned(im, m[0])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("crop_scale", [(0.36, 1.0), (0.25, 1.0)])
def test_vos_transforms_keep_image_and_mask_aligned(seed, crop_scale):
    torch.manual_seed(seed)
    image, mask = _white_shape(3)
    im, m = vos_clip_transform(CROP, crop_scale)(tv_tensors.Image(image), tv_tensors.Mask(mask))
    assert im.shape == (3, 3, CROP, CROP) and m.shape == (3, CROP, CROP)
    for t in range(3):
        _check_aligned(im[t], m[t])
        im_t, m_t = vos_frame_transform()(tv_tensors.Image(im[t]), tv_tensors.Mask(m[t : t + 1]))
        _check_aligned(im_t, m_t[0])


def test_clip_transform_is_shared_by_the_frames():
    """One draw for the clip: identical input frames stay identical (flip, crop, jitter, grayscale)."""
    image, mask = _white_shape(1)
    torch.manual_seed(0)
    im, m = vos_clip_transform(CROP)(tv_tensors.Image(image.expand(3, -1, -1, -1)),
                                     tv_tensors.Mask(mask.expand(3, -1, -1)))
    assert torch.equal(im[0], im[1]) and torch.equal(im[0], im[2])
    assert torch.equal(m[0], m[1]) and torch.equal(m[0], m[2])


def test_masks_keep_their_labels_and_fill_is_background():
    torch.manual_seed(0)
    image, mask = _white_shape(1)
    labels = mask.clone()
    labels[:, :, :20] *= 2  # labels 0, 1, 2
    for _ in range(5):
        _, m = static_frame_transform(CROP)(tv_tensors.Image(image[0]), tv_tensors.Mask(labels))
        assert set(m.unique().tolist()) <= {0, 1, 2}  # nearest neighbour: no blended labels
    # a large rotation uncovers corners: image gets the mean colour, mask the background
    from torchvision.transforms import v2

    from dataset.transforms import JOINT_FILL

    rot = v2.RandomAffine(degrees=(45, 45), fill=JOINT_FILL)
    im, m = rot(tv_tensors.Image(torch.full((3, H, W), 255, dtype=torch.uint8)),
                tv_tensors.Mask(torch.ones(1, H, W, dtype=torch.uint8)))
    assert tuple(im[:, 0, 0].tolist()) == IMAGE_FILL and m[0, 0, 0] == 0


# -- static dataset ----------------------------------------------------------------------------------------
def _check_normalised(rgb: torch.Tensor) -> None:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.isfinite(rgb).all()
    assert (rgb >= (0 - mean) / std - 1e-4).all() and (rgb <= (1 - mean) / std + 1e-4).all()


def test_static_sample_contract(roots):
    dataset = static_datasets(roots["static"], crop_size=CROP)
    # 2 fss classes x 2 + DUTS-TR, DUTS-TE, ecssd x 2 + (BIG_small, HRSOD_small) x 2 x 5
    assert len(dataset) == 4 + 6 + 20
    names = [Path(d.root).name for d in dataset.datasets]
    assert names.count("BIG_small") == 5 and names.count("HRSOD_small") == 5 and names.count("fss") == 1
    torch.manual_seed(0)
    sample = dataset[0]
    assert set(sample) == {"rgb", "gt", "cls_gt", "info"}
    assert sample["rgb"].shape == (3, 3, CROP, CROP) and sample["rgb"].dtype == torch.float32
    assert sample["gt"].shape == (3, 1, CROP, CROP) and sample["gt"].dtype == torch.float32
    assert sample["cls_gt"].shape == (3, CROP, CROP) and sample["cls_gt"].dtype == torch.int64
    _check_normalised(sample["rgb"])
    assert set(sample["gt"].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(sample["cls_gt"], sample["gt"][:, 0].long())
    assert sample["info"]["name"].endswith("1.jpg")
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["rgb"].shape == (2, 3, 3, CROP, CROP)


def test_static_sample_aligned_end_to_end(tmp_path):
    image, mask = _white_shape()
    folder = tmp_path / "set"
    save_jpg(folder / "1.jpg", image[0].permute(1, 2, 0).numpy())
    Image.fromarray(mask[0].numpy() * 255).save(folder / "1.png")
    dataset = StaticTransformDataset(folder, crop_size=CROP)
    dataset.tps.p = 1.0  # exercise the warp on every frame
    for seed in range(3):
        torch.manual_seed(seed)
        sample = dataset[0]
        for t in range(3):
            _check_aligned(im_denormalization(sample["rgb"][t]), sample["gt"][t, 0])


def test_static_masks_in_any_png_mode(tmp_path):
    """FSS-style RGB masks and grey masks with anti-aliased edges both become {0, 1}."""
    image, mask = _white_shape()
    save_jpg(tmp_path / "1.jpg", image[0].permute(1, 2, 0).numpy())
    Image.fromarray(np.repeat(mask[0].numpy()[..., None] * 255, 3, axis=2)).save(tmp_path / "1.png")
    save_jpg(tmp_path / "2.jpg", image[0].permute(1, 2, 0).numpy())
    Image.fromarray((mask[0].numpy() * 200).astype(np.uint8)).save(tmp_path / "2.png")
    dataset = StaticTransformDataset(tmp_path, crop_size=CROP)
    torch.manual_seed(0)
    for idx in range(2):
        sample = dataset[idx]
        assert set(sample["gt"].unique().tolist()) == {0.0, 1.0}
    (tmp_path / "3.jpg").write_bytes((tmp_path / "1.jpg").read_bytes())
    with pytest.raises(DatasetLayoutError, match=r"3.png: missing mask for 3.jpg"):
        StaticTransformDataset(tmp_path, crop_size=CROP)


def test_static_dataset_is_deterministic_under_a_seed(roots):
    dataset = StaticTransformDataset(roots["static"] / "ecssd", crop_size=CROP)
    torch.manual_seed(7)
    a = dataset[1]
    torch.manual_seed(7)
    b = dataset[1]
    assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["gt"], b["gt"])


# -- VOS dataset ----------------------------------------------------------------------------------------------
def test_vos_sample_contract(roots):
    dataset = _davis_set(roots, max_skip=3)
    torch.manual_seed(0)
    for idx in range(len(dataset)):
        sample = dataset[idx]
        assert set(sample) == {"rgb", "gt", "sec_gt", "cls_gt", "selector", "info"}
        assert sample["rgb"].shape == (3, 3, CROP, CROP) and sample["rgb"].dtype == torch.float32
        for key in ("gt", "sec_gt"):
            assert sample[key].shape == (3, 1, CROP, CROP) and sample[key].dtype == torch.float32
            assert set(sample[key].unique().tolist()) <= {0.0, 1.0}
        assert sample["cls_gt"].shape == (3, CROP, CROP) and sample["cls_gt"].dtype == torch.int64
        assert sample["selector"].shape == (2,) and sample["selector"].dtype == torch.float32
        _check_normalised(sample["rgb"])
        assert (sample["gt"] * sample["sec_gt"]).sum() == 0  # one label per pixel
        expected = sample["gt"][:, 0].long() + 2 * sample["sec_gt"][:, 0].long()
        assert torch.equal(sample["cls_gt"], expected)
        assert sample["gt"][0].sum() > 0  # the target is visible in the first frame
        info = sample["info"]
        assert info["name"] == dataset.videos[idx] and len(info["frames"]) == 3
        assert info["num_objects"] == int(sample["selector"].sum())
        if info["num_objects"] == 2:
            assert sample["sec_gt"][0].sum() > 0
        else:
            assert sample["sec_gt"].sum() == 0
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["selector"].shape == (2, 2) and batch["cls_gt"].shape == (2, 3, CROP, CROP)


def test_one_object_video_has_selector_one_zero(roots):
    dataset = _davis_set(roots, max_skip=5, subset={"bear"})  # video 0 of make_davis_root: one object
    assert dataset.videos == ["bear"]
    for seed in range(3):
        torch.manual_seed(seed)
        sample = dataset[0]
        assert sample["selector"].tolist() == [1.0, 0.0]
        assert sample["info"]["num_objects"] == 1
        assert set(sample["cls_gt"].unique().tolist()) <= {0, 1}


def test_two_objects_are_picked_when_present(roots):
    dataset = _davis_set(roots, max_skip=5, subset={"camel"})  # three objects
    torch.manual_seed(0)
    selectors = {tuple(dataset[0]["selector"].tolist()) for _ in range(4)}
    assert (1.0, 1.0) in selectors


def test_vos_sample_aligned_end_to_end(tmp_path):
    image, mask = _white_shape(4)
    for t in range(4):
        save_jpg(tmp_path / "im" / "v" / f"{t:05d}.jpg", image[t].permute(1, 2, 0).numpy())
        save_palette_png(tmp_path / "gt" / "v" / f"{t:05d}.png", mask[t].numpy())
    dataset = VOSDataset(tmp_path / "im", tmp_path / "gt", max_skip=2, crop_size=CROP)
    for seed in range(3):
        torch.manual_seed(seed)
        sample = dataset[0]
        for t in range(3):
            _check_aligned(im_denormalization(sample["rgb"][t]), sample["gt"][t, 0])


def _gaps(dataset: VOSDataset, video: int, draws: int = 200) -> set[int]:
    n = len(dataset.frames[dataset.videos[video]])
    gaps = set()
    for _ in range(draws):
        idx = dataset.sample_frame_indices(n)
        assert all(0 <= i < n for i in idx)
        assert idx == sorted(idx) or idx == sorted(idx, reverse=True)  # temporally ordered
        d1, d2 = abs(idx[1] - idx[0]), abs(idx[2] - idx[1])
        gaps |= {d1, d2}
    return gaps


def test_frame_gaps_respect_max_skip(roots):
    torch.manual_seed(0)
    dataset = _davis_set(roots, max_skip=1)
    assert _gaps(dataset, 0) == {1}
    dataset.set_max_skip(3)
    assert _gaps(dataset, 0) == {1, 2, 3}
    dataset.set_max_skip(25)  # longer than the 8-frame video: gaps fit into the video
    assert max(_gaps(dataset, 0)) <= 6


def test_youtube_frame_stride_divides_the_jump(roots):
    base = roots["youtube"] / "train_480p"
    dataset = VOSDataset(base / "JPEGImages", base / "Annotations", max_skip=5, crop_size=CROP, frame_stride=5)
    torch.manual_seed(0)
    assert dataset.index_jump == 1 and _gaps(dataset, 0) == {1}
    dataset.set_max_skip(10)
    assert dataset.index_jump == 2 and _gaps(dataset, 0) == {1, 2}
    dataset.set_max_skip(3)  # never below one listed frame
    assert dataset.index_jump == 1


def test_main_training_datasets_and_shared_max_skip(roots):
    dataset = main_training_datasets(roots["davis"], roots["youtube"], max_skip=5, davis_subset=None,
                                     yv_subset=None, crop_size=CROP)
    davis, youtube = dataset.datasets[0], dataset.datasets[-1]
    assert all(d is davis for d in dataset.datasets[:5]) and len(dataset.datasets) == 6
    assert len(dataset) == 5 * 3 + 2
    assert youtube.frame_stride == 5 and davis.frame_stride == 1
    set_max_skip(dataset, 15)
    assert davis.max_skip == 15 and youtube.max_skip == 15 and youtube.index_jump == 3
    with pytest.raises(ValueError):
        davis.set_max_skip(0)


class _JumpProbe(torch.utils.data.Dataset):
    """Reports the max_skip that the wrapped VOSDataset sees inside a DataLoader worker."""

    def __init__(self, inner: VOSDataset):
        self.inner = inner

    def __len__(self):
        return 1000

    def __getitem__(self, idx):
        return self.inner.max_skip


def test_set_max_skip_reaches_running_workers(roots):
    vos = _davis_set(roots, max_skip=5)
    loader = DataLoader(_JumpProbe(vos), batch_size=1, num_workers=1, persistent_workers=True, prefetch_factor=1)
    it = iter(loader)
    assert next(it).item() == 5
    set_max_skip(ConcatDataset([vos]), 20)
    seen = [next(it).item() for _ in range(4)]  # already prefetched batches may still say 5
    assert seen[-1] == 20
    del it, loader


def test_bl30k_drops_tiny_objects(roots):
    bl = bl30k_dataset(roots["bl30k"], max_skip=5, crop_size=CROP)
    assert bl.is_bl
    mask = torch.zeros(32, 32, dtype=torch.uint8)
    mask[:10, :15] = 1  # 150 pixels
    mask[20:26, 20:26] = 2  # 36 pixels
    assert bl.candidate_objects(mask) == [1]
    base = roots["bl30k"]
    plain = VOSDataset(base / "JPEGImages", base / "Annotations", max_skip=5, crop_size=CROP)
    assert plain.candidate_objects(mask) == [1, 2]
    # make_bl30k_root: two objects per video, the second one 36 pixels
    torch.manual_seed(0)
    for _ in range(6):
        sample = bl[0]
        assert sample["selector"].tolist() == [1.0, 0.0]
        assert sample["gt"][0].sum() >= 100
    torch.manual_seed(0)
    assert any(plain[0]["selector"].tolist() == [1.0, 1.0] for _ in range(10))


def test_vos_dataset_is_deterministic_under_a_seed(roots):
    dataset = _davis_set(roots, max_skip=5)
    torch.manual_seed(3)
    a = dataset[2]
    torch.manual_seed(3)
    b = dataset[2]
    assert a["info"] == b["info"] and torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["cls_gt"], b["cls_gt"])


# -- subsets ---------------------------------------------------------------------------------------------------
def test_load_subset_and_shipped_lists(tmp_path):
    path = tmp_path / "subset.txt"
    path.write_text("bear\n\n# comment\n camel \n")
    assert load_subset(path) == {"bear", "camel"}
    # the shipped DAVIS list has 60 names (the whole DAVIS 2017 train split; `wc -l` says 59 because
    # the last line has no newline)
    assert len(load_subset(DAVIS_SUBSET_FILE)) == 60
    assert len(load_subset(YOUTUBE_SUBSET_FILE)) == 3464
    with pytest.raises(DatasetLayoutError, match="missing.txt"):
        load_subset(tmp_path / "missing.txt")


def test_subset_file_is_honoured(roots, tmp_path):
    path = tmp_path / "subset.txt"
    path.write_text("bear\ncamel\n")
    dataset = _davis_set(roots, max_skip=5, subset=path)
    assert dataset.videos == ["bear", "camel"]
    path.write_text("bear\nnot-a-video\n")
    with pytest.warns(UserWarning, match="1 of the 2 videos"):
        assert _davis_set(roots, max_skip=5, subset=path).videos == ["bear"]
    path.write_text("nothing-here\n")
    with pytest.raises(DatasetLayoutError, match="subset.txt"):
        _davis_set(roots, max_skip=5, subset=path)


def test_paper_subsets_are_the_default(roots):
    # synthetic DAVIS has 'bear' and 'bike-packing' (val) of the real names; YouTube ids match none
    with pytest.warns(UserWarning, match="59 of the 60 videos"), \
            pytest.raises(DatasetLayoutError, match="none of the 3464 videos of .*yv_subset.txt"):
        main_training_datasets(roots["davis"], roots["youtube"], max_skip=5, crop_size=CROP)


# -- layout checks ---------------------------------------------------------------------------------------------
def test_check_dataset_root_accepts_every_layout(roots):
    davis = check_dataset_root(roots["davis"], "davis")
    assert davis.im_root == roots["davis"] / "2017" / "trainval" / "JPEGImages" / "480p"
    assert check_dataset_root(roots["youtube"], "youtube").gt_root == roots["youtube"] / "train_480p" / "Annotations"
    assert check_dataset_root(roots["bl30k"], "bl30k").im_root == roots["bl30k"] / "JPEGImages"
    assert check_dataset_root(roots["static"], "static").root == roots["static"]
    with pytest.raises(ValueError, match="unknown dataset layout"):
        check_dataset_root(roots["davis"], "kinetics")


def test_missing_root_names_path_and_expected_layout(tmp_path):
    missing = tmp_path / "nowhere" / "DAVIS"
    with pytest.raises(DatasetLayoutError) as info:
        check_dataset_root(missing, "davis")
    message = str(info.value)
    assert message.startswith(str(missing))
    assert f"{missing}/2017/trainval/JPEGImages/480p/<video>/00000.jpg" in message
    assert "--davis_root" in message and "\n" not in message


def test_wrong_level_and_missing_annotation_are_reported(roots, tmp_path):
    # pointing --davis_root at 2017/trainval instead of DAVIS
    inner = roots["davis"] / "2017" / "trainval"
    with pytest.raises(DatasetLayoutError, match=r"2017/trainval/2017/trainval/JPEGImages/480p: no such folder"):
        check_dataset_root(inner, "davis")
    # a video without annotations
    broken = tmp_path / "BL30K"
    save_jpg(broken / "JPEGImages" / "a" / "00000.jpg", np.zeros((8, 8, 3), np.uint8))
    (broken / "Annotations" / "a").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=r"Annotations/a/00000.png: missing annotation"):
        check_dataset_root(broken, "bl30k")
    # a static root without one of the sets
    static = tmp_path / "static"
    for name in ("fss/c", "DUTS-TR", "DUTS-TE"):
        save_jpg(static / name / "1.jpg", np.zeros((8, 8, 3), np.uint8))
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(static / name / "1.png")
    with pytest.raises(DatasetLayoutError, match=r"static/ecssd: no such folder; expected .*fss/<class>/<n>.jpg"):
        check_dataset_root(static, "static")


def test_unreadable_files_are_reported(tmp_path):
    save_jpg(tmp_path / "im" / "v" / "00000.jpg", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "im" / "v" / "00001.jpg").write_bytes(b"not a jpeg")
    save_jpg(tmp_path / "im" / "v" / "00002.jpg", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "gt" / "v").mkdir(parents=True)
    for t in range(3):  # RGB masks instead of palette indices
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "gt" / "v" / f"{t:05d}.png")
    with pytest.raises(DataError, match=r"/gt/v/0000[0-2].png: mask has mode RGB"):  # found before training
        VOSDataset(tmp_path / "im", tmp_path / "gt", max_skip=1, crop_size=8)
    from dataset.util import read_image

    with pytest.raises(DataError, match=r"00001.jpg: unreadable image"):
        read_image(tmp_path / "im" / "v" / "00001.jpg")


# -- one mask reader (util/io.py) gives the values the training's own readers gave -----------------------
def _old_read_mask(path) -> np.ndarray:
    """dataset/util.py's read_mask before it moved to util/io.py (the reference for the values)."""
    with Image.open(path) as im:
        assert im.mode in ("P", "L", "1", "I;16", "I")
        arr = np.array(im.convert("L") if im.mode == "1" else im)
    return arr if arr.dtype == np.uint8 else arr.astype(np.uint8)


def _old_read_binary_mask(path, threshold: int = 128) -> np.ndarray:
    with Image.open(path) as im:
        grey = np.array(im.convert("L"))
    return (grey >= threshold).astype(np.uint8)


def _mask_files(folder: Path) -> dict[str, Path]:
    """One mask per PNG mode the training datasets meet: palette, 0/255 grey, 1-bit, 16-bit, grey with
    anti-aliased edges, RGB and RGBA (static sets only)."""
    rng = np.random.default_rng(0)
    labels = np.zeros((H, W), np.uint8)
    labels[8:40, 10:50], labels[30:60, 60:90] = 1, 2
    smooth = (_white_shape()[1][0].numpy() * 255).astype(np.uint8)
    smooth[1:-1, 1:-1] = np.maximum(smooth[1:-1, 1:-1], smooth[2:, 1:-1] // 2)  # a half-grey edge
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.png" for name in ("P", "L", "1", "I;16", "L-edges", "RGB", "RGBA")}
    save_palette_png(files["P"], labels)
    Image.fromarray(np.where(labels > 0, 255, 0).astype(np.uint8)).save(files["L"])
    Image.fromarray(labels > 0).save(files["1"])
    Image.fromarray(labels.astype(np.uint16) * 300 + 7).save(files["I;16"])
    Image.fromarray(smooth).save(files["L-edges"])
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(files["RGB"])
    Image.fromarray(rng.integers(0, 256, (H, W, 4), dtype=np.uint8)).save(files["RGBA"])
    return files


def test_index_masks_read_as_before_in_every_mode(tmp_path):
    files = _mask_files(tmp_path)
    for name, path in files.items():
        with Image.open(path) as im:
            mode = im.mode
        if name.startswith("RGB"):
            with pytest.raises(DataError, match=f"{name}.png: mask has mode {name}"):
                read_index_mask(path)
            continue
        assert name.split("-")[0] == mode
        new, old = read_index_mask(path), _old_read_mask(path)
        assert new.dtype == old.dtype == np.uint8 and np.array_equal(new, old), name
    assert set(np.unique(read_index_mask(files["1"])).tolist()) == {0, 255}  # 1-bit as 0/255, as before


def test_binary_masks_read_as_before_in_every_mode(tmp_path):
    for name, path in _mask_files(tmp_path).items():
        new, old = read_binary_mask(path), _old_read_binary_mask(path)
        assert new.dtype == np.uint8 and np.array_equal(new, old), name
    jpeg = tmp_path / "jpeg.png"  # a thresholded mask may be lossy, as before
    Image.fromarray((_white_shape()[1][0].numpy() * 255).astype(np.uint8)).save(jpeg, format="JPEG")
    assert np.array_equal(read_binary_mask(jpeg), _old_read_binary_mask(jpeg))


def test_training_datasets_read_the_synthetic_layouts_as_before(roots):
    """Every mask of the synthetic DAVIS, YouTube-VOS, BL30K and static roots, through the datasets."""
    davis = roots["davis"] / "2017" / "trainval"
    vos_roots = [(davis / "JPEGImages" / "480p", davis / "Annotations" / "480p"),
                 (roots["youtube"] / "train_480p" / "JPEGImages", roots["youtube"] / "train_480p" / "Annotations"),
                 (roots["bl30k"] / "JPEGImages", roots["bl30k"] / "Annotations")]
    compared = 0
    for im_root, gt_root in vos_roots:
        dataset = VOSDataset(im_root, gt_root, max_skip=1, crop_size=CROP)
        for video in sorted(p.name for p in im_root.iterdir()):
            names = sorted(p.name for p in (im_root / video).glob("*.jpg"))
            _, masks = dataset._load_clip(video, names)
            old = np.stack([_old_read_mask(gt_root / video / f"{Path(n).stem}.png") for n in names])
            assert np.array_equal(masks.numpy(), old), video
            compared += len(names)
    for path in sorted(roots["static"].rglob("*.png")):
        assert np.array_equal(read_binary_mask(path), _old_read_binary_mask(path)), path
        compared += 1
    assert compared > 30


# -- seeding ---------------------------------------------------------------------------------------------------
def test_worker_init_fn_seeds_numpy_and_random_from_torch():
    import random

    torch.manual_seed(11)
    worker_init_fn(0)
    a = (np.random.rand(), random.random())
    torch.manual_seed(11)
    worker_init_fn(0)
    assert (np.random.rand(), random.random()) == a
    torch.manual_seed(12)
    worker_init_fn(0)
    assert (np.random.rand(), random.random()) != a


def test_loader_with_seeded_generator_is_reproducible(roots):
    dataset = _davis_set(roots, max_skip=5)

    def first_batch(seed: int):
        loader = DataLoader(dataset, batch_size=3, num_workers=1, worker_init_fn=worker_init_fn,
                            generator=torch.Generator().manual_seed(seed))
        return next(iter(loader))

    a, b, c = first_batch(0), first_batch(0), first_batch(1)
    assert torch.equal(a["rgb"], b["rgb"])
    assert not torch.equal(a["rgb"], c["rgb"])


# -- synthetic data helper ----------------------------------------------------------------------------------------
def test_synthetic_data_is_deterministic_and_youtube_valid_is_realistic(tmp_path):
    one = make_davis_root(tmp_path / "a", videos=1, frames=3)
    two = make_davis_root(tmp_path / "b", videos=1, frames=3)
    rel = Path("2017/trainval/Annotations/480p/bear/00002.png")
    assert (one / rel).read_bytes() == (two / rel).read_bytes()
    with Image.open(one / rel) as im:
        assert im.mode == "P"

    yt = make_youtube_root(tmp_path / "c", videos=1, frames=4, valid_videos=2)
    meta = json.loads((yt / "valid" / "meta.json").read_text())
    for video, entry in meta["videos"].items():
        ids = sorted(int(k) for k in entry["objects"])
        assert ids != list(range(1, len(ids) + 1))  # non-contiguous ids
        firsts = [entry["objects"][str(k)]["frames"][0] for k in ids]
        assert len(set(firsts)) == len(ids)  # each object appears at its own frame
        for k, first in zip(ids, firsts):
            labels = np.array(Image.open(yt / "valid" / "Annotations" / video / f"{first}.png"))
            assert set(np.unique(labels).tolist()) == {0, k}
        assert len(list((yt / "all_frames" / "valid_all_frames" / "JPEGImages" / video).iterdir())) == 16
    assert sorted(p.name for p in (yt / "train_480p" / "Annotations").iterdir().__next__().iterdir()) == [
        "00000.png", "00005.png", "00010.png", "00015.png"]
