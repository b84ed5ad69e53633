"""Training configuration: the per-stage defaults of the paper in one table, plus CLI overrides.

Stages (STCN README): 0 static-image pre-training, 1 BL30K pre-training, 2 extended (300K) main
training after BL30K, 3 standard (150K) main training. Every number below carries its source;
"original" means the released STCN training code, whose defaults the README commands rely on.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from model.modules import KEY_DIM
from model.resnet import DEFAULT_KEY_BACKBONE
from util.defaults import KEY_DIMS, NULL_ID  # noqa: F401  (KEY_DIMS: Table 2's key sizes)
from util.errors import UserError


class ConfigError(UserError, ValueError):
    """An impossible combination of flags (reported as one error line)."""




# supplementary F.1: Adam, base learning rate 1e-5, L2 weight decay 1e-7 (betas left at 0.9/0.999)
BASE_LR = 1e-5
WEIGHT_DECAY = 1e-7
# supplementary F.4: step decay ratio
LR_GAMMA = 0.1

# supplementary F.4 (from MiVOS): curriculum of maximum temporal distance between the three frames,
# switched at these fractions of the stage's iterations (BL30K anneals later because it is harder).
MAX_SKIP_VALUES = (5, 10, 15, 20, 25, 5)
MAIN_SKIP_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.9)
BL30K_SKIP_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.8)

# section 4 / supplementary F.3: global batch 16 for (static) pre-training and 8 for main training,
# run by the original on two GPUs, i.e. 8 and 4 per process (`--batch_size` is per process).
PAPER_GPUS = 2
PRETRAIN_GLOBAL_BATCH = 16
MAIN_GLOBAL_BATCH = 8


@dataclass(frozen=True)
class BootstrapSchedule:
    """Bootstrapped cross-entropy schedule, supplementary F.5 (same as MiVOS).

    Plain cross-entropy before `start_warm`; then the hardest p of the pixels, p falling linearly
    from 1 to `top_p` until `end_warm`, fixed afterwards.
    """

    start_warm: int = 20_000
    end_warm: int = 70_000
    top_p: float = 0.15


@dataclass(frozen=True)
class StageConfig:
    """Defaults of one training stage; `resolve_stage` applies the CLI overrides."""

    stage: int
    name: str
    data: str  # "static" | "bl30k" | "vos": which datasets build_datasets reads
    single_object: bool  # stage 0 trains the single-object (sigmoid) network
    iterations: int
    steps: tuple[int, ...]  # MultiStepLR milestones (iterations)
    batch_size: int  # per process
    paper_global_batch: int
    lr: float = BASE_LR
    weight_decay: float = WEIGHT_DECAY
    gamma: float = LR_GAMMA
    skip_values: tuple[int, ...] = ()  # empty: no curriculum (static images)
    skip_fractions: tuple[float, ...] = ()
    bootstrap: BootstrapSchedule = field(default_factory=BootstrapSchedule)


STAGES: dict[int, StageConfig] = {
    # supplementary F.4: 300K static iterations, decay once after 150K; batch 16 = 2 x 8 (F.3.1)
    0: StageConfig(
        stage=0, name="static", data="static", single_object=True,
        iterations=300_000, steps=(150_000,),
        batch_size=PRETRAIN_GLOBAL_BATCH // PAPER_GPUS, paper_global_batch=PRETRAIN_GLOBAL_BATCH,
    ),
    # supplementary F.4: 500K BL30K iterations. The decay point follows the original code
    # (400K); the paper's F.4 text says 450K. Override with --steps 450000 for the text's value.
    # The original trained BL30K with 4 per process (global 8).
    1: StageConfig(
        stage=1, name="bl30k", data="bl30k", single_object=False,
        iterations=500_000, steps=(400_000,),
        batch_size=MAIN_GLOBAL_BATCH // PAPER_GPUS, paper_global_batch=MAIN_GLOBAL_BATCH,
        skip_values=MAX_SKIP_VALUES, skip_fractions=BL30K_SKIP_FRACTIONS,
    ),
    # supplementary F.4: extended main training after BL30K, 300K iterations, decay after 250K
    2: StageConfig(
        stage=2, name="main-300k", data="vos", single_object=False,
        iterations=300_000, steps=(250_000,),
        batch_size=MAIN_GLOBAL_BATCH // PAPER_GPUS, paper_global_batch=MAIN_GLOBAL_BATCH,
        skip_values=MAX_SKIP_VALUES, skip_fractions=MAIN_SKIP_FRACTIONS,
    ),
    # supplementary F.4: standard main training, 150K iterations, decay after 125K
    3: StageConfig(
        stage=3, name="main-150k", data="vos", single_object=False,
        iterations=150_000, steps=(125_000,),
        batch_size=MAIN_GLOBAL_BATCH // PAPER_GPUS, paper_global_batch=MAIN_GLOBAL_BATCH,
        skip_values=MAX_SKIP_VALUES, skip_fractions=MAIN_SKIP_FRACTIONS,
    ),
}

OVERRIDABLE = ("iterations", "steps", "batch_size", "lr", "gamma", "weight_decay")


def resolve_stage(stage: int, overrides: Mapping[str, Any] | None = None) -> StageConfig:
    """The stage's defaults with every non-None override applied (and checked)."""
    if stage not in STAGES:
        raise ConfigError(f"--stage {stage}", "unknown stage", f"use one of {sorted(STAGES)}")
    changes = {}
    for key, value in (overrides or {}).items():
        if key not in OVERRIDABLE:
            raise ConfigError(key, f"not a per-stage setting (one of {', '.join(OVERRIDABLE)})")
        if value is not None:
            changes[key] = tuple(int(v) for v in value) if key == "steps" else value
    cfg = dataclasses.replace(STAGES[stage], **changes)
    if cfg.iterations < 1:
        raise ConfigError(f"--iterations {cfg.iterations}", "must be at least 1")
    if cfg.batch_size < 1:
        raise ConfigError(f"--batch_size {cfg.batch_size}", "must be at least 1")
    if cfg.lr <= 0:
        raise ConfigError(f"--lr {cfg.lr}", "must be positive")
    if list(cfg.steps) != sorted(cfg.steps):
        raise ConfigError(f"--steps {list(cfg.steps)}", "milestones must be increasing")
    return cfg


def max_skip_at(cfg: StageConfig, iteration: int) -> int | None:
    """Current maximum frame skip of the curriculum (None for static images).

    As in the original: the value of the last switch point round(fraction * iterations) reached.
    """
    if not cfg.skip_values:
        return None
    skip = cfg.skip_values[0]
    for value, fraction in zip(cfg.skip_values, cfg.skip_fractions):
        if iteration >= round(fraction * cfg.iterations):
            skip = value
    return skip


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs, resolved from the CLI; saved in every checkpoint and logged."""

    stage: StageConfig
    run_id: str  # NULL_ID: no logging, no saving (as the original)
    save_dir: str
    static_root: str
    bl_root: str
    yv_root: str
    davis_root: str
    load_network: str | None
    load_model: str | None
    num_workers: int
    amp: bool
    benchmark: bool
    debug: bool
    pretrained: bool
    crop_size: int
    seed: int
    save_every: int  # released-format weights <id>_<it>.pth
    checkpoint_every: int  # resumable <id>_checkpoint.pth (overwritten)
    log_every: int
    log_image_every: int
    similarity: str = "l2"  # the memory read's similarity (section 4: L2 in all experiments; Table 2)
    key_dim: int = KEY_DIM  # C_k (section 4: 64 in all experiments; Table 2 also 128)
    backbone: str = DEFAULT_KEY_BACKBONE  # the key encoder's (ResNet-50; supplementary E: WideResNet-50 [+ ASPP])
    all_videos: bool = False  # stages 2/3: every video under the roots instead of the paper's lists (F.3.2)

    @property
    def logging_enabled(self) -> bool:
        return self.run_id != NULL_ID

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def describe(cfg: TrainConfig, world_size: int) -> list[str]:
    """Human-readable start-up lines: stage, schedule and the global batch vs the paper's."""
    s = cfg.stage
    lines = [
        f"stage {s.stage} ({s.name}): {s.iterations} iterations, lr {s.lr:g} x{s.gamma:g} at {list(s.steps)}, "
        f"weight decay {s.weight_decay:g}",
        f"batch {s.batch_size} per process x {world_size} process(es) = global batch "
        f"{s.batch_size * world_size} (paper: {s.paper_global_batch} on {PAPER_GPUS} GPUs)",
        f"bootstrapped CE: plain until {s.bootstrap.start_warm}, top-p to {s.bootstrap.top_p:g} "
        f"at {s.bootstrap.end_warm}; AMP {'on' if cfg.amp else 'off'}",
        f"memory read: {cfg.similarity} similarity, C_k = {cfg.key_dim}",
    ]
    if cfg.backbone != DEFAULT_KEY_BACKBONE:
        lines.append(f"key encoder backbone: {cfg.backbone} (supplementary E)")
    if cfg.all_videos and s.data == "vos":
        lines.append("videos: every one under --davis_root and --yv_root (--all_videos), not the paper's lists")
    if s.skip_values:
        points = [round(f * s.iterations) for f in s.skip_fractions]
        lines.append(f"max skip curriculum {list(s.skip_values)} at iterations {points}")
    return lines

