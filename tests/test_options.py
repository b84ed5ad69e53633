"""The inference options, listed once (the fields of InferenceOptions), and their command-line flags.

Every field has a flag of the evaluation commands and every inference flag a field; a value given on
the command line arrives in its field (`options_from_args`); a mistake names the flag on the command
line and the field in Python, in the same words otherwise.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect

import pytest

import eval_davis
import eval_davis_2016
import eval_generic
import eval_youtube
import segment_video
from evaluation.flags import add_common_args, add_size_arg, options_from_args
from inference_core.options import FIELDS, InferenceOptions, PredictorError, flag_of
from scripts import memory_coverage
from util.errors import UserError

OPTIONS = [f.name for f in dataclasses.fields(InferenceOptions)]
COMMANDS = [eval_davis, eval_davis_2016, eval_generic, eval_youtube, segment_video, memory_coverage]
NOT_OPTIONS = {"-h", "--help", "--output", "--overwrite", "--local_rank", "--local-rank"}

# field -> (flags giving it a value other than the default, that value)
SAMPLES = {
    "models": (["--model", "a.pth", "b.pth"], ("a.pth", "b.pth")),
    "top_k": (["--top", "7"], 7),
    "amp": (["--amp"], True),
    "amp_dtype": (["--amp_dtype", "bfloat16"], "bfloat16"),
    "mem_every": (["--mem_every", "3"], 3),
    "include_last": (["--include_last"], True),
    "similarity": (["--similarity", "dot"], "dot"),
    "device": (["--device", "cpu"], "cpu"),
    "scales": (["--scales", "480", "600"], (480, 600)),
    "flip": (["--flip"], True),
    "kernel_sigma": (["--scales", "480", "600", "--kernel_sigma", "3.5"], 3.5),
    "max_mem_frames": (["--max_mem_frames", "9"], 9),
    "max_mem_mb": (["--max_mem_mb", "12.5"], 12.5),
    "chunk_size": (["--chunk_size", "none"], None),
    "object_batch": (["--object_batch", "2"], 2),
    "backend": (["--backend", "openvino"], "openvino"),
    "onnx_dir": (["--backend", "openvino", "--onnx_dir", "exports"], "exports"),
    "compile": (["--compile"], True),
    "size": (["--size", "-1"], None),
    "antialias": (["--antialias"], True),
}


def common_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_size_arg(parser)
    add_common_args(parser)
    return parser


def flags_of(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def test_every_option_has_a_sample_and_a_flag_and_every_inference_flag_an_option():
    assert list(SAMPLES) == OPTIONS  # a new option: add its sample here
    flags = {flag_of(name) for name in OPTIONS}
    assert len(flags) == len(OPTIONS)
    assert flags_of(common_parser()) - NOT_OPTIONS == flags


@pytest.mark.parametrize("command", COMMANDS, ids=lambda m: m.__name__)
def test_every_evaluation_command_has_the_inference_flags(command):
    native = command in (eval_davis, eval_davis_2016, memory_coverage)  # DAVIS: frames at their own size
    wanted = {flag_of(name) for name in OPTIONS} - ({"--size"} if native else set())
    wanted -= {"--antialias"} if command is memory_coverage else set()
    assert wanted <= flags_of(command.get_args_parser())


@pytest.mark.parametrize("name", OPTIONS)
def test_a_flag_arrives_in_its_field(name):
    argv, value = SAMPLES[name]
    args = common_parser().parse_args(["--output", "o", *argv])
    options = options_from_args(args)
    assert getattr(options, name) == value
    defaults = options_from_args(common_parser().parse_args(["--output", "o"]))
    assert getattr(defaults, name) == getattr(InferenceOptions(models=("saves/stcn.pth",)), name) != value


def test_the_options_the_core_takes_are_its_arguments():
    from inference_core.core import InferenceCore

    core = {f.name for f in FIELDS.values() if f.metadata["core"]}
    assert core == {"top_k", "mem_every", "include_last", "max_mem_frames", "max_mem_mb", "chunk_size", "object_batch"}
    assert core <= set(inspect.signature(InferenceCore.__init__).parameters)


# field values -> the same mistake on the command line; the CLI's line is the one the commands always printed
MISTAKES = [
    (dict(top_k=0), ["--top", "0"], "--top: must be at least 1 (got 0); pass a positive value"),
    (dict(mem_every=-1), ["--mem_every", "-1"], "--mem_every: must be at least 1 (got -1); pass a positive value"),
    (dict(max_mem_frames=0), ["--max_mem_frames", "0"],
     "--max_mem_frames: must be at least 1; pass a positive value or leave it out"),
    (dict(chunk_size=0), ["--chunk_size", "0"],
     "--chunk_size: must be at least 1; pass a positive value or leave it out"),
    (dict(object_batch=0), ["--object_batch", "0"],
     "--object_batch: must be at least 1; pass a positive value or leave it out"),
    (dict(max_mem_mb=0), ["--max_mem_mb", "0"],
     "--max_mem_mb: must be positive; pass a positive budget in MiB or leave it out"),
    (dict(size=7), ["--size", "7"], "--size: 7 is below the network's minimum shorter side of 32 pixels (2 cells of "
     "its stride-16 features); pass --size 32 or more (480 as the paper), or -1 for the native size"),
    (dict(scales=(480, 7)), ["--scales", "480", "7"], "--scales: 7 is below the network's minimum shorter side of 32; "
     "pass shorter sides of 32 pixels or more (480 600 as Table 10)"),
    (dict(scales=(48, 48)), ["--scales", "48", "48"],
     "--scales: a scale is given twice (48 48); give each shorter side once"),
    (dict(scales=(48,), size=64), ["--scales", "48", "--size", "64"], "--size: --size 64 is not one of --scales 48; "
     "pass the sizes in --scales only (or include --size among them)"),
    (dict(scales=(48, 600), kernel_sigma=0.0), ["--scales", "48", "600", "--kernel_sigma", "0"],
     "--kernel_sigma: must be positive (got 0); pass a standard deviation in stride-16 cells (7 as KMN) or leave "
     "it out"),
    (dict(kernel_sigma=7.0), ["--kernel_sigma"], "--kernel_sigma: applies to the scales above 480p and none is given; "
     "add --scales 480 600 (Table 10), or leave --kernel_sigma out"),
    (dict(onnx_dir="x"), ["--onnx_dir", "x"],
     "--onnx_dir: is read by the exported backends only; add --backend onnxruntime or openvino, or leave "
     "--onnx_dir out"),
    (dict(backend="openvino", compile=True), ["--backend", "openvino", "--compile"],
     "--compile: applies to the pytorch backend, not openvino; leave --compile out or use --backend pytorch"),
    (dict(backend="onnxruntime", amp=True), ["--backend", "onnxruntime", "--amp"],
     "--amp: onnxruntime runs the exported networks in fp32 only; leave --amp out, or use --backend openvino (bf16) "
     "or pytorch"),
    (dict(models=("a", "b"), backend="onnxruntime", onnx_dir="x"),
     ["--model", "a", "b", "--backend", "onnxruntime", "--onnx_dir", "x"],
     "--onnx_dir: holds the export of one network, and several --model are given; leave --onnx_dir out (each network "
     "is exported into the cache)"),
]


@pytest.mark.parametrize("fields, argv, line", MISTAKES, ids=[f"{line.split(':')[0]}-{i}"
                                                             for i, (_, _, line) in enumerate(MISTAKES)])
def test_a_mistake_names_the_flag_on_the_command_line_and_the_field_in_python(fields, argv, line):
    with pytest.raises(UserError) as cli:
        options_from_args(common_parser().parse_args(["--output", "o", *argv]))
    assert str(cli.value) == line
    with pytest.raises(PredictorError) as api:
        InferenceOptions(**fields)
    name = api.value.where
    assert name in FIELDS and cli.value.where == flag_of(name)
    assert str(api.value).startswith(f"{name}: ") and "--" not in str(api.value)
    assert isinstance(api.value, ValueError)


def test_python_words_for_python_users():
    with pytest.raises(PredictorError) as info:
        InferenceOptions(kernel_sigma=7.0)
    assert info.value.fix == "add scales=(480, 600) (Table 10), or leave kernel_sigma out"
    with pytest.raises(PredictorError) as info:
        InferenceOptions(scales=(48,), size=64)
    assert info.value.problem == "size=64 is not one of scales=(48,)"
    with pytest.raises(PredictorError) as info:
        InferenceOptions.of(top=3)
    assert info.value.where == "top" and "top_k" in info.value.fix


def test_options_are_frozen_and_normalised():
    import numpy as np

    options = InferenceOptions(top_k=np.int64(7), scales=[600, np.int32(480)], models="a.pth")
    assert type(options.top_k) is int and options.scales == (600, 480) and InferenceOptions(size=-1).size is None
    assert options.models == ("a.pth",) and options.is_ensemble
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.top_k = 3  # type: ignore[misc]
    assert InferenceOptions.of(options, flip=True).flip and not options.flip


def test_from_checkpoint_takes_the_options_object_or_keywords(released_checkpoint):
    from inference_core import Predictor

    options = InferenceOptions(device="cpu", top_k=5, size=64)
    by_object = Predictor.from_checkpoint(released_checkpoint, options)
    by_keywords = Predictor.from_checkpoint(released_checkpoint, device="cpu", top_k=5, size=64)
    assert by_object.inference_options == by_keywords.inference_options
    assert by_object.inference_options.models == (str(released_checkpoint),)
    core = by_object.new_core()
    assert core.top_k == 5 and by_object.size == 64
