"""The zip a benchmark's evaluation server takes, for the splits whose ground truth is not public
(DAVIS 2017 test-dev, YouTube-VOS valid/test): `<output>.zip` next to the result folder.

    YouTube-VOS (CodaLab)   Annotations/<video>/<frame>.png
    DAVIS 2017 test-dev     <video>/<frame>.png at the top of the zip (no enclosing folder)

The zip is a single-file output of the result folder (listed in its marker, so a rerun replaces
it), checked before any work (`prepare_zip`) and written atomically (`make_zip`).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from util.atomic import atomic_path
from util.outputs import OutputDir


def zip_path(output: Path) -> Path:
    """<output>.zip, next to the output folder."""
    output = Path(output).resolve()
    return output.parent / f"{output.name}.zip"


def prepare_zip(out: OutputDir) -> Path:
    """Check `zip_path(out.path)` against the output contract (listed in `out`'s marker)."""
    return out.file(zip_path(out.path), "--output (its .zip)")


def make_zip(output: Path, folder: Path, prefix: str = "") -> Path:
    """Zip `folder`/<video>/*.png as `<prefix>/<video>/<frame>.png` (prefix "": the videos at the top)
    into `zip_path(output)`, atomically; hidden folders (unfinished videos) are left out."""
    target = zip_path(output)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        # PNGs are compressed already
        for video in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for png in sorted(video.glob("*.png")):
                zf.write(png, "/".join([*filter(None, [prefix]), video.name, png.name]))
    return target


def upload_hint(benchmark: str) -> str:
    """The end of the last line of a split scored only by its server."""
    return f"{benchmark} is scored by its evaluation server (no public ground truth): upload the zip there"
