"""A run's `TrainConfig` from the training command's flags and, when resuming, from the settings
saved in its checkpoint (a resumed run keeps what decides what is trained)."""
from __future__ import annotations

import argparse
import os

from training.config import ConfigError, TrainConfig, resolve_stage
from training.distributed import DistContext

# The settings a resumed run takes from its checkpoint (flag -> keys in the saved config): the ones
# that decide what is trained. A flag written on the command line must agree with them; --iterations
# may differ (to train a finished run further), the others (workers, intervals, data roots, AMP) are
# free. A saved config without the `all_videos` key trained on the paper's lists.
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
            value = False  # saved without the key: the paper's lists
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
