"""A stage's training data: its datasets (supplementary F.2-F.3), the notes on what they leave out,
and the seeded, resumable loader of each process."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from dataset.util import worker_init_fn
from training.config import ConfigError, TrainConfig
from training.distributed import DistContext, ResumableDistributedSampler, SeededSamples, derive_seed


@dataclass
class TrainData:
    dataset: Dataset
    set_max_skip: Callable[[int], None] | None = None  # the curriculum hook (None: static images)


def build_datasets(cfg: TrainConfig) -> TrainData:
    """The stage's training set. Roots are checked (path + expected layout) before any worker starts."""
    from dataset.static_dataset import static_datasets
    from dataset.util import check_dataset_root
    from dataset.vos_dataset import bl30k_dataset, main_training_datasets, set_max_skip

    s, crop = cfg.stage, cfg.crop_size
    if s.data == "static":
        check_dataset_root(cfg.static_root, "static")
        return TrainData(static_datasets(cfg.static_root, crop))
    first_skip = s.skip_values[0]  # the curriculum's first maximum skip
    if s.data == "bl30k":
        data = bl30k_dataset(cfg.bl_root, first_skip, crop)
    elif cfg.all_videos:  # every video under the roots (the user's own, in the same layout)
        data = main_training_datasets(cfg.davis_root, cfg.yv_root, first_skip, davis_subset=None, yv_subset=None,
                                      crop_size=crop)
    else:  # DAVIS x5 + YouTube-VOS of the paper's lists (skip divided by its annotation stride inside)
        data = main_training_datasets(cfg.davis_root, cfg.yv_root, first_skip, crop_size=crop)
    return TrainData(data, lambda skip: set_max_skip(data, skip))


def data_notes(dataset: Dataset) -> list[str]:
    """`note:` lines naming what the training set leaves out (videos without a clip or an object) or
    trains as background only (static images whose mask is empty)."""
    parts = dataset.datasets if isinstance(dataset, torch.utils.data.ConcatDataset) else [dataset]
    lines = []
    for part in dict.fromkeys(parts):  # DAVIS and the high-quality static sets appear several times
        for reason, videos in getattr(part, "skipped", {}).items():
            if videos:
                lines.append(f"note: {part.im_root}: skipped {len(videos)} video(s) with {reason}: {some(videos)}")
        empty = getattr(part, "empty_masks", [])
        if empty:
            lines.append(f"note: {part.root}: {len(empty)} of {len(part)} image(s) have an empty mask and train "
                         f"as background only: {some([p.name for p in empty])}")
    return lines


def some(names: list[str], shown: int = 5) -> str:
    """The first few of `names`, and how many more."""
    text = ", ".join(names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def build_loader(data: TrainData, cfg: TrainConfig, ctx: DistContext) -> tuple[DataLoader, ResumableDistributedSampler]:
    """This process's loader: its share of every epoch's order, each sample drawn from its own seed."""
    sampler = ResumableDistributedSampler(data.dataset, ctx.world_size, ctx.rank, cfg.seed)
    batch = cfg.stage.batch_size
    if sampler.num_samples < batch:
        raise ConfigError(
            "training set",
            f"{len(data.dataset)} samples give {sampler.num_samples} per process, fewer than --batch_size {batch}",
            "lower --batch_size or check the dataset roots",
        )
    loader = DataLoader(
        SeededSamples(data.dataset), batch_size=batch, sampler=sampler, num_workers=cfg.num_workers,
        worker_init_fn=worker_init_fn, drop_last=True, pin_memory=ctx.device.type == "cuda",
        generator=torch.Generator().manual_seed(derive_seed(cfg.seed, ctx.rank)),
    )
    return loader, sampler
