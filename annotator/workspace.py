"""The annotation tool's workspace: everything of one video's annotation on disk, so that nothing is lost.

    <workspace>/workspace.json   the video (where its frames are, their number, size, names and rate), the
                                 objects (id, name, colour), the interacted and the hand-edited frames, and
                                 the interaction history
    <workspace>/masks/<t>.png    frame t's mask (indexed PNG, the user's object ids, their colours), one per
                                 frame that has one (t zero-padded to 5 digits)
    <workspace>/frames/<t>.png   a video file's frames, extracted when first needed (lossless: the network
                                 sees the decoded pixels); a folder of images is referenced, not copied
    <workspace>/export/          the last export (`annotator.session`), under the output contract

Every change is written when it happens, atomically (`util.atomic`): a killed server loses at most the
change being made, and opening the workspace again resumes it. A folder is used as a workspace when it is
absent, empty or a workspace of this tool; any other folder, a file, or a folder overlapping the video is
refused. Torch-free.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from util.atomic import atomic_path, atomic_write_text
from util.io import MAX_OBJECTS, DataError, image_files, image_size, read_image, read_index_mask, write_mask
from util.outputs import check_not_input, clean_stale, probe_writable
from util.video import DEFAULT_FPS, VideoReader

STATE_FILE = "workspace.json"
MASKS = "masks"
FRAMES = "frames"
EXPORT = "export"
TOOL = "interactive_demo"  # the program that writes workspaces (their state file names it)
VERSION = 1
MAX_NAME = 64  # characters of an object's name
HISTORY_LIMIT = 10000  # history entries kept (the oldest dropped first)


def voc_palette() -> list[int]:
    """DAVIS's palette (PASCAL VOC's: the label's bits spread over the colour channels), 256 RGB entries."""
    out = []
    for label in range(256):
        r = g = b = 0
        c = label
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out += [r, g, b]
    return out


PALETTE = voc_palette()


def mask_name(t: int) -> str:
    return f"{t:05d}.png"


class Frames(Sequence):
    """The video's frames as a sequence read on demand (H x W x 3 uint8): image files read when asked; a
    video file decoded forward from the last frame decoded, each decoded frame saved under frames/ so that
    any frame is decoded once (random access afterwards reads the saved file). Thread-safe."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        video = workspace.state["video"]
        self.kind, self.source, self.length = video["kind"], Path(video["path"]), int(video["frames"])
        self._lock = threading.Lock()
        self._decoder: Iterator[np.ndarray] | None = None
        self._next = 0
        self._files = image_files(self.source) if self.kind == "images" else None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, t):  # type: ignore[override]
        if not isinstance(t, (int, np.integer)) or not 0 <= t < self.length:
            raise IndexError(t)
        if self._files is not None:
            return np.asarray(read_image(self._files[t]))
        path = self.ws.path / FRAMES / mask_name(t)
        with self._lock:
            if path.is_file():
                return np.asarray(read_image(path))
            if self._decoder is None or t < self._next:
                self._decoder, self._next = VideoReader(self.source).frames(), 0
            rgb = None
            while self._next <= t:
                rgb = next(self._decoder, None)
                if rgb is None:
                    raise DataError(self.source, f"the video ended at frame {self._next} of {self.length}",
                                    "the file is truncated or corrupt; re-encode it")
                saved = self.ws.path / FRAMES / mask_name(self._next)
                if not saved.is_file():
                    with atomic_path(saved) as tmp:
                        Image.fromarray(rgb).save(tmp, format="PNG", compress_level=1)
                self._next += 1
            return rgb


class Workspace:
    """One video's workspace (module docstring): `open` creates or resumes it; `state` is the JSON."""

    def __init__(self, path: Path, state: dict) -> None:
        self.path = path
        self.state = state
        self._lock = threading.RLock()
        self.frames = Frames(self)
        self._present: dict[int, set[int]] | None = None  # `present`, read when first asked
        self.new: bool | None = None  # made by this run: True when its folder too, False in an empty folder

    # ---------------------------------------------------------------------------- open / resume
    @classmethod
    def open(cls, path: str | os.PathLike, video: str | os.PathLike | None = None,
             images: str | os.PathLike | None = None, flag: str = "--workspace") -> Workspace:
        """Resume the workspace at `path`, or create it for `video` (a file) or `images` (a folder)."""
        path = Path(os.path.abspath(Path(path).expanduser()))
        source = video if video is not None else images
        if path.exists() and not path.is_dir():
            raise DataError(path, "exists and is a file, not a folder", f"choose another {flag}")
        state_file = path / STATE_FILE
        if path.is_dir() and state_file.is_file() and not state_file.is_symlink():
            ws = cls(path, read_state(state_file))
            recorded = Path(ws.state["video"]["path"])
            if source is not None and Path(os.path.abspath(source)).resolve() != recorded:
                raise DataError(path, f"is the workspace of {recorded}, not of {source}",
                                f"choose another {flag} for this video, or leave out --video/--images to resume it")
            if not recorded.exists():
                raise DataError(recorded, "the workspace's video is gone", "put it back where it was")
            clean_stale(path)  # a mask or frame being written when an earlier server was killed
            return ws
        if path.is_dir() and any(path.iterdir()):
            raise DataError(path, "exists and holds files that are not a workspace of this tool",
                            f"choose another {flag} (absent or empty)")
        if source is None:
            raise DataError(path, "is not a workspace yet", "give --video FILE or --images FOLDER to start one")
        check_not_input(path, flag, [source])
        probe_writable(path, flag)
        state = new_state(Path(source), video is not None)
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        ws = cls(path, state)
        ws.new = created
        ws.save()
        return ws

    def discard_if_new(self) -> None:
        """Remove a workspace this run created, while nothing but its first state is in it (the tool did
        not start: its weights were refused, ...)."""
        if self.new is not None and not self.state["history"]:
            entries = {p.name for p in self.path.iterdir()}
            if entries <= {STATE_FILE}:
                (self.path / STATE_FILE).unlink(missing_ok=True)
                if self.new:
                    self.path.rmdir()

    # ---------------------------------------------------------------------------------- state
    @property
    def video(self) -> dict:
        return self.state["video"]

    @property
    def length(self) -> int:
        return int(self.video["frames"])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.video["height"]), int(self.video["width"])

    @property
    def objects(self) -> list[dict]:
        return self.state["objects"]

    def object_ids(self) -> list[int]:
        return [o["id"] for o in self.objects]

    def save(self) -> None:
        with self._lock:
            atomic_write_text(self.path / STATE_FILE, json.dumps(self.state, indent=1) + "\n")

    def log(self, action: str, **fields: Any) -> None:
        """Add an entry to the interaction history and save the state."""
        with self._lock:
            history = self.state["history"]
            history.append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "action": action, **fields})
            del history[:-HISTORY_LIMIT]
            self.save()

    def palette(self) -> list[int]:
        """The masks' palette: the objects' colours at their ids, DAVIS's elsewhere."""
        pal = list(PALETTE)
        for o in self.objects:
            pal[3 * o["id"] : 3 * o["id"] + 3] = o["colour"]
        return pal

    # ---------------------------------------------------------------------------------- masks
    def mask_path(self, t: int) -> Path:
        return self.path / MASKS / mask_name(t)

    def read_mask(self, t: int) -> np.ndarray | None:
        """Frame t's saved mask (H x W uint8 user ids), or None when it has none."""
        path = self.mask_path(t)
        return read_index_mask(path) if path.is_file() else None

    def mask(self, t: int) -> np.ndarray:
        """Frame t's mask, background where none was saved."""
        saved = self.read_mask(t)
        return saved if saved is not None else np.zeros(self.size, dtype=np.uint8)

    def write_mask(self, t: int, labels: np.ndarray) -> None:
        (self.path / MASKS).mkdir(exist_ok=True)
        write_mask(self.mask_path(t), labels, self.palette())
        with self._lock:
            if self._present is not None:
                self._present[t] = {int(i) for i in np.unique(labels) if i}

    def present(self) -> dict[int, set[int]]:
        """Per frame with a mask, the object ids it shows (read once, then kept up to date by `write_mask`)."""
        with self._lock:
            if self._present is None:
                self._present = {t: {int(i) for i in np.unique(self.mask(t)) if i} for t in self.masked_frames()}
            return {t: set(ids) for t, ids in self._present.items()}

    def masked_frames(self) -> list[int]:
        folder = self.path / MASKS
        if not folder.is_dir():
            return []
        found = []
        for p in folder.iterdir():
            if p.suffix == ".png" and p.stem.isdigit() and int(p.stem) < self.length and p.is_file():
                found.append(int(p.stem))
        return sorted(found)


def new_state(source: Path, is_video: bool) -> dict:
    """The state of a new workspace for `source`; its frames are checked (count, size, rate)."""
    source = Path(os.path.abspath(source)).resolve()
    if is_video:
        reader = VideoReader(source)
        (h, w), n, fps = reader.size, reader.num_frames, reader.fps
        names = [f"{t:05d}" for t in range(n)]
    else:
        if not source.is_dir():
            raise DataError(source, "no such folder of frames", "give --images a folder of .jpg/.png frames")
        files = image_files(source)
        if not files:
            raise DataError(source, "holds no frames (.jpg, .png, ...)", "give --images a folder of frames")
        h, w = image_size(files[0])
        n, fps, names = len(files), DEFAULT_FPS, [p.stem for p in files]
    return {"tool": TOOL, "version": VERSION,
            "video": {"kind": "video" if is_video else "images", "path": str(source), "name": source.stem,
                      "frames": n, "height": h, "width": w, "fps": fps, "names": names},
            "objects": [], "interacted": [], "edited": [], "history": []}


def read_state(path: Path) -> dict:
    """A workspace's state file, checked (a damaged one is refused naming it)."""
    try:
        state = json.loads(path.read_text())
        video = state["video"]
        ok = (state.get("tool") == TOOL and isinstance(state.get("objects"), list)
              and all(isinstance(state.get(k), list) for k in ("interacted", "edited", "history"))
              and int(video["frames"]) > 0 and int(video["height"]) > 0 and int(video["width"]) > 0
              and video["kind"] in ("video", "images") and len(video["names"]) == int(video["frames"]))
        ok = ok and all(1 <= int(o["id"]) <= MAX_OBJECTS and len(o["colour"]) == 3 for o in state["objects"])
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise DataError(path, "is not a readable workspace state of this tool",
                        "choose another --workspace, or restore the file from a backup")
    return state
