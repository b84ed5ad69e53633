"""The training loop of one stage: set-up, resume, the optimisation step (Adam, the stage's step
decay, bootstrapped cross-entropy under AMP; supplementary F), periodic saving and logging."""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from training.checkpoints import Saver, read_training_checkpoint
from training.config import ConfigError, TrainConfig, describe, max_skip_at
from training.data import build_datasets, build_loader, data_notes
from training.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    rng_states,
    seed_all,
    seed_process,
    set_rng_states,
)
from training.logger import TrainLogger, tensorboard_dir
from training.losses import BootstrappedCE, compute_loss
from training.network import build_network, load_weights_from
from training.train_wrapper import STCNTrainWrapper
from util.device import resolve_amp_dtype, synchronize
from util.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]  # its git commit is logged with the run's config


class NonFiniteLossError(UserError, RuntimeError):
    """The loss became NaN or infinite; training stops without saving that state."""


STAT_KEYS = ("loss_1", "loss_2", "total_loss", "p", "iou_i", "iou_u", "sec_iou_i", "sec_iou_u")
MEAN_KEYS = ("loss_1", "loss_2", "total_loss", "p")  # averaged over processes; IoU counts are summed


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on `device` (asynchronous copies from pinned memory)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class Trainer:
    """One training run in four parts: set-up (`__init__`), `resume`, `step` and `save`; `run` is
    the loop that ties them together. The order of the set-up (seeding before the network, the
    checkpoint's RNG states after `seed_process`) is what makes a resumed run exact."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext, resumed: dict | None = None) -> None:
        """`resumed`: the `--load_model` file's contents when resuming (read once, with the config)."""
        self.cfg, self.ctx, s = cfg, ctx, cfg.stage
        self.saver = Saver(cfg, ctx)
        resume_path = Path(cfg.load_model).resolve() if cfg.load_model else None
        checkpoint = self.saver.checkpoint_path
        # checked on every rank, so that all of them stop (none is left waiting in a collective)
        if cfg.logging_enabled and checkpoint.exists() and checkpoint.resolve() != resume_path:
            raise ConfigError(
                checkpoint,
                f"a run named {cfg.run_id!r} already exists",
                f"resume it with --load_model {checkpoint} or choose another --id",
            )
        self.run_dir = self.saver.check_run_dir([cfg.static_root, cfg.bl_root, cfg.yv_root, cfg.davis_root],
                                                resume_path is not None)
        if ctx.is_main:
            for line in describe(cfg, ctx.world_size):
                print(line, flush=True)
            if not cfg.logging_enabled:
                print("--id NULL: logging and saving disabled (as the original); pass --id NAME to keep weights",
                      flush=True)

        self.data = build_datasets(cfg)  # checks the roots before any worker starts
        if ctx.is_main:
            for line in data_notes(self.data.dataset):
                print(line, file=sys.stderr, flush=True)
        self.loader, self.sampler = build_loader(self.data, cfg, ctx)

        seed_all(cfg.seed)  # identical initialisation on every rank
        self.net = build_network(cfg).to(ctx.device)
        wrapper = STCNTrainWrapper(self.net).train()
        self.model: torch.nn.Module = wrapper
        if ctx.distributed:
            self.model = DistributedDataParallel(
                wrapper, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(s.steps), s.gamma)
        self.scaler = make_grad_scaler(ctx.device, cfg.amp)
        self.bce = BootstrappedCE(s.bootstrap)
        if cfg.benchmark:
            torch.backends.cudnn.benchmark = True

        self.it, self.epoch, self.epoch_step = 0, 0, 0
        ckpt = self.resume(cfg.load_model, resumed) if cfg.load_model else None
        seed_process(cfg.seed, ctx.rank, self.it)
        if ckpt is not None and ctx.is_main and "rng" in ckpt:
            set_rng_states(ckpt["rng"])

        if self.run_dir is not None and self.saver.enabled:
            self.run_dir.claim()  # marked as a result of this project before anything is written into it
        self.logger: TrainLogger | None = None
        if ctx.is_main:
            log_dir = tensorboard_dir(cfg.save_dir, cfg.run_id) if cfg.logging_enabled else None
            self.logger = TrainLogger(log_dir, cfg.log_every, cfg.log_image_every, s.iterations)
            commit = self.logger.log_config(cfg.to_dict(), REPO_ROOT)
            print(f"git commit: {commit}", flush=True)

    # ------------------------------------------------------------------------------ resume
    def resume(self, path: str, ckpt: dict | None = None) -> dict:
        """Load network, optimizer, scheduler, scaler and position from a `<id>_checkpoint.pth` (read
        here unless given); returns the checkpoint (its RNG states are restored after `seed_process`).
        The run's settings came from it already (`build_config`)."""
        ctx = self.ctx
        ckpt = ckpt if ckpt is not None else read_training_checkpoint(path)
        load_weights_from(self.net, path, ckpt["network"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.it, self.epoch, self.epoch_step = ckpt["iteration"], ckpt["epoch"], ckpt["epoch_step"]
        if ctx.is_main:
            if ckpt.get("world_size") != ctx.world_size:
                print(f"note: {path} was saved by a run of {ckpt.get('world_size')} process(es), this one has "
                      f"{ctx.world_size}: the data order differs from the interrupted run's", file=sys.stderr)
            print(f"resumed {path} at iteration {self.it}", flush=True)
        return ckpt

    # -------------------------------------------------------------------------------- step
    def step(self, batch: dict) -> tuple[dict[str, float], dict]:
        """One optimisation step on a device batch: forward and loss under autocast, one collective
        for the statistics (a NaN on any rank stops every rank before the update), backward through
        the scaler, then the lr schedule. Returns the reduced statistics (with the lr used) and the
        network's outputs."""
        ctx = self.ctx
        with torch.autocast(device_type=ctx.device.type, dtype=amp_dtype(ctx.device), enabled=self.cfg.amp):
            out = self.model(batch)
            losses = compute_loss(batch, out, self.it, self.bce)
        stats = reduce_stats(losses, ctx)
        if not math.isfinite(stats["total_loss"]):
            raise NonFiniteLossError(self.saver.run_dir, f"loss is {stats['total_loss']} at iteration {self.it + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total_loss"]).backward()  # outside autocast
        self.scaler.step(self.optimizer)
        self.scaler.update()
        stats["lr"] = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        synchronize(ctx.device)
        return stats, out

    # -------------------------------------------------------------------------------- save
    def state(self) -> dict:
        """The resumable state written to `<id>_checkpoint.pth`."""
        return {
            "network": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "iteration": self.it, "epoch": self.epoch, "epoch_step": self.epoch_step,
            "max_skip": max_skip_at(self.cfg.stage, self.it), "config": self.cfg.to_dict(), "rng": rng_states(),
            "world_size": self.ctx.world_size,
        }

    def save(self) -> bool:
        """Weights every `--save_every` and the checkpoint every `--checkpoint_every` iterations;
        returns whether a checkpoint was written."""
        if self.it % self.cfg.save_every == 0:
            self.saver.save_weights(self.net, self.it)
        if self.it % self.cfg.checkpoint_every == 0:
            self.saver.save_checkpoint(self.state())
            return True
        return False

    def save_final(self, checkpoint_current: bool) -> None:
        """At the end of the run: the checkpoint and weights the last iteration has not written."""
        if not checkpoint_current:
            self.saver.save_checkpoint(self.state())
        if self.it % self.cfg.save_every != 0:
            self.saver.save_weights(self.net, self.it)

    # --------------------------------------------------------------------------------- run
    def run(self) -> int:
        try:
            self._loop()
        except NonFiniteLossError as exc:
            saver = self.saver
            kept = (f"the last good checkpoint is {saver.last_checkpoint}" if saver.last_checkpoint
                    else "no checkpoint was written" if saver.enabled else "nothing is saved with --id NULL")
            raise NonFiniteLossError(
                exc.where, exc.problem, f"training stopped and this state was not saved, {kept} "
                "(resume with --load_model, e.g. with --no_amp; for a lower --lr start a new run from the last weights "
                "with --load_network)",
            ) from None
        finally:
            if self.logger is not None:
                self.logger.close()
        if self.ctx.is_main and self.saver.enabled:
            self.run_dir.finish()
            weights = ", ".join(map(str, self.saver.weights_written))
            print(f"wrote the weights {weights} and the checkpoint {self.saver.checkpoint_path}", flush=True)
        barrier()  # no process leaves (e.g. to load these weights next) before rank 0 has written them
        return 0

    def _loop(self) -> None:
        """Epochs of the sampler until the stage's iterations; a new epoch (and loader) starts
        whenever the curriculum's maximum skip changes."""
        s, ctx = self.cfg.stage, self.ctx
        batches_per_epoch = self.sampler.num_samples // s.batch_size
        saved_at = -1
        while self.it < s.iterations:
            skip = max_skip_at(s, self.it)
            if skip is not None and self.data.set_max_skip is not None:
                self.data.set_max_skip(skip)
            self.sampler.set_epoch(self.epoch)
            self.sampler.set_start(self.epoch_step * s.batch_size)
            tick = time.perf_counter()
            for batch in self.loader:
                data_time = time.perf_counter() - tick
                batch = to_device(batch, ctx.device)
                stats, out = self.step(batch)
                step_time = time.perf_counter() - tick

                self.it += 1
                self.epoch_step += 1
                if self.epoch_step >= batches_per_epoch or max_skip_at(s, self.it) != skip:
                    self.epoch, self.epoch_step = self.epoch + 1, 0  # a new epoch (and loader) for the next skip

                if self.logger is not None:
                    stats.update(data_time=data_time, compute_time=step_time - data_time, step_time=step_time)
                    if skip is not None:
                        stats["max_skip"] = skip
                    self.logger.add_iteration(self.it, stats)
                    if self.logger.wants_images(self.it):
                        self.logger.add_images(self.it, batch, out)
                if self.save():
                    saved_at = self.it
                if self.it >= s.iterations or self.epoch_step == 0:
                    break
                tick = time.perf_counter()
        self.save_final(saved_at == self.it)


def train(cfg: TrainConfig, ctx: DistContext, checkpoint: dict | None = None) -> int:
    """Train one stage to its last iteration; `checkpoint`: the contents of `--load_model` when resuming."""
    return Trainer(cfg, ctx, checkpoint).run()


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype of a training step by the one `--amp` rule (float16 on CUDA, the only device
    where training enables AMP; None: fp32)."""
    return resolve_amp_dtype(device, amp=True)[0]


def reduce_stats(losses: dict[str, torch.Tensor], ctx: DistContext) -> dict[str, float]:
    """Average the losses and sum the IoU counts over processes in one collective (this also lets
    every rank see a NaN on any rank, so all of them stop together)."""
    keys = [k for k in STAT_KEYS if k in losses]
    vec = torch.stack([losses[k].detach().float() for k in keys])
    all_reduce_sum(vec)
    values = vec.tolist()
    return {k: v / ctx.world_size if k in MEAN_KEYS else v for k, v in zip(keys, values)}


def make_grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """torch.amp.GradScaler (torch >= 2.3) or torch.cuda.amp.GradScaler (torch 2.1/2.2).
    A disabled scaler is a pass-through, so the step needs no if/else."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)
