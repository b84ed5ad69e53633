"""The network a run starts from: the stage's STCN on ImageNet backbones or on loaded weights, whose
memory-read settings (similarity, C_k, backbone) must be the run's."""
from __future__ import annotations

from pathlib import Path

from model.checkpoint import CheckpointError, load_state_dict_file
from model.network import STCN, CheckpointMismatchError, state_options
from model.resnet import WeightsUnavailableError, imagenet_files
from training.config import ConfigError, TrainConfig


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
    """Load the weights at `path` (or their already-read `state`) into `net` for training; stage-0
    single-object weights are converted to the multi-object network."""
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
