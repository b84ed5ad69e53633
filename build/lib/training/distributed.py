"""torch.distributed set-up, seeding, and a resumable, per-sample-seeded distributed sampler.

Works under `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the environment), under the deprecated
`python -m torch.distributed.launch` (which also passes `--local_rank`/`--local-rank`), and as a
plain single process. NCCL on CUDA, Gloo otherwise.

Reproducibility: every training sample is drawn with the random generators seeded from
(seed, epoch, position in the epoch's global order), so a sample does not depend on which worker or
process loads it, nor on whether the run was resumed; this is what makes `--load_model` exact.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from util.launch import launch_from_env


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool  # this call created the process group (and so destroys it)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(local_rank_arg: int | None = None) -> DistContext:
    """Join the process group described by the environment, or run as one process.

    `local_rank_arg` is the `--local_rank` of torch.distributed.launch (used when LOCAL_RANK is unset).
    An already initialised group (e.g. created by a test harness) is reused, not re-created.
    """
    launch = launch_from_env(local_rank_arg)
    rank, world_size, local_rank = launch.rank, launch.world_size, launch.local_rank
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device, owns_group=False)
    if world_size > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
        return DistContext(rank, world_size, local_rank, device, owns_group=True)
    return DistContext(0, 1, local_rank, device, owns_group=False)


def cleanup(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over processes (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if dist.is_available() and dist.is_initialized():
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]
    return obj


def derive_seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from integers (numpy SeedSequence)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def seed_all(seed: int) -> None:
    """Seed python's random, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_process(seed: int, rank: int, iteration: int = 0) -> None:
    """Per-rank seeding of the process generators (different on every rank, reproducible)."""
    seed_all(derive_seed(seed, rank, iteration))


def rng_states() -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler (shuffled per epoch via `set_epoch`) that can start part-way into an
    epoch and yields `(index, sample_seed)` pairs for `SeededSamples`.

    The seed depends on (seed, epoch, position in the global order of the epoch) only.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first `start` samples of this process's share of the epoch."""
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = list(super().__iter__())
        for local_pos in range(self.start, len(indices)):
            global_pos = local_pos * self.num_replicas + self.rank  # DistributedSampler strides by rank
            yield indices[local_pos], derive_seed(self.seed, self.epoch, global_pos)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


class SeededSamples(Dataset):
    """Dataset wrapper: item `(index, seed)` is `dataset[index]` drawn with random, numpy and torch
    seeded from `seed`; the caller's generator states are restored afterwards."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        try:
            seed_all(seed)
            return self.dataset[index]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])
