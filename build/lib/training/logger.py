"""TensorBoard logging of a training run (rank 0 only; `--id NULL` gives a disabled logger).

Scalars are averaged over `log_every` iterations: losses, IoU (total intersection / union),
learning rate, bootstrap p, max skip, iterations per second, and the seconds per iteration spent
waiting for data versus computing (a data-bound run shows data_wait close to the whole step).
Image grids show, for the first sample of a batch, its three frames, ground truth and predictions.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dataset.transforms import im_denormalization

# The frame normalisation of the datasets (ImageNet statistics, as torchvision's ResNet weights).


def git_description(path: str | os.PathLike) -> str:
    """`<commit>` (+ ` (dirty)`) of the repository holding `path`, or why it is unknown."""
    try:
        import git  # GitPython
    except ImportError:
        return "unknown (GitPython not installed)"
    try:
        repo = git.Repo(path, search_parent_directories=True)
        sha = repo.head.commit.hexsha
        return sha + (" (dirty)" if repo.is_dirty() else "")
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return "unknown (not a git repository)"
    except (ValueError, git.GitCommandError, OSError) as exc:  # e.g. a repository without commits
        return f"unknown ({type(exc).__name__})"


def sample_grid(data: dict[str, Tensor], out: dict[str, Tensor]) -> Tensor:
    """3 x (H, 3W) image: row 1 the frames, row 2 ground truth, row 3 the predictions
    (frame 0 shows its given mask). First object red, second green."""
    frames = im_denormalization(data["rgb"][0].detach().cpu())  # 3, 3, H, W
    t, _, h, w = frames.shape

    def colour(first: Tensor, second: Tensor | None) -> Tensor:
        img = torch.zeros(3, h, w)
        img[0] = first.float().cpu()
        if second is not None:
            img[1] = second.float().cpu()
        return img

    sec = "sec_gt" in data and "sec_mask_1" in out
    gts = [colour(data["gt"][0, f, 0], data["sec_gt"][0, f, 0] if sec else None) for f in range(t)]
    preds = [gts[0]] + [
        colour(out[f"mask_{f}"][0, 0].detach(), out[f"sec_mask_{f}"][0, 0].detach() if sec else None)
        for f in range(1, t)
    ]
    rows = [torch.cat(list(frames), dim=2), torch.cat(gts, dim=2), torch.cat(preds, dim=2)]
    return torch.cat(rows, dim=1)


class TrainLogger:
    """Accumulates per-iteration statistics; every `log_every` iterations prints a progress line and
    (unless `log_dir` is None, i.e. `--id NULL`) writes the interval averages to TensorBoard.

    Statistics ending in `_i`/`_u` are intersection/union counts (IoU = sum i / sum u); `step_time`
    (seconds) gives the iterations per second.
    """

    def __init__(
        self, log_dir: str | os.PathLike | None, log_every: int, log_image_every: int, total: int = 0
    ) -> None:
        self.log_every = max(1, log_every)
        self.log_image_every = max(1, log_image_every)
        self.total = total
        self.writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0

    def log_config(self, config: dict[str, Any], repo_path: str | os.PathLike) -> str:
        commit = git_description(repo_path)
        if self.writer is not None:
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```", 0)
            self.writer.add_text("git_commit", commit, 0)
        return commit

    def add_iteration(self, it: int, stats: dict[str, float]) -> None:
        """Add one iteration's statistics; writes the interval averages when `it` closes an interval."""
        for key, value in stats.items():
            self._sums[key] += value
        self._count += 1
        if it % self.log_every == 0:
            self.flush_interval(it)

    def flush_interval(self, it: int) -> None:
        if self._count == 0:
            return
        n, s = self._count, self._sums
        scalars = {key: value / n for key, value in s.items() if not key.endswith(("_i", "_u"))}
        for prefix in ("iou", "sec_iou"):
            if s.get(f"{prefix}_u", 0) > 0:
                scalars[prefix] = s[f"{prefix}_i"] / s[f"{prefix}_u"]
        if s.get("step_time", 0) > 0:
            scalars["it_per_sec"] = n / s["step_time"]
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(f"train/{key}", value, it)
            self.writer.flush()
        shown = ("total_loss", "iou", "sec_iou", "lr", "p", "max_skip", "data_time", "compute_time")
        text = " ".join(f"{k} {scalars[k]:.4g}" for k in shown if k in scalars)
        print(f"it {it}/{self.total} {text}", flush=True)
        self._sums = defaultdict(float)
        self._count = 0

    def wants_images(self, it: int) -> bool:
        return self.writer is not None and it % self.log_image_every == 0

    def add_images(self, it: int, data: dict[str, Tensor], out: dict[str, Tensor]) -> None:
        if self.writer is not None:
            self.writer.add_image("train/frames_gt_pred", sample_grid(data, out), it)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def tensorboard_dir(save_dir: str | os.PathLike, run_id: str) -> Path:
    return Path(save_dir) / run_id / "tensorboard"
