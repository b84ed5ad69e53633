"""scripts/env.sh, sourced from bash, zsh and sh, and by two first runs at once.

The environment is a stand-in (STCN_ENV_CACHE in tmp_path, a `python3` on PATH whose `-m venv` writes a
fake venv whose `python` logs its arguments): nothing is downloaded or installed, and the project's real
environment is never touched.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV_SH = ROOT / "scripts" / "env.sh"

FAKE_PYTHON = """#!/bin/sh
echo "$*" >> "{log}"
exit 0
"""
FAKE_PYTHON3 = """#!/bin/sh
# python3 -m venv DIR: a slow build, so that two first runs overlap
[ "$1 $2" = "-m venv" ] || exit 1
mkdir -p "$3/bin" && sleep 1
cp "{python}" "$3/bin/python" && echo 'export STCN_FAKE_ACTIVE=yes' > "$3/bin/activate"
"""


def venv_name() -> str:
    return "venv-" + hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()[:16]


@pytest.fixture
def fake(tmp_path: Path) -> dict[str, str]:
    """An environment for the shells: a fake python3 first on PATH, the cache in tmp_path."""
    bin_dir, log = tmp_path / "bin", tmp_path / "python.log"
    bin_dir.mkdir()
    (tmp_path / "python").write_text(FAKE_PYTHON.format(log=log))
    (bin_dir / "python3").write_text(FAKE_PYTHON3.format(python=tmp_path / "python"))
    for script in (tmp_path / "python", bin_dir / "python3"):
        script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STCN_ENV_CACHE": str(tmp_path / "cache"),
            "STCN_TEST_LOG": str(log)}


def source_in(shell: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([shell, "-c", f'. "{ENV_SH}" && echo "active=$STCN_FAKE_ACTIVE"'], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_sourced_from_bash_and_zsh_from_another_folder(shell, fake, tmp_path):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    result = source_in(shell, fake, cwd=tmp_path)
    assert result.returncode == 0 and "active=yes" in result.stdout, result.stdout + result.stderr
    assert (tmp_path / "cache" / venv_name() / ".complete").is_file()
    log = Path(fake["STCN_TEST_LOG"]).read_text()
    assert f"- {ROOT}\n" in log  # the clone it checks (and would install) is this one
    assert "-r " + str(ROOT / "requirements.txt") in log


def test_sourced_from_sh_fails_with_one_line_and_builds_nothing(fake, tmp_path):
    sh = shutil.which("dash") or shutil.which("sh")
    if sh is None or "bash" in os.path.realpath(sh):
        pytest.skip("no plain POSIX sh")
    result = source_in(sh, fake, cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and "bash or zsh" in lines[0], result.stderr
    assert not (tmp_path / "cache").exists()


def test_two_first_runs_at_once_build_once(fake, tmp_path):
    runs = [subprocess.Popen(["bash", "-c", f'source "{ENV_SH}" && echo "active=$STCN_FAKE_ACTIVE"'], cwd=tmp_path,
                             env=fake, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    assert all("active=yes" in out for out, _ in outputs), outputs
    assert sum(out.count("[env] building") for out, _ in outputs) == 1, outputs
    assert (tmp_path / "cache" / venv_name() / ".complete").is_file()
