"""Train STCN with the staged recipe of the paper (supplementary F).

    python train.py --stage 0 --id s0                                      # one process
    torchrun --nproc_per_node=2 train.py --stage 0 --id s0                 # DDP
    python -m torch.distributed.launch --nproc_per_node=2 train.py --id s0 --stage 0   # the original command
    torchrun --nproc_per_node=2 train.py --stage 3 --id s03 --load_network saves/s0/s0_300000.pth

Weights are saved in the released format at `<save_dir>/<id>/<id>_<iteration>.pth`, the resumable
state at `<save_dir>/<id>/<id>_checkpoint.pth` (resume with `--load_model`). `--id NULL` trains
without logging or saving anything, as in the original. A resumed run keeps the settings saved in
its checkpoint. Both record the network's `--similarity`, `--key_dim` and `--backbone`, which
evaluation reads back; loaded weights must match them.
"""
from __future__ import annotations

import argparse
import sys

from util import layouts
from util.defaults import KEY_BACKBONES, KEY_DIMS, NULL_ID, SIMILARITIES  # torch-free: `--help` answers at once
from util.launch import add_local_rank_arg

DEFAULT_SEED = 14159265  # the original's seed


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


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    given = given_flags(parser, argv)
    # the training library (torch) only once the flags are read: `--help` and a mistyped flag answer at once
    from training.checkpoints import ResumeHint, read_training_checkpoint
    from training.distributed import cleanup, init_distributed
    from training.run_config import build_config
    from training.trainer import train
    from util.outputs import run_command

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
