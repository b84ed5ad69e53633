"""ONNX export (scripts/export.py) and the exported backends (onnxruntime, OpenVINO) against PyTorch.

The export runs once for the module (it takes a while): the default exporter on the session's
random network. Parts are compared at two frame sizes and two object counts (the dynamic axes);
whole videos through InferenceCore and through eval_generic's --backend give the same masks.
"""
from __future__ import annotations

import builtins
import copy
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval_generic
from inference_core import InferenceCore, backends
from inference_core.backends import ExportedNetwork, compile_network, exported_network, onnxruntime_runner
from inference_core.core import probabilities_to_labels
from model.export import EXPORT_VERSION, PART_FILES, example_inputs, export_part, read_manifest, weights_digest
from scripts import export as export_script
from tests import helpers
from tests.eval_fixtures import generic_template  # noqa: F401
from tests.test_inference_core import moving_squares
from util import outputs as util_outputs
from util.outputs import MARKER

ROOT = Path(__file__).resolve().parents[1]
# OpenVINO's CPU plugin leaves threads behind that make a later fork() of the same process crash
# (resize_youtube's worker pool in tests/test_resize.py segfaulted): OpenVINO runs in a child process here.
ISOLATED = {"openvino"}
PARITY = dict(atol=1e-4, rtol=1e-4)  # exported part vs PyTorch, fp32 (issue 16)
SIZES_AND_OBJECTS = [((48, 64), 1), ((32, 80), 3)]  # (H, W) padded frame, K objects


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory, released_checkpoint) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "stcn_onnx"
    assert export_script.main(["--model", str(released_checkpoint), "--output", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def ort_net(onnx_dir, stcn_net) -> ExportedNetwork:
    return exported_network(stcn_net, "onnxruntime", onnx_dir)


def part_inputs(size: tuple[int, int], k: int, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    h, w = size[0] // 16, size[1] // 16
    masks = torch.rand(1, k, *size, generator=g)
    return {
        "key_encoder": {"frame": torch.randn(1, 3, *size, generator=g)},
        "value_encoder": {"frame": torch.randn(1, 3, *size, generator=g),
                          "f16": torch.randn(1, 1024, h, w, generator=g),
                          "masks": masks, "others": masks.sum(1, keepdim=True) - masks},
        "decoder": {"readout16": torch.randn(k, 512, h, w, generator=g), "qv16": torch.randn(1, 512, h, w, generator=g),
                    "f8": torch.randn(1, 512, 2 * h, 2 * w, generator=g),
                    "f4": torch.randn(1, 256, 4 * h, 4 * w, generator=g)},
    }


def test_manifest_names_the_weights_and_exporter(onnx_dir):
    manifest = read_manifest(onnx_dir)
    assert manifest["exporter"] in ("dynamo", "torchscript") and not manifest["single_object"]
    expected = [*PART_FILES.values(), "manifest.json", MARKER]  # the marker: a result of this project (util/outputs.py)
    assert sorted(p.name for p in onnx_dir.iterdir()) == sorted(expected)


@pytest.mark.parametrize("size,k", SIZES_AND_OBJECTS)
def test_each_part_matches_pytorch(ort_net, stcn_net, size, k):
    inputs = part_inputs(size, k)
    with torch.no_grad():
        expected = {"key_encoder": stcn_net.encode_key(**inputs["key_encoder"]),
                    "value_encoder": (stcn_net.encode_value(**inputs["value_encoder"]),),
                    "decoder": (stcn_net.decode(**inputs["decoder"]),)}
    got = {"key_encoder": ort_net.encode_key(**inputs["key_encoder"]),
           "value_encoder": (ort_net.encode_value(**inputs["value_encoder"]),),
           "decoder": (ort_net.decode(**inputs["decoder"]),)}
    assert got["value_encoder"][0].shape == (1, k, 512, size[0] // 16, size[1] // 16)
    assert got["decoder"][0].shape == (k, 1, *size)
    for part in expected:
        for e, g in zip(expected[part], got[part]):
            torch.testing.assert_close(g, e, **PARITY, msg=lambda m, p=part: f"{p}: {m}")


def test_torchscript_exporter_matches_pytorch(tmp_path, stcn_net):
    path = export_part("decoder", stcn_net, tmp_path / "decoder.onnx", exporter="torchscript")
    run, names = onnxruntime_runner(path)
    for size, k in SIZES_AND_OBJECTS:
        inputs = part_inputs(size, k, seed=1)["decoder"]
        with torch.no_grad():
            expected = stcn_net.decode(**inputs)
        got = torch.from_numpy(run({n: inputs[n].numpy() for n in names})[0])
        torch.testing.assert_close(got, expected, **PARITY)


def video_run(network, frames: int = 11, objects: int = 2) -> tuple[torch.Tensor, np.ndarray]:
    """Probabilities (T, K+1, H, W) and label maps (T, H, W) of a synthetic video through the core."""
    images, labels = moving_squares(frames=frames, h=40, w=56, objects=objects)
    core = InferenceCore(network)
    probs, maps = [], []
    for t, img in enumerate(images):
        prob = core.step(img, labels[0] if t == 0 else None, end=t == frames - 1)
        probs.append(prob)
        maps.append(probabilities_to_labels(prob, (40, 56), core.label_map()))
    return torch.stack(probs), np.stack(maps)


def assert_same_masks(expected: tuple[torch.Tensor, np.ndarray], got: tuple[torch.Tensor, np.ndarray]) -> None:
    """Probabilities within PARITY, and labels equal wherever they are not a float-rounding tie.

    A random network's objects are near ties almost everywhere (median margin between the two most
    likely labels ~2e-5 on this video), so its label maps cannot be compared bit for bit: a label may
    differ only where PyTorch's margin is within twice the largest probability difference.
    """
    (expected_prob, expected_labels), (got_prob, got_labels) = expected, got
    torch.testing.assert_close(got_prob, expected_prob, **PARITY)
    top2 = expected_prob.topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]).numpy()
    slack = 2 * float((got_prob - expected_prob).abs().max()) + 1e-7
    differ = got_labels != expected_labels
    assert (margin[differ] <= slack).all(), (margin[differ].max(), slack)
    assert (got_labels[0] == expected_labels[0]).all()  # the annotated frame


def exported_video_run(net, backend: str, onnx_dir: Path, tmp_path: Path) -> tuple[torch.Tensor, np.ndarray]:
    """video_run through an exported backend; in a child process for the backends in ISOLATED."""
    if backend not in ISOLATED:
        return video_run(exported_network(net, backend, onnx_dir))
    weights, out = tmp_path / "net.pth", tmp_path / "run.pt"
    torch.save(net.state_dict(), weights)
    code = (f"import sys, torch; sys.path.insert(0, {str(ROOT)!r}); torch.set_num_threads(2)\n"
            "from model.checkpoint import load_network\n"
            "from inference_core.backends import exported_network\n"
            "from tests.test_export import video_run\n"
            f"net = load_network({str(weights)!r})\n"
            f"torch.save(video_run(exported_network(net, {backend!r}, {str(onnx_dir)!r})), {str(out)!r})\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_whole_video_same_masks_as_pytorch(onnx_dir, stcn_net, backend, tmp_path):
    assert_same_masks(video_run(stcn_net), exported_video_run(stcn_net, backend, onnx_dir, tmp_path))


def test_compiled_network_same_masks_as_eager(stcn_net):
    # aot_eager: torch.compile's graph capture and decompositions without inductor's C++ build (fast)
    compiled = compile_network(copy.deepcopy(stcn_net), backend="aot_eager", dynamic=False)
    assert compiled.encode_key is not stcn_net.encode_key
    assert_same_masks(video_run(stcn_net, frames=6), video_run(compiled, frames=6))


def png_labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.array(Image.open(p)) for p in sorted(folder.glob("*.png"))}


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_eval_generic_backend_same_masks(tmp_path, generic_template, released_checkpoint, onnx_dir, backend):  # noqa: F811
    args = ["--model", str(released_checkpoint), "--data_path", str(generic_template), "--size", "32",
            "--device", "cpu"]
    assert eval_generic.main([*args, "--output", str(tmp_path / "pt")]) == 0
    exported = [*args, "--output", str(tmp_path / "ex"), "--backend", backend, "--onnx_dir", str(onnx_dir)]
    if backend in ISOLATED:
        subprocess.run([sys.executable, str(ROOT / "eval_generic.py"), *exported], cwd=ROOT, check=True,
                       capture_output=True)
    else:
        assert eval_generic.main(exported) == 0
    expected, got = png_labels(tmp_path / "pt" / "clip"), png_labels(tmp_path / "ex" / "clip")
    assert list(got) == list(expected) and len(got) == 8
    agreement = np.mean([(got[n] == expected[n]).mean() for n in expected])
    # random weights: near ties flip under float rounding (see assert_same_masks); here at most 1 in 10^4
    assert agreement >= 0.9999, agreement


def test_backend_exports_into_its_cache_once(tmp_path, monkeypatch, generic_template, released_checkpoint,  # noqa: F811
                                             onnx_dir, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("STCN_ONNX_CACHE", str(cache))
    # seed the cache as a previous run would have left it (the export itself is tested above)
    digest = read_manifest(onnx_dir)["weights"]
    shutil.copytree(onnx_dir, cache / f"{digest}-multi-v1")
    data = tmp_path / "data"
    shutil.copytree(generic_template, data)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    assert eval_generic.main(["--model", str(released_checkpoint), "--data_path", str(data), "--size", "32",
                              "--output", str(tmp_path / "out"), "--backend", "onnxruntime"]) == 0
    assert sorted(p.name for p in cache.iterdir()) == [f"{digest}-multi-v1"]  # reused, nothing else written
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


def test_cached_export_made_once_atomically(tmp_path, monkeypatch, stcn_net, onnx_dir):
    calls = []

    def fake_export(net, folder):  # the real export is tested above; here only the cache's bookkeeping
        calls.append(Path(folder))
        for name in [*PART_FILES.values(), "manifest.json"]:
            shutil.copy(onnx_dir / name, Path(folder) / name)

    monkeypatch.setattr(backends, "export_network", fake_export)
    first = backends.cached_export(stcn_net, tmp_path / "cache")
    assert calls and calls[0].parent == tmp_path / "cache" and calls[0] != first  # made beside, renamed in
    assert backends.cached_export(stcn_net, tmp_path / "cache") == first and len(calls) == 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.name]
    (first / "decoder.onnx").unlink()  # an incomplete folder in the cache is made again
    assert backends.cached_export(stcn_net, tmp_path / "cache") == first and len(calls) == 2
    assert (first / "decoder.onnx").is_file()


def test_cached_export_keeps_one_another_process_made_meanwhile(tmp_path, monkeypatch, stcn_net, onnx_dir):
    """Two torchrun ranks export the same weights at once: the later one keeps the first one's folder
    (which that rank may be loading) instead of replacing it."""
    cache = tmp_path / "cache"

    def copy_export(folder: Path) -> None:
        folder.mkdir(exist_ok=True)
        for name in [*PART_FILES.values(), "manifest.json"]:
            shutil.copy(onnx_dir / name, folder / name)

    def racing_export(net, folder):  # the other rank finishes first, while this one exports
        others = [p for p in cache.iterdir() if p != Path(folder)]
        final = cache / final_name
        if not others:
            copy_export(final)
            (final / "loaded-by-the-other-rank").touch()
        copy_export(Path(folder))

    monkeypatch.setattr(backends, "export_network", racing_export)
    final_name = f"{weights_digest(stcn_net.state_dict())}-multi-v{EXPORT_VERSION}"
    folder = backends.cached_export(stcn_net, cache)
    assert folder.name == final_name
    assert (folder / "loaded-by-the-other-rank").is_file()  # not replaced under the other rank
    assert [p.name for p in cache.iterdir()] == [folder.name]  # this rank's copy removed


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_onnx_dir_of_other_weights_is_one_error(tmp_path, generic_template, onnx_dir, capsys):  # noqa: F811
    torch.manual_seed(1)
    from model import STCN

    other = tmp_path / "other.pth"
    torch.save(STCN(pretrained=False).state_dict(), other)
    rc = eval_generic.main(["--model", str(other), "--data_path", str(generic_template), "--output",
                            str(tmp_path / "out"), "--backend", "onnxruntime", "--onnx_dir", str(onnx_dir),
                            "--device", "cpu"])
    line = one_error(capsys)
    assert rc == 1 and "--onnx_dir" in line and "other weights" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags,names", [
    (["--backend", "onnxruntime", "--amp"], "--amp"),
    (["--backend", "openvino", "--compile"], "--compile"),
    (["--onnx_dir", "somewhere"], "--onnx_dir"),
])
def test_conflicting_backend_flags_are_one_error(tmp_path, generic_template, released_checkpoint, capsys,  # noqa: F811
                                                 flags, names):
    rc = eval_generic.main(["--model", str(released_checkpoint), "--data_path", str(generic_template),
                            "--output", str(tmp_path / "out"), "--device", "cpu", *flags])
    assert rc == 1 and names in one_error(capsys)
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_folder_with_other_files(tmp_path, released_checkpoint, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    rc = export_script.main(["--model", str(released_checkpoint), "--output", str(out)])
    assert rc == 1 and "not a result of this project" in one_error(capsys)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_example_inputs_cover_every_part():
    for part in PART_FILES:
        assert example_inputs(part)
    assert "others" not in example_inputs("value_encoder", single_object=True)


# ------------------------------------------------------------------ damaged exports, a full disk (issue 22)
def damaged_copy(onnx_dir: Path, folder: Path, damage: str, part: str = "decoder.onnx") -> Path:
    """`onnx_dir` (hard links) with `part` truncated to half its bytes or zeroed, as a user might find it."""
    folder.mkdir()
    for entry in onnx_dir.iterdir():
        if entry.name != part:
            (folder / entry.name).hardlink_to(entry)
    size = (onnx_dir / part).stat().st_size
    with open(onnx_dir / part, "rb") as f:
        head = f.read(size // 2)
    (folder / part).write_bytes(head if damage == "truncated" else bytes(size))
    return folder


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_a_damaged_onnx_file_is_one_error_naming_it(tmp_path, generic_template, released_checkpoint,  # noqa: F811
                                                    onnx_dir, capsys, backend, damage):
    bad = damaged_copy(onnx_dir, tmp_path / "onnx", damage)
    argv = ["--model", str(released_checkpoint), "--data_path", str(generic_template), "--size", "32", "--device",
            "cpu", "--output", str(tmp_path / "out"), "--backend", backend, "--onnx_dir", str(bad)]
    if backend in ISOLATED:  # in a child: also no runtime's own lines on the real stderr
        done = subprocess.run([sys.executable, str(ROOT / "eval_generic.py"), *argv], cwd=ROOT, capture_output=True,
                              text=True)
        rc, err = done.returncode, done.stderr
    else:
        rc, _, err = helpers.run_main(eval_generic.main, argv, capsys)
    line = helpers.one_error(rc, err, str(bad / "decoder.onnx"), "scripts/export.py", f"--output {bad}")
    assert "damaged" in line
    assert not (tmp_path / "out").exists()


def test_predictor_with_a_damaged_onnx_file_raises_one_user_error(tmp_path, released_checkpoint, onnx_dir):
    from inference_core import Predictor
    from util.errors import UserError

    bad = damaged_copy(onnx_dir, tmp_path / "onnx", "truncated", part="key_encoder.onnx")
    with pytest.raises(UserError, match="re-export|export it again") as info:
        Predictor.from_checkpoint(released_checkpoint, device="cpu", backend="onnxruntime", onnx_dir=bad)
    assert info.value.where == str(bad / "key_encoder.onnx")


def test_manifest_differing_only_in_single_object_says_so(tmp_path, generic_template, released_checkpoint,  # noqa: F811
                                                          onnx_dir, capsys):
    folder = tmp_path / "onnx"
    folder.mkdir()
    for name in PART_FILES.values():
        (folder / name).hardlink_to(onnx_dir / name)
    manifest = read_manifest(onnx_dir) | {"single_object": True}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rc, _, err = helpers.run_main(eval_generic.main, [
        "--model", released_checkpoint, "--data_path", generic_template, "--output", tmp_path / "out", "--device",
        "cpu", "--backend", "onnxruntime", "--onnx_dir", folder], capsys)
    line = helpers.one_error(rc, err, "--onnx_dir", "single-object", "--single_object", "multi-object network is run")
    assert "other weights" not in line
    assert not (tmp_path / "out").exists()


def test_export_on_a_full_disk_names_the_file(tmp_path, released_checkpoint, capsys, monkeypatch):
    out = tmp_path / "onnx"
    real_open = builtins.open

    class FullDisk(io.RawIOBase):  # every write fails as on a full disk: an OSError without a file name
        def writable(self) -> bool:
            return True

        def write(self, data) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).endswith(".onnx"):
            real_open(file, mode, *args, **kwargs).close()  # the file is created, its bytes do not fit
            return FullDisk()
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_on_a_full_disk)
    rc, _, err = helpers.run_main(export_script.main, ["--model", released_checkpoint, "--output", out, "--exporter",
                                                       "torchscript"], capsys)
    line = helpers.one_error(rc, err, f"{out / 'key_encoder.onnx'}:", os.strerror(errno.ENOSPC), "free some space")
    assert "permission" not in line and ".partial" not in line
    assert not out.exists() and not helpers.leftovers(tmp_path)


def test_export_to_a_full_disk_is_refused_before_exporting(tmp_path, released_checkpoint, capsys, monkeypatch):
    def no_space(*args, dir=None, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(dir) / ".stcn-probe-x"))

    monkeypatch.setattr(util_outputs.tempfile, "mkstemp", no_space)
    out = tmp_path / "onnx"
    rc, _, err = helpers.run_main(export_script.main, ["--model", released_checkpoint, "--output", out], capsys)
    line = helpers.one_error(rc, err, str(out), "the disk is full", "free some space")
    assert "permission" not in line
    assert not out.exists()
