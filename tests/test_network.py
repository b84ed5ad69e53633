"""The network: checkpoint contract, loading, stage-0 conversion, shapes, frozen batch norm."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model import STCN
from model.checkpoint import CheckpointError, atomic_save, load_network, load_state_dict_file
from model.network import CheckpointMismatchError
from util.tensor_util import pad_divide_by, unpad

CONTRACT = Path(__file__).parent / "fixtures" / "stcn-state-dict.tsv"


def read_contract() -> dict[str, tuple[str, str]]:
    rows = CONTRACT.read_text().splitlines()[1:]
    return {k: (shape, dtype) for k, shape, dtype in (r.split("\t") for r in rows)}


def describe(state) -> dict[str, tuple[str, str]]:
    return {k: (str(tuple(v.shape)), str(v.dtype).removeprefix("torch.")) for k, v in state.items()}


def assert_semi_orthogonal(m: torch.Tensor) -> None:
    """nn.init.orthogonal_ makes the rows (or the columns, whichever are fewer) orthonormal."""
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    torch.testing.assert_close(gram, torch.eye(gram.shape[0]), atol=1e-5, rtol=0)


def test_state_dict_matches_released_contract(stcn_net):
    contract = read_contract()
    mine = describe(stcn_net.state_dict())
    assert len(contract) == 405
    assert sorted(mine) == sorted(contract), "key set drifted from the released checkpoint"
    assert mine == contract, "a shape or dtype drifted from the released checkpoint"
    assert sum(v.numel() for v in stcn_net.state_dict().values()) == 54_469_310


def test_released_format_round_trips_strictly(tmp_path, stcn_net, released_checkpoint):
    loaded = load_network(released_checkpoint)
    for k, v in stcn_net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    # a plain nn.Module.load_state_dict(strict=True) accepts it too
    STCN().load_state_dict(torch.load(released_checkpoint, weights_only=True), strict=True)


def test_ddp_prefixed_and_training_checkpoints_load(tmp_path, stcn_net):
    prefixed = {f"module.{k}": v for k, v in stcn_net.state_dict().items()}
    path = atomic_save({"network": prefixed, "it": 3}, tmp_path / "run_checkpoint.pth")
    net = load_network(path)
    torch.testing.assert_close(net.decoder.pred.weight, stcn_net.decoder.pred.weight)


def test_stage0_checkpoint_converts(tmp_path):
    torch.manual_seed(1)
    s0 = STCN(single_object=True)
    assert s0.state_dict()["value_encoder.conv1.weight"].shape == (64, 4, 7, 7)
    path = tmp_path / "s0.pth"
    torch.save(s0.state_dict(), path)

    ev = load_network(path)  # evaluation: zero padding, same outputs as the stage-0 network
    w = ev.value_encoder.conv1.weight
    assert w.shape == (64, 5, 7, 7)
    torch.testing.assert_close(w[:, :4], s0.value_encoder.conv1.weight)
    assert torch.count_nonzero(w[:, 4]) == 0
    x, m = torch.randn(1, 3, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        f16 = ev.key_encoder(x)[0]
        torch.testing.assert_close(ev.encode_value(x, f16, m), s0.eval().encode_value(x, f16, m))

    tr = load_network(path, for_training=True)  # training: orthogonal padding
    extra = tr.value_encoder.conv1.weight[:, 4].reshape(64, -1)
    assert torch.count_nonzero(extra) > 0
    assert_semi_orthogonal(extra)


def test_wrong_checkpoint_is_reported(tmp_path):
    bad = tmp_path / "bad.pth"
    sd = STCN().state_dict()
    sd["key_proj.key_proj.weight"] = torch.zeros(32, 1024, 3, 3)
    del sd["decoder.pred.bias"]
    torch.save(sd, bad)
    with pytest.raises(CheckpointError, match=r"bad\.pth.*missing.*decoder\.pred\.bias.*wrong shape"):
        load_network(bad)
    with pytest.raises(CheckpointMismatchError):
        STCN().load_weights(sd)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_state_dict_file(garbage)
    with pytest.raises(CheckpointError, match="download_model.py"):
        load_state_dict_file(tmp_path / "absent.pth")


def test_atomic_save_leaves_no_partial_file(tmp_path):
    class Boom:
        def __reduce__(self):
            raise RuntimeError("interrupted")

    target = tmp_path / "ck.pth"
    atomic_save({"a": torch.ones(2)}, target)
    with pytest.raises(RuntimeError):
        atomic_save({"a": Boom()}, target)
    assert torch.load(target, weights_only=True)["a"].tolist() == [1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pth"]
    assert target.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("size", [(37, 50), (48, 64), (70, 33)])
def test_output_shapes_for_unaligned_frames(stcn_net, size):
    h, w = size
    frame = torch.randn(1, 3, h, w)
    padded, pad = pad_divide_by(frame, 16)
    assert padded.shape[-2] % 16 == 0 and padded.shape[-1] % 16 == 0
    torch.testing.assert_close(unpad(padded, pad), frame)
    with torch.no_grad():
        k16, qv16, f16, f8, f4 = stcn_net.encode_key(padded)
        hp, wp = padded.shape[-2:]
        assert k16.shape == (1, 64, hp // 16, wp // 16)
        assert qv16.shape == (1, 512, hp // 16, wp // 16)
        assert f8.shape == (1, 512, hp // 8, wp // 8) and f4.shape == (1, 256, hp // 4, wp // 4)
        masks = torch.rand(1, 2, hp, wp)
        mv16 = stcn_net.encode_value(padded, f16, masks)
        assert mv16.shape == (1, 2, 512, hp // 16, wp // 16)
        logits, prob = stcn_net.segment(k16, qv16, f8, f4, k16.unsqueeze(2), mv16.unsqueeze(3), top_k=20)
    assert logits.shape == prob.shape == (1, 3, hp, wp)
    assert unpad(prob, pad).shape == (1, 3, h, w)
    torch.testing.assert_close(prob.sum(1), torch.ones(1, hp, wp))


def test_shared_query_decoder_equals_concatenation(stcn_net):
    torch.manual_seed(2)
    read = torch.randn(3, 512, 4, 5)
    qv16, f8, f4 = torch.randn(1, 512, 4, 5), torch.randn(1, 512, 8, 10), torch.randn(1, 256, 16, 20)
    with torch.no_grad():
        shared = stcn_net.decode(read, qv16, f8, f4)
        full = stcn_net.decode(read, qv16.expand(3, -1, -1, -1), f8.expand(3, -1, -1, -1), f4.expand(3, -1, -1, -1))
    assert shared.shape == (3, 1, 64, 80)
    torch.testing.assert_close(shared, full, atol=1e-5, rtol=1e-4)


def test_shared_f16_value_encoder_equals_concatenation(stcn_net):
    """One frame's f16 is fused once for all objects; the result equals the per-object concatenation."""
    torch.manual_seed(3)
    frame, masks = torch.randn(1, 3, 64, 80), torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        f16 = stcn_net.key_encoder(frame)[0]
        shared = stcn_net.encode_value(frame, f16, masks)  # f16 batch 1 inside the fusion block
        others = masks.sum(1, keepdim=True) - masks
        x = torch.cat([frame.expand(3, -1, -1, -1), masks[0, :, None], others[0, :, None]], dim=1)
        full = stcn_net.value_encoder(x, f16.expand(3, -1, -1, -1))
        block = stcn_net.value_encoder.fuser.block1
        trunk = torch.randn(3, 256, 4, 5)
        split = block.forward_cat(trunk, f16)
        concat = block(torch.cat([trunk, f16.expand(3, -1, -1, -1)], dim=1))
    assert shared.shape == (1, 3, 512, 4, 5)
    # float32 sums over 1280 x 9 terms in another order: differences of a few 1e-5 on values of ~1-10
    torch.testing.assert_close(shared[0], full, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(split, concat, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="batch 1 or 3"):
        block.forward_cat(trunk, f16.expand(2, -1, -1, -1))


def test_batchnorm_stays_frozen_in_training():
    net = STCN().train()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    x = torch.randn(2, 3, 32, 32)
    k16, qv16, f16, f8, f4 = net.encode_key(x)
    mv = net.encode_value(x, f16, torch.rand(2, 2, 32, 32))
    logits, _ = net.segment(k16, qv16, f8, f4, k16.unsqueeze(2), mv.unsqueeze(3))
    logits.mean().backward()
    for k, v in before.items():
        assert torch.equal(net.state_dict()[k], v), k
    assert net.key_encoder.bn1.weight.grad is not None  # affine parameters still learn


def test_imagenet_init_without_network_gives_clear_error(monkeypatch):
    import urllib.error

    from model import resnet

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(resnet.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(resnet.WeightsUnavailableError, match="resnet50.*pretrained=False"):
        STCN(pretrained=True)


def test_imagenet_init_pads_mask_channels(monkeypatch):
    """ImageNet weights go into the RGB channels; mask channels orthogonal; biases zero."""
    from model import resnet

    torch.manual_seed(3)
    fake18 = resnet.models.resnet18(weights=None).state_dict()
    fake50 = resnet.models.resnet50(weights=None).state_dict()

    def fake(self, *args, **kwargs):
        return fake18 if "resnet18" in self.url else fake50

    monkeypatch.setattr(resnet.models.WeightsEnum, "get_state_dict", fake)
    net = STCN(pretrained=True)
    torch.testing.assert_close(net.key_encoder.res2[0].conv1.weight, fake50["layer1.0.conv1.weight"])
    w = net.value_encoder.conv1.weight
    torch.testing.assert_close(w[:, :3], fake18["conv1.weight"])
    torch.testing.assert_close(net.value_encoder.layer3[1].bn2.running_var, fake18["layer3.1.bn2.running_var"])
    extra = w[:, 3:].reshape(64, -1)
    assert_semi_orthogonal(extra)
    assert torch.count_nonzero(net.value_encoder.layer1[0].conv1.bias) == 0


def test_decode_with_owners_equals_each_object_with_its_own_frame():
    """Several videos batched (inference_core/batch.py): frame-level decoder convolutions once per
    frame, gathered by owner, equal decoding each object with its frame's features."""
    torch.manual_seed(0)
    net = STCN(pretrained=False).eval()
    frames = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        _, qv16, _, f8, f4 = net.encode_key(frames)
        readout = torch.randn(3, qv16.shape[1], *qv16.shape[-2:])
        owners = torch.tensor([1, 0, 1])
        got = net.decode(readout, qv16, f8, f4, owners=owners)
        want = torch.cat([net.decode(readout[n : n + 1], qv16[o : o + 1], f8[o : o + 1], f4[o : o + 1])
                          for n, o in enumerate(owners.tolist())])
    assert got.shape == (3, 1, 64, 80)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
