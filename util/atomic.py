"""Atomic file writes and the project's unfinished outputs.

A file is written into a fresh hidden folder beside its target, then renamed into place: a reader
(or a rerun after a crash) sees either the old file or the complete new one, never a truncated file
under the final name.

Every unfinished output (such a folder, or a result folder being written) is a
*partial folder* `.partial-<name>-<pid>-<8 hex>/` holding a proof file `.stcn-partial` whose text
names that very folder. The proof is what lets a later run remove a partial folder left by a killed
process (`clean_stale`): a folder that merely looks like one (a user's
`.partial-backup-31337-deadbeef/`), a file named like a temporary, or a link, carries no proof and
is never removed.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE = 0o644  # results and checkpoints are shared
PARTIAL_PREFIX = ".partial-"  # hidden folder of an output being written
PARTIAL_PROOF = ".stcn-partial"  # the proof file inside every partial folder
PARTIAL_RE = re.compile(r"^\.partial-.*-(?P<pid>\d+)-[0-9a-f]{8}$")
_PROOF_TOKEN = "stcn unfinished output, removable when process {pid} is gone: {name}\n"


def proof_text(name: str) -> str:
    """The proof's text for the partial folder `name` (.partial-<...>-<pid>-<hex>)."""
    m = PARTIAL_RE.match(name)
    return _PROOF_TOKEN.format(pid=m.group("pid") if m else "?", name=name)


def partial_name(final: Path, kind: str = "") -> str:
    """`.partial-[<kind>-]<final's name>-<this pid>-<8 random hex>`."""
    return f"{PARTIAL_PREFIX}{kind + '-' if kind else ''}{Path(final).name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_proof(folder: Path, name: str | None = None) -> None:
    """Prove `folder` is ours under the partial name `name` (default: its own name). A folder about to
    be renamed to `name` gets its proof before the rename, so it is never a partial folder without one."""
    (Path(folder) / PARTIAL_PROOF).write_text(proof_text(name or Path(folder).name))


def is_partial(path: Path) -> bool:
    """True for a partial folder this project made: a real folder (not a link) with a partial name and
    the proof naming it. Nothing else is ever removed as unfinished output."""
    path = Path(path)
    if not PARTIAL_RE.match(path.name) or path.is_symlink() or not path.is_dir():
        return False
    proof = path / PARTIAL_PROOF
    try:
        return not proof.is_symlink() and proof.is_file() and proof.read_text() == proof_text(path.name)
    except (OSError, UnicodeDecodeError):
        return False


def is_proof(path: Path) -> bool:
    """A proof file (in a partial folder, or left in a finished output by a run killed just after moving it)."""
    path = Path(path)
    if path.name != PARTIAL_PROOF or path.is_symlink() or not path.is_file():
        return False
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return False
    name = text.rsplit(": ", 1)[-1].rstrip("\n")
    return text == proof_text(name)


def make_partial(final: Path, kind: str = "") -> Path:
    """A fresh partial folder (with its proof) beside `final`, to write into before it is moved there."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / partial_name(final, kind)
    tmp.mkdir()
    try:
        write_proof(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def settle(src: Path, dst: Path) -> None:
    """Rename the finished partial folder `src` to `dst` (which must not exist) and drop its proof."""
    Path(src).rename(dst)
    (Path(dst) / PARTIAL_PROOF).unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path (an empty file of `path`'s name, in a partial folder beside `path`); on
    success it replaces `path`, on error it is removed. The temporary keeps the name, so writers that
    pick the format from the extension see the right one. An OSError while writing (a full disk, ...)
    is re-raised naming `path`, not the temporary.
    """
    path = Path(path)
    folder = make_partial(path)
    tmp = folder / path.name
    try:
        tmp.touch(exist_ok=False)
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if exc.filename in (None, tmp, str(tmp)):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)  # the proof, nothing else is left in it


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through `atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
