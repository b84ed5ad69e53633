"""The per-stage table of supplementary F.4 and its CLI overrides."""
from __future__ import annotations

import dataclasses

import pytest

from training.config import STAGES, ConfigError, max_skip_at, resolve_stage


@pytest.mark.parametrize(
    "stage, iterations, steps, batch, global_batch, single",
    [
        (0, 300_000, (150_000,), 8, 16, True),
        (1, 500_000, (400_000,), 4, 8, False),
        (2, 300_000, (250_000,), 4, 8, False),
        (3, 150_000, (125_000,), 4, 8, False),
    ],
)
def test_stage_defaults(stage, iterations, steps, batch, global_batch, single):
    cfg = resolve_stage(stage)
    assert (cfg.iterations, cfg.steps, cfg.batch_size, cfg.paper_global_batch, cfg.single_object) == (
        iterations, steps, batch, global_batch, single)
    assert (cfg.lr, cfg.weight_decay, cfg.gamma) == (1e-5, 1e-7, 0.1)
    assert (cfg.bootstrap.start_warm, cfg.bootstrap.end_warm, cfg.bootstrap.top_p) == (20_000, 70_000, 0.15)


def test_overrides_apply_and_table_is_untouched():
    cfg = resolve_stage(3, {"iterations": 10, "steps": [5, 8], "batch_size": 1, "lr": 1e-4, "gamma": None})
    assert (cfg.iterations, cfg.steps, cfg.batch_size, cfg.lr, cfg.gamma) == (10, (5, 8), 1, 1e-4, 0.1)
    assert STAGES[3].iterations == 150_000
    with pytest.raises(dataclasses.FrozenInstanceError):
        STAGES[3].iterations = 1  # type: ignore[misc]


@pytest.mark.parametrize("bad", [{"iterations": 0}, {"batch_size": 0}, {"steps": [9, 3]}, {"lr": -1.0}, {"foo": 1}])
def test_bad_overrides(bad):
    with pytest.raises(ConfigError):
        resolve_stage(2, bad)


def test_unknown_stage():
    with pytest.raises(ConfigError, match="--stage 7"):
        resolve_stage(7)


def test_curriculum():
    main = resolve_stage(3, {"iterations": 100})
    assert [max_skip_at(main, i) for i in (0, 9, 10, 20, 30, 40, 89, 90, 99)] == [5, 5, 10, 15, 20, 25, 25, 5, 5]
    bl = resolve_stage(1, {"iterations": 100})
    assert [max_skip_at(bl, i) for i in (79, 80)] == [25, 5]
    assert max_skip_at(resolve_stage(0), 1000) is None
