"""The frame resize of every path to the network (YouTube-VOS, generic folders, video files, the Python
Predictor, multi-scale/flip ensembles): the paper's (normalise, then plain bicubic F.interpolate) as the
default, torchvision >= 0.17's antialiased variant behind --antialias, masks nearest as the original's,
DAVIS never resized (but for the other sides of --scales).

The expected tensors are computed here from the decoded pixels, independently of the code under test.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

import eval_davis
import eval_generic
import eval_youtube
import segment_video
from dataset.transforms import IMAGENET_MEAN, IMAGENET_STD
from evaluation.datasets import EVAL_SHORT_SIDE, YouTubeVOSEvalDataset, resized_shape
from evaluation.video_file import VideoFileVideo
from inference_core import Predictor
from model.network import STCN
from tests.eval_fixtures import (  # noqa: F401  (fixtures)
    DAVIS_VIDEOS,
    VideoSpec,
    davis_template,
    generic_template,
    render,
    save_indexed,
    save_jpg,
)
from util.frames import normalise, resize_frame, resize_labels
from util.tensor_util import pad_divide_by, unpad
from util.video import VideoReader, VideoWriter

torch.set_num_threads(1)

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def normalised(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> normalised 3, H, W float, as ToTensor + Normalize."""
    return (torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 255 - MEAN) / STD


def paper_resize(rgb: np.ndarray, size: tuple[int, int], antialias: bool = False) -> torch.Tensor:
    return F.interpolate(normalised(rgb)[None], size=size, mode="bicubic", align_corners=False,
                         antialias=antialias)[0]


def frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    images, _ = render(VideoSpec("f", h, w, 1, {1: 0}), seed=seed)
    return images[0]


# ------------------------------------------------------------------------------ the function
@pytest.mark.parametrize("hw, expected", [
    ((720, 1280), (480, 853)),   # landscape 720p: the longer side truncated (853.33)
    ((1280, 720), (853, 480)),   # portrait
    ((1080, 1920), (480, 853)),
    ((360, 640), (480, 853)),    # upscaled
    ((67, 101), (480, 723)),     # 723.58: truncated, not rounded
])
def test_size_rule_is_torchvision_s(hw, expected):
    assert resized_shape(*hw, EVAL_SHORT_SIDE) == expected
    assert tuple(TF.resize(torch.zeros(3, *hw), EVAL_SHORT_SIDE).shape[-2:]) == expected


@pytest.mark.parametrize("hw", [(720, 1280), (1280, 720), (360, 640)])
def test_resize_is_plain_bicubic_on_the_normalised_frame(hw):
    rgb = frame(*hw)
    size = resized_shape(*hw, EVAL_SHORT_SIDE)
    x = normalise(Image.fromarray(rgb))
    out = resize_frame(x, size)
    torch.testing.assert_close(out, paper_resize(rgb, size), rtol=0, atol=0)
    # torchvision's tensor Resize without antialiasing (0.9.1's only behaviour) is the same thing
    tv = TF.resize(normalised(rgb), EVAL_SHORT_SIDE, interpolation=InterpolationMode.BICUBIC, antialias=False)
    torch.testing.assert_close(out, tv)
    # and it is not PIL's bicubic on the uint8 image (what this project did before)
    pil = normalise(Image.fromarray(rgb).resize(size[::-1], Image.BICUBIC))
    assert (out - pil).abs().mean() > 0.01 and (out - pil).abs().max() > 0.1


@pytest.mark.parametrize("hw", [(720, 1280), (1280, 720), (360, 640)])
def test_antialias_is_todays_torchvision_resize(hw):
    rgb = frame(*hw, seed=1)
    size = resized_shape(*hw, EVAL_SHORT_SIDE)
    x = normalise(Image.fromarray(rgb))
    out = resize_frame(x, size, antialias=True)
    # the original's transforms.Resize(480, BICUBIC) on the normalised tensor, torchvision >= 0.17 defaults
    torch.testing.assert_close(out, TF.resize(x, EVAL_SHORT_SIDE, interpolation=InterpolationMode.BICUBIC))
    torch.testing.assert_close(out, paper_resize(rgb, size, antialias=True), rtol=0, atol=0)
    assert (out - resize_frame(x, size)).abs().max() > 0.1


def test_resize_does_not_clamp_and_keeps_a_native_frame():
    edge = np.zeros((60, 80, 3), np.uint8)
    edge[:, 40:] = 255  # a black/white edge: the cubic kernel overshoots on both sides of it
    x = normalise(Image.fromarray(edge))
    out = resize_frame(x, (90, 120))
    black, white = (0 - MEAN) / STD, (1 - MEAN) / STD
    assert (out < black - 0.01).any() and (out > white + 0.01).any()
    assert resize_frame(x, (60, 80)) is x
    batch = torch.stack([x, x.flip(-1)])  # T, 3, H, W works frame by frame
    torch.testing.assert_close(resize_frame(batch, (48, 72))[1], resize_frame(x.flip(-1), (48, 72)))
    assert resize_frame(x, (48, 72)).min() < black.min()  # shrinking overshoots too


def originals_mask_resize(labels: np.ndarray, short_side: int) -> torch.Tensor:
    """The original's annotation resize: one channel per label, `transforms.Resize(480, NEAREST)` on
    that float tensor, back to a label map."""
    ids = [int(v) for v in np.unique(labels) if v != 0]
    onehot = torch.from_numpy(np.stack([labels == v for v in ids])).float()
    resized = TF.resize(onehot, short_side, interpolation=InterpolationMode.NEAREST)
    return (resized * torch.tensor(ids, dtype=torch.float32).view(-1, 1, 1)).sum(0).long()


@pytest.mark.parametrize("hw", [(720, 1280), (1280, 720)])
def test_masks_are_resized_nearest_as_the_original(hw):
    _, labels = render(VideoSpec("m", *hw, 1, {1: 0, 3: 0, 7: 0}), seed=2)
    lab = np.kron(labels[0][::8, ::8], np.ones((8, 8), np.uint8))[: hw[0], : hw[1]]  # blocks: edges everywhere
    lab[::3, ::5] = 7  # a fine grid, so that where the nearest sample falls shows
    size = resized_shape(*hw, EVAL_SHORT_SIDE)
    out = resize_labels(torch.from_numpy(lab.astype(np.int64)), size)
    assert out.dtype == torch.long and tuple(out.shape) == size
    torch.testing.assert_close(out, originals_mask_resize(lab, EVAL_SHORT_SIDE), rtol=0, atol=0)
    # PIL's NEAREST samples the pixel centres ((i + 0.5) * scale), torch's the corners (i * scale): not the same
    pil = np.asarray(Image.fromarray(lab).resize(size[::-1], Image.NEAREST))
    assert (out.numpy() != pil).mean() > 0.05


# --------------------------------------------------------------------------- end to end
@pytest.fixture()
def network_inputs(monkeypatch):
    """Every frame tensor given to the key encoder during the test, unpadded (1, 3, H, W each)."""
    seen: list[torch.Tensor] = []
    encode_key = STCN.encode_key

    def recording(self, frame):
        seen.append(frame.detach().clone())
        return encode_key(self, frame)

    monkeypatch.setattr(STCN, "encode_key", recording)
    return seen


def assert_network_saw(padded: torch.Tensor, expected: torch.Tensor) -> None:
    """`padded` is `expected` (3, H, W) zero-padded to multiples of 16 as the core does."""
    ref, pad = pad_divide_by(expected[None])
    assert padded.shape == ref.shape
    torch.testing.assert_close(unpad(padded, pad)[0], expected, rtol=0, atol=0)
    torch.testing.assert_close(padded, ref, rtol=0, atol=0)


HD_VIDEOS = (VideoSpec("hd_land", 720, 1280, 6, {1: 0}), VideoSpec("hd_port", 1280, 720, 1, {2: 0}))


def make_hd_youtube(root: Path) -> Path:
    """YouTube-VOS valid layout with 720p frames; meta.json lists every 5th (landscape 0 and 5, portrait 0)."""
    meta: dict = {"videos": {}}
    for k, spec in enumerate(HD_VIDEOS):
        images, labels = render(spec, seed=30 + k)
        for t, img in enumerate(images):
            save_jpg(root / "all_frames" / "valid_all_frames" / "JPEGImages" / spec.name / f"{t:05d}.jpg", img)
        listed = [f"{t:05d}" for t in range(0, spec.frames, 5)]
        for name in listed:
            save_jpg(root / "valid" / "JPEGImages" / spec.name / f"{name}.jpg", images[int(name)])
        (label,) = spec.starts
        save_indexed(root / "valid" / "Annotations" / spec.name / "00000.png", labels[0])
        meta["videos"][spec.name] = {"objects": {str(label): {"category": "thing", "frames": listed}}}
    (root / "valid" / "meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def hd_youtube(tmp_path_factory) -> Path:
    return make_hd_youtube(tmp_path_factory.mktemp("yv_hd"))


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_youtube_720p_network_sees_the_papers_resize(hd_youtube, released_checkpoint, tmp_path, capsys,
                                                     network_inputs):
    rc = eval_youtube.main(["--model", str(released_checkpoint), "--yv_path", str(hd_youtube),
                            "--output", str(tmp_path / "out"), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    frames_dir = hd_youtube / "all_frames" / "valid_all_frames" / "JPEGImages"
    expected = [paper_resize(decoded(frames_dir / s.name / f"{t:05d}.jpg"), resized_shape(s.height, s.width, 480))
                for s in HD_VIDEOS for t in range(0, s.frames, 5)]  # frames 1-4: neither written nor memory
    assert [tuple(x.shape[-2:]) for x in network_inputs] == [(480, 864), (480, 864), (864, 480)]
    for seen, want in zip(network_inputs, expected, strict=True):
        assert_network_saw(seen, want)
    for spec in HD_VIDEOS:  # masks come back at the original size
        with Image.open(tmp_path / "out" / "Annotations" / spec.name / "00000.png") as mask:
            assert (mask.height, mask.width) == (spec.height, spec.width)


def test_youtube_antialias_flag(hd_youtube, released_checkpoint, tmp_path, capsys, network_inputs):
    rc = eval_youtube.main(["--model", str(released_checkpoint), "--yv_path", str(hd_youtube), "--size", "64",
                            "--antialias", "--output", str(tmp_path / "out"), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    first = decoded(hd_youtube / "all_frames" / "valid_all_frames" / "JPEGImages" / "hd_land" / "00000.jpg")
    want = paper_resize(first, (64, 113), antialias=True)
    assert_network_saw(network_inputs[0], want)
    assert (want - paper_resize(first, (64, 113))).abs().max() > 0.1  # the flag changes what the network sees


def test_generic_folder_default_and_antialias(generic_template, released_checkpoint, tmp_path, capsys,
                                              network_inputs):
    first = decoded(generic_template / "JPEGImages" / "clip" / "00000.jpg")  # 48 x 64
    for flags, antialias in (([], False), (["--antialias"], True)):
        network_inputs.clear()
        rc = eval_generic.main(["--model", str(released_checkpoint), "--data_path", str(generic_template),
                                "--size", "32", "--output", str(tmp_path / f"o{antialias}"), "--device", "cpu",
                                *flags])
        assert rc == 0, capsys.readouterr().err
        assert_network_saw(network_inputs[0], paper_resize(first, (32, 42), antialias=antialias))


def test_video_file_default_and_antialias(tmp_path, released_checkpoint, capsys, network_inputs):
    spec = VideoSpec("clip", 48, 64, 3, {1: 0})
    images, labels = render(spec)
    with VideoWriter(tmp_path / "clip.mp4", fps=10) as writer:
        for img in images:
            writer.write(img)
    save_indexed(tmp_path / "first.png", labels[0])
    first = next(VideoReader(tmp_path / "clip.mp4").frames())
    for flags, antialias in (([], False), (["--antialias"], True)):
        network_inputs.clear()
        rc = segment_video.main(["--model", str(released_checkpoint), "--video", str(tmp_path / "clip.mp4"),
                                 "--mask", str(tmp_path / "first.png"), "--size", "32", "--device", "cpu",
                                 "--output", str(tmp_path / f"o{antialias}"), *flags])
        assert rc == 0, capsys.readouterr().err
        assert_network_saw(network_inputs[0], paper_resize(first, (32, 42), antialias=antialias))
    video = VideoFileVideo(tmp_path / "clip.mp4", {0: tmp_path / "first.png"})
    stream = Predictor.from_checkpoint(released_checkpoint, device="cpu", antialias=True).new_stream(start_only=True)
    prepared = stream.prepare(video.original_rgb(0), video.annotation(0))
    torch.testing.assert_close(prepared.image, paper_resize(first, (480, 640), antialias=True))


def test_davis_frames_are_never_resized(davis_template, released_checkpoint, tmp_path, capsys, network_inputs):
    rc = eval_davis.main(["--model", str(released_checkpoint), "--davis_path", str(davis_template / "2017"),
                          "--output", str(tmp_path / "d17"), "--no_score", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    frames_dir = davis_template / "2017" / "trainval" / "JPEGImages" / "480p"
    expected = [normalised(decoded(frames_dir / s.name / f"{t:05d}.jpg"))
                for s in DAVIS_VIDEOS for t in range(s.frames)]
    assert len(network_inputs) == len(expected)
    for seen, want in zip(network_inputs, expected):
        assert_network_saw(seen, want)


def test_dataset_api_resizes_like_the_scripts(hd_youtube, released_checkpoint):
    video = YouTubeVOSEvalDataset(hd_youtube)[0]  # the Python API: 480 and the paper's resize by default
    stream = Predictor.from_checkpoint(released_checkpoint, device="cpu").new_stream(start_only=True)
    rgb = decoded(video.frames[3].image_path)
    assert video.network_size == (480, 853)
    mask = stream.prepare(video.original_rgb(0), video.annotation(0), video.frames[0].start_labels).mask
    torch.testing.assert_close(stream.prepare(video.original_rgb(3)).image, paper_resize(rgb, (480, 853)),
                               rtol=0, atol=0)
    assert mask.shape == (480, 853) and set(mask.unique().tolist()) == {0, 1}  # nearest: no new labels
    with Image.open(video.frames[0].mask_path) as png:
        torch.testing.assert_close(mask, originals_mask_resize(np.asarray(png), EVAL_SHORT_SIDE), rtol=0, atol=0)


# --------------------------------------------------------------------- the Python API
class Seen(Exception):
    """Raised by `first_network_input` once the key encoder has been given its frame."""


@pytest.fixture()
def first_network_input(monkeypatch):
    """The frame the next `encode_key` call is given; the call then stops (no network work at 720p)."""
    seen: list[torch.Tensor] = []

    def recording(self, frame):
        seen.append(frame.detach().clone())
        raise Seen

    monkeypatch.setattr(STCN, "encode_key", recording)
    return seen


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("hw", [(720, 1280), (1280, 720)])
def test_predictor_resizes_numpy_pil_and_tensor_frames_as_the_paper(stcn_net, first_network_input, hw, antialias):
    images, labels = render(VideoSpec("p", *hw, 1, {1: 0, 4: 0}), seed=3)
    rgb, lab = images[0], labels[0]
    size = resized_shape(*hw, EVAL_SHORT_SIDE)
    want = paper_resize(rgb, size, antialias=antialias)
    for given in (rgb, Image.fromarray(rgb), torch.from_numpy(rgb.copy())):
        first_network_input.clear()
        stream = Predictor(stcn_net, size=480, antialias=antialias).new_stream()
        with pytest.raises(Seen):
            stream.step(given, lab)
        (seen,) = first_network_input
        assert_network_saw(seen, want)
        prepared = stream.prepare(given, lab)  # the start mask: nearest, as the original's
        torch.testing.assert_close(prepared.mask, originals_mask_resize(lab, EVAL_SHORT_SIDE), rtol=0, atol=0)
    assert (want - paper_resize(rgb, size, antialias=not antialias)).abs().max() > 0.1


# ------------------------------------------------------------------ multi-scale ensembles
def test_ensemble_scales_resize_the_original_frame_as_the_paper(generic_template, released_checkpoint, tmp_path,
                                                                capsys, network_inputs):
    """--scales/--flip: each variant sees the original frame resized to its side by the same function (and
    mirrored after the resize, as the original's multi-scale ms/eval_youtube.py); --antialias reaches them."""
    first = decoded(generic_template / "JPEGImages" / "clip" / "00000.jpg")  # 48 x 64
    for flags, antialias in (([], False), (["--antialias"], True)):
        network_inputs.clear()
        rc = eval_generic.main(["--model", str(released_checkpoint), "--data_path", str(generic_template),
                                "--scales", "32", "40", "--flip", "--output", str(tmp_path / f"o{antialias}"),
                                "--device", "cpu", *flags])
        assert rc == 0, capsys.readouterr().err
        variants = [(side, flip) for side in (32, 40) for flip in (False, True)]  # the ensemble's order
        for seen, (side, flip) in zip(network_inputs[: len(variants)], variants, strict=True):  # frame 0 of each
            want = paper_resize(first, resized_shape(48, 64, side), antialias=antialias)
            assert_network_saw(seen, want.flip(-1) if flip else want)


def test_davis_is_resized_only_for_other_scales(davis_template, released_checkpoint, tmp_path, capsys,
                                                network_inputs):
    rc = eval_davis.main(["--model", str(released_checkpoint), "--davis_path", str(davis_template / "2017"),
                          "--output", str(tmp_path / "d17"), "--no_score", "--device", "cpu",
                          "--scales", "48", "40", "--antialias"])
    assert rc == 0, capsys.readouterr().err
    first = decoded(davis_template / "2017" / "trainval" / "JPEGImages" / "480p" / "cat" / "00000.jpg")  # 48 x 64
    assert_network_saw(network_inputs[0], normalised(first))  # its own size: not resized
    assert_network_saw(network_inputs[1], paper_resize(first, (40, 53), antialias=True))
