"""Resizing to 480p on a synthetic YouTube-VOS folder: sizes, palettes, mask/image alignment,
skipping finished videos; and the generic folder resize."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import download_datasets
from downloads import fetch as dl
from downloads import resize as resize_lib
from downloads import resize_youtube as resize_youtube_lib
from scripts import resize_length, resize_youtube

RNG = np.random.default_rng(0)
PALETTE = RNG.integers(0, 256, 768, dtype=np.uint8).tolist()  # deliberately not DAVIS's
SQUARE = (0.25, 0.30, 0.55, 0.70)  # object 1: left, top, right, bottom as fractions
BAR = (0.65, 0.10, 0.90, 0.40)  # object 2
RED, BLUE, GREY = (220, 20, 20), (20, 20, 220), (128, 128, 128)
VIDEOS = {'landscape': (101, 67), 'portrait': (57, 93)}  # odd sizes on purpose
FRAMES = 3


def _box(width: int, height: int, rel: tuple[float, ...]) -> tuple[slice, slice]:
    left, top, right, bottom = rel
    return (slice(round(top * height), round(bottom * height)),
            slice(round(left * width), round(right * width)))


def _frame_and_mask(width: int, height: int) -> tuple[Image.Image, Image.Image]:
    rgb = np.full((height, width, 3), GREY, np.uint8)
    ids = np.zeros((height, width), np.uint8)
    for obj, (rel, colour) in enumerate(((SQUARE, RED), (BAR, BLUE)), 1):
        rgb[_box(width, height, rel)] = colour
        ids[_box(width, height, rel)] = obj
    mask = Image.fromarray(ids, mode='P')
    mask.putpalette(PALETTE)
    return Image.fromarray(rgb), mask


def make_youtube_split(root: Path) -> Path:
    """<root>/{JPEGImages,Annotations}/<video>/%05d.{jpg,png} plus meta.json."""
    for video, (width, height) in VIDEOS.items():
        for sub in ('JPEGImages', 'Annotations'):
            (root / sub / video).mkdir(parents=True)
        for i in range(FRAMES):
            frame, mask = _frame_and_mask(width, height)
            frame.save(root / 'JPEGImages' / video / f'{5 * i:05d}.jpg', quality=95)
            mask.save(root / 'Annotations' / video / f'{5 * i:05d}.png')
    (root / 'meta.json').write_text(json.dumps({'videos': sorted(VIDEOS)}))
    return root


@pytest.mark.parametrize('width, height, size, expected', [
    (1280, 720, 480, (853, 480)),
    (720, 1280, 480, (480, 853)),
    (854, 480, 480, (854, 480)),
    (101, 67, 480, (723, 480)),  # 723.58: truncated as torchvision and the original, not rounded
    (1280, 718, 480, (855, 480)),
    (10, 10, 4, (4, 4)),
])
def test_target_size_sets_the_shorter_side(width, height, size, expected):
    assert resize_lib.target_size(width, height, size) == expected


def originals_size(w: int, h: int) -> tuple[int, int]:
    """The original resize_youtube.py's size: (int(w * r), int(h * r)), r = 480 / min(w, h) in floats."""
    r = 480 / min(w, h)
    return int(w * r), int(h * r)


def test_target_size_is_the_evaluation_rule_and_the_originals():
    """One size rule: the evaluation's `resized_shape`. The original's float ratio gives the same size
    except (docs/downloads.md) where it drops the shorter side to 479, or where the exact longer side
    480 * long / short is a whole number and the float product falls just below it."""
    from evaluation.datasets import resized_shape

    same = 0
    for short in range(100, 1300, 7):
        for long in range(short, 2600, 11):
            for w, h in ((long, short), (short, long)):
                ours = resize_lib.target_size(w, h, 480)
                assert ours == resized_shape(h, w, 480)[::-1]
                original = originals_size(w, h)
                if ours == original:
                    same += 1
                    continue
                exact, rest = divmod(480 * long, short)
                assert min(original) == 479 or (rest == 0 and max(original) == exact - 1), (w, h, original)
    assert same > 30000
    for w, h in ((1280, 720), (1920, 1080), (640, 360), (960, 540), (640, 480), (854, 480), (720, 1280)):
        assert resize_lib.target_size(w, h, 480) == originals_size(w, h)  # YouTube-VOS's sizes: the same
    assert originals_size(1407, 335) == (2015, 480) and resize_lib.target_size(1407, 335, 480) == (2016, 480)
    assert originals_size(302, 1000)[0] == 479


def test_resize_youtube_writes_what_the_original_wrote(tmp_path):
    """Frames: PIL bicubic, saved with PIL's JPEG defaults; masks: PIL nearest, palette kept."""
    src = make_youtube_split(tmp_path / 'train')
    dst = tmp_path / 'train_480p'
    resize_youtube_lib.resize_youtube(src, dst, workers=1, progress=False)
    for video in VIDEOS:
        for name in ('00000', '00010'):
            with Image.open(src / 'JPEGImages' / video / f'{name}.jpg') as frame:
                w, h = frame.size
                r = 480 / min(w, h)
                expected = io.BytesIO()
                frame.resize((int(w * r), int(h * r)), Image.BICUBIC).save(expected, format='JPEG')
            assert (dst / 'JPEGImages' / video / f'{name}.jpg').read_bytes() == expected.getvalue()
            with Image.open(src / 'Annotations' / video / f'{name}.png') as mask:
                want = np.asarray(mask.convert('P').resize((int(w * r), int(h * r)), Image.NEAREST))
            with Image.open(dst / 'Annotations' / video / f'{name}.png') as got:
                np.testing.assert_array_equal(np.asarray(got), want)


def test_resize_youtube_sizes_palettes_and_alignment(tmp_path):
    src = make_youtube_split(tmp_path / 'train')
    dst = tmp_path / 'train_480p'
    assert resize_youtube_lib.resize_youtube(src, dst, workers=2, progress=False) == len(VIDEOS)
    assert json.loads((dst / 'meta.json').read_text()) == {'videos': sorted(VIDEOS)}
    for video in VIDEOS:
        frames = sorted((dst / 'JPEGImages' / video).iterdir())
        masks = sorted((dst / 'Annotations' / video).iterdir())
        assert [p.stem for p in frames] == [p.stem for p in masks] == ['00000', '00005', '00010']
        for frame_path, mask_path in zip(frames, masks):
            frame, mask = Image.open(frame_path), Image.open(mask_path)
            assert min(frame.size) == 480 and frame.size == mask.size
            assert mask.mode == 'P' and mask.getpalette() == PALETTE
            ids = np.asarray(mask)
            assert set(np.unique(ids)) == {0, 1, 2}  # nearest: no new ids at the borders
            rgb = np.asarray(frame.convert('RGB')).astype(int)
            red = (rgb[..., 0] > 150) & (rgb[..., 2] < 100)
            blue = (rgb[..., 2] > 150) & (rgb[..., 0] < 100)
            for obj, colour in ((1, red), (2, blue)):
                overlap = (colour & (ids == obj)).sum() / (colour | (ids == obj)).sum()
                assert overlap > 0.9, (video, obj, overlap)


def test_resize_youtube_skips_finished_videos_and_redoes_interrupted_ones(tmp_path, capsys):
    src = make_youtube_split(tmp_path / 'train')
    dst = tmp_path / 'train_480p'
    resize_youtube_lib.resize_youtube(src, dst, workers=1, progress=False)
    assert resize_youtube_lib.resize_youtube(src, dst, workers=1, progress=False) == 0
    assert resize_youtube.main(['--src', str(src), '--dst', str(dst), '--workers', '1', '--quiet']) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]  # the command's last line says what it wrote where
    assert last == f'resized 0 videos from {src} into {dst} (shorter side 480)'

    # an interrupted run: masks done, frames half-written in a temporary folder
    kept_mask = dst / 'Annotations' / 'portrait' / '00000.png'
    mask_mtime = kept_mask.stat().st_mtime_ns
    frames = dst / 'JPEGImages' / 'portrait'
    frames.rename(frames.with_name(resize_lib.PARTIAL_PREFIX + 'portrait'))
    (frames.with_name(resize_lib.PARTIAL_PREFIX + 'portrait') / '00010.jpg').unlink()
    assert resize_youtube_lib.resize_youtube(src, dst, workers=1, progress=False) == 1
    assert len(list(frames.iterdir())) == FRAMES
    assert kept_mask.stat().st_mtime_ns == mask_mtime
    assert sorted(p.name for p in frames.parent.iterdir()) == sorted(VIDEOS)


def test_resize_length_detects_masks_by_mode_and_folder(tmp_path):
    src = tmp_path / 'in'
    frame, mask = _frame_and_mask(37, 23)
    (src / 'images').mkdir(parents=True)
    (src / 'Annotations' / 'seq').mkdir(parents=True)
    (src / 'palette').mkdir()
    frame.save(src / 'images' / 'a.jpg')
    binary = Image.fromarray((np.asarray(mask) == 1).astype(np.uint8) * 255, mode='L')
    binary.save(src / 'Annotations' / 'seq' / 'a.png')  # grey-level mask, found by folder
    mask.save(src / 'palette' / 'a.png')  # palette mask, found by mode
    (src / 'notes.txt').write_text('kept')
    dst = tmp_path / 'out'
    assert resize_length.main([str(src), str(dst), '--size', '40', '--workers', '1',
                               '--quiet']) == 0
    assert min(Image.open(dst / 'images' / 'a.jpg').size) == 40
    grey = Image.open(dst / 'Annotations' / 'seq' / 'a.png')
    assert grey.mode == 'L' and set(np.unique(np.asarray(grey))) == {0, 255}
    palette = Image.open(dst / 'palette' / 'a.png')
    assert palette.mode == 'P' and palette.getpalette() == PALETTE
    assert set(np.unique(np.asarray(palette))) == {0, 1, 2}
    assert (dst / 'notes.txt').read_text() == 'kept'
    assert resize_lib.resize_folder(src, dst, 40, workers=1, progress=False) == 0  # all done


def test_resize_clis_report_mistakes_in_one_line(tmp_path, capsys):
    assert resize_youtube.main(['--src', str(tmp_path / 'missing'), '--quiet']) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and 'missing' in err and '\n' not in err
    (tmp_path / 'in').mkdir()
    assert resize_length.main([str(tmp_path / 'in'), str(tmp_path / 'in' / 'out')]) == 1
    assert 'is inside the input' in capsys.readouterr().err
    broken = tmp_path / 'broken'
    broken.mkdir()
    (broken / 'x.jpg').write_bytes(b'not an image')
    assert resize_length.main([str(broken), str(tmp_path / 'o'), '--workers', '1', '--quiet']) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {broken / 'x.jpg'}: could not resize") and '\n' not in err
    assert not (tmp_path / 'o' / 'x.jpg').exists()


def test_download_datasets_resizes_youtube_train_after_extraction(tmp_path, capsys):
    """yv19_train from a manually placed archive: extract, delete, resize, mark; rerun skips."""
    split = make_youtube_split(tmp_path / 'build' / 'train')
    root = tmp_path / 'data'
    archive = root / download_datasets.PARTS['yv19_train'].archive
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, 'w') as zf:
        for path in split.rglob('*'):
            zf.write(path, Path('train') / path.relative_to(split))
    args = ['--root', str(root), '--only', 'yv19_train', '--yes', '--min_free_gb', '0',
            '--workers', '1']
    assert download_datasets.main(args) == 0
    assert not archive.exists()
    out = root / 'YouTube' / 'train_480p'
    assert all(min(Image.open(p).size) == 480 for p in (out / 'JPEGImages').rglob('*.jpg'))
    assert dl.is_done(root / 'YouTube' / 'train', 'yv19_train') and dl.is_done(out, 'resize')
    capsys.readouterr()
    assert download_datasets.main(args) == 0
    assert 'nothing to do' in capsys.readouterr().out
