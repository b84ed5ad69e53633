"""Video-file input (segment_video.py), overlays, binary masks and the long-video flags, end to end on CPU."""
from __future__ import annotations

import argparse
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval_generic
import segment_video
from evaluation.flags import add_common_args
from tests.eval_fixtures import TEST_PALETTE, VideoSpec, generic_template, render, save_indexed  # noqa: F401
from tests.helpers import run_main
from util.io import DataError
from util.outputs import MARKER
from util.video import VideoReader, VideoWriter

torch.set_num_threads(1)

SPEC = VideoSpec("clip", height=48, width=64, frames=9, starts={1: 0, 3: 4})
FPS = 10


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = FPS) -> Path:
    with VideoWriter(path, fps=fps) as writer:
        for f in frames:
            writer.write(f)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """clip.mp4 (9 frames, object 1 from frame 0, object 3 from frame 4) and its masks."""
    root = tmp_path_factory.mktemp("video")
    images, labels = render(SPEC)
    # a frame-dependent brightness ramp in one corner lets the test check the decoding order
    for t, img in enumerate(images):
        img[-8:, -8:] = 20 * t
    video = write_mp4(root / "clip.mp4", images)
    save_indexed(root / "first.png", np.where(labels[0] == 1, 1, 0).astype(np.uint8))
    (root / "masks").mkdir()
    save_indexed(root / "masks" / "00000.png", np.where(labels[0] == 1, 1, 0).astype(np.uint8))
    save_indexed(root / "masks" / "00004.png", np.where(labels[4] == 3, 3, 0).astype(np.uint8))
    return root, video, labels


run = partial(run_main, device="cpu")  # every command here runs on the CPU


def read_labels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "P"
        return np.asarray(img)


def test_reader_streams_frames_in_order(clip):
    _, video, _ = clip
    reader = VideoReader(video)
    assert reader.size == (SPEC.height, SPEC.width) and reader.num_frames == SPEC.frames
    assert reader.fps == pytest.approx(FPS)
    ramps = [int(f[-6:-2, -6:-2].mean()) for f in reader.frames()]
    assert len(ramps) == SPEC.frames
    assert all(abs(r - 20 * t) <= 6 for t, r in enumerate(ramps))  # lossy codec: a few levels of slack



def test_one_frame_source_reads_a_video_file_forward_by_index_and_up_to_a_frame(clip):
    """The frames of `FrameSource` (under VideoFileVideo and Predictor.segment) are the reader's, in order,
    whichever way they are read: by index (backward: decoded again from the start), or kept up to a frame."""
    from evaluation.video_file import VideoFileVideo
    from util.frame_source import FrameSource

    root, video, _ = clip
    frames = list(VideoReader(video).frames())
    source = FrameSource.video_file(VideoReader(video))
    assert all(np.array_equal(a, b) for a, b in zip(source.forward(), frames, strict=True))
    assert all(np.array_equal(source.frame(t), frames[t]) for t in (5, 6, 2, 2, 8, 0))
    kept = source.upto(4)
    assert len(kept) == 5 and all(np.array_equal(kept[t], frames[t]) for t in range(5))
    clip_video = VideoFileVideo(video, {0: root / "first.png"})
    assert np.array_equal(np.asarray(clip_video.frame_image(7)), frames[7])
    assert np.array_equal(np.asarray(clip_video.frame_image(3)), frames[3])


def test_video_round_trip_masks_align_with_frames(clip, released_checkpoint, tmp_path, capsys):
    root, video, labels = clip
    out, overlay, binary = tmp_path / "masks", tmp_path / "overlay.mp4", tmp_path / "objects"
    rc, stdout, err = run(segment_video.main, [
        "--video", video, "--mask_dir", root / "masks", "--output", out, "--model", released_checkpoint,
        "--overlay", overlay, "--binary_masks", binary, "--size", "-1",
    ], capsys)
    assert rc == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == [MARKER] + [f"{i:05d}.png" for i in range(SPEC.frames)]  # marked as a result (util/outputs.py)
    # annotated frames come back as given: a mask landing on the wrong frame would not match
    np.testing.assert_array_equal(read_labels(out / "00000.png"), np.where(labels[0] == 1, 1, 0))
    fourth = read_labels(out / "00004.png")
    np.testing.assert_array_equal(fourth == 3, labels[4] == 3)
    assert not (read_labels(out / "00003.png") == 3).any()  # object 3 does not exist before frame 4
    with Image.open(out / "00004.png") as img:
        assert img.getpalette()[:15] == TEST_PALETTE[:15]
    assert re.search(r"Total processed frames: 9\b", stdout)
    last = stdout.strip().splitlines()[-1]
    assert last == f"wrote 9 masks to {out}, the overlay to {overlay} and binary masks to {binary}"

    # overlay: same frame count and size (even sizes), the object colour blended in on frame 0
    ov = VideoReader(overlay)
    assert ov.num_frames == SPEC.frames and ov.size == (SPEC.height, SPEC.width)
    first = next(ov.frames()).astype(float)
    original = next(VideoReader(video).frames()).astype(float)
    inside = labels[0] == 1
    colour = np.array(TEST_PALETTE[3:6], dtype=float)
    assert np.abs(first[inside] - (original[inside] + colour) / 2).mean() < 12

    # binary masks: one folder per object, 0/255, equal to the palette masks
    assert sorted(p.name for p in binary.iterdir()) == [MARKER, "1", "3"]
    for label in (1, 3):
        with Image.open(binary / str(label) / "00004.png") as img:
            b = np.asarray(img)
        assert set(np.unique(b)) <= {0, 255}
        np.testing.assert_array_equal(b == 255, fourth == label)
    assert not any(p.name.startswith(".") and p.name != MARKER for p in tmp_path.rglob("*"))  # no temporary left


def test_first_frame_mask_and_processing_size(clip, released_checkpoint, tmp_path, capsys):
    root, video, labels = clip
    out = tmp_path / "masks"
    rc, _, err = run(segment_video.main, [
        "--video", video, "--mask", root / "first.png", "--output", out, "--model", released_checkpoint,
        "--size", "32", "--max_mem_frames", "2", "--chunk_size", "7", "--object_batch", "1",
    ], capsys)
    assert rc == 0, err
    assert len(list(out.glob("*.png"))) == SPEC.frames
    assert read_labels(out / "00008.png").shape == (SPEC.height, SPEC.width)  # back at the video's size
    assert "memory" in err and "frames" in err  # the progress bar reports the memory size


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "audio_only"])
def test_bad_video_gives_one_error_line(case, clip, released_checkpoint, tmp_path, capsys):
    root, video, _ = clip
    path = tmp_path / "bad.mp4"
    if case == "garbage":
        path.write_bytes(b"this is not a video" * 100)
    elif case == "truncated":
        path.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    elif case == "audio_only":
        import av

        path = tmp_path / "sound.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("aac", rate=8000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            frame.sample_rate = 8000
            for packet in [*stream.encode(frame), *stream.encode()]:
                container.mux(packet)
    out = tmp_path / "out"
    rc, _, err = run(segment_video.main, [
        "--video", path, "--mask", root / "first.png", "--output", out, "--model", released_checkpoint,
    ], capsys)
    assert rc == 1
    lines = [line for line in err.splitlines() if line.strip() and "%" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert str(path) in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_bad_masks_for_a_video(clip, released_checkpoint, tmp_path, capsys):
    root, video, _ = clip
    small = tmp_path / "small.png"
    save_indexed(small, np.ones((10, 10), dtype=np.uint8))
    late = tmp_path / "late"
    late.mkdir()
    save_indexed(late / "00050.png", np.ones((SPEC.height, SPEC.width), dtype=np.uint8))
    for extra, needle in (([], "no annotation"), (["--mask", small], "small.png"), (["--mask_dir", late], "00050.png")):
        rc, _, err = run(segment_video.main, [
            "--video", video, "--output", tmp_path / "out", "--model", released_checkpoint, *extra,
        ], capsys)
        assert rc == 1 and err.startswith("error: ") and needle in err, err
        assert len(err.strip().splitlines()) == 1


# -------------------------------------------------------------------------- rotated (phone) videos
def write_turned(path: Path, frames: list[np.ndarray], degrees: int | None = None, hflip: bool = False,
                 tag: str | None = None) -> Path:
    """A video whose container says how to show it: a display matrix (`degrees` counter-clockwise, as
    phones write it, and an optional mirror) or an older `rotate` tag (degrees clockwise)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=FPS)
        stream.height, stream.width, stream.pix_fmt = frames[0].shape[0], frames[0].shape[1], "yuv420p"
        if tag is not None:
            stream.metadata["rotate"] = tag
        if degrees is not None:
            if not hasattr(stream, "set_display_rotation"):
                pytest.skip("this PyAV cannot write a display matrix")
            stream.set_display_rotation(degrees, hflip=hflip)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


TURNED = VideoSpec("turned", height=48, width=64, frames=4, starts={1: 0})


@pytest.mark.parametrize("container, shown", [
    (dict(degrees=90), lambda a: np.rot90(a, 1)),  # counter-clockwise
    (dict(degrees=-90), lambda a: np.rot90(a, -1)),  # a phone held upright: 90 degrees clockwise
    (dict(degrees=180), lambda a: a[::-1, ::-1]),
    (dict(degrees=0, hflip=True), lambda a: a[:, ::-1]),
    (dict(tag="90"), lambda a: np.rot90(a, -1)),  # an older rotate tag (clockwise), kept by Matroska
], ids=["ccw90", "cw90", "180", "mirror", "rotate-tag"])
def test_a_rotated_video_is_decoded_as_players_show_it(tmp_path, container, shown):
    images, _ = render(TURNED)
    suffix = ".mkv" if "tag" in container else ".mp4"
    plain = VideoReader(write_turned(tmp_path / f"plain{suffix}", images))
    turned = VideoReader(write_turned(tmp_path / f"turned{suffix}", images, **container))
    stored = list(plain.frames())
    assert plain.size == (TURNED.height, TURNED.width) and turned.num_frames == TURNED.frames
    assert turned.size == shown(stored[0]).shape[:2]
    for a, b in zip(stored, turned.frames()):
        assert np.array_equal(shown(a), b)


def test_a_rotation_that_is_no_quarter_turn_is_refused(tmp_path):
    images, _ = render(TURNED)
    with pytest.raises(DataError, match=r"tilted\.mp4: the video's display matrix turns it by 45 degrees, not a"):
        VideoReader(write_turned(tmp_path / "tilted.mp4", images, degrees=45))


def test_segment_video_on_a_phone_video_works_in_display_orientation(tmp_path, released_checkpoint, capsys):
    """Stored 64x48, shown 48x64 (rotated 90 degrees clockwise): the mask drawn on the shown frame is
    the one accepted, and the masks and the overlay come out as shown."""
    images, labels = render(TURNED)
    video = write_turned(tmp_path / "phone.mp4", images, degrees=-90)
    shown = np.rot90(labels[0], -1).astype(np.uint8)
    save_indexed(tmp_path / "shown.png", shown)
    out, overlay = tmp_path / "masks", tmp_path / "overlay.mp4"
    rc, _, err = run(segment_video.main, ["--video", video, "--mask", tmp_path / "shown.png", "--output", out,
                                          "--model", released_checkpoint, "--size", "-1", "--overlay", overlay], capsys)
    assert rc == 0, err
    np.testing.assert_array_equal(read_labels(out / "00000.png"), shown)  # the annotated frame comes back as given
    assert read_labels(out / "00003.png").shape == shown.shape
    assert VideoReader(overlay).size == shown.shape
    save_indexed(tmp_path / "stored.png", labels[0])  # drawn on the stored pixels: refused, naming the rotation
    rc, _, err = run(segment_video.main, ["--video", video, "--mask", tmp_path / "stored.png", "--output",
                                          tmp_path / "o2", "--model", released_checkpoint], capsys)
    lines = [line for line in err.splitlines() if line.strip() and "%" not in line]
    assert rc == 1 and len(lines) == 1 and "stored.png: mask is 64x48 but the video is 48x64 as displayed" in lines[0]
    assert "rotated 90 degrees clockwise" in lines[0], lines[0]


def test_generic_folder_overlay_and_binary_masks(generic_template, released_checkpoint, tmp_path, capsys):
    out, overlays, binary = tmp_path / "out", tmp_path / "overlays", tmp_path / "objects"
    rc, _, err = run(eval_generic.main, [
        "--data_path", generic_template, "--output", out, "--model", released_checkpoint,
        "--overlay", overlays, "--binary_masks", binary, "--max_mem_mb", "0.5", "--chunk_size", "auto",
    ], capsys)
    assert rc == 0, err
    for video in (p.name for p in out.iterdir() if p.is_dir()):  # not the result marker
        frames = sorted(out.glob(f"{video}/*.png"))
        assert VideoReader(overlays / f"{video}.mp4").num_frames == len(frames)
        for obj in (binary / video).iterdir():
            assert len(list(obj.glob("*.png"))) == len(frames)


def test_long_video_flags_are_checked(clip, released_checkpoint, tmp_path, capsys):
    root, video, _ = clip
    for flag, value in (("--max_mem_frames", "0"), ("--chunk_size", "-3"), ("--max_mem_mb", "0")):
        rc, _, err = run(segment_video.main, [
            "--video", video, "--mask", root / "first.png", "--output", tmp_path / "o",
            "--model", released_checkpoint, flag, value,
        ], capsys)
        assert rc == 1 and flag in err and len(err.strip().splitlines()) == 1, err


def test_sample_video_file_matches_its_mask(tmp_path):
    from scripts import make_sample_video

    assert make_sample_video.main(["--output", str(tmp_path), "--frames", "4", "--height", "33", "--width", "57",
                                   "--video_file"]) == 0
    reader = VideoReader(tmp_path / "shapes.mp4")
    with Image.open(tmp_path / "shapes_first.png") as mask:
        assert mask.mode == "P" and (mask.height, mask.width) == reader.size == (32, 56)
    assert reader.num_frames == 4


def test_chunk_size_flag_values(capsys):
    parser = argparse.ArgumentParser()
    add_common_args(parser)
    base = ["--output", "out"]
    assert parser.parse_args(base).chunk_size == "auto"  # one chunk whenever it fits: the same computation
    assert parser.parse_args([*base, "--chunk_size", "none"]).chunk_size is None
    assert parser.parse_args([*base, "--chunk_size", "64"]).chunk_size == 64
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--chunk_size", "big"])
    assert "auto or none" in capsys.readouterr().err
