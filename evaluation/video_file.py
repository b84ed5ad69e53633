"""A video file (e.g. .mp4) as a `EvalVideo`: frames decoded one at a time, masks from PNG files.

Frames are named by their index, `00000`, `00001`, ... (the output masks are `<index>.png`), and are
in display orientation (a phone's rotation applied: `util.video`). The
annotations are indexed PNGs at the video's displayed size: one for the first frame (`--mask`), or a folder
of masks named by the index of the frame where their objects first appear (`--mask_dir`, e.g.
`00000.png`, `00120.png`; any zero padding).
"""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from evaluation.datasets import EVAL_SHORT_SIDE, MASK_EXTENSION, EvalVideo, Frame
from util.frame_source import FrameSource
from util.io import DataError
from util.video import VideoReader

FRAME_NAME_DIGITS = 5


def frame_name(index: int) -> str:
    return f"{index:0{FRAME_NAME_DIGITS}d}"


def annotations_by_frame(mask: str | os.PathLike | None, mask_dir: str | os.PathLike | None) -> dict[int, Path]:
    """Frame index -> annotation file, from a first-frame mask and/or a folder of `<index>.png`."""
    found: dict[int, Path] = {}
    if mask is not None:
        path = Path(mask)
        if not path.is_file():
            raise DataError(path, "no such mask file", "pass the first frame's mask (an indexed PNG) to --mask")
        found[0] = path
    if mask_dir is not None:
        folder = Path(mask_dir)
        if not folder.is_dir():
            raise DataError(folder, "no such folder", "pass a folder of <frame index>.png masks to --mask_dir")
        for path in sorted(folder.glob("*" + MASK_EXTENSION)):
            if not path.stem.isdigit():
                raise DataError(path, "mask not named by a frame index", "name masks by frame index, e.g. 00000.png")
            index = int(path.stem)
            if index in found and found[index] != path:
                raise DataError(path, f"frame {index} has two masks ({found[index].name})", "keep one mask per frame")
            found[index] = path
    if not found:
        raise DataError(mask_dir or "--mask", "no annotation given", "pass --mask first.png and/or --mask_dir")
    return found


class VideoFileVideo(EvalVideo):
    """A video file decoded sequentially; every frame is required (written out).

    Frames are given at their original size, as every `EvalVideo`'s.
    """

    sequential = True

    def __init__(
        self,
        path: str | os.PathLike,
        masks: dict[int, Path],
        short_side: int | None = EVAL_SHORT_SIDE,
        name: str | None = None,
    ) -> None:
        self.reader = VideoReader(path)
        n = self.reader.num_frames
        late = [i for i in masks if i >= n]
        if late:
            raise DataError(masks[late[0]], f"frame {late[0]} is past the end of the video ({n} frames)",
                            "name the mask after a frame index of the video")
        frames = [Frame(frame_name(i), self.reader.path, masks.get(i)) for i in range(n)]
        super().__init__(name or self.reader.path.stem, frames, short_side=short_side)
        self._size = self.reader.size
        self.source = FrameSource.video_file(self.reader)

    @property
    def fps(self) -> float:
        return self.reader.fps

    def _check_mask_size(self, frame: Frame, shape: tuple[int, ...]) -> None:
        if tuple(shape) != self.size:
            turned = self.reader.orientation.description
            h, w = self.reader.stored_size
            shown = f" as displayed (stored {w}x{h}, {turned})" if turned else ""
            raise DataError(
                frame.mask_path, f"mask is {shape[1]}x{shape[0]} but the video is {self.size[1]}x{self.size[0]}{shown}",
                "annotations must have the video's size" + (" in its displayed orientation" if turned else "")
                + " (re-export them at its resolution)",
            )

    def frame_image(self, index: int) -> Image.Image:
        """Frame `index`, decoded on from the last one read (from the start again if it lies behind)."""
        return Image.fromarray(self.source.frame(index))
