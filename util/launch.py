"""Where this process stands in a multi-process launch: `torchrun` or `torch.distributed.launch`.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in the environment; the deprecated
`python -m torch.distributed.launch` passes `--local_rank` (or `--local-rank`) on the command line
instead of LOCAL_RANK. A plain `python script.py` has none of them: a world of one. Distributed
training and sharded evaluation both read it here.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Launch:
    rank: int
    world_size: int
    local_rank: int


def add_local_rank_arg(parser: argparse.ArgumentParser) -> None:
    """The hidden `--local_rank`/`--local-rank` flag that torch.distributed.launch passes."""
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)


def env_int(name: str, default: int) -> int:
    """An integer environment variable; `default` when it is unset or empty."""
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def launch_from_env(local_rank_arg: int | None = None) -> Launch:
    """RANK / WORLD_SIZE / LOCAL_RANK (LOCAL_RANK unset: `local_rank_arg`, else 0)."""
    return Launch(
        rank=env_int("RANK", 0),
        world_size=env_int("WORLD_SIZE", 1),
        local_rank=env_int("LOCAL_RANK", local_rank_arg if local_rank_arg is not None else 0),
    )
