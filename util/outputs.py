"""The output contract of every command that writes, and how a command ends.

An output folder is one `OutputDir`: made, it checks the folder against the contract before any work;
entered (`with out:`), it is claimed; `out.partial(final)` hands out a partial folder that becomes
`final` only when complete; on leaving, the folder's marker is completed or, after an error, the
folder is released. The contract:

- A folder is used when absent, empty, or a result of this project: a folder holding `MARKER`, a JSON
  file naming the command, the program (`tool`), whether it is complete and the `files` the program
  wrote. Inside it earlier results of the same name are replaced whole. Files not listed (the user's,
  a link, any file when another program wrote the result) are refused, naming them, unless
  `--overwrite`: then only files of the names written are replaced. Any other existing folder is
  refused unless `--overwrite`: files of the names written are replaced, nothing else is touched.
- A single file (`prepare_output_file`) may be replaced when a result's marker lists it (`files`, or
  `companions` of the folder it belongs to); otherwise an existing file needs `--overwrite`.
- Never, whatever the flags: an output equal to, inside or containing an input, a file where a folder
  goes (or the reverse), a write through a link or over one (every path below the folder is checked
  when it is written, `check_target`). The destination is probed for writability first.
- Unfinished outputs are proven partial folders (`util.atomic`); those of a process that is gone are
  removed by the next run in that destination (`clean_stale`), never anything else.

`run_command` reports how a command ends: a `UserError` or an `OSError` is one `error:` line (exit 1),
SIGINT/SIGTERM one line saying what was kept and what unfinished output was removed (exit 128 + signal).
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
from collections.abc import Callable, Iterable, Sequence
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
STALE_DEPTH = 2  # levels searched inside an output folder (<out>/Annotations/.partial-<video>-...)
MAX_LISTED = 2  # paths named in a line before "and N more"
DISK_FULL = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up"}

partial_dir = make_partial  # a fresh partial folder beside a path, to write into before it is moved there


# ------------------------------------------------------------------------------ path checks
def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def overlaps(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when `a` and `b` are the same path or one lies inside the other (symlinks resolved)."""
    ra, rb = _resolved(a), _resolved(b)
    return ra == rb or ra.is_relative_to(rb) or rb.is_relative_to(ra)


def check_not_input(path: Path, flag: str, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an output equal to, inside or containing one of the command's inputs."""
    for item in inputs:
        if item is not None and str(item) != "" and overlaps(path, item):
            ra, ri = _resolved(path), _resolved(item)
            how = "is" if ra == ri else "is inside" if ra.is_relative_to(ri) else "contains"
            raise DataError(path, f"{how} the input {item}; the command never writes into its inputs",
                            f"choose another {flag} outside the inputs")


def check_distinct(outputs: Iterable[tuple[str | os.PathLike | None, str]], entries: Iterable[str] | None = None
                   ) -> None:
    """Refuse two outputs (path, flag) of one command that are the same or nested. entries: the names
    written inside each folder (the videos); nesting at another name is allowed (`<output>/overlays`)."""
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


def probe_writable(path: Path, flag: str) -> None:
    """Create and remove a temporary file where `path` will be created (nothing is left behind)."""
    where = Path(os.path.abspath(path))
    while not where.exists() and where != where.parent:
        where = where.parent
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


def _refuse_link(path: Path, flag: str = "--output") -> None:
    """A link is never written through, replaced or removed: the command did not create what it reaches."""
    if Path(path).is_symlink():
        raise DataError(path, f"is a symbolic link (to {os.readlink(path)}); the command never writes through "
                              "a link nor replaces one", f"move the link away or choose another {flag}")


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


def write_marker(folder: Path, command: str, complete: bool, companions: Sequence[Path] = (),
                 files: Iterable[str] = (), tool: str | None = None) -> None:
    """Mark `folder` as a result of `tool` (atomically). files: every file it wrote there, relative."""
    data = {"command": command, "tool": tool, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "complete": complete,
            "companions": sorted({str(_resolved(p)) for p in companions}), "files": sorted(set(files))}
    atomic_write_text(Path(folder) / MARKER, json.dumps(data, indent=1) + "\n")


def _marker_files(marker: dict | None) -> set[str]:
    """The files a marker says this program wrote (none when another program wrote the result)."""
    files = marker.get("files") if marker and marker.get("tool") == LEDGER.tool else None
    return {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()


def _folder_files(folder: Path, prefix: str = "") -> list[str]:
    """Every file and link under `folder` ('/'-separated, relative), links not followed; the marker,
    proofs and the project's partial folders are not counted."""
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError:
        return []
    found: list[str] = []
    for entry in entries:
        rel = prefix + entry.name
        if entry.is_symlink():
            found.append(rel)
        elif entry.is_dir():
            found += [] if is_partial(entry) else _folder_files(entry, rel + "/")
        elif rel != MARKER and not is_proof(entry):
            found.append(rel)
    return found


# --------------------------------------------------------------------------- partial outputs
def remove_partial(tmp: Path) -> None:
    """Remove an unfinished output (folder or file) and note it for the interrupt line."""
    tmp = Path(tmp)
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)
    note_removed(tmp)


def _move(src: Path, dst: Path, whole: bool) -> None:
    """Move the finished partial folder `src` to `dst`. whole: an existing `dst` is an older result,
    replaced as a whole; otherwise each entry of `src` replaces the entry of its name and nothing
    else in `dst` is touched. A link at `dst` or at any entry replaced is refused."""
    _refuse_link(dst)
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
            target = dst / entry.name
            if entry.name == PARTIAL_PROOF:
                continue
            _refuse_link(target)
            if entry.is_dir():
                _move(entry, target, whole=False)
            elif target.is_dir():
                raise DataError(target, "is a folder where a file is written", "move it away")
            else:
                os.replace(entry, target)
        shutil.rmtree(src, ignore_errors=True)
    note_kept(dst)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _stale(folder: Path, name: str | None = None, depth: int = 1) -> list[Path]:
    """The proven partial folders of processes that are gone in `folder` (and depth - 1 levels below,
    never through a link); name: only those of that output name (in a folder shared with the user)."""
    try:
        entries = sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []
    except OSError:
        return []
    found: list[Path] = []
    for entry in entries:
        m = PARTIAL_RE.match(entry.name)
        if m:
            mine = name is None or entry.name.startswith((f"{PARTIAL_PREFIX}{name}-", f"{PARTIAL_PREFIX}old-{name}-"))
            if mine and not _pid_alive(int(m.group("pid"))) and is_partial(entry):
                found.append(entry)
        elif depth > 1 and name is None and entry.is_dir() and not entry.is_symlink():
            found += _stale(entry, None, depth - 1)
    return found


def clean_stale(path: Path, inside: bool = True) -> list[Path]:
    """Remove unfinished outputs left by a killed earlier run writing `path`; one note names those removed."""
    path = Path(path)
    stale = _stale(path.parent, name=path.name)
    if inside and path.is_dir() and not path.is_symlink():
        stale += _stale(path, depth=STALE_DEPTH)
    for item in stale:
        shutil.rmtree(item, ignore_errors=True)
    removed = [item for item in stale if not os.path.lexists(item)]
    if removed:
        print(f"note: removed {_list(removed)} left unfinished by an earlier run that was stopped", file=sys.stderr)
    return removed


# ------------------------------------------------------------------------------ the output folder
def _relative(path: Path, root: Path) -> str | None:
    """`path` relative to `root` ('/'-separated, '' for root itself), or None when it is not inside."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    return path.relative_to(root).as_posix().removeprefix(".") if path.is_relative_to(root) else None


def _user_entries(folder: Path) -> bool:
    return any(e.name != MARKER and not is_partial(e) and not is_proof(e) for e in folder.iterdir())


class OutputDir:
    """One output folder of a command under the contract (module docstring): checked when made, claimed
    and marked while the command writes (`with out:`), partial folders handed out for its entries.

    `ours`: absent, empty or a previous result (entries replaced whole, but never over the user's files
    in it, `foreign`, kept with --overwrite); otherwise the user's folder written into with --overwrite.
    """

    def __init__(self, path: str | os.PathLike, flag: str = "--output",
                 inputs: Iterable[str | os.PathLike | None] = (), overwrite: bool = False) -> None:
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
            files = _marker_files(marker)
            foreign = [f for f in _folder_files(path) if f not in files]
            if foreign and not overwrite:
                other = marker.get("tool") != LEDGER.tool
                what = (f"a result of another command ({marker.get('tool') or marker.get('command')})" if other
                        else "a result of this project but also holds files it did not write")
                raise DataError(path, f"is {what}: {_list(foreign)}", f"move them away, choose another {flag}, or "
                                f"pass --overwrite to replace only the files {LEDGER.tool or 'this command'} writes "
                                "and keep those")
        elif path.is_dir() and _user_entries(path):
            if not overwrite:
                raise DataError(path, "exists and holds files that are not a result of this project",
                                f"choose another {flag} (absent or empty), or pass --overwrite to replace only the "
                                "files this command writes")
            ours = False
        probe_writable(path, flag)
        clean_stale(path, inside=ours or overwrite)
        self._init(path, flag, ours, inputs, overwrite, frozenset(foreign), files)

    def _init(self, path: Path, flag: str, ours: bool, inputs: tuple[str, ...] = (), overwrite: bool = False,
              foreign: frozenset[str] = frozenset(), files: set[str] | None = None) -> None:
        self.path, self.flag, self.ours, self.inputs, self.overwrite = path, flag, ours, inputs, overwrite
        self.foreign, self.files = foreign, set(files or ())  # the user's files; the files the project wrote
        self.companions: list[Path] = []  # single-file outputs listed in the marker (`file`)
        self.tool = LEDGER.tool  # the program writing it
        self._created, self._complete, self._command = False, False, ""
        self._writer: int | None = None  # the process that claimed the folder: the one that keeps its marker

    @classmethod
    def owned(cls, path: str | os.PathLike, flag: str = "--output") -> OutputDir:
        """A folder the command knows is its own (a run it resumes, a folder checked elsewhere): no checks."""
        out = cls.__new__(cls)
        out._init(Path(path), flag, ours=True)
        return out

    def file(self, path: str | os.PathLike, flag: str) -> Path:
        """A single-file output belonging to this folder (`prepare_output_file`), listed in its marker."""
        return prepare_output_file(path, flag, self.inputs, self.overwrite, owner=self)

    def check_target(self, target: Path) -> Path:
        """Refuse to write or replace `target` in this folder through a link (or replacing one), or in
        an input: every component below the folder is checked, then the resolved path."""
        rel = _relative(target, self.path)
        here = Path(os.path.abspath(self.path))
        for part in Path(rel).parts if rel else ():
            here = here / part
            _refuse_link(here, self.flag)
        check_not_input(Path(target), self.flag, self.inputs)
        return Path(target)

    def partial(self, final: str | os.PathLike | None = None) -> Partial:
        """A partial folder for `final` (this folder itself by default): written into, then committed."""
        final = self.path if final is None else Path(final)
        self.check_target(final)
        return Partial(self, final, partial_dir(final))

    def _commit(self, src: Path, dst: Path) -> None:
        self.check_target(dst)
        rel = _relative(dst, self.path)
        if self.ours and rel is not None and self._writer == os.getpid():  # listed before they appear
            self.files.update((f"{rel}/{f}" if rel else f) for f in _folder_files(src))
            self._mark(complete=False)
        if rel == "" and self.ours and self._writer is not None and (self.path / MARKER).is_file():
            shutil.copyfile(self.path / MARKER, Path(src) / MARKER)  # the replacement stays marked as ours
        user_inside = rel is not None and any(not rel or f == rel or f.startswith(rel + "/") for f in self.foreign)
        _move(Path(src), Path(dst), whole=self.ours and not user_inside)

    def _mark(self, complete: bool) -> None:
        write_marker(self.path, self._command, complete, self.companions, self.files, self.tool)

    def claim(self, command: str | None = None) -> None:
        """Create the folder and mark it as ours (not complete yet), before writing into it."""
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self._created = True
        if self.ours:
            self._writer, self._complete = os.getpid(), False
            self._command = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
            self.tool = self.tool or LEDGER.tool
            self._mark(complete=False)
            LEDGER.claimed.append(self)

    def record(self) -> None:
        """List in the marker every file but the user's found at the start (however the command ends)."""
        if self.ours and self._writer == os.getpid() and self.path.is_dir() and not self.path.is_symlink():
            self.files = {f for f in _folder_files(self.path) if f not in self.foreign}
            self._mark(self._complete)

    def finish(self) -> None:
        self._complete = True
        self.record()

    def __enter__(self) -> OutputDir:
        self.claim()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        elif self._created and self.path.is_dir() and not _user_entries(self.path):
            shutil.rmtree(self.path, ignore_errors=True)  # created by this run, nothing finished in it
        else:
            self.record()


@dataclass
class Partial:
    """An unfinished entry `final` of an output folder, written in `tmp`: `commit` moves it into place,
    `discard` removes it; as a context, committed on success and discarded on any error or interrupt."""

    out: OutputDir
    final: Path
    tmp: Path

    def commit(self) -> None:
        self.out._commit(self.tmp, self.final)

    def discard(self) -> None:
        remove_partial(self.tmp)

    def error(self, exc: OSError) -> OSError:
        """`exc` naming the file's final place instead of its place in `tmp` (e.g. a full disk)."""
        name = Path(exc.filename) if exc.filename else None
        if name is None or not name.is_relative_to(self.tmp):
            return exc
        return OSError(exc.errno, exc.strerror or str(exc), str(self.final / name.relative_to(self.tmp)))

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
            return
        self.discard()
        if isinstance(exc, OSError):
            raise self.error(exc) from None


def prepare_output_file(path: str | os.PathLike, flag: str, inputs: Iterable[str | os.PathLike | None] = (),
                        overwrite: bool = False, owner: OutputDir | None = None) -> Path:
    """Check a single-file output; `owner`: the result folder whose marker lists it (it is added)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, f"is a folder ({flag} names a file)", f"choose another {flag}")
    check_not_input(path, flag, inputs)
    listed = not path.is_symlink() and path.name in _marker_files(read_marker(path.parent))
    owned = owner is not None and str(_resolved(path)) in (read_marker(owner.path) or {}).get("companions", [])
    if path.exists() and not overwrite and not listed and not owned:
        raise DataError(path, "exists and is not a result of this project",
                        f"choose another {flag}, or pass --overwrite to replace it")
    probe_writable(path, flag)
    clean_stale(path, inside=False)
    if owner is not None:
        owner.companions.append(path)
    return path


# ------------------------------------------------------------------------------- ending a command
@dataclass
class Ledger:
    """What the running command finished (kept), what unfinished output it removed, what it claimed."""

    kept: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    claimed: list[OutputDir] = field(default_factory=list)
    tool: str | None = None  # the running program: a result's marker names the one that wrote it


LEDGER = Ledger()


def note_kept(path: Path) -> None:
    LEDGER.kept.append(Path(path))


def note_removed(path: Path) -> None:
    LEDGER.removed.append(Path(path))


def wrote_line(*items: tuple[str, str | os.PathLike | Sequence[str | os.PathLike]]) -> str:
    """The last line of every command that writes: `wrote <what> to <place>, ... and <what> to <place>`."""
    parts = []
    for what, where in items:
        places = [where] if isinstance(where, (str, os.PathLike)) else where
        parts.append(f"{what} to {', '.join(str(p) for p in places)}")
    return "wrote " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM while `run_command` runs, so cleanup runs as for Ctrl-C."""

    signum = signal.SIGTERM


def _terminated(signum, frame) -> None:
    raise Terminated()


def _list(paths: Sequence[Path]) -> str:
    unique = list(dict.fromkeys(str(p) for p in paths))
    shown = ", ".join(unique[:MAX_LISTED])
    return shown + (f" and {len(unique) - MAX_LISTED} more" if len(unique) > MAX_LISTED else "")


def write_error_parts(exc: OSError) -> tuple[str, str, str]:
    """(file, reason, fix) of an OSError (a full disk, a missing permission ...)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space or write elsewhere; earlier finished outputs are kept"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "check the path and its permissions, or write elsewhere"
    else:
        fix = "check the path and its permissions"
    return str(exc.filename or "output"), exc.strerror or str(exc), fix


def write_error_line(exc: OSError) -> str:
    """`<file>: <reason>; <fix>` for an OSError."""
    return format_error(*write_error_parts(exc))


def tool_of(fn: Callable) -> str:
    """The program a command's body belongs to: its module's last name (the script's when run as one)."""
    module = getattr(fn, "__module__", None) or "__main__"
    return Path(sys.argv[0]).stem if module == "__main__" else module.rsplit(".", 1)[-1]


def run_command(fn: Callable[[], int], resume_hint: str = "", prefix: str = "", tool: str | None = None) -> int:
    """The one reporter of every entry point: runs a command's body; a `UserError`
    and a write error become one `error: [prefix]where: problem; fix` line (exit 1), SIGINT and SIGTERM
    one `interrupted by ...` line (exit 130 / 143); never a traceback for these.
    tool: the program's name (default `tool_of(fn)`), recorded in the markers of the results it writes."""
    LEDGER.kept.clear()
    LEDGER.removed.clear()
    LEDGER.claimed.clear()
    LEDGER.tool = tool or tool_of(fn)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main else None
    try:
        try:
            return fn()
        finally:
            for folder in LEDGER.claimed:  # a marker that cannot be written only loses its list of files
                try:
                    folder.record()
                except OSError:
                    pass
            LEDGER.tool = None
            if main:
                signal.signal(signal.SIGTERM, previous)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        kept = f"kept {_list(LEDGER.kept)}" if LEDGER.kept else "nothing was finished"
        removed = [p for p in LEDGER.removed if not any(p != q and p.is_relative_to(q) for q in LEDGER.removed)]
        gone = f"removed the unfinished {_list(removed)}" if removed else "nothing unfinished was left"
        hint = f"; {resume_hint}" if resume_hint else ""
        print(f"interrupted by {signal.Signals(signum).name}: {kept}; {gone}{hint}", file=sys.stderr, flush=True)
        return 128 + int(signum)  # the shell's convention for a process ended by a signal
    except UserError as exc:
        print("error: " + prefix + " ".join(str(exc).split()), file=sys.stderr, flush=True)
    except OSError as exc:
        print(f"error: {prefix}{write_error_line(exc)}", file=sys.stderr, flush=True)
    return 1
