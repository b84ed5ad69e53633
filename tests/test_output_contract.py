"""The output contract (util/outputs.py) through the commands: what may be replaced, what is never touched,
and one `error:` line for a write that fails (a full disk), with the earlier good output kept."""
from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import zipfile
from functools import partial
from pathlib import Path

import pytest
import torch

import eval_generic
import eval_youtube
import segment_video
import train
from tests.eval_fixtures import VideoSpec, generic_template, youtube_template  # noqa: F401
from tests.helpers import as_written, killed_partial, leftovers, one_error, run_main, snapshot, write_clip
from tests.test_training import TINY, _load, fake_data  # noqa: F401 (fixture)
from util import outputs
from util.outputs import MARKER, check_not_input, overlaps, read_marker
from util.video import VideoWriter

torch.set_num_threads(1)

SPEC = VideoSpec("clip", height=32, width=48, frames=4, starts={1: 0})


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """clip.mp4 (4 frames, one object) and first.png."""
    return write_clip(tmp_path_factory.mktemp("contract"), SPEC)


def user_files(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("my notes")
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "data.bin").write_bytes(b"\x00\x01")
    return snapshot(folder)


run = partial(run_main, device="cpu")  # every command here runs on the CPU


def segment(clip: Path, ckpt: Path, *extra) -> list:
    return ["--video", clip / "clip.mp4", "--mask", clip / "first.png", "--model", ckpt, "--size", "-1", *extra]


# ------------------------------------------------------------------------------------ pure rules
def test_overlap_rules(tmp_path):
    data = tmp_path / "data"
    assert overlaps(data, data) and overlaps(data / "a", data) and overlaps(tmp_path, data)
    assert not overlaps(tmp_path / "data2", data) and not overlaps(tmp_path / "out", data)
    with pytest.raises(outputs.DataError, match="contains the input"):
        check_not_input(tmp_path, "--output", [None, data / "clip.mp4"])
    check_not_input(tmp_path / "out", "--output", [data, None, ""])  # a sibling is fine


# -------------------------------------------------------------------- folders that are not ours
def test_folder_of_user_files_is_refused_before_any_work(clip, released_checkpoint, tmp_path, capsys):
    mine = tmp_path / "mine"
    before = user_files(mine)
    for flag in ("--output", "--binary_masks"):
        argv = segment(clip, released_checkpoint, "--output", mine if flag == "--output" else tmp_path / "o")
        if flag != "--output":
            argv += [flag, mine]
        rc, stdout, err = run(segment_video.main, argv, capsys)
        line = one_error(rc, err, str(mine), "--overwrite")
        assert "not a result" in line and "Total processing" not in stdout
        assert snapshot(mine) == before
    assert not (tmp_path / "o").exists()


def test_overwrite_writes_beside_user_files_and_deletes_nothing(clip, released_checkpoint, tmp_path, capsys):
    mine = tmp_path / "mine"
    before = user_files(mine)
    rc, _, err = run(segment_video.main, segment(clip, released_checkpoint, "--output", mine, "--overwrite"), capsys)
    assert rc == 0, err
    after = snapshot(mine)
    assert {k: after[k] for k in before} == before  # the user's files are untouched
    assert sorted(set(after) - set(before)) == [f"{i:05d}.png" for i in range(SPEC.frames)]
    assert not (mine / MARKER).exists()  # still the user's folder, not a result to replace next time
    assert not leftovers(tmp_path)


def test_folder_holding_the_inputs_is_refused_even_with_overwrite(clip, released_checkpoint, tmp_path, capsys):
    data = Path(shutil.copytree(clip, tmp_path / "data"))
    (data / "masks").mkdir()
    shutil.copy(data / "first.png", data / "masks" / "00000.png")
    before = snapshot(data)
    argv = ["--video", data / "clip.mp4", "--mask", data / "first.png", "--model", released_checkpoint]
    # the folder of the input video (it contains the video), an input folder and a folder inside it
    for out, inputs in ((data, ()), (data / "masks", ("--mask_dir", data / "masks")),
                        (data / "masks" / "inner", ("--mask_dir", data / "masks"))):
        rc, _, err = run(segment_video.main, [*argv[:2], *(inputs or argv[2:4]), *argv[4:], "--output", out,
                                              "--overwrite"], capsys)
        one_error(rc, err, str(out), "input")
    rc, _, err = run(segment_video.main, [*argv, "--output", tmp_path / "o", "--overlay", data / "clip.mp4",
                                          "--overwrite"], capsys)
    one_error(rc, err, "clip.mp4", "--overlay")
    assert snapshot(data) == before and not (tmp_path / "o").exists()


def test_existing_file_where_a_folder_goes_is_refused(clip, released_checkpoint, tmp_path, capsys):
    target = tmp_path / "some_file.txt"
    target.write_text("keep me")
    for extra in ((), ("--overwrite",)):
        rc, _, err = run(segment_video.main, segment(clip, released_checkpoint, "--output", target, *extra), capsys)
        one_error(rc, err, str(target), "is a file")
    rc, _, err = run(segment_video.main, segment(clip, released_checkpoint, "--output", target / "below"), capsys)
    one_error(rc, err, "is a file")
    assert target.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some_file.txt"]  # no .partial-old-* entry


def test_generic_output_inside_its_data_is_refused(generic_template, released_checkpoint, tmp_path, capsys):
    data = Path(shutil.copytree(generic_template, tmp_path / "data"))
    before = snapshot(data)
    for out in (data / "Annotations", data / "JPEGImages", data / "Annotations" / "clip", data):
        rc, _, err = run(eval_generic.main, ["--data_path", data, "--model", released_checkpoint, "--output", out,
                                             "--overwrite"], capsys)
        one_error(rc, err, str(out), "input")
    for binary in (tmp_path / "o", tmp_path / "o" / "clip"):  # the same folder, or where a video's masks go
        rc, _, err = run(eval_generic.main, ["--data_path", data, "--model", released_checkpoint, "--output",
                                             tmp_path / "o", "--binary_masks", binary], capsys)
        one_error(rc, err, "--binary_masks")
    assert snapshot(data) == before and not (tmp_path / "o").exists()


def test_demo_layout_overlays_inside_the_output(generic_template, released_checkpoint, tmp_path, capsys):
    out = tmp_path / "demo_output"
    argv = ["--data_path", generic_template, "--model", released_checkpoint, "--output", out,
            "--overlay", out / "overlays", "--size", "32"]
    for _ in range(2):  # the rerun replaces the previous result
        rc, _, err = run(eval_generic.main, argv, capsys)
        assert rc == 0, err
    assert (out / "overlays" / "clip.mp4").is_file() and (out / "overlays" / MARKER).is_file()
    assert len(list((out / "clip").glob("*.png"))) == 8 and not leftovers(tmp_path)


def test_a_frame_failing_in_the_backward_pass_leaves_no_partial_folder(generic_template, released_checkpoint,
                                                                         tmp_path, capsys):
    # --bidirectional reads frames 3 .. 0 before the forward pass (object 2 starts on frame 3)
    data = Path(shutil.copytree(generic_template, tmp_path / "data"))
    for folder in ("JPEGImages", "Annotations"):  # a video finished first, so the output folder stays
        shutil.copytree(data / folder / "clip", data / folder / "a_clip")
    (data / "JPEGImages" / "clip" / "00001.jpg").write_bytes(b"\xff\xd8garbage")
    rc, _, err = run(eval_generic.main, ["--data_path", data, "--model", released_checkpoint, "--size", "32",
                                         "--bidirectional", "--output", tmp_path / "o", "--device", "cpu"], capsys)
    one_error(rc, err, "clip/00001.jpg")
    assert (tmp_path / "o" / "a_clip").is_dir() and not (tmp_path / "o" / "clip").exists()
    assert not leftovers(tmp_path)


def test_output_dot_holding_the_inputs_is_refused_up_front(clip, released_checkpoint, tmp_path, capsys, monkeypatch):
    work = Path(shutil.copytree(clip, tmp_path / "work"))
    monkeypatch.chdir(work)
    rc, stdout, err = run(segment_video.main, ["--video", "clip.mp4", "--mask", "first.png", "--output", ".",
                                               "--model", released_checkpoint], capsys)
    one_error(rc, err, "contains the input")
    assert "Total processing" not in stdout


def test_unwritable_destination_is_refused_before_any_work(clip, released_checkpoint, tmp_path, capsys, monkeypatch):
    def no_permission(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(outputs.tempfile, "mkstemp", no_permission)
    rc, stdout, err = run(segment_video.main, segment(clip, released_checkpoint, "--output", tmp_path / "o"), capsys)
    one_error(rc, err, str(tmp_path / "o"), "Permission denied")
    assert "Total processing" not in stdout and not (tmp_path / "o").exists()


def test_overwrite_never_writes_through_a_link_inside_the_output(generic_template, released_checkpoint, tmp_path,
                                                                 capsys):
    # issue 22: `mine/clip -> data/Annotations/clip` with --overwrite replaced the ground truth
    data = Path(shutil.copytree(generic_template, tmp_path / "data"))
    before = snapshot(data)
    argv = ["--data_path", data, "--model", released_checkpoint, "--size", "32", "--overwrite"]
    for flag, inside in (("--output", "Annotations"), ("--binary_masks", "JPEGImages")):
        mine = tmp_path / f"mine{flag}"
        mine.mkdir()
        (mine / "clip").symlink_to(data / inside / "clip", target_is_directory=True)
        extra = ["--output", mine] if flag == "--output" else ["--output", tmp_path / "o", flag, mine]
        rc, _, err = run(eval_generic.main, [*argv, *extra], capsys)
        one_error(rc, err, str(mine / "clip"), "symbolic link")
        assert (mine / "clip").is_symlink() and sorted(p.name for p in mine.iterdir()) == ["clip"]
    assert snapshot(data) == before and not leftovers(tmp_path)


# --------------------------------------------------------------------------- previous results
def test_rerun_replaces_a_previous_result_and_its_overlay(clip, released_checkpoint, tmp_path, capsys):
    out, overlay = tmp_path / "masks", tmp_path / "overlay.mp4"
    argv = segment(clip, released_checkpoint, "--output", out, "--overlay", overlay)
    assert run(segment_video.main, argv, capsys)[0] == 0
    marker = read_marker(out)
    assert marker["complete"] and str(overlay.resolve()) in marker["companions"]
    (out / "00099.png").write_bytes(b"a stale frame of the earlier result")
    as_written(out, "00099.png")
    rc, _, err = run(segment_video.main, argv, capsys)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == [MARKER] + [f"{i:05d}.png" for i in range(SPEC.frames)]
    assert not leftovers(tmp_path)


def test_a_result_holding_the_users_files_is_not_replaced_whole(generic_template, clip, released_checkpoint,
                                                                tmp_path, capsys):
    # issue 22: a rerun deleted notes.txt and fixed/00003.png the user had added to its result, and
    # segment_video --output <an eval_generic result> deleted that result
    out = tmp_path / "masks"
    argv = segment(clip, released_checkpoint, "--output", out)
    assert run(segment_video.main, argv, capsys)[0] == 0
    (out / "notes.txt").write_text("my notes")
    (out / "fixed").mkdir()
    shutil.copy(out / "00003.png", out / "fixed" / "00003.png")
    generic = tmp_path / "generic"
    rc, _, err = run(eval_generic.main, ["--data_path", generic_template, "--model", released_checkpoint, "--size",
                                         "32", "--output", generic], capsys)
    assert rc == 0, err
    for folder, names in ((out, ["fixed/00003.png", "notes.txt"]), (generic, ["clip/00000.png"])):
        before = snapshot(folder)
        rc, _, err = run(segment_video.main, segment(clip, released_checkpoint, "--output", folder), capsys)
        one_error(rc, err, str(folder), "--overwrite", *names)
        assert snapshot(folder) == before
        rc, _, err = run(segment_video.main, segment(clip, released_checkpoint, "--output", folder, "--overwrite"),
                         capsys)
        assert rc == 0, err
        after = snapshot(folder)
        kept = {k: v for k, v in before.items() if not k.startswith(("0", MARKER))}
        assert {k: after[k] for k in kept} == kept and len(kept) >= 2  # the user's files, the other result's
        assert all(f"{i:05d}.png" in after for i in range(SPEC.frames)) and not leftovers(tmp_path)
    assert read_marker(out)["complete"] and "notes.txt" not in read_marker(out)["files"]


def test_a_link_in_a_result_is_refused_never_renamed(generic_template, released_checkpoint, tmp_path, capsys):
    # issue 22: the link was renamed to .partial-old-clip-*, never removed, and every later run said "removed"
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    argv = ["--data_path", generic_template, "--model", released_checkpoint, "--size", "32", "--output", out]
    assert run(eval_generic.main, argv, capsys)[0] == 0
    shutil.move(out / "clip", elsewhere)
    (out / "clip").symlink_to(elsewhere, target_is_directory=True)
    before = snapshot(elsewhere)
    for extra in ((), ("--overwrite",), ()):
        rc, _, err = run(eval_generic.main, [*argv, *extra], capsys)
        line = one_error(rc, err, str(out), "clip")
        assert "removed" not in err and ("symbolic link" in line) == bool(extra)
        assert (out / "clip").is_symlink() and snapshot(elsewhere) == before
        assert sorted(p.name for p in out.iterdir()) == [MARKER, "clip"] and not leftovers(tmp_path)


def test_existing_overlay_file_needs_overwrite(clip, released_checkpoint, tmp_path, capsys):
    overlay = tmp_path / "holiday.mp4"
    overlay.write_bytes(b"the user's own film")
    argv = segment(clip, released_checkpoint, "--output", tmp_path / "o", "--overlay", overlay)
    rc, _, err = run(segment_video.main, argv, capsys)
    one_error(rc, err, str(overlay), "--overwrite")
    assert overlay.read_bytes() == b"the user's own film" and not (tmp_path / "o").exists()
    rc, _, err = run(segment_video.main, [*argv, "--overwrite"], capsys)
    assert rc == 0, err
    assert overlay.read_bytes() != b"the user's own film"


def test_youtube_zip_of_someone_else_is_refused(youtube_template, released_checkpoint, tmp_path, capsys):
    (tmp_path / "yv.zip").write_bytes(b"not ours")
    rc, stdout, err = run(eval_youtube.main, ["--yv_path", youtube_template, "--model", released_checkpoint,
                                              "--output", tmp_path / "yv", "--size", "32"], capsys)
    one_error(rc, err, "yv.zip", "--overwrite")
    assert (tmp_path / "yv.zip").read_bytes() == b"not ours" and not (tmp_path / "yv").exists()


def test_stale_partials_of_a_killed_run_are_removed(clip, released_checkpoint, tmp_path, capsys):
    out = tmp_path / "masks"
    stale_dir = killed_partial(out)  # the output folder's, and the overlay's temporary
    stale_tmp = killed_partial(tmp_path / "ov.mp4", file=True)
    other = tmp_path / ".partial-someone-else"  # not named by this project: left alone
    other.mkdir()
    rc, _, err = run(segment_video.main, segment(clip, released_checkpoint, "--output", out,
                                                 "--overlay", tmp_path / "ov.mp4"), capsys)
    assert rc == 0, err
    assert not stale_dir.exists() and not stale_tmp.exists() and other.is_dir()
    assert "note: removed" in err and str(stale_dir) in err


def test_files_named_like_temporaries_are_never_cleaned(generic_template, released_checkpoint, tmp_path, capsys,
                                                        monkeypatch):
    # issue 22: only what the project can prove it made is removed, never a name that merely looks like it
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # the process id in the names no longer runs
    monkeypatch.chdir(tmp_path)
    Path(f".results.{gone.pid}.backup.tmp").write_text("x")
    user_files(tmp_path / "mine")
    (tmp_path / "mine" / f".partial-backup-{gone.pid}-deadbeef").mkdir()
    (tmp_path / "mine" / f".partial-backup-{gone.pid}-deadbeef" / "old.txt").write_text("my backup")
    (tmp_path / "mine" / f".draft.{gone.pid}.v2.tmp").write_text("my draft")
    before = snapshot(tmp_path)
    argv = ["--data_path", generic_template, "--model", released_checkpoint, "--size", "32"]
    for out in ("results", "mine"):
        rc, _, err = run(eval_generic.main, [*argv, "--output", out, "--overwrite"], capsys)
        assert rc == 0 and "removed" not in err, err
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before} == before


# ------------------------------------------------------------------------- write errors (disk full)
def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_during_a_mask_keeps_the_previous_result(generic_template, released_checkpoint, tmp_path,
                                                           capsys, monkeypatch):
    out = tmp_path / "gen"
    argv = ["--data_path", generic_template, "--model", released_checkpoint, "--output", out, "--size", "32"]
    assert run(eval_generic.main, argv, capsys)[0] == 0
    before = snapshot(out)
    del before[MARKER]  # rewritten (not complete) when the rerun starts
    calls = {"n": 0}
    import util.io

    original = util.io.Image.Image.save

    def fail_third(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            enospc()
        return original(self, fp, *args, **kwargs)

    monkeypatch.setattr(util.io.Image.Image, "save", fail_third)
    rc, _, err = run(eval_generic.main, argv, capsys)
    line = one_error(rc, err, "No space left on device", "gen/clip/")
    assert ".tmp" not in line and "00002.png" in line  # the mask's name, not its temporary's
    after = snapshot(out)
    assert {k: after[k] for k in before} == before and not read_marker(out)["complete"]
    assert not leftovers(tmp_path)


def test_disk_full_during_the_zip_keeps_the_previous_zip(youtube_template, released_checkpoint, tmp_path,
                                                         capsys, monkeypatch):
    argv = ["--yv_path", youtube_template, "--model", released_checkpoint, "--output", tmp_path / "yv", "--size", "32"]
    assert run(eval_youtube.main, argv, capsys)[0] == 0
    good = (tmp_path / "yv.zip").read_bytes()
    monkeypatch.setattr(zipfile.ZipFile, "write", enospc)
    rc, _, err = run(eval_youtube.main, argv, capsys)
    one_error(rc, err, "yv.zip", "No space left on device")
    assert (tmp_path / "yv.zip").read_bytes() == good and not leftovers(tmp_path)


def test_disk_full_during_the_overlay(clip, released_checkpoint, tmp_path, capsys, monkeypatch):
    overlay = tmp_path / "ov.mp4"
    monkeypatch.setattr(VideoWriter, "write", enospc)
    rc, _, err = run(segment_video.main, segment(clip, released_checkpoint, "--output", tmp_path / "o",
                                                 "--overlay", overlay), capsys)
    one_error(rc, err, "No space left on device")
    assert not overlay.exists() and not (tmp_path / "o").exists() and not leftovers(tmp_path)


def test_disk_full_during_a_checkpoint_keeps_the_last_one(tmp_path, fake_data, capsys, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def save_then_fill(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:  # the first checkpoint is written, the second finds the disk full
            raise RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing "
                               "file data/3: file write failed")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fill)
    args = ["--stage", "0", "--id", "full", "--save_dir", str(tmp_path), "--iterations", "4",
            "--checkpoint_every", "2", "--save_every", "100", *TINY]
    rc = train.main(args)
    err = capsys.readouterr().err
    line = one_error(rc, err, "full_checkpoint.pth", "disk full")
    assert "kept" in line and "--load_model" in line
    assert _load(tmp_path / "full" / "full_checkpoint.pth")["iteration"] == 2
    assert not leftovers(tmp_path)


# ------------------------------------------------------------------------------ scripts/export.py
def fake_export(parts_written: int | None = None):
    """Stands in for model/export.py export_network (the real export is tested in tests/test_export.py):
    writes each part and the manifest; `parts_written`: Ctrl-C after that many parts."""
    from model.export import MANIFEST, PART_FILES

    def export(net, folder, exporter="auto"):
        for i, name in enumerate(PART_FILES.values()):
            if parts_written is not None and i == parts_written:
                raise KeyboardInterrupt
            (Path(folder) / name).write_bytes(b"new " + name.encode())
        manifest = {"exporter": "fake", "opset": 0, "weights": "w"}
        (Path(folder) / MANIFEST).write_text('{"exporter": "fake"}')
        return manifest

    return export


def export_parts() -> list[str]:
    from model.export import MANIFEST, PART_FILES

    return sorted([*PART_FILES.values(), MANIFEST])


def test_export_follows_the_output_contract(released_checkpoint, tmp_path, capsys, monkeypatch):
    from scripts import export as export_script

    monkeypatch.setattr("model.export.export_network", fake_export())
    mine = tmp_path / "mine"
    before = user_files(mine)
    rc, _, err = run_main(export_script.main, ["--model", released_checkpoint, "--output", mine], capsys)
    one_error(rc, err, str(mine), "--overwrite")
    assert snapshot(mine) == before
    # --overwrite: the parts beside the user's files, nothing of theirs touched, not made a result
    rc, _, err = run_main(export_script.main, ["--model", released_checkpoint, "--output", mine, "--overwrite"], capsys)
    assert rc == 0, err
    after = snapshot(mine)
    assert {k: after[k] for k in before} == before and sorted(set(after) - set(before)) == export_parts()
    assert not (mine / MARKER).exists()
    # a new folder becomes a result: the rerun replaces it whole (a stale file of the earlier export goes)
    out = tmp_path / "onnx"
    for _ in range(2):
        rc, _, err = run_main(export_script.main, ["--model", released_checkpoint, "--output", out], capsys)
        assert rc == 0, err
        (out / "stale.onnx").write_bytes(b"old")
    (out / "stale.onnx").unlink()
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, *export_parts()]) and read_marker(out)["complete"]
    assert not leftovers(tmp_path)


def test_export_into_an_older_export_replaces_only_its_files(released_checkpoint, tmp_path, capsys, monkeypatch):
    from scripts import export as export_script

    monkeypatch.setattr("model.export.export_network", fake_export())
    older = tmp_path / "older"  # written before the marker existed: the manifest says it is an export
    older.mkdir()
    for name in export_parts():
        (older / name).write_text("{}" if name.endswith(".json") else "old")
    (older / "README.txt").write_text("the user's note")
    rc, _, err = run_main(export_script.main, ["--model", released_checkpoint, "--output", older], capsys)
    assert rc == 0, err
    assert (older / "README.txt").read_text() == "the user's note"
    assert all((older / n).read_bytes().startswith(b"new") for n in export_parts() if n.endswith(".onnx"))


def test_export_never_writes_where_its_model_is(released_checkpoint, tmp_path, capsys):
    from scripts import export as export_script

    saves = Path(shutil.copytree(released_checkpoint.parent, tmp_path / "saves"))
    before = snapshot(saves)
    for out in (saves, tmp_path):
        rc, _, err = run_main(export_script.main, ["--model", saves / "stcn.pth", "--output", out, "--overwrite"],
                              capsys)
        one_error(rc, err, str(out), "contains the input")
    assert snapshot(saves) == before


def test_ctrl_c_during_an_export_keeps_the_earlier_one(released_checkpoint, tmp_path, capsys, monkeypatch):
    from scripts import export as export_script

    out = tmp_path / "onnx"
    monkeypatch.setattr("model.export.export_network", fake_export())
    assert run_main(export_script.main, ["--model", released_checkpoint, "--output", out], capsys)[0] == 0
    good = snapshot(out)
    monkeypatch.setattr("model.export.export_network", fake_export(parts_written=1))
    rc, _, err = run_main(export_script.main, ["--model", released_checkpoint, "--output", out], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 130 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("interrupted by SIGINT: ") and "removed the unfinished" in lines[0]
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k != MARKER} == {k: v for k, v in good.items() if k != MARKER}
    assert not leftovers(tmp_path)


def test_stale_partials_in_the_export_cache_are_removed(tmp_path, stcn_net, monkeypatch):
    from inference_core import backends

    monkeypatch.setattr(backends, "export_network", fake_export())
    cache = tmp_path / "cache"
    digest = backends.weights_digest(stcn_net.state_dict())
    name = f"{digest}-{'single' if stcn_net.single_object else 'multi'}-v{backends.EXPORT_VERSION}"
    killed_partial(cache / name)
    folder = backends.cached_export(stcn_net, cache)
    assert [p.name for p in cache.iterdir()] == [folder.name] == [name]


# ------------------------------------------------------------------- scripts/make_sample_video.py
def test_sample_video_follows_the_output_contract(tmp_path, capsys):
    from scripts import make_sample_video

    mine = tmp_path / "mine"
    user_files(mine)
    (mine / "JPEGImages" / "shapes").mkdir(parents=True)
    (mine / "JPEGImages" / "shapes" / "00000.jpg").write_bytes(b"the user's own frame")
    before = snapshot(mine)
    argv = ["--frames", "3", "--height", "16", "--width", "24"]
    rc, _, err = run_main(make_sample_video.main, ["--output", mine, *argv], capsys)
    one_error(rc, err, str(mine), "--overwrite")
    assert snapshot(mine) == before
    rc, _, err = run_main(make_sample_video.main, ["--output", mine / "notes.txt", *argv], capsys)
    one_error(rc, err, "notes.txt", "is a file")
    out = tmp_path / "sample"
    for _ in range(2):  # a rerun replaces the earlier sample whole
        rc, printed, err = run_main(make_sample_video.main, ["--output", out, *argv, "--video_file"], capsys)
        assert rc == 0, err
        assert printed.splitlines() == [  # one line naming everything written
            f"wrote 3 frames of 'shapes' to {out / 'JPEGImages' / 'shapes'}, its first-frame mask to "
            f"{out / 'Annotations' / 'shapes'} and the video file and its first-frame mask to {out / 'shapes.mp4'}, "
            f"{out / 'shapes_first.png'}"]
        (out / "stale.txt").write_text("of the earlier sample")
        as_written(out, "stale.txt")
    (out / "stale.txt").unlink()
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "Annotations", "JPEGImages", "shapes.mp4",
                                                            "shapes_first.png"])
    assert len(list((out / "JPEGImages" / "shapes").glob("*.jpg"))) == 3 and not leftovers(tmp_path)


def test_ctrl_c_while_writing_the_sample_leaves_nothing(tmp_path, capsys, monkeypatch):
    from evaluation import sample_video
    from scripts import make_sample_video

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sample_video, "write_video_file", stop)
    rc, _, err = run_main(make_sample_video.main, ["--output", tmp_path / "s", "--frames", "3", "--video_file"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 130 and len(lines) == 1 and "removed the unfinished" in lines[0] and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []
