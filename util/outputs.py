"""The output contract of every command that writes, and how a command ends on an interrupt.

What a command may write (checked before any work, by `prepare_output_dir` / `prepare_output_file`):

- A folder output (`--output`, `--binary_masks`, eval_generic's `--overlay`, a training run folder) is
  used when it is absent, empty, or a previous result of this project: a folder this project created
  holds `MARKER`, a small JSON file (command, time, complete). Inside such a folder earlier results of
  the same name are replaced whole. Any other existing folder is refused, unless `--overwrite`: then
  the files the command writes replace files of the same name, and nothing else there is deleted
  (and the folder does not become a "previous result").
- A single-file output (segment_video's `--overlay`, the YouTube-VOS zip, the score csv files) may be
  replaced when it lies in a previous result folder or a result's marker lists it (`companions`);
  otherwise an existing file needs `--overwrite`.
- Never, whatever the flags: an output that is equal to, inside, or contains one of the command's
  inputs (data root, frames, annotations, video file, masks, weights), and an existing file where a
  folder is expected (or a folder where a file is expected).
- The destination is probed for writability (a temporary file created and removed in the nearest
  existing folder) before the long work starts.

Unfinished outputs carry the writer's process id in their name, `.partial-<name>-<pid>-<hex>`
folders (`partial_dir`) and `.<name>.<pid>.<random>.tmp<suffix>` files (util/atomic.py), so the next
run in the same destination recognises those of a process that is gone (killed, e.g. SIGKILL) and
removes them (`clean_stale`).

Interrupts: `run_command` turns SIGTERM into `Terminated` (a KeyboardInterrupt, so every
`except BaseException` cleanup runs as for Ctrl-C) and ends the command with one line saying what was
finished and kept and what unfinished output was removed, exit status 128 + signal number (130 for
SIGINT, 143 for SIGTERM), no traceback. User errors (`UserError`, util/errors.py) and write errors (`OSError`,
e.g. a full disk) end with one `error:` line and exit status 1.

This module imports nothing of the project above util/, so training, downloads and scripts use it too.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from util.atomic import atomic_write_text
from util.errors import UserError, format_error
from util.io import DataError

MARKER = ".stcn-result"  # JSON written into every output folder this project creates
PARTIAL_PREFIX = ".partial-"  # temporary folder of an output being written
OVERWRITE_HINT = "pass --overwrite to replace only the files this command writes"
# .partial-<name>-<pid>-<8 hex> (partial_dir) and .<name>.<pid>.<mkstemp chars>.tmp<suffix> (util/atomic.py)
PARTIAL_RE = re.compile(r"^\.partial-.*-(?P<pid>\d+)-[0-9a-f]{8}$")
TMP_FILE_RE = re.compile(r"^\..+\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp")
STALE_DEPTH = 2  # levels searched inside an output folder (<out>/Annotations/.partial-<video>-...)
SIGNAL_EXIT_BASE = 128  # shell convention: killed by signal n -> exit status 128 + n
MAX_LISTED = 2  # paths named in the interrupt line before "and N more"
DISK_FULL = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up"}  # errno -> reason


# ------------------------------------------------------------------------------ path relations
def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def overlaps(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when `a` and `b` are the same path or one lies inside the other (symlinks resolved)."""
    ra, rb = _resolved(a), _resolved(b)
    return ra == rb or ra.is_relative_to(rb) or rb.is_relative_to(ra)


def check_not_input(path: Path, flag: str, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an output equal to, inside or containing one of the command's inputs."""
    for item in inputs:
        if item is None or str(item) == "":
            continue
        if overlaps(path, item):
            ra, ri = _resolved(path), _resolved(item)
            how = "is" if ra == ri else "is inside" if ra.is_relative_to(ri) else "contains"
            raise DataError(path, f"{how} the input {item}; the command never writes into its inputs",
                            f"choose another {flag} outside the inputs")


def check_distinct(
    outputs: Iterable[tuple[str | os.PathLike | None, str]], entries: Iterable[str] | None = None
) -> None:
    """Refuse two outputs of one command (path, flag) that are the same or nested: one would replace the other.

    entries: the names written inside each output folder (e.g. the videos). When given, nesting is
    allowed as long as the inner output is not at one of those names (eval_generic's
    `--overlay <output>/overlays`).
    """
    given = [(Path(p), flag) for p, flag in outputs if p is not None and str(p) != ""]
    names = None if entries is None else {str(e) for e in entries}
    for i, (a, flag_a) in enumerate(given):
        for b, flag_b in given[i + 1:]:
            if not overlaps(a, b):
                continue
            ra, rb = _resolved(a), _resolved(b)
            if names is not None and ra != rb:
                inner, outer = (ra, rb) if ra.is_relative_to(rb) else (rb, ra)
                first = inner.relative_to(outer).parts[0]
                if first not in names and Path(first).stem not in names:
                    continue
            raise DataError(b, f"overlaps {flag_a} {a}", f"give {flag_a} and {flag_b} separate paths")


def nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe_writable(path: Path, flag: str) -> None:
    """Create and remove a temporary file where `path` will be created (nothing is left behind)."""
    where = nearest_existing(path)
    if where != Path(os.path.abspath(path)) and not where.is_dir():
        raise DataError(path, f"cannot be created: {where} is a file, not a folder", f"choose another {flag}")
    folder = where if where.is_dir() else where.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=".stcn-probe-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise DataError(path, f"cannot be written: {DISK_FULL[exc.errno]} ({exc.strerror} in {folder})",
                            f"free some space there or choose another {flag}") from None
        raise DataError(path, f"cannot be written ({exc.strerror or exc} in {folder})",
                        f"choose another {flag} or fix the folder's permissions") from None


# ------------------------------------------------------------------------------------- marker
def read_marker(folder: Path) -> dict | None:
    """The marker of a previous result folder, or None (also for an unreadable one)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_result(folder: Path) -> bool:
    return read_marker(folder) is not None


def write_marker(folder: Path, command: str, complete: bool, companions: Sequence[Path] = ()) -> None:
    """Mark `folder` as a result of this project (atomically; see util/atomic.py)."""
    data = {"command": command, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "complete": complete,
            "companions": sorted({str(_resolved(p)) for p in companions})}
    atomic_write_text(Path(folder) / MARKER, json.dumps(data, indent=1) + "\n")


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


# --------------------------------------------------------------------------- partial outputs
def partial_dir(final: Path) -> Path:
    """A fresh hidden folder beside `final` to write into before `replace_dir`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{PARTIAL_PREFIX}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def as_final(exc: OSError, tmp: Path, final: Path) -> OSError:
    """`exc` naming the file's final place instead of its place in the partial folder `tmp`."""
    name = Path(exc.filename) if exc.filename else None
    if name is None or not name.is_relative_to(tmp):
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), str(Path(final) / name.relative_to(tmp)))


def remove_partial(tmp: Path) -> None:
    """Remove an unfinished output (folder or file) and note it for the interrupt line."""
    tmp = Path(tmp)
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)
    LEDGER.removed.append(tmp)


@contextmanager
def partial_folder(final: Path) -> Iterator[Path]:
    """`partial_dir(final)` for the block to write into, removed (`remove_partial`) when the block
    fails or is interrupted; on success it stays for the caller to move into place."""
    tmp = partial_dir(final)
    try:
        yield tmp
    except BaseException:
        remove_partial(tmp)
        raise


def replace_dir(src: Path, dst: Path, whole: bool = True) -> None:
    """Move the finished folder `src` to `dst`.

    whole: an existing `dst` is an older result, replaced as a whole; otherwise (a folder of the
    user's, written into with --overwrite) each entry of `src` replaces the entry of that name in
    `dst` and nothing else in `dst` is touched.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() and not dst.is_dir():
        raise DataError(dst, "exists and is a file, not a folder", "move it away or choose another output")
    if not dst.exists():
        src.rename(dst)
    elif whole:
        old = dst.parent / f"{PARTIAL_PREFIX}old-{dst.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        dst.rename(old)
        src.rename(dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        for entry in sorted(src.iterdir()):
            target = dst / entry.name
            if entry.is_dir():
                replace_dir(entry, target, whole=False)
            else:
                if target.is_dir():
                    raise DataError(target, "is a folder where a file is written", "move it away")
                os.replace(entry, target)
        shutil.rmtree(src, ignore_errors=True)
    LEDGER.kept.append(dst)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def stale_partials(folder: Path, name: str | None = None, depth: int = 1) -> list[Path]:
    """Unfinished outputs of processes that are gone, in `folder` (and `depth` - 1 levels below).

    name: only those belonging to this output name (when `folder` is a parent shared with the user).
    """
    folder = Path(folder)
    found: list[Path] = []
    if not folder.is_dir():
        return found
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return found
    for entry in entries:
        m = PARTIAL_RE.match(entry.name) or TMP_FILE_RE.match(entry.name)
        if m and not _pid_alive(int(m.group("pid"))):
            if name is None or entry.name.startswith((f"{PARTIAL_PREFIX}{name}-", f"{PARTIAL_PREFIX}old-{name}-",
                                                      f".{name}.")):
                found.append(entry)
        elif depth > 1 and name is None and entry.is_dir() and not entry.is_symlink():
            found.extend(stale_partials(entry, None, depth - 1))
    return found


def clean_stale(path: Path, inside: bool = True) -> list[Path]:
    """Remove unfinished outputs left by a killed earlier run writing `path`; print one note."""
    path = Path(path)
    stale = stale_partials(path.parent, name=path.name)
    if inside and path.is_dir():
        stale += stale_partials(path, depth=STALE_DEPTH)
    for item in stale:
        if item.is_dir():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)
    if stale:
        print(f"note: removed {_list(stale)} left unfinished by an earlier run that was stopped", file=sys.stderr)
    return stale


# ----------------------------------------------------------------------------- preparing outputs
def _has_user_entries(folder: Path) -> bool:
    return any(e.name != MARKER and not PARTIAL_RE.match(e.name) and not TMP_FILE_RE.match(e.name)
               for e in folder.iterdir())


@dataclass
class OutputDir:
    """A checked folder output. `ours`: absent, empty or a previous result (entries replaced whole)."""

    path: Path
    flag: str
    ours: bool
    companions: list[Path] = field(default_factory=list)
    _created: bool = False

    def replace(self, src: Path, dst: Path) -> None:
        """Move a finished folder `src` to `dst`: this output itself or an entry inside it."""
        marker = self.path / MARKER
        if Path(dst) == self.path and self.ours and marker.is_file():
            shutil.copyfile(marker, Path(src) / MARKER)  # the replacement stays marked as ours
        replace_dir(src, dst, whole=self.ours)

    def claim(self, command: str | None = None) -> None:
        """Create the folder and mark it as ours (not complete yet), before writing into it."""
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self._created = True
        if self.ours:
            write_marker(self.path, command or command_line(), complete=False, companions=self.companions)

    def finish(self, command: str | None = None) -> None:
        if self.ours:
            write_marker(self.path, command or command_line(), complete=True, companions=self.companions)

    def release(self) -> None:
        """After a failure: remove the folder again if this run created it and finished nothing in it."""
        if self._created and self.path.is_dir() and not _has_user_entries(self.path):
            shutil.rmtree(self.path, ignore_errors=True)

    @contextmanager
    def writing(self, command: str | None = None) -> Iterator[OutputDir]:
        """claim, then finish on success or release on any error or interrupt."""
        self.claim(command)
        try:
            yield self
        except BaseException:
            self.release()
            raise
        self.finish(command)


def prepare_output_dir(path: str | os.PathLike, flag: str, inputs: Iterable[str | os.PathLike | None] = (),
                       overwrite: bool = False) -> OutputDir:
    """Check a folder output against the contract (module docstring); raises DataError before any work.

    Stale unfinished outputs of a killed earlier run in that destination are removed.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(path, f"exists and is a file, not a folder ({flag} names a folder)",
                        f"choose another {flag}; the file is left as it is")
    check_not_input(path, flag, inputs)
    ours = True
    if path.is_dir() and _has_user_entries(path) and not is_result(path):
        if not overwrite:
            raise DataError(path, "exists and holds files that are not a result of this project",
                            f"choose another {flag} (absent or empty), or {OVERWRITE_HINT}")
        ours = False
    probe_writable(path, flag)
    clean_stale(path, inside=ours or overwrite)
    return OutputDir(path, flag, ours)


def prepare_output_file(path: str | os.PathLike, flag: str, inputs: Iterable[str | os.PathLike | None] = (),
                        overwrite: bool = False, owner: OutputDir | None = None) -> Path:
    """Check a single-file output; `owner`: the result folder whose marker lists it (it is added)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, f"is a folder ({flag} names a file)", f"choose another {flag}")
    check_not_input(path, flag, inputs)
    if path.exists() and not overwrite and not _file_is_ours(path, owner):
        raise DataError(path, "exists and is not a result of this project",
                        f"choose another {flag}, or pass --overwrite to replace it")
    probe_writable(path, flag)
    clean_stale(path, inside=False)
    if owner is not None:
        owner.companions.append(path)
    return path


def _file_is_ours(path: Path, owner: OutputDir | None) -> bool:
    if is_result(path.parent):
        return True
    candidates = [owner.path] if owner is not None else []
    for folder in candidates:
        marker = read_marker(folder)
        if marker and str(_resolved(path)) in marker.get("companions", []):
            return True
    return False


# ------------------------------------------------------------------------------- ending a command
@dataclass
class Ledger:
    """What the running command finished (kept) and what unfinished output it removed."""

    kept: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)

    def reset(self) -> None:
        self.kept.clear()
        self.removed.clear()


LEDGER = Ledger()


def note_kept(path: Path) -> None:
    LEDGER.kept.append(Path(path))


def note_removed(path: Path) -> None:
    LEDGER.removed.append(Path(path))


def wrote_line(*items: tuple[str, str | os.PathLike | Sequence[str | os.PathLike]]) -> str:
    """The last line of every command that writes, saying what went where:
    `wrote <what> to <place>, <what> to <place> and <what> to <place>, <place>` from (what, place or places)."""
    parts = []
    for what, where in items:
        places = [where] if isinstance(where, (str, os.PathLike)) else where
        parts.append(f"{what} to {', '.join(str(p) for p in places)}")
    return "wrote " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by the SIGTERM handler `run_command` installs."""

    signum = signal.SIGTERM


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises `Terminated` inside the block (main thread only), the old handler after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _list(paths: Sequence[Path]) -> str:
    unique = list(dict.fromkeys(str(p) for p in paths))
    shown = ", ".join(unique[:MAX_LISTED])
    return shown + (f" and {len(unique) - MAX_LISTED} more" if len(unique) > MAX_LISTED else "")


def interrupt_line(exc: KeyboardInterrupt, resume_hint: str = "") -> tuple[str, int]:
    """The one line and the exit status of a command stopped by SIGINT or SIGTERM."""
    signum = getattr(exc, "signum", signal.SIGINT)
    kept = f"kept {_list(LEDGER.kept)}" if LEDGER.kept else "nothing was finished"
    removed = [p for p in LEDGER.removed if not any(p != q and p.is_relative_to(q) for q in LEDGER.removed)]
    gone = f"removed the unfinished {_list(removed)}" if removed else "nothing unfinished was left"
    line = f"interrupted by {signal.Signals(signum).name}: {kept}; {gone}" + (f"; {resume_hint}" if resume_hint else "")
    return line, SIGNAL_EXIT_BASE + int(signum)


def write_error_line(exc: OSError) -> str:
    """`<file>: <reason>; <fix>` for an OSError (a full disk, a missing permission ...)."""
    return format_error(*write_error_parts(exc))


def write_error_parts(exc: OSError) -> tuple[str, str, str]:
    """(file, reason, fix) of an OSError (a full disk, a missing permission ...)."""
    where = str(exc.filename or "output")
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space or write elsewhere; earlier finished outputs are kept"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "check the path and its permissions, or write elsewhere"
    else:
        fix = "check the path and its permissions"
    return where, reason, fix


def run_command(fn: Callable[[], int], resume_hint: str = "", prefix: str = "") -> int:
    """The one reporter of every entry point: runs a command's body; a `UserError` (util/errors.py)
    and a write error become one `error: [prefix]where: problem; fix` line (exit 1), SIGINT and SIGTERM
    one `interrupted by ...` line (exit 130 / 143); never a traceback for these."""
    LEDGER.reset()
    try:
        with terminate_as_interrupt():
            return fn()
    except KeyboardInterrupt as exc:
        line, status = interrupt_line(exc, resume_hint)
        print(line, file=sys.stderr, flush=True)
        return status
    except UserError as exc:
        print("error: " + prefix + " ".join(str(exc).split()), file=sys.stderr, flush=True)
    except OSError as exc:
        print(f"error: {prefix}{write_error_line(exc)}", file=sys.stderr, flush=True)
    return 1
