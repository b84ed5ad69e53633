"""Similarity functions (section 4, Table 2), key size and their round trip through checkpoints.

The maths against a direct per-pair computation; the network's training read and the inference
memory read under each similarity; the options stored with the weights (still the released format)
and picked up by evaluation; short train.py runs with dot / cosine and C_k = 128 on the synthetic
training layouts, then evaluation of what they wrote.
"""
from __future__ import annotations

import copy
import math
import re
import shutil
from pathlib import Path

import pytest
import torch

import eval_davis
import eval_davis_2016
import eval_generic
import eval_youtube
import segment_video
import train
from evaluation.run_video import build_predictor
from inference_core import InferenceCore
from inference_core.memory_bank import MemoryBank
from model.aggregate import aggregate_logits
from model.checkpoint import CheckpointError, load_network, load_state_dict_file
from model.memory_util import (
    COSINE_TEMPERATURE,
    SIMILARITIES,
    cosine_similarity,
    dot_similarity,
    l2_similarity,
    readout,
    similarity,
    softmax,
)
from model.network import STCN, CheckpointMismatchError, state_options
from tests.eval_fixtures import DAVIS_VIDEOS, davis_template  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--no_pretrained", "--num_workers", "0", "--crop_size", "32", "--batch_size", "1"]


# ------------------------------------------------------------------------------ direct computation
def pairwise(mk: torch.Tensor, qk: torch.Tensor, kind: str) -> torch.Tensor:
    """S (N, M) one pair at a time, from the definitions: mk C_k x N, qk C_k x M (no batch)."""
    ck = mk.shape[0]
    out = torch.empty(mk.shape[1], qk.shape[1], dtype=torch.float64)
    for i in range(mk.shape[1]):
        for j in range(qk.shape[1]):
            m, q = mk[:, i].double(), qk[:, j].double()
            if kind == "l2":  # negative squared distance, scaled as the original
                out[i, j] = -((m - q) ** 2).sum() / math.sqrt(ck)
            elif kind == "dot":  # STM: k_M . k_Q / sqrt(C_k)
                out[i, j] = (m @ q) / math.sqrt(ck)
            else:  # cosine over the temperature of section 4.2
                out[i, j] = (m @ q) / (m.norm() * q.norm()) / 0.01
    return out


def keys(b: int = 2, ck: int = 8, n: int = 7, m: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, ck, n, generator=g), torch.randn(b, ck, m, generator=g) * 1.5


@pytest.mark.parametrize("kind", ["dot", "cosine"])
def test_dot_and_cosine_equal_the_per_pair_definition(kind):
    mk, qk = keys()
    fn = {"dot": dot_similarity, "cosine": cosine_similarity}[kind]
    for b in range(mk.shape[0]):
        want = pairwise(mk[b], qk[b], kind).float()
        torch.testing.assert_close(fn(mk, qk)[b], want, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(similarity(mk, qk, kind)[b], want, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(similarity(mk, qk, kind, query_major=True)[b], want.T, atol=1e-4, rtol=1e-5)


def test_l2_equals_the_per_pair_distance_up_to_the_dropped_query_term():
    mk, qk = keys()
    for b in range(mk.shape[0]):
        dropped = qk[b].double().pow(2).sum(0) / math.sqrt(mk.shape[1])  # ||q_j||^2 / sqrt(C_k), per query
        want = (pairwise(mk[b], qk[b], "l2") + dropped[None, :]).float()
        torch.testing.assert_close(similarity(mk, qk, "l2")[b], want, atol=1e-4, rtol=1e-5)
        # the softmax over memory does not see the dropped term
        torch.testing.assert_close(softmax(similarity(mk, qk)[b : b + 1])[0],
                                   torch.softmax(pairwise(mk[b], qk[b], "l2"), dim=0).float(), atol=1e-5, rtol=0)


def test_cosine_temperature_is_applied():
    assert COSINE_TEMPERATURE == 0.01
    mk, qk = keys()
    sim = cosine_similarity(mk, mk)
    diagonal = torch.diagonal(sim, dim1=1, dim2=2)
    torch.testing.assert_close(diagonal, torch.full_like(diagonal, 1 / COSINE_TEMPERATURE))  # cos = 1 -> 100
    assert sim.abs().max() <= 1 / COSINE_TEMPERATURE + 1e-3
    # cosine ignores the keys' norms; the dot product does not
    torch.testing.assert_close(cosine_similarity(mk * 3.0, qk * 0.5), cosine_similarity(mk, qk))
    assert not torch.allclose(dot_similarity(mk * 3.0, qk), dot_similarity(mk, qk))


def test_default_is_l2_bit_identical_and_unknown_kinds_refused(stcn_net):
    mk, qk = keys()
    for query_major in (False, True):
        assert torch.equal(similarity(mk, qk, query_major=query_major), l2_similarity(mk, qk, query_major=query_major))
    assert SIMILARITIES == ("l2", "dot", "cosine")
    assert (stcn_net.similarity, stcn_net.key_dim) == ("l2", 64)
    assert MemoryBank().similarity == "l2" and InferenceCore(stcn_net).similarity == "l2"
    with pytest.raises(ValueError, match="unknown similarity"):
        similarity(mk, qk, "euclid")
    with pytest.raises(ValueError, match="unknown similarity"):
        STCN(similarity="euclid")


# ---------------------------------------------------------------------- the network's two reads
def with_similarity(net: STCN, kind: str) -> STCN:
    """A copy of `net` (same weights) that reads its memory with `kind`."""
    other = copy.deepcopy(net)
    other.similarity = kind
    return other


@pytest.mark.parametrize("kind", SIMILARITIES)
def test_training_read_uses_the_network_similarity(stcn_net, kind):
    """STCN.segment (the training step's read) equals decoding a read built from the per-pair S."""
    net = with_similarity(stcn_net, kind)
    g = torch.Generator().manual_seed(1)
    b, k, t, h, w = 1, 2, 2, 2, 3
    qk = torch.randn(b, 64, h, w, generator=g)
    mk = torch.randn(b, 64, t, h, w, generator=g)
    mv = torch.randn(b, k, 512, t, h, w, generator=g)
    qv = torch.randn(b, 512, h, w, generator=g)
    f8, f4 = torch.randn(b, 512, 2 * h, 2 * w, generator=g), torch.randn(b, 256, 4 * h, 4 * w, generator=g)
    with torch.no_grad():
        logits, _ = net.segment(qk, qv, f8, f4, mk, mv)
        affinity = torch.softmax(pairwise(mk[0].flatten(1), qk[0].flatten(1), kind), dim=0).float()  # N, M
        read = torch.stack([mv[0, i].flatten(1) @ affinity for i in range(k)]).view(k, 512, h, w)
        prob = torch.sigmoid(net.decode(read, qv.expand(k, -1, -1, -1), f8.expand(k, -1, -1, -1),
                                        f4.expand(k, -1, -1, -1)))
        want = aggregate_logits(prob.view(1, k, *prob.shape[-2:]), dim=1)
    torch.testing.assert_close(logits, want, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", SIMILARITIES)
def test_inference_read_uses_the_same_definition(kind):
    """MemoryBank's chunked top-k read equals the dense top-k read of the per-pair S."""
    g = torch.Generator().manual_seed(2)
    bank = MemoryBank(top_k=4, similarity=kind, chunk_size=5)
    bank.add_group([0, 1])
    for f in range(3):
        bank.add(f, torch.randn(1, 8, 3, 4, generator=g), torch.randn(2, 6, 3, 4, generator=g))
    qk = torch.randn(1, 8, 3, 4, generator=g)
    got = bank.read(qk)  # 2, 6, 3, 4
    sim = pairwise(bank.keys[0], qk[0].flatten(1), kind).float()[None]  # 1, N, M
    mv = bank.groups[0].values.permute(1, 2, 0)  # K, C_v, N
    want = readout(softmax(sim, top_k=4), mv).view(2, 6, 3, 4)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_core_takes_the_network_similarity_and_refuses_another(stcn_net):
    dot = with_similarity(stcn_net, "dot")
    assert InferenceCore(dot).similarity == "dot" and InferenceCore(dot).memory.similarity == "dot"
    assert InferenceCore(dot, similarity="dot").similarity == "dot"
    with pytest.raises(ValueError, match="trained with dot similarity"):
        InferenceCore(dot, similarity="l2")


# ------------------------------------------------------------------------- options in the weights
def test_options_travel_in_the_released_format(stcn_net, tmp_path):
    path = tmp_path / "dot.pth"
    torch.save(with_similarity(stcn_net, "dot").state_dict(), path)
    plain = torch.load(path, map_location="cpu", weights_only=True)
    assert len(plain) == 405 and all(isinstance(v, torch.Tensor) for v in plain.values())
    STCN(pretrained=False).load_state_dict(plain, strict=True)  # what the original code does
    assert state_options(plain) == {"similarity": "dot", "key_dim": 64, "backbone": "resnet50"}
    net = load_network(path)
    assert (net.similarity, net.key_dim) == ("dot", 64)
    # a training checkpoint's network keeps them too
    torch.save({"network": with_similarity(stcn_net, "cosine").state_dict(), "iteration": 1}, tmp_path / "c.pth")
    assert state_options(load_state_dict_file(tmp_path / "c.pth"))["similarity"] == "cosine"
    # weights trained for one similarity are not loaded into a network reading with another
    with pytest.raises(CheckpointMismatchError, match="trained with dot similarity"):
        STCN(pretrained=False).load_weights(plain)


def test_released_weights_mean_l2_and_64(stcn_net, tmp_path):
    path = tmp_path / "released.pth"
    torch.save(dict(stcn_net.state_dict()), path)  # a plain dict: no metadata, as the released stcn.pth
    assert state_options(load_state_dict_file(path)) == {"similarity": "l2", "key_dim": 64, "backbone": "resnet50"}
    net = load_network(path)
    assert (net.similarity, net.key_dim) == ("l2", 64)
    for k, v in stcn_net.state_dict().items():  # loaded strictly, every tensor as saved
        assert torch.equal(net.state_dict()[k], v)
    # metadata naming a similarity this code does not know is a checkpoint error, not a guess
    state = stcn_net.state_dict()
    state._metadata[""]["stcn"] = {"similarity": "euclid", "key_dim": 64}
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="unknown similarity 'euclid'"):
        load_network(tmp_path / "odd.pth")


def test_key_dim_is_read_from_the_weights(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "k128.pth"
    torch.save(STCN(pretrained=False, key_dim=128, similarity="cosine").state_dict(), path)
    plain = torch.load(path, weights_only=True)
    plain._metadata = {}  # even without the metadata, C_k comes from key_proj's shape
    assert state_options(plain)["key_dim"] == 128
    net = load_network(path)
    assert (net.similarity, net.key_dim) == ("cosine", 128)
    assert net.key_proj.key_proj.weight.shape == (128, 1024, 3, 3)


# ------------------------------------------------------------------------ evaluation commands
@pytest.mark.parametrize("script", [eval_davis, eval_davis_2016, eval_youtube, eval_generic, segment_video])
def test_every_evaluation_command_has_the_flag(script):
    action = next(a for a in script.get_args_parser()._actions if a.dest == "similarity")
    assert action.default is None and tuple(action.choices) == SIMILARITIES


# ------------------------------------------------------------- training and evaluation end to end
@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> list[str]:
    """The synthetic training layouts (static, DAVIS, YouTube-VOS), with videos named from the paper's lists."""
    from dataset.util import load_subset
    from tests import synthetic_data as sd

    root = tmp_path_factory.mktemp("train_data")
    sd.make_static_root(root, images_per_set=1, fss_classes=1)
    sd.make_davis_root(root, videos=sorted(load_subset(ROOT / "dataset" / "subsets" / "davis_subset.txt"))[:2],
                       frames=4)
    yv = sd.make_youtube_root(root, videos=2, frames=3, valid_videos=0) / "train_480p"
    yv_names = sorted(load_subset(ROOT / "dataset" / "subsets" / "yv_subset.txt"))[:2]
    for sub in ("JPEGImages", "Annotations"):
        for old, new in zip(sorted((yv / sub).iterdir()), yv_names):
            old.rename(yv / sub / new)
    return ["--static_root", str(root / "static"), "--davis_root", str(root / "DAVIS"),
            "--yv_root", str(root / "YouTube")]


@pytest.fixture(scope="module")
def cosine128(tmp_path_factory, layouts) -> Path:
    """Stage-0 weights trained (one iteration) with cosine similarity and C_k = 128."""
    save = tmp_path_factory.mktemp("saves")
    args = ["--stage", "0", "--id", "c0", "--save_dir", str(save), "--similarity", "cosine", "--key_dim", "128",
            "--iterations", "1", *layouts, *TINY]
    assert train.main(args) == 0
    return save / "c0"


def one_error_line(err: str, *names: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert all(n in lines[0] for n in names), lines[0]
    return lines[0]


def test_key_dim_128_cosine_training_records_its_options(cosine128):
    weights = torch.load(cosine128 / "c0_1.pth", map_location="cpu", weights_only=True)
    assert set(weights) == set(STCN(single_object=True, key_dim=128).state_dict())
    assert weights["key_proj.key_proj.weight"].shape == (128, 1024, 3, 3)
    assert weights._metadata[""]["stcn"] == {"similarity": "cosine", "key_dim": 128, "backbone": "resnet50"}
    ckpt = torch.load(cosine128 / "c0_checkpoint.pth", map_location="cpu", weights_only=False)
    assert (ckpt["config"]["similarity"], ckpt["config"]["key_dim"]) == ("cosine", 128)
    assert state_options(ckpt["network"]) == {"similarity": "cosine", "key_dim": 128, "backbone": "resnet50"}


def test_later_stage_needs_the_same_options(cosine128, layouts, capsys):
    start = ["--stage", "3", "--id", "NULL", "--load_network", str(cosine128 / "c0_1.pth"), "--iterations", "1",
             *layouts, *TINY]
    assert train.main([*start, "--similarity", "cosine", "--key_dim", "128"]) == 0
    capsys.readouterr()
    assert train.main(start) == 1
    one_error_line(capsys.readouterr().err, "c0_1.pth", "--similarity cosine")
    assert train.main([*start, "--similarity", "cosine"]) == 1
    one_error_line(capsys.readouterr().err, "c0_1.pth", "--key_dim 128")


def test_evaluation_picks_up_the_checkpoint_similarity(cosine128, davis_template, tmp_path, capsys):  # noqa: F811
    davis = Path(shutil.copytree(davis_template, tmp_path / "DAVIS")) / "2017"
    model = cosine128 / "c0_1.pth"
    argv = ["--model", str(model), "--davis_path", str(davis), "--split", "val", "--no_score", "--device", "cpu"]
    core = build_predictor(eval_davis.get_args_parser().parse_args([*argv, "--output", str(tmp_path / "x")])).new_core()
    assert core.similarity == core.memory.similarity == "cosine" and core.network.key_dim == 128
    assert eval_davis.main([*argv, "--output", str(tmp_path / "o"), "--similarity", "cosine"]) == 0
    assert len(list((tmp_path / "o" / DAVIS_VIDEOS[0].name).glob("*.png"))) == DAVIS_VIDEOS[0].frames
    capsys.readouterr()
    assert eval_davis.main([*argv, "--output", str(tmp_path / "refused"), "--similarity", "l2"]) == 1
    line = one_error_line(capsys.readouterr().err, "--similarity", "cosine")
    assert "pass --similarity cosine" in line
    assert not (tmp_path / "refused").exists()


def test_dot_product_trains_and_resumes(tmp_path, layouts, capsys):
    common = ["--stage", "0", "--id", "d0", "--save_dir", str(tmp_path), *layouts, *TINY]
    assert train.main([*common, "--similarity", "dot", "--iterations", "1"]) == 0
    assert "memory read: dot similarity, C_k = 64" in capsys.readouterr().out
    resume = [*common, "--iterations", "2", "--load_model", str(tmp_path / "d0" / "d0_checkpoint.pth")]
    assert train.main([*resume, "--similarity", "l2"]) == 1  # a resumed run keeps the checkpoint's similarity
    one_error_line(capsys.readouterr().err, "d0_checkpoint.pth", "--similarity dot")
    assert train.main(resume) == 0
    assert load_network(tmp_path / "d0" / "d0_2.pth").similarity == "dot"


def test_the_experiments_table_uses_real_flags():
    """Every flag docs/experiments.md names in its similarity section is an option of train.py or eval_davis.py."""
    text = (ROOT / "docs" / "experiments.md").read_text()
    start = text.index("## Similarity, key size and memory schedules (Tables 1, 2, 8)")
    end = text.find("\n## ", start + 1)
    section = text[start:] if end < 0 else text[start:end]
    options = {o for p in (train.get_args_parser(), eval_davis.get_args_parser()) for a in p._actions
               for o in a.option_strings}
    flags = set(re.findall(r"(?<![\w-])--[a-z_]+", section)) - {"--nproc_per_node"}  # torchrun's own
    assert {"--similarity", "--key_dim", "--mem_every", "--include_last", "--split"} <= flags
    assert flags <= options, flags - options


# ------------------------------------------------------------- backbones of supplementary E's ensemble
@pytest.mark.parametrize("backbone", ["wrn50", "wrn50_aspp"])
def test_backbone_is_read_from_the_weights_shapes(tmp_path, backbone):
    torch.manual_seed(0)
    net = STCN(pretrained=False, backbone=backbone).eval()
    assert net.key_encoder.res2[0].conv1.weight.shape[0] == 128  # WideResNet-50-2: twice ResNet-50's width
    assert hasattr(net.key_encoder, "aspp") == backbone.endswith("_aspp")
    with torch.no_grad():
        k16, qv16, f16, f8, f4 = net.encode_key(torch.randn(1, 3, 64, 80))
    assert (f16.shape[1], f8.shape[1], f4.shape[1], k16.shape[1]) == (1024, 512, 256, 64)  # as ResNet-50's
    path = tmp_path / "w.pth"
    torch.save(net.state_dict(), path)
    plain = torch.load(path, weights_only=True)
    plain._metadata = {}  # the shapes alone say which backbone
    assert state_options(plain)["backbone"] == backbone
    loaded = load_network(path)
    assert loaded.backbone == backbone
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    with pytest.raises(CheckpointMismatchError):  # not into the paper's ResNet-50 network
        STCN(pretrained=False).load_weights(plain)


def test_aspp_starts_as_the_identity():
    """The ASPP's projection is zero at initialisation: f16 passes through unchanged (model/modules.py)."""
    from model.modules import ASPP

    aspp = ASPP(16, width=4)
    x = torch.randn(2, 16, 5, 7)
    assert torch.equal(aspp(x), x)
    torch.nn.init.normal_(aspp.project.weight)
    assert not torch.equal(aspp(x), x)


def test_wrn50_aspp_trains_and_evaluates(layouts, davis_template, tmp_path, capsys):  # noqa: F811
    save = tmp_path / "saves"
    common = ["--save_dir", str(save), "--iterations", "1", *layouts, *TINY]
    assert train.main(["--stage", "0", "--id", "w0", "--backbone", "wrn50_aspp", *common]) == 0
    assert "key encoder backbone: wrn50_aspp" in capsys.readouterr().out
    weights = save / "w0" / "w0_1.pth"
    assert train.main(["--stage", "3", "--id", "NULL", "--load_network", str(weights), *common]) == 1
    one_error_line(capsys.readouterr().err, "w0_1.pth", "--backbone wrn50_aspp")
    assert train.main(["--stage", "3", "--id", "w3", "--load_network", str(weights), "--backbone", "wrn50_aspp",
                       *common]) == 0
    davis = Path(shutil.copytree(davis_template, tmp_path / "DAVIS")) / "2017"
    argv = ["--model", str(save / "w3" / "w3_1.pth"), "--davis_path", str(davis), "--split", "val", "--no_score",
            "--device", "cpu"]
    core = build_predictor(eval_davis.get_args_parser().parse_args([*argv, "--output", str(tmp_path / "x")])).new_core()
    assert core.network.backbone == "wrn50_aspp"
    assert eval_davis.main([*argv, "--output", str(tmp_path / "o")]) == 0
    assert len(list((tmp_path / "o" / DAVIS_VIDEOS[0].name).glob("*.png"))) == DAVIS_VIDEOS[0].frames
