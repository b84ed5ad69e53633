"""Several videos stepped together (inference_core/batch.py, `--video_batch`) against one at a time."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval_davis
import eval_generic
import eval_youtube
from inference_core import InferenceCore, Predictor
from inference_core.batch import BatchItem, fresh_core, step_cores
from tests.eval_fixtures import VideoSpec, davis_template, make_generic, youtube_template  # noqa: F401 - fixtures
from tests.helpers import PROB_TOL, assert_same_labels


def squares_video(frames: int, h: int, w: int, objects: int, seed: int, starts: list[int] | None = None):
    """Normalised frames and the mask given on each frame (None where nothing starts).

    Object o (label 10 * (o + 1), not contiguous) is a textured square moving right; it is
    annotated on frame starts[o] (default 0) and only there.
    """
    starts = starts or [0] * objects
    g = torch.Generator().manual_seed(seed)
    bg = torch.rand(3, h, w, generator=g) * 0.5
    colours = torch.rand(objects, 3, generator=g)
    images, masks = [], []
    for t in range(frames):
        img = bg.clone()
        given = torch.zeros(h, w, dtype=torch.long)
        for o in range(objects):
            if t < starts[o]:
                continue
            y, x = 3 + 11 * o, 2 + 2 * t + 4 * o
            img[:, y : y + 9, x : x + 9] = colours[o][:, None, None]
            if t == starts[o]:
                given[y : y + 9, x : x + 9] = 10 * (o + 1)
        images.append((img - 0.45) / 0.25)
        masks.append(given if given.any() else None)
    return images, masks


# (frames, H, W, objects, first frame of each object): 1, 2 and 3 objects, lengths 9, 6 and 11; the
# first two pad to 48 x 64 (one batch), the third to 64 x 80; video 1 has nothing to track on frame 0
# and gets an object on frame 3, video 2 a third object on frame 4
VIDEOS = [(9, 40, 56, 1, [0]), (6, 48, 64, 2, [1, 3]), (11, 50, 70, 3, [0, 0, 4])]


def alone(net, video, **options) -> tuple[list[torch.Tensor], InferenceCore]:
    images, masks = video
    core = InferenceCore(net, **options)
    return [core.step(img, m, end=t == len(images) - 1) for t, (img, m) in enumerate(zip(images, masks))], core


def together(net, videos, **options) -> tuple[list[list[torch.Tensor]], list[InferenceCore]]:
    """Every video stepped in one `step_cores` call per frame index; a finished video leaves the batch."""
    first = InferenceCore(net, **options)
    cores = [first] + [fresh_core(first) for _ in videos[1:]]
    outs: list[list[torch.Tensor]] = [[] for _ in videos]
    for t in range(max(len(images) for images, _ in videos)):
        live = [k for k, (images, _) in enumerate(videos) if t < len(images)]
        items = [BatchItem(cores[k], videos[k][0][t], videos[k][1][t], None, t == len(videos[k][0]) - 1) for k in live]
        for k, prob in zip(live, step_cores(items)):
            outs[k].append(prob)
    return outs, cores


@pytest.fixture(scope="module")
def videos():
    return [squares_video(n, h, w, k, seed=i, starts=s) for i, (n, h, w, k, s) in enumerate(VIDEOS)]


@pytest.mark.parametrize("options", [{}, {"object_batch": 2, "include_last": True, "mem_every": 3}])
def test_batched_videos_equal_one_at_a_time(stcn_net, videos, options):
    batched, cores = together(stcn_net, videos, **options)
    for video, outs, core in zip(videos, batched, cores):
        expected, ref = alone(stcn_net, video, **options)
        assert [o.shape for o in outs] == [e.shape for e in expected]
        for o, e in zip(outs, expected):
            torch.testing.assert_close(o, e, atol=PROB_TOL, rtol=0)
            assert_same_labels(o, e)
        assert core.labels == ref.labels and core.memory.frame_ids == ref.memory.frame_ids
        assert core.last_mem_index == ref.last_mem_index
    assert [c.labels for c in cores] == [[10], [10, 20], [10, 20, 30]]
    assert batched[1][0].shape[0] == 1  # nothing tracked yet on that frame: background only


def test_one_core_is_bit_identical_to_step(stcn_net, videos):
    expected, _ = alone(stcn_net, videos[2], object_batch=2)
    core = InferenceCore(stcn_net, object_batch=2)
    images, masks = videos[2]
    for t, (img, m) in enumerate(zip(images, masks)):
        (prob,) = step_cores([(core, img, m, None, t == len(images) - 1)])
        assert torch.equal(prob, expected[t])


def test_cores_must_be_distinct_and_share_the_network(stcn_net, videos):
    img = videos[0][0][0]
    core = InferenceCore(stcn_net)
    with pytest.raises(ValueError, match="more than once"):
        step_cores([(core, img), (core, img)])
    other = InferenceCore(type(stcn_net)(pretrained=False).eval())
    with pytest.raises(ValueError, match="share one network"):
        step_cores([(core, img), (other, img)])
    with pytest.raises(ValueError, match="without a mask"):
        step_cores([(core, img), (InferenceCore(stcn_net), img, None, [3])])
    assert step_cores([]) == []
    assert core.frame_index == -1  # a refused batch steps no core


# ------------------------------------------------------------------------------------- the CLIs
GENERIC = (  # three videos: 1, 2 and 3 objects, different lengths and sizes, objects starting later
    VideoSpec("one", 48, 64, 5, {1: 0}),
    VideoSpec("two", 40, 72, 9, {1: 0, 2: 3}),
    VideoSpec("three", 56, 64, 7, {1: 0, 2: 0, 4: 2}),
)


@pytest.fixture(scope="module")
def generic_three(tmp_path_factory) -> Path:
    return make_generic(tmp_path_factory.mktemp("generic_three"), GENERIC, seed=30)


def masks_of(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): np.array(Image.open(p)) for p in sorted(folder.rglob("*.png"))}


def run_cli(main, argv, capsys) -> str:
    assert main([*map(str, argv), "--device", "cpu"]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def processed(out: str) -> int:
    return int(next(line for line in out.splitlines() if line.startswith("Total processed frames:")).split()[-1])


def test_generic_video_batch_gives_the_same_masks(generic_three, released_checkpoint, tmp_path, capsys):
    base = ["--model", released_checkpoint, "--data_path", generic_three]
    results, frames = {}, {}
    for n in (1, 2, 3):
        out = tmp_path / f"b{n}"
        stdout = run_cli(eval_generic.main, [*base, "--output", out, "--binary_masks", tmp_path / f"bin{n}",
                                             "--video_batch", n], capsys)
        results[n], frames[n] = masks_of(out), processed(stdout)
        assert _same(tmp_path / f"bin{n}", tmp_path / "bin1")
        assert not [p for p in out.rglob(".partial-*")]  # no temporary folder left
    assert len(results[1]) == sum(s.frames for s in GENERIC)
    for n in (2, 3):
        assert results[n].keys() == results[1].keys()
        for name, labels in results[1].items():
            assert np.array_equal(results[n][name], labels), name
        assert frames[n] == frames[1]


def test_davis_and_youtube_video_batch_give_the_same_masks(davis_template, youtube_template, released_checkpoint,
                                                           tmp_path, capsys):
    davis = Path(shutil.copytree(davis_template, tmp_path / "DAVIS"))
    args = ["--model", released_checkpoint, "--davis_path", davis / "2017", "--no_score"]
    run_cli(eval_davis.main, [*args, "--output", tmp_path / "d1"], capsys)
    run_cli(eval_davis.main, [*args, "--output", tmp_path / "d2", "--video_batch", "2"], capsys)
    assert _same(tmp_path / "d1", tmp_path / "d2")

    args = ["--model", released_checkpoint, "--yv_path", youtube_template, "--size", "48"]
    one = run_cli(eval_youtube.main, [*args, "--output", tmp_path / "y1"], capsys)
    two = run_cli(eval_youtube.main, [*args, "--output", tmp_path / "y2", "--video_batch", "2"], capsys)
    assert _same(tmp_path / "y1", tmp_path / "y2") and processed(one) == processed(two)


def _same(a: Path, b: Path) -> bool:
    ma, mb = masks_of(a), masks_of(b)
    assert ma.keys() == mb.keys() and ma
    return all(np.array_equal(ma[k], mb[k]) for k in ma)


@pytest.mark.parametrize("extra, message", [
    (["--video_batch", "0"], "error: --video_batch: must be at least 1"),
    (["--video_batch", "2", "--backend", "onnxruntime"], "error: --video_batch: --backend onnxruntime"),
])
def test_unsupported_video_batch_is_one_error_line(generic_three, released_checkpoint, tmp_path, capsys, extra,
                                                   message):
    rc = eval_generic.main(["--model", str(released_checkpoint), "--data_path", str(generic_three),
                            "--output", str(tmp_path / "o"), "--device", "cpu", *extra])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith(message) and len(err.strip().splitlines()) == 1, err


def test_a_failing_video_removes_every_unfinished_one_and_keeps_the_finished(generic_three, released_checkpoint,
                                                                             tmp_path, capsys):
    data = Path(shutil.copytree(generic_three, tmp_path / "data"))
    (data / "JPEGImages" / "three" / "00006.jpg").write_bytes(b"\xff\xd8garbage")  # its last frame
    out, binary = tmp_path / "o", tmp_path / "bin"
    rc = eval_generic.main(["--model", str(released_checkpoint), "--data_path", str(data), "--output", str(out),
                            "--binary_masks", str(binary), "--device", "cpu", "--video_batch", "2"])
    std = capsys.readouterr()
    lines = [line for line in std.err.splitlines() if "error:" in line]
    assert rc == 1 and len(lines) == 1 and "three/00006.jpg" in lines[0] and "Traceback" not in std.err
    # slots: "one" (5 frames, finished, then "two" started) beside "three" (failed on frame 6)
    assert len(list((out / "one").glob("*.png"))) == GENERIC[0].frames and (binary / "one").is_dir()
    for name in ("two", "three"):
        assert not (out / name).exists() and not (binary / name).exists()
    assert not list(tmp_path.rglob(".partial-*"))


def test_benchmark_reports_throughput_per_batch_size(capsys):
    from scripts import benchmark_inference

    argv = ["--height", "32", "--lengths", "2", "--objects", "1", "--precision", "fp32", "--warmup", "0",
            "--device", "cpu", "--video_batch", "1", "2"]
    assert benchmark_inference.main(argv) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| fp32 |")]
    assert [r[4] for r in rows] == ["1", "2"] and all(float(r[5]) > 0 for r in rows)  # videos, FPS
    assert benchmark_inference.main([*argv, "--baseline"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --video_batch: "), err


def test_the_failing_video_is_the_last_one_whose_folder_was_asked(generic_three, stcn_net, tmp_path):
    """Sharding names a failed rank's video after the last folder asked of `out_dir_of`: the failing one."""
    from evaluation.datasets import GenericEvalDataset
    from evaluation.loop import RunStats, run_videos_batched
    from util.io import DataError

    data = Path(shutil.copytree(generic_three, tmp_path / "data"))
    (data / "JPEGImages" / "three" / "00006.jpg").write_bytes(b"\xff\xd8garbage")
    asked: list[str] = []

    def out_dir_of(video):
        asked.append(video.name)
        return tmp_path / "o" / video.name

    predictor = Predictor(stcn_net)
    videos = GenericEvalDataset(data).videos
    with pytest.raises(DataError, match="three"):
        run_videos_batched([predictor.new_stream(start_only=True) for _ in range(2)], videos, out_dir_of, RunStats())
    assert asked[-2:] == ["two", "three"]  # "two" started beside "three", then "three" failed
