"""The output contract of every command that writes, and how a command ends on an interrupt.

What a command may write (checked before any work, by `prepare_output_dir` / `prepare_output_file`):

- A folder output (`--output`, `--binary_masks`, eval_generic's `--overlay`, a training run folder) is
  used when it is absent, empty, or a previous result of this project: a folder this project created
  holds `MARKER`, a small JSON file (command, `tool`: the program, time, complete, and `files`: every
  file the program wrote there). Inside such a folder earlier results of the same name are replaced
  whole. A previous result that also holds files not in its `files` (the user's own, a link, or any
  file when another program wrote the result) is refused, naming them,
  unless `--overwrite`: then only files of the same names as those written are replaced and the
  user's files are kept. Any other existing folder is refused, unless `--overwrite`: then the files
  the command writes replace files of the same name, and nothing else there is deleted (and the
  folder does not become a "previous result").
- A single-file output (segment_video's `--overlay`, the YouTube-VOS zip, the score csv files) may be
  replaced when the marker of the result folder it lies in lists it (`files`) or a result's marker
  lists it (`companions`); otherwise an existing file needs `--overwrite`.
- Never, whatever the flags: an output that is equal to, inside, or contains one of the command's
  inputs (data root, frames, annotations, video file, masks, weights), and an existing file where a
  folder is expected (or a folder where a file is expected). Every path written or replaced inside an
  output folder is checked again when it is written (`OutputDir.check_target`): it must resolve to
  itself (no symbolic link on the way, none replaced) and lie outside the inputs. The output folder
  itself may be a link the user gave; it is resolved once, and its target checked.
- The destination is probed for writability (a temporary file created and removed in the nearest
  existing folder) before the long work starts.

Unfinished outputs are partial folders `.partial-<name>-<pid>-<hex>/` (`partial_dir`; an atomic file
write's temporary lies in one too, util/atomic.py) holding a proof file that names the folder. The
next run in the same destination removes those of a process that is gone (killed, e.g. SIGKILL) and
only those (`clean_stale`): a name that merely looks like a temporary is never enough.

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
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from util.atomic import (
    PARTIAL_PREFIX,
    PARTIAL_PROOF,
    PARTIAL_RE,
    atomic_write_text,
    is_partial,
    is_proof,
    make_partial,
    partial_name,
    settle,
    write_proof,
)
from util.errors import UserError, format_error
from util.io import DataError

MARKER = ".stcn-result"  # JSON written into every output folder this project creates
OVERWRITE_HINT = "pass --overwrite to replace only the files this command writes"
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
    """The marker of a previous result folder, or None (also for an unreadable one or a link)."""
    marker = Path(folder) / MARKER
    if marker.is_symlink():
        return None
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_result(folder: Path) -> bool:
    return read_marker(folder) is not None


def write_marker(folder: Path, command: str, complete: bool, companions: Sequence[Path] = (),
                 files: Iterable[str] = (), tool: str | None = None) -> None:
    """Mark `folder` as a result of this project (atomically; see util/atomic.py). files: the paths,
    relative to `folder`, of every file the project wrote there (the user's own files are the others);
    tool: the program that wrote them (`LEDGER.tool`)."""
    data = {"command": command, "tool": tool, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "complete": complete,
            "companions": sorted({str(_resolved(p)) for p in companions}), "files": sorted(set(files))}
    atomic_write_text(Path(folder) / MARKER, json.dumps(data, indent=1) + "\n")


def marker_files(marker: dict | None) -> set[str]:
    """The files a result's marker says the project wrote (none for a marker without that list, or one
    written by another program: this one may replace only its own results)."""
    files = marker.get("files") if marker and marker.get("tool") == LEDGER.tool else None
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def folder_files(folder: Path) -> list[str]:
    """Every file and link under `folder` ('/'-separated, relative), links not followed; the marker,
    proofs and the project's partial folders (unfinished outputs) are not counted."""
    found: list[str] = []

    def walk(here: Path, prefix: str) -> None:
        try:
            entries = sorted(here.iterdir())
        except OSError:
            return
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_symlink():
                found.append(rel)
            elif entry.is_dir():
                if not is_partial(entry):
                    walk(entry, rel + "/")
            elif rel != MARKER and not is_proof(entry):
                found.append(rel)

    walk(Path(folder), "")
    return found


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


# --------------------------------------------------------------------------- partial outputs
def partial_dir(final: Path) -> Path:
    """A fresh partial folder beside `final` (util/atomic.py) to write into before `replace_dir`."""
    return make_partial(final)


def as_final(exc: OSError, tmp: Path, final: Path) -> OSError:
    """`exc` naming the file's final place instead of its place in the partial folder `tmp`."""
    name = Path(exc.filename) if exc.filename else None
    if name is None or not name.is_relative_to(tmp):
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), str(Path(final) / name.relative_to(tmp)))


def remove_partial(tmp: Path) -> None:
    """Remove an unfinished output (folder or file) and note it for the interrupt line."""
    tmp = Path(tmp)
    if tmp.is_dir() and not tmp.is_symlink():
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


def refuse_link(path: Path, flag: str = "--output") -> None:
    """A link is never written through, replaced or removed: the command did not create what it reaches."""
    if Path(path).is_symlink():
        raise DataError(path, f"is a symbolic link (to {os.readlink(path)}); the command never writes through "
                              "a link nor replaces one", f"move the link away or choose another {flag}")


def replace_dir(src: Path, dst: Path, whole: bool = True) -> None:
    """Move the finished partial folder `src` to `dst`.

    whole: an existing `dst` is an older result, replaced as a whole; otherwise (a folder holding the
    user's files, written into with --overwrite) each entry of `src` replaces the entry of that name
    in `dst` and nothing else in `dst` is touched. A link at `dst` or at any entry replaced is refused.
    """
    src, dst = Path(src), Path(dst)
    refuse_link(dst)
    if dst.exists() and not dst.is_dir():
        raise DataError(dst, "exists and is a file, not a folder", "move it away or choose another output")
    if not dst.exists():
        settle(src, dst)
    elif whole:
        old = dst.parent / partial_name(dst, "old")
        write_proof(dst, old.name)  # proven ours before it is renamed: a kill between the two leaves no doubt
        dst.rename(old)
        settle(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        for entry in sorted(src.iterdir()):
            if entry.name == PARTIAL_PROOF:
                continue
            target = dst / entry.name
            refuse_link(target)
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
    """The project's partial folders (proven, util/atomic.py) of processes that are gone, in `folder`
    (and `depth` - 1 levels below, never through a link nor into anything named like a partial folder).

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
        m = PARTIAL_RE.match(entry.name)
        if m:
            if not _pid_alive(int(m.group("pid"))) and is_partial(entry) and (
                    name is None or entry.name.startswith((f"{PARTIAL_PREFIX}{name}-",
                                                           f"{PARTIAL_PREFIX}old-{name}-"))):
                found.append(entry)
        elif depth > 1 and name is None and entry.is_dir() and not entry.is_symlink():
            found.extend(stale_partials(entry, None, depth - 1))
    return found


def clean_stale(path: Path, inside: bool = True) -> list[Path]:
    """Remove unfinished outputs left by a killed earlier run writing `path`; one note names those removed."""
    path = Path(path)
    stale = stale_partials(path.parent, name=path.name)
    if inside and path.is_dir() and not path.is_symlink():
        stale += stale_partials(path, depth=STALE_DEPTH)
    for item in stale:
        shutil.rmtree(item, ignore_errors=True)
    removed = [item for item in stale if not os.path.lexists(item)]
    if removed:
        print(f"note: removed {_list(removed)} left unfinished by an earlier run that was stopped", file=sys.stderr)
    return removed


# ----------------------------------------------------------------------------- preparing outputs
def _has_user_entries(folder: Path) -> bool:
    return any(e.name != MARKER and not is_partial(e) and not is_proof(e) for e in folder.iterdir())


def _relative(path: Path, root: Path) -> str | None:
    """`path` relative to `root` ('/'-separated, '' for root itself), or None when it is not inside."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    return path.relative_to(root).as_posix().removeprefix(".") if path.is_relative_to(root) else None


@dataclass
class OutputDir:
    """A checked folder output. `ours`: absent, empty or a previous result (entries replaced whole,
    but never over the user's files in it: `foreign`, kept with --overwrite)."""

    path: Path
    flag: str
    ours: bool
    companions: list[Path] = field(default_factory=list)
    inputs: tuple[str, ...] = ()  # no path written here may lie in one (check_target)
    foreign: frozenset[str] = frozenset()  # files of the user's in a previous result, relative to `path`
    files: set[str] = field(default_factory=set)  # the files the project wrote here (the marker's list)
    _created: bool = False
    _writer: int | None = None  # the process that claimed the folder: the one that keeps its marker
    _command: str = ""
    _complete: bool = False
    tool: str | None = None  # the program writing it (LEDGER.tool when it was checked)

    def check_target(self, target: Path) -> Path:
        """Refuse to write or replace `target` in this folder through a link (or replacing one), or in
        an input: every component below the folder is checked, then the resolved path."""
        rel = _relative(target, self.path)
        if rel:
            here = Path(os.path.abspath(self.path))
            for part in Path(rel).parts:
                here = here / part
                refuse_link(here, self.flag)
        check_not_input(Path(target), self.flag, self.inputs)
        return Path(target)

    def partial_dir(self, final: Path) -> Path:
        """`partial_dir(final)` for an entry of this folder, after `check_target`."""
        self.check_target(final)
        return partial_dir(final)

    def replace(self, src: Path, dst: Path) -> None:
        """Move a finished folder `src` to `dst`: this output itself or an entry inside it."""
        self.check_target(dst)
        rel = _relative(dst, self.path)
        if self.ours and rel is not None and self._writer == os.getpid():  # listed before they appear
            self.files.update((f"{rel}/{f}" if rel else f) for f in folder_files(src))
            self._mark(complete=False)
        marker = self.path / MARKER
        if rel == "" and self.ours and marker.is_file():
            shutil.copyfile(marker, Path(src) / MARKER)  # the replacement stays marked as ours
        user_inside = rel is not None and any(not rel or f == rel or f.startswith(rel + "/") for f in self.foreign)
        replace_dir(src, dst, whole=self.ours and not user_inside)

    def _mark(self, complete: bool) -> None:
        write_marker(self.path, self._command, complete=complete, companions=self.companions, files=self.files,
                     tool=self.tool)

    def claim(self, command: str | None = None) -> None:
        """Create the folder and mark it as ours (not complete yet), before writing into it."""
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self._created = True
        if self.ours:
            self._writer, self._command, self._complete = os.getpid(), command or command_line(), False
            self.tool = self.tool or LEDGER.tool
            self._mark(complete=False)
            LEDGER.claimed.append(self)

    def record(self) -> None:
        """List in the marker what the project wrote here: every file but the user's found at the start
        (run when the command ends, however it ends, so files written after `finish` are listed too)."""
        if self.ours and self._writer == os.getpid() and self.path.is_dir() and not self.path.is_symlink():
            self.files = {f for f in folder_files(self.path) if f not in self.foreign}
            self._mark(self._complete)

    def finish(self, command: str | None = None) -> None:
        if self.ours:
            self._command = command or self._command or command_line()
            self._complete = True
            self.record()

    def release(self) -> None:
        """After a failure: remove the folder again if this run created it and finished nothing in it."""
        if self._created and self.path.is_dir() and not _has_user_entries(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.record()

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
    path, inputs = Path(path), tuple(str(i) for i in inputs if i is not None and str(i) != "")
    if path.is_symlink() and path.is_dir():  # the user's link to where the output goes: its target
        path = _resolved(path)
    if path.exists() and not path.is_dir():
        raise DataError(path, f"exists and is a file, not a folder ({flag} names a folder)",
                        f"choose another {flag}; the file is left as it is")
    check_not_input(path, flag, inputs)
    ours, foreign, files = True, [], set()
    marker = read_marker(path) if path.is_dir() else None
    if marker is not None:
        files = marker_files(marker)
        foreign = [f for f in folder_files(path) if f not in files]
        if foreign and not overwrite:
            other = marker.get("tool") != LEDGER.tool
            what = f"a result of another command ({marker.get('tool') or marker.get('command')})" if other else \
                "a result of this project but also holds files it did not write"
            raise DataError(path, f"is {what}: {_list(foreign)}", f"move them away, choose another {flag}, or pass "
                            f"--overwrite to replace only the files {LEDGER.tool or 'this command'} writes and keep "
                            "those")
    elif path.is_dir() and _has_user_entries(path):
        if not overwrite:
            raise DataError(path, "exists and holds files that are not a result of this project",
                            f"choose another {flag} (absent or empty), or {OVERWRITE_HINT}")
        ours = False
    probe_writable(path, flag)
    clean_stale(path, inside=ours or overwrite)
    return OutputDir(path, flag, ours, inputs=inputs, foreign=frozenset(foreign), files=files, tool=LEDGER.tool)


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
    """A file the project wrote: listed in its folder's marker, or a companion in `owner`'s marker."""
    if not path.is_symlink() and path.name in marker_files(read_marker(path.parent)):
        return True
    marker = read_marker(owner.path) if owner is not None else None
    return bool(marker) and str(_resolved(path)) in marker.get("companions", [])


# ------------------------------------------------------------------------------- ending a command
@dataclass
class Ledger:
    """What the running command finished (kept) and what unfinished output it removed."""

    kept: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    claimed: list[OutputDir] = field(default_factory=list)  # their markers list what was written, at the end
    tool: str | None = None  # the running program (run_command): a result's marker names the one that wrote it

    def reset(self) -> None:
        self.kept.clear()
        self.removed.clear()
        self.claimed.clear()

    def record_claimed(self) -> None:
        """`OutputDir.record` for every folder claimed by the command (a marker that cannot be written
        only loses the list: the folder's files then count as the user's, never the other way)."""
        for folder in self.claimed:
            try:
                folder.record()
            except OSError:
                pass


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


def tool_of(fn: Callable) -> str:
    """The program a command's body belongs to: its module's last name (the script's when run as one)."""
    module = getattr(fn, "__module__", None) or "__main__"
    return Path(sys.argv[0]).stem if module == "__main__" else module.rsplit(".", 1)[-1]


def run_command(fn: Callable[[], int], resume_hint: str = "", prefix: str = "", tool: str | None = None) -> int:
    """The one reporter of every entry point: runs a command's body; a `UserError` (util/errors.py)
    and a write error become one `error: [prefix]where: problem; fix` line (exit 1), SIGINT and SIGTERM
    one `interrupted by ...` line (exit 130 / 143); never a traceback for these.
    tool: the program's name (default `tool_of(fn)`), recorded in the markers of the results it writes."""
    LEDGER.reset()
    LEDGER.tool = tool or tool_of(fn)
    try:
        with terminate_as_interrupt():
            try:
                return fn()
            finally:
                LEDGER.record_claimed()
                LEDGER.tool = None
    except KeyboardInterrupt as exc:
        line, status = interrupt_line(exc, resume_hint)
        print(line, file=sys.stderr, flush=True)
        return status
    except UserError as exc:
        print("error: " + prefix + " ".join(str(exc).split()), file=sys.stderr, flush=True)
    except OSError as exc:
        print(f"error: {prefix}{write_error_line(exc)}", file=sys.stderr, flush=True)
    return 1
