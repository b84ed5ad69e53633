"""End-to-end training on CPU: tiny fake clips, networks without downloads.

The real datasets (dataset/static_dataset.py, dataset/vos_dataset.py) are written separately; these
tests swap the trainer's `build_datasets` (`training.trainer`) for `fake_build_datasets`, which serves
in-memory clips (random texture with a moving square) with the same sample dict.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

import train
from dataset.transforms import IMAGENET_MEAN, IMAGENET_STD
from model.network import STCN
from tests.helpers import run_torchrun
from training import trainer
from training.data import TrainData
from training.train_wrapper import STCNTrainWrapper

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--no_pretrained", "--num_workers", "0", "--crop_size", "32", "--batch_size", "1"]


class FakeClips(Dataset):
    """Three frames of a textured background with one or two squares moving across it.

    With `fixed=True` every item is the same clip (for overfitting); otherwise items are drawn from
    the global generators (which the trainer seeds per sample). `nan_at` poisons that many-th fetch.
    """

    def __init__(self, n: int, size: int, two_objects: bool, fixed: bool = False, nan_at: int | None = None):
        self.n, self.size, self.two, self.fixed, self.nan_at = n, size, two_objects, fixed, nan_at
        self.max_jump = None
        self.fetches = 0

    def set_max_jump(self, n: int) -> None:
        self.max_jump = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        self.fetches += 1
        g = torch.Generator().manual_seed(1234 + index) if self.fixed else None
        s = self.size
        rgb = torch.rand(3, 3, s, s, generator=g) * 0.3
        gt = torch.zeros(3, 1, s, s)
        sec = torch.zeros(3, 1, s, s)
        x0, y0 = torch.randint(0, s // 2, (2,), generator=g).tolist()
        side = s // 3
        for f in range(3):
            x, y = x0 + 2 * f, y0 + f
            gt[f, 0, y:y + side, x:x + side] = 1
            rgb[f, 0, y:y + side, x:x + side] += 0.6
            if self.two:
                sec[f, 0, s - y - side // 2:s - y, s - x - side // 2:s - x] = 1
                rgb[f, 1] += 0.6 * sec[f, 0]
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        rgb = (rgb - mean) / std
        if self.nan_at is not None and self.fetches >= self.nan_at:
            rgb = rgb * float("nan")
        sample = {"rgb": rgb, "gt": gt, "cls_gt": gt[:, 0].long(), "info": {"name": f"clip{index}"}}
        if self.two:
            sec = sec * (1 - gt)
            sample.update(sec_gt=sec, cls_gt=(gt[:, 0] + 2 * sec[:, 0]).long(), selector=torch.tensor([1.0, 1.0]))
        return sample


FAKE_OPTIONS: dict = {}  # keyword arguments for FakeClips, set by a test


def fake_build_datasets(cfg) -> TrainData:
    options = {"n": 4, **FAKE_OPTIONS}
    ds = FakeClips(size=cfg.crop_size, two_objects=not cfg.stage.single_object, **options)
    return TrainData(ds, None if cfg.stage.data == "static" else ds.set_max_jump)


@pytest.fixture
def fake_data(monkeypatch):
    monkeypatch.setattr(trainer, "build_datasets", fake_build_datasets)
    FAKE_OPTIONS.clear()
    yield FAKE_OPTIONS
    FAKE_OPTIONS.clear()


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


# ------------------------------------------------------------------------------ the wrapper alone
@pytest.mark.parametrize("single", [True, False])
def test_wrapper_shapes_and_gradient_through_memory(single):
    torch.manual_seed(0)
    wrapper = STCNTrainWrapper(STCN(single_object=single, pretrained=False)).train()
    batch = torch.utils.data.default_collate([FakeClips(2, 32, not single)[i] for i in range(2)])
    out = wrapper(batch)
    k = 1 if single else 2
    assert out["logits_1"].shape == out["logits_2"].shape == (2, k + 1, 32, 32)
    assert out["mask_2"].shape == (2, 1, 32, 32)
    assert ("sec_mask_2" in out) == (not single)
    # frame 1's prediction is not detached: frame 2's output depends on it through the memory
    assert out["logits_2"].grad_fn is not None and out["mask_1"].requires_grad


# --------------------------------------------------------------------------------------- behaviour
def test_loss_falls_when_overfitting_one_clip(tmp_path, fake_data):
    fake_data.update(n=1, fixed=True)
    args = ["--stage", "0", "--id", "fit", "--save_dir", str(tmp_path), "--iterations", "12",
            "--lr", "1e-4", "--log_every", "3", *TINY, "--crop_size", "48"]
    assert train.main(args) == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "fit" / "tensorboard"))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("train/total_loss")]
    assert len(losses) == 4
    assert losses[-1] < 0.5 * losses[0], losses
    assert {"train/iou", "train/lr", "train/p", "train/data_time", "train/it_per_sec"} <= set(acc.Tags()["scalars"])
    assert (tmp_path / "fit" / "fit_12.pth").is_file()


def test_resume_matches_uninterrupted_run(tmp_path, fake_data):
    common = ["--stage", "3", "--save_dir", str(tmp_path), "--iterations", "4", "--steps", "3",
              "--checkpoint_every", "2", "--log_every", "100", *TINY]
    assert train.main(["--id", "full", *common]) == 0

    class Crash(RuntimeError):
        pass

    original = FakeClips.__getitem__

    def crash_on_third(self, index):
        if self.fetches >= 2:
            raise Crash("simulated crash while loading")
        return original(self, index)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FakeClips, "__getitem__", crash_on_third)
        with pytest.raises(Crash):
            train.main(["--id", "cut", *common])
    ckpt = _load(tmp_path / "cut" / "cut_checkpoint.pth")
    assert ckpt["iteration"] == 2
    assert train.main(["--id", "cut", "--load_model", str(tmp_path / "cut" / "cut_checkpoint.pth"), *common]) == 0

    full, resumed = _load(tmp_path / "full" / "full_checkpoint.pth"), _load(tmp_path / "cut" / "cut_checkpoint.pth")
    assert full["iteration"] == resumed["iteration"] == 4
    assert full["scheduler"]["last_epoch"] == resumed["scheduler"]["last_epoch"] == 4
    lrs = [state["optimizer"]["param_groups"][0]["lr"] for state in (full, resumed)]
    assert lrs[0] == lrs[1] == pytest.approx(1e-6)
    assert (full["epoch"], full["epoch_step"]) == (resumed["epoch"], resumed["epoch_step"])
    torch.testing.assert_close(full["network"], resumed["network"], rtol=0, atol=0)
    torch.testing.assert_close(_load(tmp_path / "full" / "full_4.pth"), _load(tmp_path / "cut" / "cut_4.pth"))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, fake_data, capsys):
    fake_data.update(nan_at=3)
    args = ["--stage", "0", "--id", "nan", "--save_dir", str(tmp_path), "--iterations", "5",
            "--checkpoint_every", "2", *TINY]
    assert train.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "loss is nan at iteration 3" in err[0], err
    assert _load(tmp_path / "nan" / "nan_checkpoint.pth")["iteration"] == 2
    assert not (tmp_path / "nan" / "nan_3.pth").exists()


def test_user_errors_are_one_line(tmp_path, fake_data, capsys):
    missing = tmp_path / "nope.pth"
    assert train.main(["--stage", "3", "--id", "NULL", "--load_network", str(missing), *TINY]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {missing}: "), err
    multi = tmp_path / "multi.pth"
    torch.save(STCN(pretrained=False).state_dict(), multi)
    assert train.main(["--stage", "0", "--id", "NULL", "--load_network", str(multi), *TINY]) == 1
    assert "single-object" in capsys.readouterr().err
    assert train.main(["--stage", "3", "--id", "NULL", "--crop_size", "30", "--no_pretrained"]) == 1
    assert "--crop_size 30" in capsys.readouterr().err


def test_original_flags_parse():
    parser = train.get_args_parser()
    args = parser.parse_args(["--local_rank=1", "--id", "x", "--stage", "2", "--steps", "10", "20", "--no_amp",
                              "--benchmark", "--debug", "--num_workers", "2", "--lr", "1e-4", "--gamma", "0.5"])
    assert (args.local_rank, args.stage, args.steps, args.no_amp) == (1, 2, [10, 20], True)
    assert parser.parse_args(["--local-rank", "3"]).local_rank == 3  # torch.distributed.launch in torch 2.x
    defaults = parser.parse_args([])
    assert (defaults.static_root, defaults.bl_root, defaults.yv_root, defaults.davis_root) == (
        "../static", "../BL30K", "../YouTube", "../DAVIS")


def test_existing_run_is_not_overwritten(tmp_path, fake_data, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "r_checkpoint.pth").write_bytes(b"old")
    assert train.main(["--stage", "0", "--id", "r", "--save_dir", str(tmp_path), *TINY]) == 1
    assert "--load_model" in capsys.readouterr().err
    assert (tmp_path / "r" / "r_checkpoint.pth").read_bytes() == b"old"


def test_null_id_trains_without_saving(tmp_path, fake_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train.main(["--stage", "0", "--id", "NULL", "--iterations", "1", *TINY]) == 0
    assert not (tmp_path / "saves").exists()


# ------------------------------------------------------------------ 2 processes, every stage, Gloo
RUNNER = """
import sys
sys.path[:0] = [{root!r}, {tests!r}]
import train, test_training
from training import trainer
from training.distributed import cleanup, init_distributed
trainer.build_datasets = test_training.fake_build_datasets
ctx = init_distributed()  # from torchrun's environment; main() reuses this group for every stage
save = {save!r}
common = ["--save_dir", save, "--log_every", "1", "--log_image_every", "2",
          "--no_pretrained", "--num_workers", "0", "--crop_size", "32", "--batch_size", "1"]
# two iterations of each network type (DDP reports unused parameters on the second), one for the rest
runs = [
    ["--stage", "0", "--id", "s0", "--iterations", "2"],
    ["--stage", "1", "--id", "s01", "--iterations", "2", "--load_network", save + "/s0/s0_2.pth"],
    ["--stage", "2", "--id", "s012", "--iterations", "1", "--load_network", save + "/s01/s01_2.pth"],
    ["--stage", "3", "--id", "s03", "--iterations", "1", "--load_network", save + "/s0/s0_2.pth"],
]
codes = [train.main(common + r) for r in runs]
cleanup(ctx)
# one file per rank: two processes printing to one pipe interleave their lines
with open(save + "/codes_rank%d.txt" % ctx.rank, "w") as f:
    f.write("codes %s world %d" % (codes, ctx.world_size))
sys.exit(max(codes))
"""


def test_two_process_gloo_every_stage(tmp_path):
    runner = tmp_path / "runner.py"
    save = tmp_path / "saves"
    runner.write_text(textwrap.dedent(RUNNER.format(root=str(ROOT), tests=str(ROOT / "tests"), save=str(save))))
    proc = run_torchrun(runner, [], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for rank in (0, 1):
        assert (save / f"codes_rank{rank}.txt").read_text() == "codes [0, 0, 0, 0] world 2"
    assert "global batch 2" in proc.stdout
    reference = set(STCN(pretrained=False).state_dict())
    for run, single, its in (("s0", True, 2), ("s01", False, 2), ("s012", False, 1), ("s03", False, 1)):
        weights = _load(save / run / f"{run}_{its}.pth")
        assert set(weights) == reference and not any(k.startswith("module.") for k in weights)
        assert weights["value_encoder.conv1.weight"].shape[1] == (4 if single else 5)
        assert _load(save / run / f"{run}_checkpoint.pth")["world_size"] == 2


def test_every_stage_trains_on_real_dataset_layouts(tmp_path):
    """build_datasets on tiny synthetic folders in each layout (the paper's video lists honoured)."""
    from dataset.util import load_subset
    from tests import synthetic_data as sd

    davis_names = sorted(load_subset(ROOT / "dataset" / "subsets" / "davis_subset.txt"))[:2]
    yv_names = sorted(load_subset(ROOT / "dataset" / "subsets" / "yv_subset.txt"))[:2]
    sd.make_static_root(tmp_path, images_per_set=1, fss_classes=1)
    sd.make_bl30k_root(tmp_path, videos=1, frames=4)
    sd.make_davis_root(tmp_path, videos=davis_names, frames=4)
    yv = sd.make_youtube_root(tmp_path, videos=2, frames=3, valid_videos=0) / "train_480p"
    for sub in ("JPEGImages", "Annotations"):  # give the synthetic videos names from the paper's list
        for old, new in zip(sorted((yv / sub).iterdir()), yv_names):
            old.rename(yv / sub / new)
    roots = ["--static_root", str(tmp_path / "static"), "--bl_root", str(tmp_path / "BL30K"),
             "--davis_root", str(tmp_path / "DAVIS"), "--yv_root", str(tmp_path / "YouTube")]
    for stage in ("0", "1", "3"):
        args = ["--stage", stage, "--id", f"s{stage}", "--save_dir", str(tmp_path / "saves"),
                "--iterations", "1", *roots, *TINY]
        assert train.main(args) == 0, stage
        assert (tmp_path / "saves" / f"s{stage}" / f"s{stage}_1.pth").is_file()
    # a missing root is reported before any worker starts
    assert train.main(["--stage", "2", "--id", "NULL", "--davis_root", str(tmp_path / "nope"), *roots[:6], *TINY]) == 1


# ------------------------------------------------------------- a run's own files, resuming, own videos
@pytest.fixture(scope="module")
def static_run(tmp_path_factory) -> Path:
    """A real one-iteration stage-0 run of train.py on synthetic static images: its run folder."""
    from tests import synthetic_data as sd

    root = tmp_path_factory.mktemp("static_run")
    sd.make_static_root(root, images_per_set=1, fss_classes=1)
    args = ["--stage", "0", "--id", "s0", "--save_dir", str(root / "saves"), "--static_root", str(root / "static"),
            "--iterations", "1", *TINY]
    assert train.main(args) == 0
    return root / "saves" / "s0"


def test_training_checkpoints_load_as_weights_everywhere(static_run, tmp_path, capsys):
    """A <id>_checkpoint.pth (and one written with numpy's RNG state as numpy objects, as before) loads
    in eval_generic.py, Predictor.from_checkpoint, train.py --load_network and --load_model."""
    import numpy as np

    import eval_generic
    from inference_core import Predictor
    from tests.eval_fixtures import VideoSpec, make_generic

    checkpoint = static_run / "s0_checkpoint.pth"
    state = torch.load(checkpoint, weights_only=True)  # plain types only: no allowance needed
    old = tmp_path / "old" / "old_checkpoint.pth"
    old.parent.mkdir()
    state["rng"]["numpy"] = np.random.get_state()
    torch.save(state, old)
    data = make_generic(tmp_path / "data", [VideoSpec("v", 48, 64, 3, {1: 0})])
    static = static_run.parents[1] / "static"
    for k, path in enumerate((checkpoint, old)):
        out = tmp_path / f"out{k}"
        assert eval_generic.main(["--model", str(path), "--data_path", str(data), "--output", str(out),
                                  "--size", "32", "--device", "cpu"]) == 0, capsys.readouterr().err
        assert len(list((out / "v").glob("*.png"))) == 3
        assert Predictor.from_checkpoint(path, device="cpu", size=32).network is not None
        assert train.main(["--stage", "0", "--id", "NULL", "--load_network", str(path), "--static_root", str(static),
                           "--iterations", "1", *TINY]) == 0, capsys.readouterr().err
    # the old checkpoint resumes (its numpy state restored), in its own folder
    assert train.main(["--id", "old", "--save_dir", str(tmp_path), "--load_model", str(old), "--iterations", "2",
                       "--static_root", str(static), *TINY]) == 0, capsys.readouterr().err
    assert torch.load(old, weights_only=True)["iteration"] == 2


def test_rng_states_survive_the_safe_loader_exactly(tmp_path):
    import random

    import numpy as np

    from training.distributed import rng_states, set_rng_states

    np.random.seed(1)
    np.random.randn()  # numpy caches the second gaussian: part of the state
    random.seed(2)
    torch.manual_seed(3)
    torch.save(rng_states(), tmp_path / "rng.pth")

    def draws():
        return np.random.randn(3).tolist(), np.random.rand(2).tolist(), random.random(), torch.rand(2).tolist()

    expected = draws()
    np.random.seed(9)
    random.seed(9)
    torch.manual_seed(9)
    set_rng_states(torch.load(tmp_path / "rng.pth", weights_only=True))
    assert draws() == expected


def test_run_name_is_not_a_path(tmp_path, fake_data, capsys):
    saves = tmp_path / "a" / "saves"
    for name in ("../../escaped", "x/y", "..", ""):
        assert train.main(["--stage", "0", "--id", name, "--save_dir", str(saves), "--iterations", "1", *TINY]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --id {name}: a run name is a name, not a path"), err
    assert not list(tmp_path.iterdir())  # neither the escaped folder nor --save_dir was made


def test_last_line_names_every_file_written(tmp_path, fake_data, capsys):
    args = ["--stage", "0", "--id", "w", "--save_dir", str(tmp_path), "--iterations", "4", "--save_every", "2", *TINY]
    assert train.main(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    run = tmp_path / "w"
    weights = f"{run / 'w_2.pth'}, {run / 'w_4.pth'}"
    assert last == f"wrote the weights {weights} and the checkpoint {run / 'w_checkpoint.pth'}"


def test_resumed_run_takes_its_settings_from_the_checkpoint(tmp_path, fake_data, capsys):
    first = ["--stage", "3", "--id", "r", "--save_dir", str(tmp_path), "--iterations", "1", "--steps", "5",
             "--lr", "2e-5", "--seed", "7", *TINY]
    assert train.main(first) == 0
    checkpoint = tmp_path / "r" / "r_checkpoint.pth"
    capsys.readouterr()
    # only what a resume needs: --stage, --crop_size, --batch_size, --lr, --steps, --seed come back from the checkpoint
    resume = ["--id", "r", "--save_dir", str(tmp_path), "--load_model", str(checkpoint), "--iterations", "2",
              "--no_pretrained", "--num_workers", "0"]
    assert train.main(resume) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()
    assert "Warning" not in err and "batch 1 per process" in out and "lr 2e-05 x0.1 at [5]" in out
    config = torch.load(checkpoint, weights_only=True)["config"]
    stage = config["stage"]
    assert (stage["stage"], stage["batch_size"], stage["lr"], stage["steps"]) == (3, 1, 2e-5, (5,))
    assert (config["crop_size"], config["seed"]) == (32, 7)
    assert stage["iterations"] == 2  # --iterations may train a run further
    # a flag that contradicts the checkpoint is refused with one line; the same value is accepted
    for flag, value, saved in (("--crop_size", "48", "--crop_size 32"), ("--batch_size", "2", "--batch_size 1"),
                               ("--stage", "2", "--stage 3"), ("--similarity", "dot", "--similarity l2"),
                               ("--all_videos", None, "no --all_videos")):
        extra = [flag] if value is None else [flag, value]
        assert train.main([*resume, "--iterations", "3", *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {checkpoint}: was saved by a run with {saved}"), err
    assert torch.load(checkpoint, weights_only=True)["iteration"] == 2
    assert train.main([*resume, "--iterations", "3", "--crop_size", "32", "--stage", "3"]) == 0


def test_imagenet_offline_error_names_every_file_needed(tmp_path, fake_data, capsys, monkeypatch):
    import urllib.error

    from model import resnet

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(resnet.models.WeightsEnum, "get_state_dict", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert train.main(["--stage", "0", "--id", "NULL", "--num_workers", "0", "--crop_size", "32",
                       "--batch_size", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'hub' / 'checkpoints'}: "), err
    names = [Path(url).name for url in resnet.imagenet_files()]
    assert len(names) == 2 and all(name in err[0] for name in names) and "--no_pretrained" in err[0]
    docs = " ".join((ROOT / "docs" / "training.md").read_text().split())
    assert "files named in the error message" in docs and all(f"`{name}`" in docs for name in names)


def test_help_is_fast_complete_and_shows_defaults():
    """--help answers before torch is imported, every flag has help text, defaults are shown."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "train.py"), "--help"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "numpy" not in imported
    text = " ".join(proc.stdout.split())  # argparse wraps the lines
    assert "(default: 384)" in text and "(default: saves)" in text and "(default: NULL)" in text
    for action in train.get_args_parser()._actions:
        assert action.help, action.dest
    from model.memory_util import SIMILARITIES
    from model.resnet import KEY_BACKBONES
    from training.config import KEY_DIMS

    choices = {action.dest: action.choices for action in train.get_args_parser()._actions}
    assert (choices["similarity"], choices["key_dim"], choices["backbone"]) == (SIMILARITIES, KEY_DIMS, KEY_BACKBONES)


def _blank(png: Path) -> None:
    """The mask at `png` with every pixel background (same size, same kind of PNG)."""
    import numpy as np
    from PIL import Image

    from tests.synthetic_data import save_palette_png

    with Image.open(png) as img:
        mode, size = img.mode, img.size
    zeros = np.zeros(size[::-1], np.uint8)
    save_palette_png(png, zeros) if mode == "P" else Image.fromarray(zeros).save(png)


def test_own_videos_train_with_all_videos_and_unusable_ones_are_named(tmp_path, capsys):
    """Stages 2/3 on videos outside the paper's lists (--all_videos); a video without three frames or
    without any object is left out with a note naming it; nothing usable left is one error line."""
    from tests import synthetic_data as sd

    davis = sd.make_davis_root(tmp_path, videos=["mine-a", "mine-b", "mine-c"], frames=4)
    sd.make_youtube_root(tmp_path, videos=2, frames=3, valid_videos=0)
    base = davis / "2017" / "trainval"
    for t in range(1, 4):  # mine-c keeps one frame
        (base / "JPEGImages" / "480p" / "mine-c" / f"{t:05d}.jpg").unlink()
    for png in (base / "Annotations" / "480p" / "mine-b").glob("*.png"):
        _blank(png)
    args = ["--stage", "3", "--id", "NULL", "--iterations", "1", "--davis_root", str(davis),
            "--yv_root", str(tmp_path / "YouTube"), *TINY]
    capsys.readouterr()
    assert train.main(args) == 1  # the paper's lists name none of these videos
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and "none of the 60 videos" in err[0] and "train.py --all_videos trains on every" in err[0]
    assert train.main([*args, "--all_videos"]) == 0
    out, err = capsys.readouterr()
    im_root = base / "JPEGImages" / "480p"
    assert f"note: {im_root}: skipped 1 video(s) with fewer than 3 frames: mine-c" in err.splitlines()
    assert f"note: {im_root}: skipped 1 video(s) with no object in any annotation: mine-b" in err.splitlines()
    assert "Traceback" not in err and "every one under --davis_root" in out
    for png in (base / "Annotations" / "480p" / "mine-a").glob("*.png"):
        _blank(png)
    assert train.main([*args, "--all_videos"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")]
    assert len(err) == 1 and err[0].startswith(f"error: {im_root}: no video with at least 3 frames and an object"), err
    assert "1 with fewer than 3 frames; 2 with no object in any annotation" in err[0]


def test_static_images_with_empty_masks_are_named(tmp_path, capsys):
    """Stage 0: an image whose mask is empty trains as background (as in the original), with a note;
    every mask empty is one error line."""
    from tests import synthetic_data as sd

    static = sd.make_static_root(tmp_path, images_per_set=1, fss_classes=1)
    _blank(static / "ecssd" / "1.png")
    args = ["--stage", "0", "--id", "NULL", "--iterations", "1", "--static_root", str(static), *TINY]
    assert train.main(args) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert notes == [f"note: {static / 'ecssd'}: 1 of 1 image(s) have an empty mask and train as background only: "
                     "1.jpg"]
    for png in static.rglob("*.png"):
        _blank(png)
    assert train.main(args) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note: ")]
    assert err == [f"error: {static}: every mask is empty (no object pixel); the masks are grey PNGs with the "
                   "object at 255 and the background at 0"], err
