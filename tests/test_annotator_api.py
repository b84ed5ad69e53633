"""The annotation tool's HTTP API (interactive_demo.py, annotator/), driven as the page drives it, through
FastAPI's TestClient: a synthetic video, random weights, no browser."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import interactive_demo
from annotator.server import create_app
from inference_core import Predictor
from tests.eval_fixtures import VideoSpec, render
from tests.helpers import killed_partial, leftovers, write_video
from util.io import read_index_mask
from util.video import VideoReader

H, W, T = 40, 56, 8
TOKEN = "test-token"
BASE = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A video file of two moving objects and its first frame's true labels."""
    root = tmp_path_factory.mktemp("clip")
    images, labels = render(VideoSpec("clip", H, W, T, {1: 0, 2: 0}), seed=3)
    write_video(root / "clip.mp4", images)
    return root / "clip.mp4", labels


@pytest.fixture(scope="module")
def images_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames") / "shapes"
    root.mkdir()
    images, labels = render(VideoSpec("shapes", H, W, 5, {1: 0}), seed=4)
    for t, img in enumerate(images):
        Image.fromarray(img).save(root / f"{t:03d}.png")
    return root, labels


def open_tool(tmp_path, released_checkpoint, source_flag, source, *extra):
    args = interactive_demo.get_args_parser().parse_args([
        source_flag, str(source), "--workspace", str(tmp_path / "ws"), "--model", str(released_checkpoint),
        "--size", "-1", "--device", "cpu", "--s2m_model", str(tmp_path / "none.pth"),
        "--fusion_model", str(tmp_path / "none.pth"), *map(str, extra)])
    session = interactive_demo.open_session(args)
    return session, TestClient(create_app(session, TOKEN), base_url=BASE, headers={"X-STCN-Token": TOKEN})


def wait_job(client, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get("/api/job").json()["job"]
        if job["state"] != "running":
            return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def put_mask(client, t, labels):
    return client.put(f"/api/frames/{t}/mask", content=np.ascontiguousarray(labels, dtype=np.uint8).tobytes())


def test_draw_propagate_correct_export_equals_the_predictor(tmp_path, released_checkpoint, clip):
    """One interaction on frame 0 without fusion: the exported PNGs are the Python predictor's masks
    (the interactive core's test (a)), under the user's ids (5 and 9 here, not 1 and 2)."""
    video, labels = clip
    session, client = open_tool(tmp_path, released_checkpoint, "--video", video)
    status = client.get("/api/status").json()
    assert status["video"]["frames"] == T and status["video"]["height"] == H and status["device"] == "cpu"
    assert status["s2m"]["available"] is False and "download_model.py --model s2m" in status["s2m"]["reason"]
    for i, colour in ((5, [250, 0, 0]), (9, None)):
        body = {"id": i, "name": f"thing {i}"} | ({"colour": colour} if colour else {})
        assert client.post("/api/objects", json=body).status_code == 200
    first = np.zeros((H, W), np.uint8)
    first[labels[0] == 1], first[labels[0] == 2] = 5, 9
    assert put_mask(client, 0, first).status_code == 200
    got = np.frombuffer(client.get("/api/frames/0/mask").content, np.uint8).reshape(H, W)
    assert np.array_equal(got, first)
    assert client.post("/api/propagate", json={"frame": 0}).status_code == 200
    job = wait_job(client)
    assert job["state"] == "done" and job["done"] == job["total"] == T - 1

    frames = list(VideoReader(video).frames())
    stream = Predictor.from_checkpoint(released_checkpoint, "cpu", size=-1).new_stream()
    want = [stream.step(img, labels[0] if t == 0 else None) for t, img in enumerate(frames)]
    user = np.array([0, 5, 9], np.uint8)

    formats = ["indexed", "binary", "overlay", "workspace"]
    assert client.post("/api/export", json={"formats": formats}).status_code == 200
    job = wait_job(client)
    assert job["state"] == "done", job
    export = Path(job["message"])
    assert export == tmp_path / "ws" / "export"
    for t in range(T):
        png = export / "Annotations" / "clip" / f"{t:05d}.png"
        assert np.array_equal(read_index_mask(png), user[want[t]]), t
        assert Image.open(png).getpalette()[15:18] == [250, 0, 0]  # id 5 in the user's colour
        for i in (5, 9):
            binary = np.asarray(Image.open(export / "Binary" / "clip" / str(i) / f"{t:05d}.png"))
            assert np.array_equal(binary, np.where(user[want[t]] == i, 255, 0)), (t, i)
    assert VideoReader(export / "clip.mp4").num_frames == T
    marker = json.loads((export / ".stcn-result").read_text())
    assert marker["complete"] and marker["tool"] == "interactive_demo"
    assert "Annotations/clip/00007.png" in marker["files"]

    # a correction on frame 5 propagates again: frames 6, 7 forward and 4..1 backward (0 is interacted)
    corrected = np.array(user[want[5]])
    corrected[:10, :10] = 9
    assert put_mask(client, 5, corrected).status_code == 200
    assert client.post("/api/propagate", json={"frame": 5, "direction": "both"}).status_code == 200
    job = wait_job(client)
    assert job["state"] == "done" and job["total"] == 6
    status = client.get("/api/status").json()
    assert status["interacted"] == [0, 5] and status["edited"] == [] and status["memory"]["frames"] == [0, 5]
    assert np.array_equal(session.ws.mask(5), corrected) and np.array_equal(session.ws.mask(0), first)
    history = [h["action"] for h in json.loads((tmp_path / "ws" / "workspace.json").read_text())["history"]]
    assert history == ["add object", "add object", "edit mask", "propagate", "export", "edit mask", "propagate"]
    # a second export replaces the first (a result of the tool)
    assert client.post("/api/export", json={"formats": ["indexed"]}).status_code == 200
    assert wait_job(client)["state"] == "done"
    assert np.array_equal(read_index_mask(export / "Annotations" / "clip" / "00005.png"), corrected)
    assert leftovers(tmp_path) == []  # every write was atomic and finished


def test_resume_after_stopping_mid_propagation(tmp_path, released_checkpoint, images_folder, monkeypatch):
    """The server stopped while a propagation runs: the frames already propagated are on disk, and
    the same workspace opened again shows them (objects, interacted frame, masks) and propagates on."""
    folder, labels = images_folder
    session, client = open_tool(tmp_path, released_checkpoint, "--images", folder)
    client.post("/api/objects", json={"name": "cup"})
    put_mask(client, 0, labels[0])
    reached, release = threading.Event(), threading.Event()
    original = session.ws.write_mask

    def slow_write(t, mask):  # the propagation stalls after saving frame 2
        original(t, mask)
        if t == 2:
            reached.set()
            release.wait(30)

    monkeypatch.setattr(session.ws, "write_mask", slow_write)
    assert client.post("/api/propagate", json={"frame": 0, "direction": "forward"}).status_code == 200
    assert reached.wait(60)
    assert client.put("/api/frames/3/mask", content=bytes(H * W)).status_code == 409  # busy while it runs
    session.cancel()
    release.set()
    session.close()  # what the server does when it stops
    assert session.job.state == "cancelled"
    saved = {t: session.ws.read_mask(t) for t in range(5)}
    assert [t for t, m in saved.items() if m is not None] == [0, 1, 2]

    half = killed_partial(session.ws.mask_path(3), file=True)  # the mask a killed server was writing
    resumed, client2 = open_tool(tmp_path, released_checkpoint, "--images", folder)
    assert not half.exists() and leftovers(tmp_path / "ws") == []
    status = client2.get("/api/status").json()
    assert [o["name"] for o in status["objects"]] == ["cup"] and status["interacted"] == [0]
    assert status["masked"] == [0, 1, 2]
    for t in (0, 1, 2):
        got = np.frombuffer(client2.get(f"/api/frames/{t}/mask").content, np.uint8).reshape(H, W)
        assert np.array_equal(got, saved[t])
    assert client2.post("/api/propagate", json={"frame": 2, "direction": "forward"}).status_code == 200
    assert wait_job(client2)["state"] == "done"
    assert resumed.ws.masked_frames() == [0, 1, 2, 3, 4]
    assert resumed.core.interacted == [0, 2]


def test_token_host_and_paths(tmp_path, released_checkpoint, images_folder):
    folder, _ = images_folder
    session, client = open_tool(tmp_path, released_checkpoint, "--images", folder)
    bare = TestClient(create_app(session, TOKEN), base_url=BASE)
    for path in ("/", "/api/status", "/static/app.js", "/api/frames/0/image"):
        r = bare.get(path)
        assert r.status_code == 403 and r.json()["error"].startswith("token: missing or wrong"), path
    assert bare.get("/api/status", headers={"X-STCN-Token": "wrong"}).status_code == 403
    page = bare.get(f"/?token={TOKEN}")
    assert page.status_code == 200 and "app.js" in page.text
    assert bare.get("/static/app.js").status_code == 200  # the page's cookie carries the token
    evil = TestClient(create_app(session, TOKEN), base_url="http://evil.example:8765")
    r = evil.get(f"/api/status?token={TOKEN}")
    assert r.status_code == 400 and r.json()["error"].startswith("Host: evil.example is not this machine")
    anywhere = TestClient(create_app(session, TOKEN, hosts=None), base_url="http://evil.example:8765")
    assert anywhere.get(f"/api/status?token={TOKEN}").status_code == 200
    for path in ("/static/../workspace.json", "/static/index.html", "/static/%2e%2e%2fserver.py",
                 "/static/..%2F..%2Fetc%2Fpasswd", "/workspace.json", "/api/frames/../../workspace.json"):
        r = client.get(path)
        assert r.status_code == 404 and "error" in r.json(), path


def test_bad_requests_get_a_clear_4xx(tmp_path, released_checkpoint, images_folder):
    folder, labels = images_folder
    session, client = open_tool(tmp_path, released_checkpoint, "--images", folder)

    def refused(response, status, start):
        assert response.status_code == status, response.text
        assert response.json()["error"].startswith(start), response.json()

    refused(client.post("/api/propagate", json={"frame": 0}), 409, "objects: there are none yet")
    client.post("/api/objects", json={"id": 3})
    refused(client.post("/api/objects", json={"id": 3}), 400, "id: 3 is taken")
    refused(client.post("/api/objects", json={"id": 256}), 400, "id: 256 is taken or outside 1..255")
    refused(client.post("/api/objects", json={"colour": [1, 2]}), 400, "colour: ")
    refused(client.post("/api/objects", json={"name": "x" * 65}), 400, "name: ")
    refused(client.patch("/api/objects/7", json={"name": "a"}), 400, "object: no object of id 7")
    refused(client.get("/api/frames/5/image"), 400, "frame: 5 is not a frame")
    refused(client.get("/api/frames/-1/mask"), 400, "frame: -1 is not a frame")
    refused(client.get("/api/frames/x/mask"), 400, "t: ")
    refused(put_mask(client, 0, np.zeros((H, W - 1))), 400, "mask: 2200 bytes, not height x width = 40 x 56")
    refused(put_mask(client, 0, np.full((H, W), 4)), 400, "mask: holds ids [4] that are no object")
    refused(client.post("/api/propagate", json={"frame": 0, "direction": "up"}), 400, "direction: 'up'")
    refused(client.post("/api/propagate", content=b"{not json", headers={"Content-Type": "application/json"}),
            400, "")
    refused(client.post("/api/propagate", json={}), 400, "frame: Field required")
    refused(client.post("/api/export", json={"formats": ["gif"]}), 400, "formats: ['gif'] not among")
    refused(client.post("/api/frames/0/scribbles", json={"strokes": [{"object": 3, "path": [[0.5, 0.5]]}]}),
            409, "scribbles: the scribble-to-mask network is not loaded")
    refused(client.post("/api/objects", content=b"{" + b" " * (2 << 20) + b"}",
                        headers={"Content-Type": "application/json"}), 413, "request: ")
    assert client.post("/api/objects", json={"id": 4}).status_code == 200  # still serving


def test_workspace_checks(tmp_path, released_checkpoint, images_folder, clip, capsys):
    folder, _ = images_folder
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    from tests.helpers import one_error, run_main
    rc, _, err = run_main(interactive_demo.main, ["--images", folder, "--workspace", user, "--model",
                                                  released_checkpoint, "--port", "0"], capsys)
    assert "exists and holds files that are not a workspace" in one_error(rc, err, str(user))
    assert (user / "notes.txt").read_text() == "keep"
    rc, _, err = run_main(interactive_demo.main, ["--images", folder, "--workspace", folder / "ws", "--model",
                                                  released_checkpoint, "--port", "0"], capsys)
    assert "the input" in one_error(rc, err)
    open_tool(tmp_path, released_checkpoint, "--images", folder)
    rc, _, err = run_main(interactive_demo.main, ["--video", clip[0], "--workspace", tmp_path / "ws", "--model",
                                                  released_checkpoint, "--port", "0"], capsys)
    assert "is the workspace of" in one_error(rc, err)


def test_objects_scribbles_commit_and_fusion(tmp_path, released_checkpoint, images_folder):
    """Objects renamed, recoloured and deleted; scribbles and clicks through a stand-in scribble-to-mask
    network; "permanent memory" without propagating; a correction fused by a stand-in fusion network."""
    from tests.test_interactive_core import StandInFusion, StandInS2M

    folder, labels = images_folder
    session, client = open_tool(tmp_path, released_checkpoint, "--images", folder)
    session.s2m, session.fusion = StandInS2M(), StandInFusion()
    for body in ({"id": 3, "name": "cup"}, {"id": 7}):
        client.post("/api/objects", json=body)
    assert client.patch("/api/objects/3", json={"name": "mug", "colour": [1, 2, 3]}).json() == {
        "id": 3, "name": "mug", "colour": [1, 2, 3]}
    strokes = [{"object": 3, "path": [[0.1, 0.2], [0.5, 0.2]]}, {"object": 7, "path": [[0.8, 0.8]]},
               {"object": 0, "path": [[0.1, 0.9], [0.3, 0.9]]}]
    assert client.post("/api/frames/1/scribbles", json={"strokes": strokes}).status_code == 200
    mask = session.ws.mask(1)
    y, x0, x1 = round(0.2 * (H - 1)), round(0.1 * (W - 1)), round(0.5 * (W - 1))
    assert (mask[y, x0:x1] == 3).all() and mask[round(0.8 * (H - 1)), round(0.8 * (W - 1))] == 7
    assert (mask[round(0.9 * (H - 1)), 8:16] == 0).all()
    assert len(session.s2m.inputs) == 2  # one pass per object
    assert client.get("/api/status").json()["edited"] == [1]
    assert client.post("/api/propagate", json={"frame": 1, "direction": "none"}).status_code == 200
    assert wait_job(client)["state"] == "done"
    status = client.get("/api/status").json()
    assert status["interacted"] == [1] and status["masked"] == [1] and status["memory"]["frames"] == [1]
    assert client.post("/api/propagate", json={"frame": 1, "direction": "backward"}).status_code == 200
    assert wait_job(client)["state"] == "done"
    assert client.get("/api/status").json()["masked"] == [0, 1]
    assert session.fusion.calls == []
    put_mask(client, 4, np.where(labels[4] > 0, 7, 0))
    assert client.post("/api/propagate", json={"frame": 4}).status_code == 200
    assert wait_job(client)["state"] == "done"
    assert len(session.fusion.calls) == 2 * 2  # frames 3 and 2 (between 1 and 4), two objects each
    presence = client.get("/api/presence").json()
    assert set(presence) == {"3", "7"} and 4 in presence["7"]
    image = Image.open(__import__("io").BytesIO(client.get("/api/frames/2/image").content))
    assert image.format == "JPEG" and image.size == (W, H)

    assert client.delete("/api/objects/3").json() == {"deleted": 3}
    assert all(3 not in np.unique(session.ws.mask(t)) for t in range(5))
    assert [o["id"] for o in client.get("/api/status").json()["objects"]] == [7]
    assert session.core is None  # rebuilt for the next propagation from the saved masks
    assert client.post("/api/propagate", json={"frame": 0, "direction": "forward"}).status_code == 200
    assert wait_job(client)["state"] == "done"
    assert session.core.num_objects == 1 and session.core.interacted == [1, 1, 4, 0]  # as before, then 0


def test_cancel_and_resume_from_the_workspace_alone(tmp_path, released_checkpoint, images_folder, capsys):
    folder, labels = images_folder
    session, client = open_tool(tmp_path, released_checkpoint, "--images", folder)
    client.post("/api/objects", json={})
    put_mask(client, 0, labels[0])
    reached, gate = threading.Event(), threading.Event()
    original = session.ws.write_mask
    session.ws.write_mask = lambda t, m: (original(t, m), reached.set(), gate.wait(30))
    client.post("/api/propagate", json={"frame": 0})
    assert reached.wait(60)  # frame 1 saved
    assert client.post("/api/cancel").json()["job"]["state"] == "running"
    gate.set()
    job = wait_job(client)
    assert job["state"] == "cancelled" and job["done"] == 1
    assert client.post("/api/export", json={"formats": ["indexed"]}).status_code == 200  # no longer busy
    assert wait_job(client)["state"] == "done"
    args = interactive_demo.get_args_parser().parse_args([
        "--workspace", str(tmp_path / "ws"), "--model", str(released_checkpoint), "--device", "cpu",
        "--size", "-1", "--s2m_model", str(tmp_path / "no"), "--fusion_model", str(tmp_path / "no")])
    resumed = interactive_demo.open_session(args)
    assert resumed.ws.video["path"] == str(folder) and resumed.ws.masked_frames() == [0, 1]
    assert resumed.ws.state["interacted"] == [0]


def test_a_refused_start_leaves_no_workspace(tmp_path, images_folder, capsys):
    from tests.helpers import one_error, run_main

    folder, _ = images_folder
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not weights")
    rc, _, err = run_main(interactive_demo.main, ["--images", folder, "--workspace", tmp_path / "ws", "--model", bad,
                                                  "--port", "0", "--device", "cpu"], capsys)
    one_error(rc, err, str(bad))
    assert not (tmp_path / "ws").exists()
    for argv, where in ((["--cache_mb", "0"], "--cache_mb"), (["--port", "70000"], "--port"), ([], "--video")):
        rc, _, err = run_main(interactive_demo.main, ["--port", "0", *argv] if "--port" not in argv else argv,
                              capsys)
        one_error(rc, err, where)


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_the_url_and_the_warning_for_another_host(tmp_path, released_checkpoint, images_folder, monkeypatch, capsys,
                                                  host, warned):
    """The printed URL holds the port and a fresh token; listening beyond 127.0.0.1 warns; the last line says
    where everything is saved (the server itself is not started here)."""
    import uvicorn

    from tests.helpers import run_main

    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.append(sockets[0].getsockname()))
    folder, _ = images_folder
    rc, out, err = run_main(interactive_demo.main, [
        "--images", folder, "--workspace", tmp_path / "ws", "--model", released_checkpoint, "--device", "cpu",
        "--host", host, "--port", "0", "--s2m_model", tmp_path / "no", "--fusion_model", tmp_path / "no"], capsys)
    assert rc == 0, err
    url = out.splitlines()[-1]
    assert url.startswith(f"open http://127.0.0.1:{served[0][1]}/?token=") and len(url.split("token=")[1]) >= 32
    assert served[0][0] == host
    assert ("warning: --host 0.0.0.0 serves the tool beyond this machine" in err) == warned
    assert err.splitlines()[-1] == (f"stopped; everything is saved in {tmp_path / 'ws'}; python interactive_demo.py "
                                    f"--workspace {tmp_path / 'ws'} resumes it")
