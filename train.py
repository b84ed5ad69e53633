"""Train STCN with the staged recipe of the paper (supplementary F).

    python train.py --stage 0 --id s0                                      # one process
    torchrun --nproc_per_node=2 train.py --stage 0 --id s0                 # DDP
    python -m torch.distributed.launch --nproc_per_node=2 train.py --id s0 --stage 0   # the original command
    torchrun --nproc_per_node=2 train.py --stage 3 --id s03 --load_network saves/s0/s0_300000.pth

Weights are saved in the released format at `<save_dir>/<id>/<id>_<iteration>.pth`, the resumable
state at `<save_dir>/<id>/<id>_checkpoint.pth` (resume with `--load_model`). `--id NULL` trains
without logging or saving anything, as in the original. A resumed run keeps the settings saved in
its checkpoint. Both record the network's `--similarity`
and `--key_dim` (model/network.py), which evaluation reads back; loaded weights must match them.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from util import layouts
from util.defaults import KEY_BACKBONES, KEY_DIMS, SIMILARITIES  # torch-free: `--help` answers at once
from util.errors import UserError
from util.launch import add_local_rank_arg

REPO_ROOT = Path(__file__).resolve().parent
DEFAULT_SEED = 14159265  # the original's seed
NULL_ID = "NULL"


class NonFiniteLossError(UserError, RuntimeError):
    """The loss became NaN or infinite; training stops without saving that state."""


class SaveError(UserError, RuntimeError):
    """Weights or a checkpoint could not be written (e.g. a full disk); the earlier files are kept."""


def get_args_parser() -> argparse.ArgumentParser:
    """The flags (the original's, plus this project's); defaults are shown by `--help`."""
    default = " (default: %(default)s)"
    p = argparse.ArgumentParser(description="Train STCN (stages 0-3 of the paper, supplementary F)", add_help=True)
    p.add_argument("--stage", type=int, default=0,
                   help="0 static images, 1 BL30K, 2 main training 300K (after BL30K), 3 main training 150K"
                        + default)
    p.add_argument("--id", default=NULL_ID,
                   help="run name (a name, not a path: the run folder is <save_dir>/<id>); NULL disables logging "
                        "and saving" + default)
    p.add_argument("--load_network", default=None, metavar="PATH",
                   help="start a new run from these weights (stage-0 weights are converted)")
    p.add_argument("--load_model", default=None, metavar="PATH",
                   help="resume the run of this <id>_checkpoint.pth, with the settings saved in it")
    p.add_argument("--static_root", default=layouts.default_path("static"),
                   help="static image sets (stage 0)" + default)
    p.add_argument("--bl_root", default=layouts.default_path("bl30k"), help="BL30K (stage 1)" + default)
    p.add_argument("--yv_root", default=layouts.default_path("youtube"),
                   help="YouTube-VOS (stages 2, 3), read as "
                        f"<yv_root>/{layouts.sub_path('youtube_train_480p', 'youtube')}" + default)
    p.add_argument("--davis_root", default=layouts.default_path("davis"),
                   help=f"DAVIS (stages 2, 3), read as <davis_root>/{layouts.sub_path('davis17_trainval', 'davis')}"
                        + default)
    p.add_argument("--all_videos", action="store_true",
                   help="stages 2, 3: train on every video under --davis_root and --yv_root (your own videos in "
                        "that layout) instead of the paper's lists in dataset/subsets/")
    p.add_argument("--iterations", type=int, default=None,
                   help="override the stage's iterations (default: per stage)")
    p.add_argument("--batch_size", type=int, default=None,
                   help="per process; override the stage's (default: per stage)")
    p.add_argument("--steps", type=int, nargs="*", default=None,
                   help="iterations at which the lr decays (default: per stage)")
    p.add_argument("--lr", type=float, default=None, help="base learning rate (default: per stage, 1e-5)")
    p.add_argument("--gamma", type=float, default=None, help="lr decay ratio (default: per stage, 0.1)")
    p.add_argument("--num_workers", type=int, default=8, help="DataLoader workers per process" + default)
    p.add_argument("--no_amp", action="store_true", help="no automatic mixed precision (AMP is CUDA only)")
    p.add_argument("--benchmark", action="store_true", help="cudnn.benchmark")
    p.add_argument("--debug", action="store_true", help="log scalars and images every iteration")
    add_local_rank_arg(p)
    p.add_argument("--save_dir", default="saves", help="folder of the run folders <save_dir>/<id>" + default)
    p.add_argument("--save_every", type=int, default=50_000,
                   help="iterations between released-format weights <id>_<iteration>.pth" + default)
    p.add_argument("--checkpoint_every", type=int, default=5_000,
                   help="iterations between resumable <id>_checkpoint.pth (overwritten)" + default)
    p.add_argument("--log_every", type=int, default=100, help="iterations between TensorBoard scalars" + default)
    p.add_argument("--log_image_every", type=int, default=800,
                   help="iterations between TensorBoard image grids" + default)
    p.add_argument("--crop_size", type=int, default=384,
                   help="training crop (supplementary F.3), multiple of 16" + default)
    p.add_argument("--similarity", choices=SIMILARITIES, default="l2",
                   help="memory-read similarity (section 4, Table 2); stored with the weights, read by evaluation"
                        + default)
    p.add_argument("--key_dim", type=int, choices=KEY_DIMS, default=64, help="key channels C_k (Table 2)"
                   + default)
    p.add_argument("--backbone", choices=KEY_BACKBONES, default="resnet50",
                   help="key-encoder backbone: resnet50 (the paper's), or supplementary E's ensemble members wrn50 "
                        "(WideResNet-50-2) and wrn50_aspp (+ ASPP); evaluation reads it from the weights" + default)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of every random draw" + default)
    p.add_argument("--no_pretrained", action="store_true",
                   help="random backbones instead of ImageNet weights (tests; not the paper's recipe)")
    return p


def given_flags(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The destinations of the flags written on the command line (argparse fills in a default only
    where the namespace it is given lacks the attribute)."""
    unset = object()
    start = argparse.Namespace(**dict.fromkeys(vars(parser.parse_args([])), unset))
    return {dest for dest, value in vars(parser.parse_args(argv, namespace=start)).items() if value is not unset}


if __name__ == "__main__":  # --help and a mistyped flag are answered before the slow imports below
    get_args_parser().parse_args()

import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import torch  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from dataset.util import worker_init_fn  # noqa: E402
from model.checkpoint import CheckpointError, atomic_save, load_state_dict_file, safe_load  # noqa: E402
from model.network import STCN, CheckpointMismatchError, state_options  # noqa: E402
from model.resnet import WeightsUnavailableError, imagenet_files  # noqa: E402
from training.config import ConfigError, TrainConfig, describe, max_skip_at, resolve_stage  # noqa: E402
from training.distributed import (  # noqa: E402
    DistContext,
    ResumableDistributedSampler,
    SeededSamples,
    all_reduce_sum,
    barrier,
    cleanup,
    derive_seed,
    init_distributed,
    rng_states,
    seed_all,
    seed_process,
    set_rng_states,
)
from training.logger import TrainLogger, tensorboard_dir  # noqa: E402
from training.losses import BootstrappedCE, compute_loss  # noqa: E402
from training.train_wrapper import STCNTrainWrapper  # noqa: E402
from util.device import resolve_amp_dtype, synchronize  # noqa: E402
from util.outputs import OutputDir, clean_stale, note_kept, run_command, write_error_parts  # noqa: E402

# The settings a resumed run takes from its checkpoint (flag -> keys in the saved config): the ones
# that decide what is trained. A flag written on the command line must agree with them; --iterations
# may differ (to train a finished run further), the others (workers, intervals, data roots, AMP) are
# free. Checkpoints written before --all_videos existed hold no such key: they trained on the lists.
RESUMED_SETTINGS: dict[str, tuple[str, ...]] = {
    "stage": ("stage", "stage"), "batch_size": ("stage", "batch_size"), "steps": ("stage", "steps"),
    "lr": ("stage", "lr"), "gamma": ("stage", "gamma"), "iterations": ("stage", "iterations"),
    "crop_size": ("crop_size",), "seed": ("seed",), "similarity": ("similarity",), "key_dim": ("key_dim",),
    "backbone": ("backbone",), "all_videos": ("all_videos",),
}
CHANGEABLE_ON_RESUME = ("iterations",)


def check_run_id(run_id: str) -> None:
    """A run name names the folder <save_dir>/<id> and its files: one plain name, never a path."""
    separators = {os.sep, os.altsep or os.sep, "/"}
    if not run_id or run_id in (".", "..") or any(sep in run_id for sep in separators):
        raise ConfigError(f"--id {run_id}", "a run name is a name, not a path",
                          "pass a plain name such as s03 (--save_dir chooses the folder it goes in)")


def resumed_args(args: argparse.Namespace, given: set[str], saved: dict, path: str) -> argparse.Namespace:
    """`args` with the run's settings from its checkpoint's config `saved`: a flag left out takes the
    saved value, one given with another value is refused (ConfigError naming the flag and the value)."""
    args = argparse.Namespace(**vars(args))
    for flag, keys in RESUMED_SETTINGS.items():
        value = saved
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None and flag == "all_videos":
            value = False  # saved before the flag existed: the paper's lists
        if value is None:
            continue
        value = [int(v) for v in value] if flag == "steps" else value
        if flag not in given:
            setattr(args, flag, value)
        elif getattr(args, flag) != value and flag not in CHANGEABLE_ON_RESUME:
            raise ConfigError(
                path, f"was saved by a run with {flag_text(flag, value)}, this command has "
                f"{flag_text(flag, getattr(args, flag))}",
                f"leave --{flag} out (a resumed run keeps its settings) or start a new run with another --id",
            )
    return args


def flag_text(flag: str, value) -> str:
    """How `value` of --flag is written on a command line ("--steps 10 20", "--all_videos", "no --all_videos")."""
    if isinstance(value, bool):
        return f"--{flag}" if value else f"no --{flag}"
    if isinstance(value, (list, tuple)):
        return " ".join([f"--{flag}", *map(str, value)])
    return f"--{flag} {value}"


def build_config(args: argparse.Namespace, ctx: DistContext, given: set[str] | None = None,
                 saved: dict | None = None) -> TrainConfig:
    """The run's configuration from the flags (`given`: those written on the command line) and, when
    resuming, from the checkpoint's saved config `saved`."""
    check_run_id(args.id)
    if args.load_network and args.load_model:
        raise ConfigError(
            f"--load_network {args.load_network} --load_model {args.load_model}",
            "pass one",
            "--load_model resumes a run (network included), --load_network starts a new one",
        )
    if saved is not None:
        args = resumed_args(args, given if given is not None else set(), saved, args.load_model)
    stage = resolve_stage(args.stage, {"iterations": args.iterations, "steps": args.steps,
                                       "batch_size": args.batch_size, "lr": args.lr, "gamma": args.gamma})
    if args.crop_size < 16 or args.crop_size % 16:
        raise ConfigError(f"--crop_size {args.crop_size}", "must be a positive multiple of 16")
    if args.num_workers < 0:
        raise ConfigError(f"--num_workers {args.num_workers}", "must be 0 (load in the main process) or more")
    for name in ("save_every", "checkpoint_every", "log_every", "log_image_every"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} {getattr(args, name)}", "must be at least 1")
    debug = args.debug
    return TrainConfig(
        stage=stage, run_id=args.id, save_dir=args.save_dir,
        static_root=args.static_root, bl_root=args.bl_root, yv_root=args.yv_root, davis_root=args.davis_root,
        load_network=args.load_network, load_model=args.load_model, num_workers=args.num_workers,
        amp=not args.no_amp and ctx.device.type == "cuda", benchmark=args.benchmark, debug=debug,
        pretrained=not args.no_pretrained, crop_size=args.crop_size, seed=args.seed,
        save_every=args.save_every, checkpoint_every=args.checkpoint_every,
        log_every=1 if debug else args.log_every, log_image_every=1 if debug else args.log_image_every,
        similarity=args.similarity, key_dim=args.key_dim, backbone=args.backbone, all_videos=args.all_videos,
    )


# ------------------------------------------------------------------------------------------- data
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


# -------------------------------------------------------------------------------------- network
def build_network(cfg: TrainConfig) -> STCN:
    """Stage 0: the single-object network; later stages: multi-object. ImageNet backbones unless
    weights are loaded next (`--load_network`, `--load_model`) or `--no_pretrained`."""
    loading = cfg.load_network is not None or cfg.load_model is not None
    try:
        net = STCN(single_object=cfg.stage.single_object, pretrained=cfg.pretrained and not loading,
                   similarity=cfg.similarity, key_dim=cfg.key_dim, backbone=cfg.backbone)
    except WeightsUnavailableError:
        files = imagenet_files(cfg.backbone)
        missing = {url: path for url, path in files.items() if not path.is_file()} or files
        folder = next(iter(missing.values())).parent
        raise WeightsUnavailableError(
            folder, f"could not fetch the ImageNet weights {' and '.join(missing)}",
            f"save {'them' if len(missing) > 1 else 'it'} there as {' and '.join(p.name for p in missing.values())} "
            "(torchvision's cache), or pass --no_pretrained for random backbones (not the paper's recipe)",
        ) from None
    if cfg.load_network is not None:
        load_weights_from(net, cfg.load_network)
    return net


def load_weights_from(net: STCN, path: str, state: dict | None = None) -> None:
    if state is None and not Path(path).is_file():
        raise CheckpointError(
            path,
            "no such file",
            "--load_network takes weights saved by train.py (<id>_<iteration>.pth) or a released STCN checkpoint",
        )
    try:
        weights = state if state is not None else load_state_dict_file(path, flag="--load_network")
        check_options_match(net, path, state_options(weights))
        net.load_weights(weights, for_training=True)
    except CheckpointMismatchError as exc:
        hint = ("stage 0 trains the single-object network: start it from ImageNet, not from multi-object weights"
                if net.single_object else "use weights saved by train.py or a released STCN checkpoint")
        raise CheckpointError(path, exc.problem, hint) from None


def check_options_match(net: STCN, path: str, saved: dict) -> None:
    """ConfigError naming the flag when the loaded weights were trained with another similarity or
    key size or backbone than this run's (weights only make sense with their own; released weights are L2, C_k 64)."""
    for flag, ours in (("similarity", net.similarity), ("key_dim", net.key_dim), ("backbone", net.backbone)):
        if saved[flag] != ours:
            raise ConfigError(path, f"was trained with --{flag} {saved[flag]}, this run has --{flag} {ours}",
                              f"pass --{flag} {saved[flag]} (every stage of a run uses the same value)")


def make_grad_scaler(device: torch.device, enabled: bool) -> torch.amp.GradScaler:
    """torch.amp.GradScaler (torch >= 2.3) or torch.cuda.amp.GradScaler (torch 2.1/2.2).
    A disabled scaler is a pass-through, so the step needs no if/else."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def read_training_checkpoint(path: str) -> dict:
    """A `<id>_checkpoint.pth` read safely (model/checkpoint.py `safe_load`) onto the CPU."""
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


# --------------------------------------------------------------------------------------- saving
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
        return self.run_dir / f"{self.cfg.run_id}_checkpoint.pth"

    def check_run_dir(self, inputs: list[str | None], resuming: bool) -> OutputDir | None:
        """The run folder under the output contract (util/outputs.py): absent, empty, a previous run
        of this project, or the folder of the resumed checkpoint; never inside a dataset root."""
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


# ------------------------------------------------------------------------------------- training
STAT_KEYS = ("loss_1", "loss_2", "total_loss", "p", "iou_i", "iou_u", "sec_iou_i", "sec_iou_u")
MEAN_KEYS = ("loss_1", "loss_2", "total_loss", "p")  # averaged over processes; IoU counts are summed


def to_device(batch: dict, device: torch.device) -> dict:
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
    """Train one stage (the command's body); `checkpoint`: the contents of `--load_model`."""
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


class ResumeHint:
    """The interrupt line's last part, decided when the interrupt comes: the checkpoint to resume
    from, once one exists (this run's, or the one it resumed)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.checkpoint = Path(args.save_dir) / args.id / f"{args.id}_checkpoint.pth"
        self.enabled, self.resumed = args.id != NULL_ID, args.load_model

    def __str__(self) -> str:
        if self.enabled and self.checkpoint.is_file():
            return f"resume with --load_model {self.checkpoint}"
        return f"resume with --load_model {self.resumed}" if self.resumed else ""

    def __bool__(self) -> bool:
        return bool(str(self))


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    given = given_flags(parser, argv)
    ctx = init_distributed(args.local_rank)
    where = f"[rank {ctx.rank}] " if ctx.distributed else ""  # every process reports its own failure

    def body() -> int:
        checkpoint = read_training_checkpoint(args.load_model) if args.load_model else None
        cfg = build_config(args, ctx, given, None if checkpoint is None else checkpoint["config"])
        return train(cfg, ctx, checkpoint)

    try:
        return run_command(body, prefix=where, resume_hint=ResumeHint(args))
    finally:
        cleanup(ctx)


if __name__ == "__main__":
    sys.exit(main())
