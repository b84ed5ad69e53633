"""End-to-end training on CPU: tiny fake clips, networks without downloads.

The real datasets (dataset/static_dataset.py, dataset/vos_dataset.py) are written separately; these
tests swap `train.build_datasets` for `fake_build_datasets`, which serves in-memory clips (random
texture with a moving square) with the same sample dict.
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


def fake_build_datasets(cfg) -> train.TrainData:
    options = {"n": 4, **FAKE_OPTIONS}
    ds = FakeClips(size=cfg.crop_size, two_objects=not cfg.stage.single_object, **options)
    return train.TrainData(ds, None if cfg.stage.data == "static" else ds.set_max_jump)


@pytest.fixture
def fake_data(monkeypatch):
    monkeypatch.setattr(train, "build_datasets", fake_build_datasets)
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
from training.distributed import cleanup, init_distributed
train.build_datasets = test_training.fake_build_datasets
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
