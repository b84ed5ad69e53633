"""Reading frames and label masks, writing palette masks: the one reader of the evaluation and training.

Every mask file is decoded by `decode_mask` (one set of errors); the readers differ only in how they
turn its pixels into labels: `MaskReader` (evaluation), `read_index_mask` (training videos: the
stored indices) and `read_binary_mask` (the static image sets: bright = object).

The evaluation's label masks (`MaskReader`) are (H, W) integer arrays where 0 is background and
every other value is one object. Indexed (palette, mode "P") PNGs are authoritative: their indices
are the labels and their palette is kept for the output. Masks in other modes are converted only
when the conversion is unambiguous (`labels_from_colours`); otherwise they are refused with a
`DataError`, because a colour left by anti-aliasing would otherwise become an object that does not
exist.

Every user-facing problem is a `DataError` whose text is `<path>: <what is wrong>; <how to fix>`,
so a script prints it as one `error:` line.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from util.atomic import atomic_path
from util.errors import UserError

PALETTE_ENTRIES = 256  # an 8-bit PNG palette
BINARY_FOREGROUND = 255  # an object's pixels in a binary mask PNG (0: everything else)
MAX_OBJECTS = PALETTE_ENTRIES - 1  # labels 1..255 in an indexed PNG (0 = background)
BLEND_TOLERANCE = 2.0  # colour levels: rounding slack when testing "c lies between a and b"
SINGLE_OBJECT_GREY_LABEL = 255  # DAVIS 2016 ground truth writes its object as 255
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # frames of a video folder
INDEX_MASK_MODES = ("P", "L", "1", "I;16", "I")  # PIL modes whose pixel values are the labels (training)
BINARY_THRESHOLD = 128  # grey level from which a saliency mask pixel is object (half intensity)
DEEP_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # grey images of more than 8 bits (I: 32-bit integers)
DEEP_MAX = 2**16 - 1  # the largest value of a 16-bit image
DEEP_SHIFT = 8  # 16 -> 8 bits: keep the high byte


class DataError(UserError):
    """A problem with the user's data (or a flag): one line naming the file, the problem and the fix."""

    def __init__(self, path: str | os.PathLike, problem: str, fix: str) -> None:
        self.path = Path(path)
        super().__init__(path, problem, fix)


# ------------------------------------------------------------------------------------- images
def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image from its header (no decoding)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except FileNotFoundError:
        raise DataError(path, "no such file", "check the dataset path and layout") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"unreadable image ({type(exc).__name__})", "replace or re-extract this file") from None
    return h, w


def read_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image fully as 8-bit RGB (`rgb_image`); a missing, truncated or corrupt file raises DataError."""
    try:
        with Image.open(path) as img:
            img.load()
            return rgb_image(img, path)
    except FileNotFoundError:
        raise DataError(path, "no such file", "check the dataset path and layout") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = str(exc).replace(f" '{path}'", "").replace(str(path), "").strip(" :") or type(exc).__name__
        raise DataError(path, f"unreadable image ({reason})", "replace or re-extract this file") from None


def rgb_image(img: Image.Image, where: str | os.PathLike) -> Image.Image:
    """`img` as 8-bit RGB. 16-bit grey images (DEEP_MODES) keep their high byte, as Pillow reads
    16-bit colour PNGs; `convert("RGB")` would clip them at 255, a white frame. Mode I (32-bit
    integers, which older Pillow gives 16-bit grey PNGs) is read as 16-bit; values outside 0..65535
    raise DataError naming `where`. Every other mode is converted by Pillow."""
    if img.mode not in DEEP_MODES:
        return img.convert("RGB")
    grey = np.asarray(img)
    if grey.size and (int(grey.min()) < 0 or int(grey.max()) > DEEP_MAX):
        raise DataError(where, f"{img.mode} image with values outside 0..{DEEP_MAX}",
                        "save the frame as an 8-bit (or 16-bit) RGB or grey image")
    grey = (grey.astype(np.uint32) >> DEEP_SHIFT).astype(np.uint8)
    return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1))


def frame_order(name: str) -> tuple:
    """Sort key of frame names: runs of digits compare as numbers, so `2.jpg` comes before `10.jpg`
    (zero-padded names keep their order); names equal as numbers (`7`, `007`) follow their text."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The frames of a video folder in frame order: files with an IMAGE_EXTENSIONS suffix, not hidden,
    sorted by their name without the suffix (`frame_order`). Two frames of one name (`3.jpg`, `3.png`)
    raise DataError: the mask of each is written as `<name>.png`."""
    files = [p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    files.sort(key=lambda p: (frame_order(p.stem), p.name))
    for a, b in zip(files, files[1:]):
        if a.stem == b.stem:
            raise DataError(a, f"two frames named {a.stem} ({a.name} and {b.name})",
                            "keep one of them: the mask of each frame is written as <name>.png")
    return files


def resized_shape(h: int, w: int, short_side: int | None) -> tuple[int, int]:
    """(H, W) with the shorter side `short_side` (None: unchanged) and the longer one truncated,
    `int(short_side * long / short)`, as torchvision's Resize: the one resize rule of the evaluation
    and the dataset resize commands."""
    if h <= 0 or w <= 0:
        raise ValueError(f"a {w}x{h} image has no pixels to resize")
    if short_side is None or min(h, w) == short_side:
        return h, w
    if h <= w:
        return short_side, int(short_side * w / h)
    return int(short_side * h / w), short_side


# -------------------------------------------------------------------------------------- masks
def grey_palette() -> list[int]:
    """Palette mapping index i to grey (i, i, i): an indexed PNG that looks like a greyscale one."""
    return [v for i in range(PALETTE_ENTRIES) for v in (i, i, i)]


def full_palette(palette: Sequence[int] | None) -> list[int]:
    """A palette padded (with black) or cut to 256 RGB entries."""
    pal = list(palette or [])[: 3 * PALETTE_ENTRIES]
    return pal + [0] * (3 * PALETTE_ENTRIES - len(pal))


def single_object_mask(array: np.ndarray) -> np.ndarray:
    """DAVIS 2016 (one object per video): the object is every pixel that is not zero in any colour
    channel, as in the official DAVIS 2016 evaluation and the original STCN (`mask > 0.5` on the
    uint8 mask). (H, W) or (H, W, C) -> bool (H, W)."""
    if array.ndim == 3:
        array = array[..., :3].max(axis=-1)
    return array > 0


class DecodedMask(NamedTuple):
    pixels: np.ndarray  # as stored, or as `decode_mask`'s `convert` made them
    mode: str  # PIL mode of the file
    palette: list[int] | None  # of an indexed PNG


def decode_mask(path: str | os.PathLike, convert: Callable[[Image.Image], Image.Image] | None = None,
                lossy_ok: bool = False) -> DecodedMask:
    """Decode a mask file: the one place a mask is opened, with one set of errors (`DataError`).

    convert: applied to the decoded image before it becomes an array (e.g. to grey); the mode and
    palette returned are the file's. JPEG masks are refused (lossy edges blur into colours that are
    no object) unless `lossy_ok` (masks that are thresholded anyway).
    """
    try:
        with Image.open(path) as img:
            if img.format == "JPEG" and not lossy_ok:
                raise DataError(path, "mask saved as JPEG",
                                "save it as an indexed (palette) PNG, one index per object")
            img.load()
            mode, raw_palette = img.mode, img.getpalette()
            pixels = np.array(convert(img) if convert is not None else img)
    except FileNotFoundError:
        raise DataError(path, "no such annotation file", "check the dataset path and layout") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"unreadable mask ({type(exc).__name__})", "replace or re-export this PNG") from None
    return DecodedMask(pixels, mode, raw_palette)


def _grey_unless_palette(img: Image.Image) -> Image.Image:
    return img if img.mode == "P" else img.convert("L")


def _grey_if_bilevel(img: Image.Image) -> Image.Image:
    return img.convert("L") if img.mode == "1" else img  # 1-bit masks read as 0/255


def read_index_mask(path: str | os.PathLike) -> np.ndarray:
    """(H, W) uint8 labels of a training mask: the indices of a palette PNG or the values of a grey one,
    as stored (1-bit masks as 0/255, 16/32-bit values cast to uint8). Colour masks are refused."""
    arr, mode, _ = decode_mask(path, _grey_if_bilevel)
    if mode not in INDEX_MASK_MODES:
        raise DataError(path, f"mask has mode {mode}",
                        "expected a palette (P) or grey (L) PNG holding label indices (0 = background, 1..K objects)")
    return arr if arr.dtype == np.uint8 else arr.astype(np.uint8)


def read_binary_mask(path: str | os.PathLike, threshold: int = BINARY_THRESHOLD) -> np.ndarray:
    """(H, W) uint8 in {0, 1} of a saliency-style mask (any PNG mode, object = bright).

    The static image sets store 0/255 masks in grey, RGB or palette PNGs; they are converted to grey
    (PIL's luma) and split at `threshold` (anti-aliased edges go to the nearer side).
    """
    grey = decode_mask(path, lambda img: img.convert("L"), lossy_ok=True).pixels
    return (grey >= threshold).astype(np.uint8)


class MaskReader:
    """Reads the label masks of one video so that labels and palette agree across its files.

    Indexed PNGs give their indices and palette. Colour (RGB/RGBA) masks are mapped colour ->
    label once per video (`colour_labels_of`, the one rule of the commands and the Python API): a
    colour already in the palette (from an earlier file of the video) keeps that index, a new colour
    gets the next free label, and each mask that maps new colours adds one line to `notes` saying
    which colour became which label. Greyscale masks use the grey value as the label.
    `single_object` (DAVIS 2016) makes every non-zero pixel the one object instead.
    """

    def __init__(self, single_object: bool = False) -> None:
        self.single_object = single_object
        self.palette: list[int] | None = None  # 768 values once the first mask was read
        self.colour_labels: dict[tuple[int, int, int], int] = {}
        self.notes: list[str] = []  # `note: ...` lines for the user (colour masks' colour -> label)

    def read(self, path: str | os.PathLike) -> np.ndarray:
        """(H, W) uint8 label map of the mask at `path`."""
        arr, mode, raw_palette = decode_mask(path, _grey_unless_palette if self.single_object else None)
        if self.single_object:
            return self._single_object(arr, mode, raw_palette)
        if mode == "P":
            if self.palette is None:
                self.palette = full_palette(raw_palette)
            return arr.astype(np.uint8)
        if mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
            return self._grey(path, arr, mode)
        if mode in ("RGB", "RGBA"):
            return self.colour_labels_of(path, arr)
        if mode == "LA":
            return self._grey(path, _drop_alpha(path, arr), "L")
        raise DataError(path, f"mask in unsupported PNG mode {mode}", "save it as an indexed (palette) PNG")

    # ---------------------------------------------------------------------------------- modes
    def _single_object(self, arr: np.ndarray, mode: str, raw_palette) -> np.ndarray:
        if mode == "P":
            if self.palette is None:
                self.palette = full_palette(raw_palette)
            label = int(arr.max()) if arr.max() > 0 else 1
            return np.where(single_object_mask(arr), label, 0).astype(np.uint8)
        if self.palette is None:
            self.palette = grey_palette()
        return np.where(single_object_mask(arr), SINGLE_OBJECT_GREY_LABEL, 0).astype(np.uint8)

    def _grey(self, path, arr: np.ndarray, mode: str) -> np.ndarray:
        if mode == "1":
            arr = arr.astype(np.uint8)
        if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
            raise DataError(path, "floating-point mask with fractional values", "save integer labels as an indexed PNG")
        values = np.unique(arr)
        if values.min() < 0 or values.max() > MAX_OBJECTS:
            raise DataError(
                path, f"mask labels outside 0..{MAX_OBJECTS}",
                f"use at most {MAX_OBJECTS} objects labelled 1..{MAX_OBJECTS}",
            )
        arr = arr.astype(np.uint8)
        thin = _labels_without_interior(arr)
        if thin:
            raise DataError(
                path,
                f"greyscale mask with values {thin[:5]} only on thin edges (anti-aliased?)",
                "save one index per object without smoothing, as an indexed (palette) PNG",
            )
        if self.palette is None:
            self.palette = grey_palette()
        return arr

    def colour_labels_of(self, where: str | os.PathLike, arr: np.ndarray) -> np.ndarray:
        """(H, W) uint8 labels of an (H, W, 3) RGB or (H, W, 4) RGBA uint8 colour mask, by the rule of
        the class docstring (black and transparent pixels: background). DataError naming `where` (the
        file, or the argument) when the colours do not map onto objects unambiguously
        (`labels_from_colours_problem`); one line in `notes` for the colours this mask adds."""
        if arr.shape[-1] == 4:
            arr = _drop_alpha(where, arr)
        added: list[tuple[tuple[int, int, int], int]] = []
        colours, inverse = np.unique(arr.reshape(-1, 3), axis=0, return_inverse=True)
        inverse = inverse.reshape(arr.shape[:2])
        colours_t = [tuple(int(v) for v in c) for c in colours]
        problem = labels_from_colours_problem(colours, inverse)
        if problem:
            raise DataError(where, f"colour (RGB) mask that is not unambiguous: {problem}",
                            "save it as an indexed (palette) PNG with one index per object and no anti-aliasing")
        if self.palette is None:
            self.palette = full_palette([])
        lut = np.zeros(len(colours_t), dtype=np.uint8)
        for i, c in enumerate(colours_t):
            if c == (0, 0, 0):
                continue
            label = self.colour_labels.get(c) or self._palette_index(c)
            if label is None:
                used = set(self.colour_labels.values())
                label = next((v for v in range(1, MAX_OBJECTS + 1) if v not in used), None)
                if label is None:
                    raise DataError(where, f"more than {MAX_OBJECTS} object colours in this video", "use fewer objects")
                self.palette[3 * label : 3 * label + 3] = list(c)
            if c not in self.colour_labels:
                added.append((c, label))
            self.colour_labels[c] = label
            lut[i] = label
        if added:
            pairs = ", ".join(f"{c} -> {label}" for c, label in added)
            self.notes.append(f"note: {where}: colour (RGB) mask, objects numbered by colour: {pairs} "
                              "(an indexed PNG keeps the ids you choose)")
        return lut[inverse]

    def _palette_index(self, colour: tuple[int, int, int]) -> int | None:
        if self.palette is None or not any(self.palette[3:]):
            return None
        pal = np.array(self.palette, dtype=np.int64).reshape(-1, 3)
        hits = np.nonzero((pal[1:] == colour).all(axis=1))[0]
        label = int(hits[0]) + 1 if len(hits) else None
        if label is not None and label in self.colour_labels.values():
            return None
        return label


def _drop_alpha(path, arr: np.ndarray) -> np.ndarray:
    """Fully transparent pixels become background; partial transparency is anti-aliasing: refuse."""
    alpha = arr[..., -1]
    if not np.isin(alpha, (0, 255)).all():
        raise DataError(path, "mask with partially transparent pixels (anti-aliased?)",
                        "save it as an indexed (palette) PNG without transparency")
    colour = arr[..., :-1].copy()
    colour[alpha == 0] = 0
    return colour if colour.shape[-1] > 1 else colour[..., 0]


def _labels_without_interior(labels: np.ndarray) -> list[int]:
    """Non-zero labels that never fill a 3x3 block: edge pixels, not objects."""
    present = [int(v) for v in np.unique(labels) if v != 0]
    if not present:
        return []
    h, w = labels.shape
    if h < 3 or w < 3:
        return present
    centre = labels[1:-1, 1:-1]
    solid = np.ones(centre.shape, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                solid &= centre == labels[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx]
    interior = set(np.unique(centre[solid]).tolist())
    return [v for v in present if v not in interior]


def labels_from_colours_problem(colours: np.ndarray, index: np.ndarray) -> str | None:
    """Why a colour mask cannot be mapped to objects unambiguously, or None when it can.

    colours: (n, 3) distinct colours of the mask; index: (H, W) position of each pixel's colour.
    The rule (all three must hold; black is background):
      1. at most 255 colours besides black (one label each);
      2. every colour fills at least one 3x3 block (anti-aliased edges are 1-2 pixel bands);
      3. no colour lies between two other colours of the mask, i.e. c = a + t (b - a) with
         0 < t < 1 within BLEND_TOLERANCE levels per channel (the colour an edge between
         objects a and b, or between an object and the background, takes when smoothed).
    Rule 3 also refuses palettes whose colours are mixtures of each other (e.g. DAVIS colour 8,
    (64, 0, 0), with colour 1, (128, 0, 0)): such masks must be saved as indexed PNGs.
    """
    colours = colours.astype(np.float64)
    n = len(colours)
    non_black = [i for i in range(n) if colours[i].any()]
    if len(non_black) > MAX_OBJECTS:
        return f"{len(non_black)} distinct colours (at most {MAX_OBJECTS} objects)"
    # rule 2, on the colour indices shifted so that black is 0
    black = [i for i in range(n) if not colours[i].any()]
    shifted = index + 1
    if black:
        shifted = np.where(index == black[0], 0, shifted)
    thin = _labels_without_interior(shifted.astype(np.int64))
    if thin:
        c = tuple(int(v) for v in colours[thin[0] - 1])
        return f"colour {c} appears only on thin edges ({len(thin)} such colours)"
    # rule 3
    for ci in non_black:
        c = colours[ci]
        others = np.delete(colours, ci, axis=0)
        if len(others) < 2:
            continue
        a = others[:, None, :]  # m, 1, 3
        d = others[None, :, :] - a  # m, m, 3
        denom = (d * d).sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = ((c - a) * d).sum(-1) / denom
        inside = (denom > 0) & (t > 0) & (t < 1)
        if not inside.any():
            continue
        closest = a + t[..., None] * d
        near = (np.abs(closest - c).max(-1) <= BLEND_TOLERANCE) & inside
        if near.any():
            i, j = np.argwhere(near)[0]
            ca, cb = (tuple(int(v) for v in others[k]) for k in (i, j))
            return f"colour {tuple(int(v) for v in c)} is a blend of {ca} and {cb}"
    return None


def write_mask(path: str | os.PathLike, labels: np.ndarray, palette: Sequence[int]) -> Path:
    """Write an (H, W) label map as an indexed PNG with `palette`, atomically."""
    if labels.max(initial=0) > MAX_OBJECTS:
        raise DataError(path, f"label {int(labels.max())} does not fit an indexed PNG",
                        f"use at most {MAX_OBJECTS} objects")
    arr = np.ascontiguousarray(labels, dtype=np.uint8)
    img = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())
    img.putpalette(full_palette(palette))
    return atomic_save_image(img, path)


def write_binary_mask(path: str | os.PathLike, labels: np.ndarray, label: int) -> Path:
    """Write object `label` of an (H, W) label map as a 0/255 greyscale PNG, atomically."""
    binary = np.where(labels == label, BINARY_FOREGROUND, 0).astype(np.uint8)
    return atomic_save_image(Image.fromarray(binary, mode="L"), path)


def atomic_save_image(img: Image.Image, path: str | os.PathLike, format: str = "PNG") -> Path:
    """Save an image through a temporary file in the same folder + os.replace."""
    with atomic_path(path) as tmp:
        img.save(tmp, format=format)
    return Path(path)
