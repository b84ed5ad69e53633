"""The annotation tool's session: one workspace, the interactive core on it, and the background jobs.

Objects carry the user's ids (1..255, what the exported PNGs hold); the interactive core numbers them
1..K in the workspace's order (`_to_core`, `_to_user`). The core is built when first needed and
rebuilt from the saved masks when the set of objects changes or a workspace is resumed
(`InteractiveCore.restore`: interacted frames join the permanent memory again, propagated frames give
their stored probabilities, hand-edited frames their label maps).

One job at a time runs in a background thread, with progress and a cancel event: a propagation
(`InteractiveCore.interact`: each propagated frame's mask is saved as soon as it is ready) or an export
(under the output contract, `util.outputs.OutputDir`, in <workspace>/export). While a job runs, the
masks and objects cannot change (`Busy`).
"""
from __future__ import annotations

import contextlib
import threading
import time
import traceback
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotator.workspace import EXPORT, MAX_NAME, PALETTE, STATE_FILE, TOOL, Workspace, mask_name
from inference_core.interactive import DEFAULT_CACHE_MB, DIRECTIONS, InteractiveCore
from inference_core.predictor import Predictor
from util.atomic import atomic_path
from util.errors import UserError
from util.io import MAX_OBJECTS, write_binary_mask, write_mask
from util.outputs import LEDGER, OutputDir
from util.scribbles import BACKGROUND_ID, Stroke, rasterise, s2m_inputs
from util.video import VideoWriter, overlay

EXPORT_FORMATS = ("indexed", "binary", "overlay", "workspace")


class RequestError(UserError):
    """A request the session cannot carry out as asked (answered 400 with its message)."""


class Busy(UserError):
    """A request that conflicts with the running job or the session's state (answered 409)."""


@dataclass
class Job:
    """A background job: `kind` (propagate, export), its progress, state and a cancel event."""

    kind: str
    frame: int | None = None
    done: int = 0
    total: int = 0
    state: str = "running"  # running, done, cancelled, failed
    message: str = ""
    started: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def as_json(self) -> dict:
        return {"kind": self.kind, "frame": self.frame, "done": self.done, "total": self.total, "state": self.state,
                "message": self.message, "seconds": round(time.time() - self.started, 2)}


class Session:
    """The tool's state (module docstring). predictor: one STCN network; s2m / fusion: the scribble-to-mask
    and fusion networks or None (`s2m_reason`: why scribbles are unavailable, shown by the page)."""

    def __init__(self, workspace: Workspace, predictor: Predictor, s2m: Any = None, fusion: Any = None,
                 s2m_reason: str = "", cache_mb: float | None = DEFAULT_CACHE_MB) -> None:
        self.ws = workspace
        self.predictor = predictor
        self.s2m, self.fusion, self.s2m_reason = s2m, fusion, s2m_reason
        self.cache_mb = cache_mb
        self.core: InteractiveCore | None = None
        self.job: Job | None = None
        self._lock = threading.RLock()  # the core and the masks: held by a job while it runs

    # ------------------------------------------------------------------------------- reading
    def status(self) -> dict:
        core = self.core
        memory = {"frames": list(core.interacted) if core else [], "cache_mb": round(core.cache.nbytes / 2**20, 1)
                  if core else 0.0, "cache_frames": len(core.cache) if core else 0,
                  "cache_limit_mb": self.cache_mb}
        return {"video": {k: self.ws.video[k] for k in ("name", "kind", "frames", "height", "width", "fps")},
                "objects": self.ws.objects, "interacted": self.ws.state["interacted"],
                "edited": self.ws.state["edited"], "masked": self.ws.masked_frames(),
                "device": str(self.predictor.device), "memory": memory,
                "s2m": {"available": self.s2m is not None, "reason": self.s2m_reason},
                "fusion": self.fusion is not None, "job": self.job.as_json() if self.job else None}

    def presence(self) -> dict[str, list[int]]:
        """Per object id, the frames whose saved mask shows it (the page's timeline)."""
        out: dict[str, list[int]] = {str(i): [] for i in self.ws.object_ids()}
        for t, ids in sorted(self.ws.present().items()):
            for i in ids:
                if str(i) in out:
                    out[str(i)].append(t)
        return out

    def check_frame(self, t: int) -> int:
        if not 0 <= t < self.ws.length:
            raise RequestError("frame", f"{t} is not a frame of this video", f"use 0..{self.ws.length - 1}")
        return t

    # ------------------------------------------------------------------------------- objects
    def add_object(self, name: str | None = None, colour: Sequence[int] | None = None,
                   object_id: int | None = None) -> dict:
        with self._changing():
            ids = self.ws.object_ids()
            if object_id is None:
                object_id = next((i for i in range(1, MAX_OBJECTS + 1) if i not in ids), None)
                if object_id is None:
                    raise Busy("objects", f"all {MAX_OBJECTS} ids are in use", "delete an object first")
            if not 1 <= object_id <= MAX_OBJECTS or object_id in ids:
                raise RequestError("id", f"{object_id} is taken or outside 1..{MAX_OBJECTS}", "choose a free id")
            obj = {"id": int(object_id), "name": _name(name or f"object {object_id}"),
                   "colour": _colour(colour if colour is not None else PALETTE[3 * object_id: 3 * object_id + 3])}
            self.ws.objects.append(obj)
            self.core = None  # K changed: rebuilt from the saved masks when next needed
            self.ws.log("add object", object=obj["id"])
            return obj

    def update_object(self, object_id: int, name: str | None = None, colour: Sequence[int] | None = None) -> dict:
        with self._changing():
            obj = self._object(object_id)
            if name is not None:
                obj["name"] = _name(name)
            if colour is not None:
                obj["colour"] = _colour(colour)
            self.ws.log("update object", object=object_id)
            if colour is not None:  # the masks' palette holds the colours
                for t in self.ws.masked_frames():
                    self.ws.write_mask(t, self.ws.mask(t))
            return obj

    def delete_object(self, object_id: int) -> None:
        """Remove an object and its pixels from every saved mask (they become background)."""
        with self._changing():
            obj = self._object(object_id)
            for t in self.ws.masked_frames():
                mask = self.ws.mask(t)
                if (mask == object_id).any():
                    mask[mask == object_id] = 0
                    self.ws.write_mask(t, mask)
            self.ws.objects.remove(obj)
            self.core = None
            self.ws.log("delete object", object=object_id)

    def _object(self, object_id: int) -> dict:
        for o in self.ws.objects:
            if o["id"] == object_id:
                return o
        raise RequestError("object", f"no object of id {object_id}", f"use one of {self.ws.object_ids()}")

    # --------------------------------------------------------------------------------- masks
    def set_mask(self, t: int, labels: np.ndarray) -> None:
        """Frame t's mask drawn by hand (H x W user ids): saved, and given to the core without propagating."""
        self.check_frame(t)
        with self._changing():
            unknown = sorted(set(np.unique(labels).tolist()) - {0, *self.ws.object_ids()})
            if unknown:
                raise RequestError("mask", f"holds ids {unknown} that are no object",
                                   f"use 0 and the objects' ids {self.ws.object_ids()}")
            self._set_edited(t, labels, "edit mask")

    def scribble(self, t: int, strokes: Sequence[dict]) -> None:
        """Scribbles or clicks on frame t turned into its mask by the scribble-to-mask network.
        strokes: {"object": id (0: background), "path": [[x, y], ...] normalised to 0..1}."""
        self.check_frame(t)
        if self.s2m is None:
            raise Busy("scribbles", f"the scribble-to-mask network is not loaded ({self.s2m_reason})",
                       "use the brush, or start the tool with --s2m_model pointing at s2m.pth")
        with self._changing():
            ids = self.ws.object_ids()
            parsed = []
            for s in strokes:
                obj = s.get("object")
                if obj != BACKGROUND_ID and obj not in ids:
                    raise RequestError("strokes", f"object {obj!r} is no object", f"use 0 or one of {ids}")
                path = s.get("path")
                if not isinstance(path, list) or not path or not all(
                        isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and 0 <= v <= 1
                                                                      for v in p) for p in path):
                    raise RequestError("strokes", "a path is not a list of [x, y] in 0..1", "normalise the points")
                parsed.append(Stroke(tuple((float(x), float(y)) for x, y in path), int(obj)))
            if not parsed:
                raise RequestError("strokes", "none given", "draw at least one stroke")
            core = self._ensure_core()
            h, w = self.ws.size
            maps = s2m_inputs(rasterise(parsed, None, h, w), ids)
            prob = core.scribble_probabilities(t, self.s2m, maps)
            core.update_mask_only(t, prob=prob)
            labels = self._to_user(core.labels(t))
            self.ws.write_mask(t, labels)
            self._mark_edited(t)
            self.ws.log("scribble", frame=t, strokes=len(parsed))

    def _set_edited(self, t: int, labels: np.ndarray, action: str) -> None:
        if self.core is not None:
            self.core.update_mask_only(t, self._to_core(labels))
        self.ws.write_mask(t, labels)
        self._mark_edited(t)
        self.ws.log(action, frame=t)

    def _mark_edited(self, t: int) -> None:
        if t not in self.ws.state["edited"]:
            self.ws.state["edited"].append(t)

    # ------------------------------------------------------------------------------ the core
    def _to_core(self, labels: np.ndarray) -> np.ndarray:
        lut = np.zeros(256, dtype=np.uint8)
        for k, i in enumerate(self.ws.object_ids(), start=1):
            lut[i] = k
        return lut[labels]

    def _to_user(self, labels: np.ndarray) -> np.ndarray:
        lut = np.zeros(256, dtype=np.uint8)
        lut[1: len(self.ws.objects) + 1] = self.ws.object_ids()
        return lut[labels]

    def _ensure_core(self) -> InteractiveCore:
        """The interactive core, built (and restored from the saved masks) when absent."""
        if self.core is not None:
            return self.core
        if not self.ws.objects:
            raise Busy("objects", "there are none yet", "add an object and draw it first")
        core = InteractiveCore(self.predictor, self.ws.frames, len(self.ws.objects), fusion=self.fusion,
                               cache_mb=self.cache_mb)
        interacted, edited = self.ws.state["interacted"], set(self.ws.state["edited"])
        for t in self.ws.masked_frames():
            if t not in interacted and t not in edited:
                core.restore(t, self._to_core(self.ws.mask(t)))
        for t in interacted:
            core.restore(t, self._to_core(self.ws.mask(t)), interacted=True)
        for t in edited:
            core.update_mask_only(t, self._to_core(self.ws.mask(t)))
        self.core = core
        return core

    # ---------------------------------------------------------------------------------- jobs
    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """A change of masks or objects: refused while a job runs."""
        if self.job is not None and self.job.state == "running":
            raise Busy("job", f"a {self.job.kind} is running", "wait for it or cancel it")
        with self._lock:
            yield

    def _start(self, job: Job, work) -> Job:
        with self._changing():
            self.job = job

        def run() -> None:
            try:
                with self._lock:
                    work(job)
                if job.state == "running":
                    job.state = "cancelled" if job.cancel.is_set() else "done"
            except UserError as exc:
                job.state, job.message = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - reported to the page, and printed for the log
                job.state, job.message = "failed", f"{type(exc).__name__}: {exc}"
                traceback.print_exc()

        job.thread = threading.Thread(target=run, name=f"stcn-{job.kind}", daemon=True)
        job.thread.start()
        return job

    def propagate(self, t: int, direction: str = "both") -> Job:
        """An interaction on frame t with its current mask, propagated in the background ("none": the frame
        only joins the permanent memory)."""
        self.check_frame(t)
        if direction not in DIRECTIONS:
            raise RequestError("direction", f"{direction!r} is not one of {', '.join(DIRECTIONS)}", "pick one")
        if not self.ws.objects:
            raise Busy("objects", "there are none yet", "add an object and draw it first")

        def work(job: Job) -> None:
            core = self._ensure_core()
            mask = self.ws.mask(t)
            edited = self.ws.state["edited"]

            def on_frame(ti: int) -> None:
                self.ws.write_mask(ti, self._to_user(core.labels(ti)))
                if ti in edited:
                    edited.remove(ti)

            def progress(done: int, total: int) -> None:
                job.done, job.total = done, total

            result = core.interact(t, self._to_core(mask), progress=progress, cancel=job.cancel,
                                   directions=direction, on_frame=on_frame)
            self.ws.write_mask(t, mask)
            if t in edited:
                edited.remove(t)
            interacted = self.ws.state["interacted"]
            interacted.append(t)
            self.ws.log("propagate", frame=t, direction=direction,
                        frames=len(result.forward) + len(result.backward), cancelled=result.cancelled)
            if result.cancelled:
                job.state = "cancelled"

        return self._start(Job("propagate", frame=t), work)

    def export(self, formats: Sequence[str] = EXPORT_FORMATS) -> Job:
        unknown = [f for f in formats if f not in EXPORT_FORMATS]
        if unknown or not formats:
            raise RequestError("formats", f"{unknown or 'none'} not among {', '.join(EXPORT_FORMATS)}",
                               "pick some of them")
        return self._start(Job("export"), lambda job: self._export(job, set(formats)))

    def _export(self, job: Job, formats: set[str]) -> None:
        """<workspace>/export: Annotations/<video>/<frame>.png (DAVIS layout, the user's ids), Binary/<video>/
        <id>/<frame>.png (0/255), <video>.mp4 (overlay), workspace.zip (state and masks); a result of this
        tool, replaced as a whole by the next export (`OutputDir`)."""
        ws = self.ws
        name, names, n = ws.video["name"], ws.video["names"], ws.length
        palette, ids = ws.palette(), ws.object_ids()
        job.total = n
        with _tool(TOOL), contextlib.suppress(_Cancelled):
            out = OutputDir(ws.path / EXPORT, "export", inputs=[ws.video["path"]])
            with out, contextlib.ExitStack() as stack:
                indexed = stack.enter_context(out.partial(out.path / "Annotations" / name)) \
                    if "indexed" in formats else None
                binary = stack.enter_context(out.partial(out.path / "Binary" / name)) if "binary" in formats else None
                writer = stack.enter_context(VideoWriter(out.file(out.path / f"{name}.mp4", "export"),
                                                         fps=ws.video["fps"])) if "overlay" in formats else None
                for i in ids if binary is not None else ():
                    (binary / str(i)).mkdir()
                for t in range(n):
                    if job.cancel.is_set():
                        raise _Cancelled()
                    labels = ws.mask(t)
                    if indexed is not None:
                        write_mask(indexed / f"{names[t]}.png", labels, palette)
                    for i in ids if binary is not None else ():
                        write_binary_mask(binary / str(i) / f"{names[t]}.png", labels, i)
                    if writer is not None:
                        writer.write(overlay(np.asarray(ws.frames[t]), labels, palette))
                    job.done = t + 1
                if "workspace" in formats:
                    with atomic_path(out.file(out.path / "workspace.zip", "export")) as tmp:
                        _zip_workspace(ws, tmp)
        if job.cancel.is_set():
            return
        ws.log("export", formats=sorted(formats))
        job.message = str(out.path)

    def cancel(self) -> Job | None:
        if self.job is not None and self.job.state == "running":
            self.job.cancel.set()
        return self.job

    def close(self, timeout: float = 30.0) -> None:
        """Cancel a running job and wait for it (what it finished is saved already)."""
        job = self.cancel()
        if job is not None and job.thread is not None:
            job.thread.join(timeout)


class _Cancelled(Exception):
    """An export cancelled by the user: its unfinished files are removed."""


@contextlib.contextmanager
def _tool(name: str) -> Iterator[None]:
    """The program named in the export's marker (the output contract tells results apart by it)."""
    previous, LEDGER.tool = LEDGER.tool, name
    try:
        yield
    finally:
        LEDGER.tool = previous


def _zip_workspace(ws: Workspace, path: Path) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.write(ws.path / STATE_FILE, STATE_FILE)
        for t in ws.masked_frames():
            z.write(ws.mask_path(t), f"masks/{mask_name(t)}")


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise RequestError("name", "is empty, not text or too long", f"give 1..{MAX_NAME} characters")
    return name.strip()


def _colour(colour: Any) -> list[int]:
    if not (isinstance(colour, (list, tuple)) and len(colour) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour)):
        raise RequestError("colour", f"{colour!r} is not [r, g, b] in 0..255", "give three integers 0..255")
    return [int(v) for v in colour]
