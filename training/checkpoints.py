"""A run's files in `<save_dir>/<id>`: released-format weights `<id>_<iteration>.pth` and the
resumable `<id>_checkpoint.pth`, written atomically under the output contract and read back to resume."""
from __future__ import annotations

import argparse
from pathlib import Path

from model.checkpoint import CheckpointError, atomic_save, safe_load
from model.network import STCN
from training.config import TrainConfig
from training.distributed import DistContext
from util.defaults import NULL_ID
from util.errors import UserError
from util.outputs import OutputDir, clean_stale, note_kept, write_error_parts


class SaveError(UserError, RuntimeError):
    """Weights or a checkpoint could not be written (e.g. a full disk); the earlier files are kept."""


def checkpoint_path(save_dir: str | Path, run_id: str) -> Path:
    """The resumable state of run `run_id`: `<save_dir>/<id>/<id>_checkpoint.pth`."""
    return Path(save_dir) / run_id / f"{run_id}_checkpoint.pth"


class Saver:
    """Writes, on rank 0, released-format weights and the resumable checkpoint (atomically)."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext) -> None:
        self.enabled = cfg.logging_enabled and ctx.is_main
        self.run_dir = Path(cfg.save_dir) / cfg.run_id
        self.cfg = cfg
        self.last_checkpoint: Path | None = None
        self.weights_written: list[Path] = []

    def weights_path(self, it: int) -> Path:
        return self.run_dir / f"{self.cfg.run_id}_{it}.pth"

    @property
    def checkpoint_path(self) -> Path:
        return checkpoint_path(self.cfg.save_dir, self.cfg.run_id)

    def check_run_dir(self, inputs: list[str | None], resuming: bool) -> OutputDir | None:
        """The run folder under the output contract: absent, empty, a previous run of this project,
        or the folder of the resumed checkpoint; never inside a dataset root."""
        if not self.cfg.logging_enabled:  # checked on every rank, so that all of them stop
            return None
        if resuming and self.run_dir.is_dir():  # the resumed checkpoint's folder: ours to continue
            clean_stale(self.run_dir)
            return OutputDir.owned(self.run_dir, "--id")
        return OutputDir(self.run_dir, "--save_dir/--id", inputs)

    def save_weights(self, net: STCN, it: int) -> None:
        if self.enabled:
            self.weights_written.append(self._save(net.state_dict(), self.weights_path(it)))
            note_kept(self.weights_written[-1])

    def save_checkpoint(self, state: dict) -> None:
        if self.enabled:
            self.last_checkpoint = self._save(state, self.checkpoint_path)
            note_kept(self.last_checkpoint)

    def _save(self, obj: dict, path: Path) -> Path:
        try:
            return atomic_save(obj, path)
        except OSError as exc:
            kept = (f"the last good checkpoint {self.last_checkpoint} is kept (resume with --load_model)"
                    if self.last_checkpoint else "no checkpoint was written yet")
            where, reason, fix = write_error_parts(exc)
            raise SaveError(where, reason, f"{fix}; training stopped, {kept}") from None


def read_training_checkpoint(path: str) -> dict:
    """A `<id>_checkpoint.pth` read safely (`safe_load`: no code runs while reading) onto the CPU."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(p, "no such checkpoint", "--load_model takes a <id>_checkpoint.pth written by train.py")
    try:
        obj = safe_load(p)
    except Exception as exc:  # torch raises many kinds for a corrupt/foreign file
        raise CheckpointError(
            p,
            f"cannot be read as a training checkpoint ({type(exc).__name__})",
            "use another <id>_checkpoint.pth",
        ) from None
    needed = ("network", "optimizer", "scheduler", "iteration", "epoch", "epoch_step", "config")
    if not isinstance(obj, dict) or any(k not in obj for k in needed):
        raise CheckpointError(
            p,
            "not a training checkpoint (network-only weights?)",
            "use --load_network for weights, --load_model for <id>_checkpoint.pth",
        )
    return obj


class ResumeHint:
    """The interrupt line's last part, decided when the interrupt comes: the checkpoint to resume
    from, once one exists (this run's, or the one it resumed)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.checkpoint = checkpoint_path(args.save_dir, args.id)
        self.enabled, self.resumed = args.id != NULL_ID, args.load_model

    def __str__(self) -> str:
        if self.enabled and self.checkpoint.is_file():
            return f"resume with --load_model {self.checkpoint}"
        return f"resume with --load_model {self.resumed}" if self.resumed else ""

    def __bool__(self) -> bool:
        return bool(str(self))
