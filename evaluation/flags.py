"""The evaluation commands' flags: argparse builders that import nothing heavy.

The commands build their parsers from these and parse before importing torch, so that `--help` and
a mistyped flag are answered at once. The inference options' flags (name, help, default, choices)
are the rows of `InferenceOptions`' field table, read back by `options_from_args`.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable

from inference_core.options import FIELDS, InferenceOptions, PredictorError, dest_of, fields_of_group
from util.cli import HelpFormatter
from util.defaults import NATIVE_SIZE
from util.launch import add_local_rank_arg

GROUPS = {  # a block of --help -> its title (the fields' `group`)
    "ensemble": "multi-scale, flip and ensembles (supplementary E; docs/experiments.md)",
    "long": "long videos and memory (off by default: the paper's setting)",
    "speed": "backends (default: PyTorch fp32; README, 'Speed')",
}


class ModelPaths(argparse.Action):
    """`--model a.pth [b.pth ...]`: `args.model` is the first path, `args.models` holds them all."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        namespace.model = values[0]
        namespace.models = list(values)


def model_paths(args: argparse.Namespace) -> list[str]:
    """Every `--model` path (the default one when the flag is not given)."""
    return list(getattr(args, "models", None) or [args.model])


def weight_inputs(args: argparse.Namespace) -> list[str | None]:
    """What the networks are read from, inputs that no output may touch: every
    `--model` path and `--onnx_dir` (None when not given)."""
    return [*model_paths(args), getattr(args, "onnx_dir", None)]


def add_option(parser, name: str, help_suffix: str = "", **overrides) -> None:
    """The flag of the option `name` from its row of the table (InferenceOptions' field metadata)."""
    row = FIELDS[name]
    kwargs = {"default": row.default, **row.metadata["argparse"], **overrides}
    parser.add_argument(row.metadata["flag"], help=row.metadata["help"] + help_suffix, **kwargs)


def add_common_args(parser: argparse.ArgumentParser, model_default: str = "saves/stcn.pth") -> None:
    """The flags the evaluation commands share (names as in the original STCN scripts); `--help` shows
    the defaults."""
    parser.formatter_class = HelpFormatter
    add_option(parser, "models", default=model_default, nargs="+", action=ModelPaths, dest="model")
    parser.set_defaults(models=[model_default])  # every --model path (ModelPaths)
    add_output_args(parser, "folder for the result masks")
    add_option_blocks(parser, GROUPS)


def add_output_args(parser: argparse.ArgumentParser, what: str) -> None:
    """`--output` (`what` it holds) and `--overwrite`, the output contract's flags."""
    parser.add_argument("--output", required=True, help=what)
    parser.add_argument("--overwrite", action="store_true",
                        help="write into existing folders that are not a previous result (replacing only the "
                             "files written) and replace existing files; never an input")


def add_option_blocks(parser: argparse.ArgumentParser, groups: Iterable[str]) -> None:
    """The main inference options' flags, `--local_rank`, then one `--help` block per group of `groups`."""
    for row in fields_of_group("main"):
        add_option(parser, row.name)
    # passed by the deprecated `python -m torch.distributed.launch` launcher
    add_local_rank_arg(parser)
    for group in groups:
        block = parser.add_argument_group(GROUPS[group])
        for row in fields_of_group(group):
            add_option(block, row.name)


def options_from_args(args: argparse.Namespace) -> InferenceOptions:
    """The inference options of parsed flags (a flag the command lacks keeps the field's default); a
    mistake is one UserError naming the flag (`PredictorError.on_command_line`)."""
    given = {name: getattr(args, dest_of(name)) for name in FIELDS
             if name != "models" and hasattr(args, dest_of(name))}
    if getattr(args, "models", None) is not None:  # every --model path (ModelPaths)
        given["models"] = args.models
    try:
        return InferenceOptions(**given)
    except PredictorError as exc:
        raise exc.on_command_line() from None


def add_video_batch_arg(parser: argparse.ArgumentParser) -> None:
    """`--video_batch N`: segment N videos side by side, their frames in one batch (1: one video at a time)."""
    parser.add_argument("--video_batch", type=int, default=1,
                        help="videos segmented side by side, the network run on one frame of each in one batch "
                             "(pytorch backend; same masks as 1, the default: one video at a time)")


def add_size_arg(parser: argparse.ArgumentParser) -> None:
    """`--size`: the shorter side frames are resized to for the network (480 as the paper, -1 native).

    With `--antialias` (`add_antialias_arg`).
    """
    add_option(parser, "size")
    add_antialias_arg(parser)


def evaluate_at_native_size(parser: argparse.ArgumentParser) -> None:
    """A dataset evaluated at its own size (DAVIS, 480p): the network size is the frames' (the option `size`
    native, with no flag to change it)."""
    parser.set_defaults(size=NATIVE_SIZE)


def add_antialias_arg(parser: argparse.ArgumentParser, native: bool = False) -> None:
    """`--antialias`: resize frames with antialiasing, as the original code does under torchvision >= 0.17
    (the default is the paper's plain bicubic; see `util.frames.resize_frame`). native: the dataset is
    evaluated at its own size (DAVIS), so the flag reaches only the frames `--scales` resizes."""
    add_option(parser, "antialias", "; DAVIS frames are resized only for --scales" if native else "")


def add_bidirectional_arg(parser: argparse.ArgumentParser) -> None:
    """`--bidirectional`: objects annotated on a later frame are also propagated backwards."""
    parser.add_argument("--bidirectional", action="store_true",
                        help="also propagate each object backwards, from the frame where it is first annotated to "
                             "the first frame (its own memory, the frames in reverse); frames before an object's "
                             "annotation take it from that pass")
