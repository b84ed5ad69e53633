"""Atomic file writes: write to a temporary file beside the target, then rename.

A reader (or a rerun after a crash) sees either the old file or the complete new one, never a
truncated file under the final name. The temporary is named `.<name>.<pid>.<random>.tmp<suffix>`:
the writer's process id lets a later run recognise (and remove) one left by a killed process
(util/outputs.py, `clean_stale`).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FILE_MODE = 0o644  # mkstemp creates owner-only files; results and checkpoints are shared


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in `path`'s folder; on success it replaces `path`, on error it is removed.

    suffix: appended to the temporary name (for writers that pick the format from the extension).
    An OSError while writing (a full disk, ...) is re-raised naming `path`, not the temporary.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename in (None, tmp, str(tmp)):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` through `atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
