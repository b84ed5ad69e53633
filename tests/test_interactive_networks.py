"""The interactive networks (model/s2m.py, model/fusion.py): their state dicts against the released
files' contracts (tests/fixtures/*.tsv, copied from the reference lists, not from the code), strict
loading and its refusals, forward shapes, and AMP. Random weights; S2M (~40M values) is built once."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.checkpoint import CheckpointError
from model.fusion import FusionNet, load_fusion
from model.s2m import S2M, load_s2m
from tests.test_download import FUSION_CONTRACT, S2M_CONTRACT, STATE_DICT_CONTRACT, fake_checkpoint, resnet18_shapes

torch.set_num_threads(1)

SIZE = 64  # a multiple of 16, as the networks are fed


def contract_rows(contract: Path) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(key, shape, dtype) of every tensor of a released file, in the file's order."""
    rows = []
    for line in contract.read_text().splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        rows.append((key, tuple(int(v) for v in shape.strip("()").split(",") if v.strip()), getattr(torch, dtype)))
    return rows


def shapes_of(contract: Path) -> dict[str, tuple[int, ...]]:
    return {key: shape for key, shape, _ in contract_rows(contract)}


@pytest.fixture(scope="module")
def s2m() -> S2M:
    torch.manual_seed(0)
    return S2M().eval()


@pytest.fixture(scope="module")
def fusion() -> FusionNet:
    torch.manual_seed(0)
    return FusionNet().eval()


@pytest.fixture(scope="module")
def s2m_file(s2m, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("s2m") / "s2m.pth"
    torch.save(s2m.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def fusion_file(fusion, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fusion") / "fusion_stcn.pth"
    torch.save(fusion.state_dict(), path)
    return path


def s2m_input(batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    image = torch.randn(batch, 3, SIZE, SIZE, generator=g)
    maps = (torch.rand(batch, 3, SIZE, SIZE, generator=g) > 0.7).float()  # mask, positive, negative
    return torch.cat([image, maps], dim=1)


def fusion_inputs(batch: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(2)
    image = torch.randn(batch, 3, SIZE, SIZE, generator=g)
    stored, new = torch.rand(batch, 1, SIZE, SIZE, generator=g), torch.rand(batch, 1, SIZE, SIZE, generator=g)
    diff = torch.rand(batch, 2, SIZE, SIZE, generator=g)
    time = torch.tensor([[0.25, 0.75]]).expand(batch, 2)
    return image, stored, new, diff, time


@pytest.mark.parametrize("which, contract, values", [
    ("s2m", S2M_CONTRACT, 39_822_974), ("fusion", FUSION_CONTRACT, 39_905)])
def test_random_state_dict_equals_the_released_contract(request, which, contract, values):
    state = request.getfixturevalue(which).state_dict()
    assert [(k, tuple(v.shape), v.dtype) for k, v in state.items()] == contract_rows(contract)
    assert sum(v.numel() for v in state.values()) == values


def test_s2m_round_trip_and_forward_shape(s2m, s2m_file):
    loaded = load_s2m(s2m_file, "cpu")
    assert isinstance(loaded, S2M) and not loaded.training
    x = s2m_input(batch=2)
    with torch.no_grad():
        out = loaded(x)
        assert out.shape == (2, 1, SIZE, SIZE) and out.dtype == torch.float32
        assert torch.equal(out, s2m(x))
        # the objects of a batch do not mix (the same sums, perhaps in another order: float32 rounding)
        assert torch.allclose(loaded(x[:1]), out[:1], rtol=1e-4, atol=1e-4 * out.abs().max().item())


def test_fusion_round_trip_forward_shape_and_time_planes(fusion, fusion_file):
    loaded = load_fusion(fusion_file)
    assert isinstance(loaded, FusionNet) and not loaded.training
    image, stored, new, diff, time = fusion_inputs(batch=2)
    planes = time[:, :, None, None].expand(-1, -1, SIZE, SIZE)
    with torch.no_grad():
        out = loaded(image, stored, new, diff, time)
        assert out.shape == (2, 1, SIZE, SIZE)
        assert torch.equal(out, fusion(image, stored, new, diff, time))
        assert torch.equal(out, loaded(image, stored, new, diff, planes))  # nc, nr as scalars or planes
        # the inputs' order matters: stored and new are not interchangeable
        assert not torch.equal(out, loaded(image, new, stored, diff, planes))


def test_forward_refuses_the_wrong_number_of_channels(s2m, fusion):
    with pytest.raises(ValueError, match="B, 6, H, W"):
        s2m(torch.zeros(1, 5, 32, 32))
    image, stored, new, diff, time = fusion_inputs()
    with pytest.raises(ValueError, match="not 9"):
        fusion(image, stored, new, diff[:, :1], time)


def test_amp_bfloat16_on_cpu(s2m, fusion):
    with torch.no_grad():
        reference = fusion(*fusion_inputs())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = s2m(s2m_input()[..., :32, :32])
            fused = fusion(*fusion_inputs())
    assert logits.shape == (1, 1, 32, 32) and logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    assert fused.dtype == torch.bfloat16
    # bfloat16 keeps 8 bits of mantissa: a few convolutions of 32 channels stay within a few percent
    assert torch.allclose(fused.float(), reference, rtol=0.05, atol=0.05 * reference.abs().max().item())


def wrong_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a file that is not the expected one, what the refusal must say it is)."""
    garbage = tmp / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    return {
        "stcn": (fake_checkpoint(tmp / "stcn.pth", shapes_of(STATE_DICT_CONTRACT)),
                 "it looks like the STCN propagation network stcn.pth"),
        "resnet": (fake_checkpoint(tmp / "resnet.pth", resnet18_shapes()),
                   "it looks like a torchvision ResNet classifier"),
        "s2m": (fake_checkpoint(tmp / "s2m.pth", shapes_of(S2M_CONTRACT)),
                "it looks like the scribble-to-mask network s2m.pth"),
        "fusion": (fake_checkpoint(tmp / "fusion.pth", shapes_of(FUSION_CONTRACT)),
                   "it looks like the difference-aware fusion network fusion_stcn.pth"),
        "garbage": (garbage, "cannot be read as a PyTorch checkpoint"),
        "missing": (tmp / "absent.pth", "no such checkpoint"),
    }


@pytest.mark.parametrize("load, own, flag, expected", [
    (load_s2m, "s2m", "--s2m_model", "not the scribble-to-mask network s2m.pth"),
    (load_fusion, "fusion", "--fusion_model", "not the difference-aware fusion network fusion_stcn.pth"),
])
@pytest.mark.parametrize("kind", ["stcn", "resnet", "other", "garbage", "missing"])
def test_a_wrong_file_is_refused_with_one_line(tmp_path, load, own, flag, expected, kind):
    files = wrong_files(tmp_path)
    path, says = files[{"s2m": "fusion", "fusion": "s2m"}[own] if kind == "other" else kind]
    with pytest.raises(CheckpointError) as err:
        load(path)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"{path}: ") and says in line and flag in line, line
    if kind in ("stcn", "resnet", "other"):
        assert line.startswith(f"{path}: {expected} (it looks like"), line
        assert "python download_model.py --model" in line


@pytest.mark.parametrize("load, contract, key, shape", [
    (load_s2m, S2M_CONTRACT, "backbone.conv1.weight", (64, 3, 7, 7)),
    (load_fusion, FUSION_CONTRACT, "conv1.0.weight", (32, 8, 3, 3)),
])
def test_wrong_shapes_are_refused_without_guessing_another_network(tmp_path, load, contract, key, shape):
    path = fake_checkpoint(tmp_path / "wrong.pth", {**shapes_of(contract), key: shape})
    with pytest.raises(CheckpointError) as err:
        load(path)
    line = str(err.value)
    assert f"1 wrong shape: {key} {shape} != " in line and "looks like" not in line, line


# relative to the largest logit: fp32 differs only in the order of sums (TF32 off), fp16 keeps 11 bits, bfloat16 8
CUDA_TOLERANCE = {None: 1e-3, torch.float16: 0.01, torch.bfloat16: 0.05}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", list(CUDA_TOLERANCE))
def test_cuda_fp32_and_autocast_match_cpu(s2m, s2m_file, fusion, fusion_file, dtype):
    allow = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 proper, not TF32
    try:
        nets = load_s2m(s2m_file, "cuda"), load_fusion(fusion_file, "cuda")
        assert all(p.device.type == "cuda" for net in nets for p in net.parameters())
        inputs = s2m_input(), fusion_inputs()
        with torch.no_grad():
            expected = s2m(inputs[0]), fusion(*inputs[1])
            with torch.autocast("cuda", dtype=dtype or torch.float16, enabled=dtype is not None):
                got = nets[0](inputs[0].cuda()), nets[1](*(t.cuda() for t in inputs[1]))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = allow
    for out, ref in zip(got, expected):
        assert out.dtype == (dtype or torch.float32) and torch.isfinite(out).all()
        scale = ref.abs().max().item()
        assert (out.float().cpu() - ref).abs().max().item() <= CUDA_TOLERANCE[dtype] * scale
