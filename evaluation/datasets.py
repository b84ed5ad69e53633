"""Evaluation datasets: DAVIS 2017/2016, YouTube-VOS 2018/2019 and a generic folder of videos.

Each dataset is a list of `EvalVideo`s. A video knows its frames (name, image file, the
annotation file given on that frame if any, whether its mask is written out) and reads frames
lazily, one at a time, so a long video never sits in memory. Frames are in the order of their names
with numbers compared by value (`0.jpg`, `2.jpg`, `10.jpg`; `image_files`), and a mask
belongs to the frame of its name.

Sizes: a video gives its frames and annotations at their original size; the stream that segments it
resizes them (`Stream.prepare`). `network_size` is the size it must reach: DAVIS is evaluated at its
native 480p (frames are resized only for the other sides of a multi-scale ensemble); YouTube-VOS,
generic folders and video files so that the shorter side is 480 (the longer side truncated, as
torchvision does), as the paper did (the frame normalised first, then `resize_frame`, plain bicubic;
masks nearest neighbour). The predictions are resized back to each video's original size. See
docs/evaluation.md, "Preprocessing".

The output palette of a video is taken from its own annotations (the first annotation file, plus
colours of later colour masks), never from a fixed file.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from inference_core.objects import LostObject, lost_objects, lost_objects_note, present_ids, starting_objects
from util import layouts
from util.frames import EVAL_SHORT_SIDE, resize_labels
from util.io import (
    IMAGE_EXTENSIONS,
    DataError,
    MaskReader,
    frame_order,
    image_files,
    image_size,
    read_image,
    resized_shape,
)

MASK_EXTENSION = ".png"


@dataclass(frozen=True)
class Frame:
    """One frame of a video.

    name: the file stem; the output mask is `<name>.png`.
    mask_path: the annotation given on this frame (objects that start here), or None.
    start_labels: the labels of `mask_path` that start here (None: every label not tracked yet).
    required: whether the mask of this frame is written out.
    """

    name: str
    image_path: Path
    mask_path: Path | None = None
    start_labels: tuple[int, ...] | None = None
    required: bool = True


class EvalVideo:
    """A video to segment: frames read lazily at the network resolution.

    short_side: resize so that the shorter side has this length (None: native size).
    single_object: threshold the annotations into one object (DAVIS 2016).
    expected_labels: label -> annotation file that must contain it (YouTube-VOS meta.json).
    """

    sequential = False  # True where frames are decoded in order, so reading one behind the last decodes from the start

    def __init__(
        self,
        name: str,
        frames: Sequence[Frame],
        short_side: int | None = None,
        single_object: bool = False,
        expected_labels: dict[int, Path] | None = None,
    ) -> None:
        self.name = name
        self.frames = list(frames)
        self.short_side = short_side
        self.single_object = single_object
        self.expected_labels = dict(expected_labels or {})
        self._reader: MaskReader | None = None
        self._size: tuple[int, int] | None = None
        self.object_labels: list[int] = []  # every label in the annotations (set by `prepare`)
        self.notes: list[str] = []  # `note:` lines for the user, set by `prepare` (printed by run_dataset)
        self.lost: dict[int, list[LostObject]] = {}  # frame -> objects it starts that the network size loses

    def __repr__(self) -> str:
        return f"EvalVideo({self.name!r}, {len(self.frames)} frames)"

    @property
    def size(self) -> tuple[int, int]:
        """Original (H, W): that of the first frame."""
        if self._size is None:
            self._size = image_size(self.frames[0].image_path)
        return self._size

    @property
    def network_size(self) -> tuple[int, int]:
        return resized_shape(*self.size, self.short_side)

    @property
    def palette(self) -> list[int]:
        """The 256-entry palette of this video's annotations (call `prepare` first)."""
        self.prepare()
        assert self._reader is not None and self._reader.palette is not None
        return self._reader.palette

    def prepare(self) -> None:
        """Read every annotation of the video once: checks sizes, modes and objects, fixes the palette.

        Done before any frame is processed, so a bad annotation stops the video before any
        output is written.
        """
        if self._reader is not None:
            return
        self.lost = {}
        reader = MaskReader(single_object=self.single_object)
        found: dict[Path, set[int]] = {}
        tracked: list[int] = []
        for index, frame in enumerate(self.frames):
            if frame.mask_path is None:
                continue
            labels = reader.read(frame.mask_path)
            self._check_mask_size(frame, labels.shape)
            found[frame.mask_path] = {int(v) for v in np.unique(labels) if v != 0}
            self._find_lost(index, torch.from_numpy(labels.astype(np.int64)), tracked)
        for label, path in self.expected_labels.items():
            if label not in found.get(path, set()):
                raise DataError(
                    path,
                    f"object {label} of video {self.name} starts on this frame but is not in the mask",
                    "add the object to this annotation or fix meta.json",
                )
        if reader.palette is None:
            raise DataError(
                self.frames[0].image_path.parent,
                "no annotation for this video",
                "add the first-frame mask of each object to the Annotations folder",
            )
        self.object_labels = sorted(set().union(*found.values()))
        if not self.object_labels:
            raise no_object_error(self.name, list(found))
        self.notes = [*reader.notes, *(self._lost_note(i) for i in self.lost)]
        self._reader = MaskReader(single_object=self.single_object)  # re-read in frame order below
        self._reader.palette = list(reader.palette)
        self._reader.colour_labels = dict(reader.colour_labels)

    def _find_lost(self, index: int, labels: Tensor, tracked: list[int]) -> None:
        """The objects that annotation `index` starts (the evaluation rule, `starting_objects`; `tracked`:
        those started before, updated here) and that have no pixel at the network size (`lost_objects`)."""
        if self.network_size == tuple(labels.shape):
            return
        at_network = resize_labels(labels, self.network_size)
        starting = present_ids(labels) if self.frames[index].start_labels is None else self.frames[index].start_labels
        lost = lost_objects(labels, at_network, [v for v in starting if v not in tracked])
        if lost:
            self.lost[index] = lost
        tracked += starting_objects(at_network, self.frames[index].start_labels, tracked)[1]

    def _lost_note(self, index: int) -> str:
        return lost_objects_note(str(self.frames[index].mask_path), self.lost[index], self.network_size,
                                 f"to track {'them' if len(self.lost[index]) > 1 else 'it'}: a larger --size, "
                                 "-1 for the frames' own size, or a larger object in the mask")

    def _check_mask_size(self, frame: Frame, shape: tuple[int, ...]) -> None:
        image_hw = image_size(frame.image_path)
        if tuple(shape) != image_hw or image_hw != self.size:
            raise DataError(
                frame.mask_path,
                f"mask is {shape[1]}x{shape[0]} but frame {frame.image_path.name} is {image_hw[1]}x{image_hw[0]}"
                + ("" if image_hw == self.size else f" and the first frame {self.size[1]}x{self.size[0]}"),
                "annotations must have the size of their frames (re-export them at the video's resolution)",
            )

    def frame_image(self, index: int) -> Image.Image:
        """Frame `index` at its original size, RGB; a frame of another size than the first is refused."""
        frame = self.frames[index]
        img = read_image(frame.image_path)
        if (img.height, img.width) != self.size:
            raise DataError(
                frame.image_path,
                f"frame is {img.width}x{img.height} but the first frame of {self.name} "
                f"is {self.size[1]}x{self.size[0]}",
                "all frames of a video must have the same size",
            )
        return img

    def original_rgb(self, index: int) -> np.ndarray:
        """Frame `index` at its original size as an (H, W, 3) uint8 RGB array."""
        return np.asarray(self.frame_image(index), dtype=np.uint8)

    def annotation(self, index: int) -> np.ndarray | None:
        """The annotation given on frame `index` as an (H, W) label map at the original size (colours read
        as ids, DAVIS 2016's threshold applied: `MaskReader`), or None."""
        frame = self.frames[index]
        if frame.mask_path is None:
            return None
        self.prepare()
        assert self._reader is not None
        return self._reader.read(frame.mask_path)


# ----------------------------------------------------------------------------------- helpers
def no_object_error(video: str, masks: Sequence[Path]) -> DataError:
    """A video whose annotations hold no object: nothing to segment, so a user mistake, not a result."""
    if len(masks) == 1:
        what = f"the mask of video {video}"
    else:
        names = ", ".join(p.name for p in masks[:5]) + (", ..." if len(masks) > 5 else "")
        what = f"any of the {len(masks)} masks of video {video} ({names})"
    return DataError(
        masks[0], f"no object in {what}: every pixel is 0 (background)",
        "give each object a non-zero index in the mask of the frame where it first appears",
    )


def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(folder, "no such video folder", "check the dataset layout (JPEGImages/<video>/)")
    files = image_files(folder)
    if not files:
        raise DataError(folder, "empty video folder (no images)", "add its frames or remove the video from the list")
    return files


def _require_dir(path: Path, what: str, fix: str) -> Path:
    if not path.is_dir():
        raise DataError(path, f"no such folder ({what})", fix)
    return path


def read_video_list(path: Path) -> list[str]:
    """Video names from an ImageSets file: one name a line, or DAVIS 2016's
    `/JPEGImages/480p/<video>/00000.jpg ...` lines."""
    if not path.is_file():
        raise DataError(path, "no such video list", "check --davis_path (the ImageSets folder is part of DAVIS)")
    names: list[str] = []
    for line in path.read_text().splitlines():
        token = line.split()[0] if line.split() else ""
        if "/" in token:
            token = Path(token).parent.name
        if token and token not in names:
            names.append(token)
    if not names:
        raise DataError(path, "empty video list", "restore the ImageSets file from the DAVIS download")
    return names


# ------------------------------------------------------------------------------------- DAVIS
class DAVISEvalDataset:
    """DAVIS (2017 or 2016) videos listed in an ImageSets file; first-frame annotations.

    root: the folder holding JPEGImages/<resolution> and Annotations/<resolution>
          (DAVIS/2017/trainval, DAVIS/2017/test-dev or DAVIS/2016).
    imset: the video list: a path, or relative to `root/ImageSets` (e.g. "2017/val.txt").
    single_object: DAVIS 2016 (one object, 255 in the ground truth).
    All objects are given on the first frame; every frame is written.
    """

    def __init__(
        self, root: str | os.PathLike, imset: str | os.PathLike = "2017/val.txt",
        resolution: str = "480p", single_object: bool = False,
    ) -> None:
        self.root = Path(root)
        _require_dir(self.root, "DAVIS root", "point --davis_path at the DAVIS folder (see README: Data preparation)")
        imset = Path(imset)
        self.imset = imset if imset.is_absolute() or imset.exists() else self.root / "ImageSets" / imset
        self.image_dir = _require_dir(self.root / "JPEGImages" / resolution, "DAVIS frames", "check --davis_path")
        self.mask_dir = _require_dir(self.root / "Annotations" / resolution, "DAVIS annotations", "check --davis_path")
        self.single_object = single_object
        self.videos = [self._video(name) for name in read_video_list(self.imset)]

    def _video(self, name: str) -> EvalVideo:
        images = _list_images(self.image_dir / name)
        first_mask = self.mask_dir / name / (images[0].stem + MASK_EXTENSION)
        if not first_mask.is_file():
            raise DataError(
                first_mask, f"missing first-frame annotation of video {name}",
                "DAVIS gives every object on the first frame; restore this file from the dataset",
            )
        frames = [Frame(p.stem, p, first_mask if i == 0 else None) for i, p in enumerate(images)]
        return EvalVideo(name, frames, short_side=None, single_object=self.single_object)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> EvalVideo:
        return self.videos[i]


# -------------------------------------------------------------------------------- YouTube-VOS
class YouTubeVOSEvalDataset:
    """YouTube-VOS 2018/2019 `valid` or `test` (the same layout; the version is the folder).

    root/<split>/meta.json            objects and, per object, the frames to predict (the first
                                      one carries its annotation)
    root/<split>/Annotations/<video>/ the annotations where objects first appear
    root/all_frames/<split>_all_frames/JPEGImages/<video>/   every frame (processed for memory)
    Without all_frames, root/<split>/JPEGImages (every 5th frame) is used.

    Only frames listed in meta.json are written unless `output_all`. Frames are segmented with the
    shorter side `short_side`.
    """

    def __init__(
        self, root: str | os.PathLike, split: str = "valid", short_side: int | None = EVAL_SHORT_SIDE,
        output_all: bool = False,
    ) -> None:
        self.root = Path(root)
        _require_dir(self.root, "YouTube-VOS root",
                     f"point --yv_path at the YouTube-VOS folder (e.g. {layouts.default_path('youtube')})")
        split_dir = _require_dir(self.root / split, f"YouTube-VOS {split} split", "check --yv_path and --split")
        self.mask_dir = _require_dir(split_dir / "Annotations", "YouTube-VOS annotations", "check --yv_path")
        all_frames = self.root / "all_frames" / f"{split}_all_frames" / "JPEGImages"
        self.image_dir = all_frames if all_frames.is_dir() else split_dir / "JPEGImages"
        self.uses_all_frames = all_frames.is_dir()
        _require_dir(self.image_dir, "YouTube-VOS frames", f"extract the all-frames archive into {all_frames}")
        self.meta_path = split_dir / "meta.json"
        self.short_side = short_side
        self.output_all = output_all
        meta = self._read_meta()
        self.videos = [self._video(name, meta[name]) for name in sorted(meta)]

    def _read_meta(self) -> dict:
        try:
            meta = json.loads(self.meta_path.read_text())["videos"]
        except FileNotFoundError:
            raise DataError(self.meta_path, "no such file",
                            "it comes with the YouTube-VOS split; check --yv_path") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(self.meta_path, f"not a YouTube-VOS meta.json ({type(exc).__name__})",
                            "restore it from the dataset") from None
        if not isinstance(meta, dict):
            raise DataError(self.meta_path, "'videos' is not a mapping", "restore it from the dataset")
        return meta

    def _video(self, name: str, info: dict) -> EvalVideo:
        images = _list_images(self.image_dir / name)
        names = {p.stem: p for p in images}
        try:
            objects = {int(k): [str(f) for f in v["frames"]] for k, v in info["objects"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DataError(self.meta_path, f"video {name} has no valid 'objects' entry", "restore meta.json") from None
        if not objects:
            raise DataError(self.meta_path, f"video {name} lists no object",
                            "restore meta.json from the YouTube-VOS download")
        position = {p.stem: i for i, p in enumerate(images)}
        required: set[str] = set()
        starts: dict[str, list[int]] = {}
        expected: dict[int, Path] = {}
        for obj, obj_frames in sorted(objects.items()):
            if not obj_frames:
                raise DataError(self.meta_path, f"object {obj} of video {name} lists no frames", "restore meta.json")
            missing = [f for f in obj_frames if f not in names]
            if missing:
                raise DataError(
                    self.image_dir / name / (missing[0] + ".jpg"),
                    f"frame listed in meta.json for object {obj} has no image", "extract all frames of the video",
                )
            required.update(obj_frames)
            first = min(obj_frames, key=position.__getitem__)  # in frame order (`frame_order`)
            mask = self.mask_dir / name / (first + MASK_EXTENSION)
            if not mask.is_file():
                raise DataError(
                    mask, f"missing first-frame annotation of object {obj} (video {name}, meta.json)",
                    "restore the annotation from the YouTube-VOS download",
                )
            starts.setdefault(first, []).append(obj)
            expected[obj] = mask
        frames = []
        for p in images:
            start = starts.get(p.stem)
            frames.append(Frame(
                p.stem, p,
                mask_path=self.mask_dir / name / (p.stem + MASK_EXTENSION) if start else None,
                start_labels=tuple(start) if start else None,
                required=self.output_all or p.stem in required,
            ))
        return EvalVideo(name, frames, short_side=self.short_side, expected_labels=expected)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> EvalVideo:
        return self.videos[i]


# ----------------------------------------------------------------------------------- generic
class GenericEvalDataset:
    """Any folder of videos: root/JPEGImages/<video>/<frame>.jpg and root/Annotations/<video>/<frame>.png.

    An annotation may be given on any frame; the objects in it that are not tracked yet start
    there. Every frame is written. Frames are segmented with the shorter side `short_side`.
    """

    def __init__(
        self, root: str | os.PathLike, short_side: int | None = EVAL_SHORT_SIDE,
    ) -> None:
        self.root = Path(root)
        _require_dir(self.root, "data folder", "point --data_path at a folder with JPEGImages/ and Annotations/")
        self.image_dir = _require_dir(self.root / "JPEGImages", "frames",
                                      "put each video's frames in JPEGImages/<video>/")
        self.mask_dir = _require_dir(self.root / "Annotations", "annotations",
                                     "put first-appearance masks in Annotations/<video>/")
        self.short_side = short_side
        names = sorted(p.name for p in self.image_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not names:
            raise DataError(self.image_dir, "no video folders", "put each video's frames in JPEGImages/<video>/")
        self.videos = [self._video(name) for name in names]

    def _video(self, name: str) -> EvalVideo:
        images = _list_images(self.image_dir / name)
        mask_dir = self.mask_dir / name
        masks = {p.stem: p for p in mask_dir.glob("*" + MASK_EXTENSION)} if mask_dir.is_dir() else {}
        others = [] if masks or not mask_dir.is_dir() else sorted(
            p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if others:  # no PNG, but other images: JPEG masks?
            raise DataError(
                others[0], f"annotation of video {name} is a {others[0].suffix} file, not {MASK_EXTENSION}",
                f"save masks as indexed (palette) PNGs named <frame>{MASK_EXTENSION} (JPEG blurs object edges)",
            )
        if not masks:
            raise DataError(
                mask_dir / (images[0].stem + MASK_EXTENSION), f"missing annotation for video {name}",
                "add a mask (PNG named as its frame) for the frame where each object first appears",
            )
        stems = {p.stem for p in images}
        orphans = sorted(set(masks) - stems, key=frame_order)
        if orphans:
            numbered = {int(s): s for s in stems if s.isdigit()}
            same = numbered.get(int(orphans[0])) if orphans[0].isdigit() else None
            fix = f"rename it {same}{MASK_EXTENSION} after its frame" if same else "rename it after its frame"
            raise DataError(masks[orphans[0]], "annotation without a frame of the same name", fix)
        frames = [Frame(p.stem, p, masks.get(p.stem)) for p in images]
        return EvalVideo(name, frames, short_side=self.short_side)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> EvalVideo:
        return self.videos[i]
