"""CPU feature probe and the `--amp` dtype rule: decided from (fake) CPU flags, never from this machine's CPU."""
from __future__ import annotations

import platform
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval_generic
import evaluation.run_video as run_video
import segment_video
import train
import util.device as device_util
from inference_core import InferenceCore, Predictor
from model.network import STCN
from scripts import benchmark_inference
from tests.eval_fixtures import VideoSpec, generic_template, render, save_indexed  # noqa: F401  (fixture)
from training.distributed import DistContext
from training.run_config import build_config
from training.trainer import amp_dtype
from util.device import (
    CPU_FLOAT16_NOTE,
    NO_NATIVE_BF16_NOTE,
    choose_amp_dtype,
    cpu_features,
    features_from_flags,
    parse_cpuinfo,
    precision_label,
    resolve_amp_dtype,
    torch_cpu_flags,
)
from util.video import VideoWriter

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")

# first-processor excerpts of /proc/cpuinfo (flags shortened to the ones that matter plus a few others)
SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 fma avx avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8
"""
ZEN2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model\t\t: 49
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse2 fma avx avx2 sha_ni
"""
ZEN4 = """processor\t: 0
model name\t: AMD EPYC 9B14
flags\t\t: fma avx2 avx512f avx512bw avx512_bf16 avx512_vnni
"""
SKYLAKE = """model name\t: Intel(R) Xeon(R) CPU @ 2.00GHz
flags\t\t: fma avx2 avx512f avx512bw avx512vl
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes sha2 crc32 atomics fphp asimdhp asimddp sve bf16 i8mm
CPU implementer\t: 0x41
"""


@pytest.fixture
def fake_cpu(monkeypatch, tmp_path):
    """Make the probe read a given /proc/cpuinfo text on a given architecture."""

    def use(text: str | None, arch: str = "x86_64") -> None:
        path = tmp_path / "cpuinfo"
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)
        monkeypatch.setattr(device_util, "CPUINFO", path)
        monkeypatch.setattr(platform, "machine", lambda: arch)
        cpu_features.cache_clear()

    yield use
    cpu_features.cache_clear()


# ----------------------------------------------------------------------------- the decision
@pytest.mark.parametrize("device", [CPU, CUDA, MPS])
@pytest.mark.parametrize("requested", [None, "float16", "bfloat16"])
@pytest.mark.parametrize("native", [True, False])
def test_amp_off_is_fp32_without_note(device, requested, native):
    assert choose_amp_dtype(device, False, requested, native) == (None, None)


def test_cpu_with_native_bf16_keeps_bf16_autocast():
    assert choose_amp_dtype(CPU, True, None, native_bf16=True) == (torch.bfloat16, None)


def test_cpu_without_native_bf16_runs_fp32_with_one_note():
    dtype, note = choose_amp_dtype(CPU, True, None, native_bf16=False)
    assert dtype is None
    assert note == NO_NATIVE_BF16_NOTE and "\n" not in note
    assert note.startswith("note: --amp") and "fp32" in note and "--amp_dtype bfloat16" in note


@pytest.mark.parametrize("requested,dtype", [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
@pytest.mark.parametrize("device", [CPU, CUDA])
def test_requested_dtype_is_obeyed_everywhere(device, requested, dtype):
    for native in (True, False):
        assert choose_amp_dtype(device, True, requested, native)[0] == dtype


def test_requested_float16_on_cpu_runs_with_a_note():
    """float16 autocast on a CPU was slower than fp32 wherever measured: obeyed, with one line saying so."""
    for native in (True, False):
        assert choose_amp_dtype(CPU, True, "float16", native) == (torch.float16, CPU_FLOAT16_NOTE)
        assert choose_amp_dtype(CPU, True, "bfloat16", native) == (torch.bfloat16, None)  # the user's call, silent
    assert choose_amp_dtype(CUDA, True, "float16", False) == (torch.float16, None)
    assert CPU_FLOAT16_NOTE.startswith("note: --amp_dtype float16") and "\n" not in CPU_FLOAT16_NOTE


def test_cuda_default_is_float16_whatever_the_cpu():
    for native in (True, False):
        assert choose_amp_dtype(CUDA, True, None, native) == (torch.float16, None)
    assert choose_amp_dtype(MPS, True, None, False) == (torch.bfloat16, None)  # unchanged for MPS


def test_resolve_probes_the_cpu_only_when_the_answer_depends_on_it(monkeypatch):
    def boom():
        raise AssertionError("probed")

    monkeypatch.setattr(device_util, "cpu_has_native_bf16", boom)
    assert resolve_amp_dtype(CPU, False) == (None, None)
    assert resolve_amp_dtype(CPU, True, "bfloat16") == (torch.bfloat16, None)
    assert resolve_amp_dtype(CUDA, True) == (torch.float16, None)
    monkeypatch.setattr(device_util, "cpu_has_native_bf16", lambda: False)
    assert resolve_amp_dtype(CPU, True) == (None, NO_NATIVE_BF16_NOTE)
    monkeypatch.setattr(device_util, "cpu_has_native_bf16", lambda: True)
    assert resolve_amp_dtype(CPU, True) == (torch.bfloat16, None)


def test_precision_labels():
    assert [precision_label(d) for d in (None, torch.bfloat16, torch.float16)] == ["fp32", "bf16", "fp16"]


# ------------------------------------------------------------------------------ the probe
def test_parse_cpuinfo_takes_the_model_name_not_the_model_number():
    model, flags = parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert {"avx2", "avx512f", "avx512_bf16", "amx_bf16"} <= flags and "143" not in model
    model, flags = parse_cpuinfo(GRAVITON3)
    assert model == "" and "bf16" in flags


@pytest.mark.parametrize("text,arch,expected", [
    (SAPPHIRE_RAPIDS, "x86_64", {"avx2": True, "avx512": True, "avx512_bf16": True, "amx": True, "native_bf16": True}),
    (ZEN2, "x86_64", {"avx2": True, "avx512": False, "avx512_bf16": False, "amx": False, "native_bf16": False}),
    (ZEN4, "x86_64", {"avx2": True, "avx512": True, "avx512_bf16": True, "amx": False, "native_bf16": True}),
    (SKYLAKE, "x86_64", {"avx2": True, "avx512": True, "avx512_bf16": False, "amx": False, "native_bf16": False}),
    (GRAVITON3, "aarch64", {"avx2": False, "avx512": False, "arm_bf16": True, "native_bf16": True}),
])
def test_features_from_flags(text, arch, expected):
    model, flags = parse_cpuinfo(text)
    features = features_from_flags(model, flags, arch, onednn_bf16=True)
    assert {k: getattr(features, k) for k in expected} == expected


def test_no_onednn_bf16_kernels_means_no_native_bf16():
    """bf16 instructions are of no use when torch's oneDNN has no bf16 kernels (or is capped below them)."""
    model, flags = parse_cpuinfo(SAPPHIRE_RAPIDS)
    assert features_from_flags(model, flags, "x86_64", onednn_bf16=None).native_bf16  # unknown: flags decide
    features = features_from_flags(model, flags, "x86_64", onednn_bf16=False)
    assert not features.native_bf16
    assert "torch oneDNN bf16 no" in features.describe() and features.describe().endswith("-> no native bf16")


def test_describe_names_model_and_features(fake_cpu):
    fake_cpu(ZEN2)
    text = cpu_features().describe()
    assert text.startswith("AMD EPYC 7B12; ")
    assert "AVX2 yes, AVX-512 no, AVX-512 BF16 no, AMX no" in text and text.endswith("-> no native bf16")
    assert not device_util.cpu_has_native_bf16()
    fake_cpu(SAPPHIRE_RAPIDS)
    assert device_util.cpu_has_native_bf16() == (device_util.onednn_bf16_support() is not False)


def test_probe_without_cpuinfo_falls_back_to_torch(fake_cpu):
    fake_cpu(None)
    features = cpu_features()
    assert features.source == "torch.cpu"
    assert all(v in (True, False, None) for v in (features.avx2, features.avx512, features.avx512_bf16, features.amx))
    assert isinstance(features.native_bf16, bool) and features.describe()


def yes():
    return True


def no():
    return False


# what torch.cpu / torch._C._cpu hold in each generation of torch's probes (ZEN4-like CPU: AVX-512 BF16, no AMX)
TORCH_GENERATIONS = {
    "get_capabilities": (types.SimpleNamespace(get_capabilities=lambda: {
        "avx2": True, "avx512_f": True, "avx512_bf16": True, "amx_bf16": False, "amx_tile": False}),
        types.SimpleNamespace()),
    "_is_*_supported": (types.SimpleNamespace(_is_avx2_supported=yes, _is_avx512_supported=yes,
                                              _is_avx512_bf16_supported=yes, _is_amx_tile_supported=no),
                        types.SimpleNamespace()),
    "_C._cpu._is_cpu_support_*": (types.SimpleNamespace(),
                                  types.SimpleNamespace(_is_cpu_support_avx2=yes, _is_cpu_support_avx512=yes,
                                                        _is_cpu_support_amx_tile=no)),
    "none": (types.SimpleNamespace(), types.SimpleNamespace()),
}


@pytest.mark.parametrize("generation,expected", [
    ("get_capabilities", {"avx2": True, "avx512": True, "avx512_bf16": True, "amx": False, "native_bf16": True}),
    ("_is_*_supported", {"avx2": True, "avx512": True, "avx512_bf16": True, "amx": False, "native_bf16": True}),
    # no AVX-512 BF16 probe in that generation: unknown, so not native (fp32: never the emulated case)
    ("_C._cpu._is_cpu_support_*", {"avx2": True, "avx512": True, "avx512_bf16": None, "amx": False,
                                   "native_bf16": False}),
    ("none", {"avx2": None, "avx512": None, "avx512_bf16": None, "amx": None, "native_bf16": False}),
])
def test_torch_probes_of_every_generation(fake_cpu, monkeypatch, generation, expected):
    """Without /proc/cpuinfo the probe asks whichever of torch's (renamed) CPU probes exist."""
    cpu, c_cpu = TORCH_GENERATIONS[generation]
    monkeypatch.setattr(torch, "cpu", cpu)
    monkeypatch.setattr(torch._C, "_cpu", c_cpu)
    monkeypatch.setattr(device_util, "onednn_bf16_support", lambda: True)
    fake_cpu(None)
    features = cpu_features()
    assert features.source == "torch.cpu" and features.arm_bf16 is None
    assert {k: getattr(features, k) for k in expected} == expected


def test_torch_capabilities_on_arm(monkeypatch):
    caps = {"neon": True, "bf16": True, "architecture": "arm64"}
    monkeypatch.setattr(torch, "cpu", types.SimpleNamespace(get_capabilities=lambda: caps))
    flags = torch_cpu_flags("aarch64", onednn_bf16=None)
    assert flags == {"avx2": False, "avx512": False, "avx512_bf16": False, "amx": False, "arm_bf16": True}
    assert torch_cpu_flags("x86_64", onednn_bf16=True)["arm_bf16"] is None
    monkeypatch.setattr(torch, "cpu", types.SimpleNamespace())  # no probe at all: oneDNN's Arm check decides
    assert torch_cpu_flags("aarch64", onednn_bf16=True)["arm_bf16"] is True


def test_this_machines_probe_agrees_with_torch():
    """Whatever this CPU is, /proc/cpuinfo (where present) and torch's own probes tell the same features
    (AMX left out: the kernel lists it only where it enables AMX state, torch's cpuinfo reads CPUID)."""
    ours = cpu_features()
    theirs = torch_cpu_flags(platform.machine(), device_util.onednn_bf16_support())
    for name in ("avx2", "avx512", "avx512_bf16"):
        if getattr(ours, name) is not None and theirs[name] is not None:
            assert getattr(ours, name) == theirs[name], name


# ------------------------------------------------------------------------ through the CLIs
def test_eval_amp_on_cpu_without_native_bf16_runs_fp32(tmp_path, generic_template, released_checkpoint,  # noqa: F811
                                                        monkeypatch, capsys, fake_cpu):
    fake_cpu(ZEN2)
    cores = []

    def recording_build_predictor(args):
        predictor = real_build_predictor(args)
        cores.append(predictor.new_core())
        return predictor

    real_build_predictor = run_video.build_predictor
    monkeypatch.setattr(run_video, "build_predictor", recording_build_predictor)
    common = ["--model", released_checkpoint, "--data_path", generic_template, "--size", "32", "--device", "cpu"]

    def run(out: Path, *flags: str) -> str:
        assert eval_generic.main([*map(str, common), "--output", str(out), *flags]) == 0
        return capsys.readouterr().err

    err = run(tmp_path / "amp", "--amp")
    assert [line for line in err.splitlines() if "bfloat16" in line] == [NO_NATIVE_BF16_NOTE]
    assert cores[-1].amp is False
    run(tmp_path / "fp32")
    for a in sorted((tmp_path / "fp32" / "clip").iterdir()):  # the fp32 masks exactly
        assert np.array_equal(np.array(Image.open(a)), np.array(Image.open(tmp_path / "amp" / "clip" / a.name)))

    err = run(tmp_path / "forced", "--amp", "--amp_dtype", "bfloat16")  # the user's choice wins, silently
    assert NO_NATIVE_BF16_NOTE not in err
    assert cores[-1].amp is True and cores[-1].amp_dtype == torch.bfloat16


def test_benchmark_names_cpu_features_and_the_dtype_each_row_ran(fake_cpu, capsys):
    fake_cpu(ZEN2)
    argv = ["--height", "16", "--lengths", "2", "--objects", "1", "--warmup", "0", "--device", "cpu"]
    assert benchmark_inference.main(argv) == 0
    out = capsys.readouterr().out
    assert "cpu: AMD EPYC 7B12; AVX2 yes, AVX-512 no, AVX-512 BF16 no, AMX no" in out
    assert f"{torch.get_num_threads()} CPU threads" in out and f"torch {torch.__version__}" in out
    rows = [line.split(" | ")[1] for line in out.splitlines() if line.startswith("| core |")]
    assert rows == ["fp32", "amp -> fp32 (no native bf16)"]

    assert benchmark_inference.main([*argv, "--precision", "amp", "--amp_dtype", "bfloat16"]) == 0
    rows = [line.split(" | ")[1] for line in capsys.readouterr().out.splitlines() if line.startswith("| core |")]
    assert rows == ["amp (bf16)"]


def test_ensemble_prints_the_note_once(tmp_path, generic_template, released_checkpoint, capsys,  # noqa: F811
                                       fake_cpu):
    """Two networks (an ensemble), each loaded by the one rule: one note, not one per network."""
    fake_cpu(ZEN2)
    second = tmp_path / "second.pth"
    shutil.copy(released_checkpoint, second)
    argv = ["--model", released_checkpoint, second, "--data_path", generic_template, "--size", "32", "--device",
            "cpu", "--output", tmp_path / "o", "--amp"]
    assert eval_generic.main(list(map(str, argv))) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("note:")] == [NO_NATIVE_BF16_NOTE]


@pytest.mark.parametrize("native", [False, True])
def test_predictor_amp_on_cpu_follows_the_rule(released_checkpoint, fake_cpu, monkeypatch, native):
    """Predictor.from_checkpoint(amp=True) decides as the scripts' --amp: fp32 with `.note` without native bf16."""
    monkeypatch.setattr(device_util, "onednn_bf16_support", lambda: native)  # what this machine's torch says aside
    fake_cpu(SAPPHIRE_RAPIDS if native else ZEN2)
    predictor = Predictor.from_checkpoint(released_checkpoint, device="cpu", amp=True, size=32)
    core = predictor.new_core()
    if native:
        assert predictor.amp_dtype == torch.bfloat16 and predictor.note is None and core.amp
    else:
        assert predictor.amp_dtype is None and predictor.note == NO_NATIVE_BF16_NOTE and not core.amp
    forced = Predictor.from_checkpoint(released_checkpoint, device="cpu", amp=True, size=32, amp_dtype="bfloat16")
    assert forced.amp_dtype == torch.bfloat16 and forced.note is None and forced.new_core().amp
    plain = Predictor.from_checkpoint(released_checkpoint, device="cpu", size=32)
    assert plain.amp_dtype is None and plain.note is None


@pytest.mark.parametrize("native", [False, True])
def test_inference_core_amp_without_dtype_follows_the_rule(monkeypatch, native):
    """InferenceCore(amp=True) built by hand applies the same rule; a dtype given is taken as given."""
    monkeypatch.setattr(device_util, "cpu_has_native_bf16", lambda: native)
    net = STCN().eval()
    if native:
        core = InferenceCore(net, amp=True)
        assert core.amp and core.amp_dtype == torch.bfloat16
    else:
        with pytest.warns(UserWarning, match="native bfloat16"):
            core = InferenceCore(net, amp=True)
        assert not core.amp and core.amp_dtype is None
    forced = InferenceCore(net, amp=True, amp_dtype=torch.bfloat16)
    assert forced.amp and forced.amp_dtype == torch.bfloat16
    assert not InferenceCore(net).amp


def test_training_autocasts_on_cuda_only():
    """train.py: AMP on CUDA (float16, the rule's CUDA default), never on a CPU, whatever its bf16."""
    parser = train.get_args_parser()
    for device, amp in ((CPU, False), (CUDA, True)):
        for extra, expected in (([], amp), (["--no_amp"], False)):
            cfg = build_config(parser.parse_args(["--id", "x", "--stage", "0", *extra]),
                               DistContext(0, 1, 0, device, False))
            assert cfg.amp is expected
    assert amp_dtype(CUDA) == torch.float16


def test_segment_video_amp_without_native_bf16_is_the_fp32_run(tmp_path, released_checkpoint, capsys, fake_cpu):
    fake_cpu(ZEN2)
    images, labels = render(VideoSpec("clip", height=48, width=64, frames=4, starts={1: 0}))
    with VideoWriter(tmp_path / "clip.mp4", fps=10) as writer:
        for img in images:
            writer.write(img)
    save_indexed(tmp_path / "first.png", labels[0].astype(np.uint8))
    base = ["--video", tmp_path / "clip.mp4", "--mask", tmp_path / "first.png", "--model", released_checkpoint,
            "--size", "32", "--device", "cpu"]
    errors = {}
    for name, extra in {"fp32": [], "amp": ["--amp"]}.items():
        assert segment_video.main(list(map(str, [*base, "--output", tmp_path / name, *extra]))) == 0
        errors[name] = capsys.readouterr().err
    assert [line for line in errors["amp"].splitlines() if line.startswith("note:")] == [NO_NATIVE_BF16_NOTE]
    assert NO_NATIVE_BF16_NOTE not in errors["fp32"]
    written = sorted((tmp_path / "fp32").glob("*.png"))
    assert len(written) == 4
    for a in written:
        assert np.array_equal(np.array(Image.open(a)), np.array(Image.open(tmp_path / "amp" / a.name)))
