"""The annotation tool in a real browser: `interactive_demo.py` started as a user starts it, its page opened
in headless Chromium (the OS's `chromium` and `chromium-driver`, driven by Selenium; nothing is downloaded):
paint a mask with the mouse, propagate, export, and check the files on disk.

A screenshot is saved beside the test's files when it fails. With STCN_DOC_SCREENSHOTS=<folder> the
screenshots of docs/annotator.md are written there (docs/images/ when regenerating the docs)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.eval_fixtures import VideoSpec, render
from tests.helpers import child_env, write_video
from util.io import read_index_mask

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("STCN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STCN_CHROMEDRIVER", "/usr/bin/chromedriver")
H, W, T = 96, 128, 10
WAIT_S = 120  # generous bound for a slow shared machine; never a timing assertion


def chromium_or_skip() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).is_file() and os.access(p, os.X_OK))]
    if missing:
        pytest.skip(f"no browser: {', '.join(missing)} missing; install Debian's chromium and chromium-driver "
                    "(.ci/run does)")


@pytest.fixture(scope="module")
def interactive_weights(tmp_path_factory):
    """Random scribble-to-mask and fusion networks saved as their released files."""
    import torch

    from model.fusion import FusionNet
    from model.s2m import S2M

    root = tmp_path_factory.mktemp("interactive_weights")
    torch.manual_seed(0)
    torch.save(S2M().state_dict(), root / "s2m.pth")
    torch.save(FusionNet().state_dict(), root / "fusion_stcn.pth")
    return root


@pytest.fixture
def server(tmp_path, released_checkpoint, interactive_weights):
    """interactive_demo.py on a synthetic video, on a free port: (its URL, workspace, process)."""
    images, _ = render(VideoSpec("walk", H, W, T, {1: 0, 2: 0}), seed=7)
    video = write_video(tmp_path / "walk.mp4", images)
    cmd = [sys.executable, str(ROOT / "interactive_demo.py"), "--video", str(video), "--workspace",
           str(tmp_path / "ws"), "--model", str(released_checkpoint), "--size", "-1", "--device", "cpu",
           "--port", "0", "--s2m_model", str(interactive_weights / "s2m.pth"),
           "--fusion_model", str(interactive_weights / "fusion_stcn.pth")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    url = None
    deadline = time.time() + WAIT_S
    while time.time() < deadline and url is None:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("open "):
            url = line.split()[1]
    if url is None:
        proc.kill()
        raise AssertionError(f"no URL printed: {proc.stderr.read()}")
    yield url, tmp_path / "ws", proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def make_driver(width: int = 1280, height: int = 800):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def test_paint_propagate_export_in_chromium(server, tmp_path):
    chromium_or_skip()
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url, workspace, proc = server
    driver = make_driver()
    shots = os.environ.get("STCN_DOC_SCREENSHOTS")
    wait = WebDriverWait(driver, WAIT_S)

    def shot(name: str) -> None:
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(Path(shots) / f"annotator-{name}.png"))

    try:
        driver.get(url)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        assert "device cpu" in driver.find_element(By.TAG_NAME, "header").text
        for _ in range(2):
            count = len(driver.find_elements(By.CSS_SELECTOR, "#objects li"))
            driver.find_element(By.ID, "add-object").click()
            wait.until(lambda d, n=count: len(d.find_elements(By.CSS_SELECTOR, "#objects li")) == n + 1)

        canvas = driver.find_element(By.ID, "canvas")
        rect = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];",
                                     canvas)
        scale = rect[0] / W  # screen pixels per frame pixel

        def stroke(points) -> None:
            """A brush stroke through frame pixels (x, y), as mouse events on the canvas."""
            chain = ActionChains(driver).move_to_element_with_offset(canvas, *at(points[0])).click_and_hold()
            prev = at(points[0])
            for p in points[1:]:
                cur = at(p)
                chain = chain.move_by_offset(cur[0] - prev[0], cur[1] - prev[1])
                prev = cur
            chain.release().perform()

        def at(p):  # offsets from the canvas's centre
            return round((p[0] + 0.5) * scale - rect[0] / 2), round((p[1] + 0.5) * scale - rect[1] / 2)

        def key(*keys) -> None:
            ActionChains(driver).send_keys(*keys).perform()

        def saved() -> np.ndarray | None:
            return read_index_mask(mask_file) if mask_file.is_file() else None

        mask_file = workspace / "masks" / "00000.png"
        key("+")  # zoom in and back: the canvas grows on screen, then fits again
        wait.until(lambda d: d.execute_script("return arguments[0].getBoundingClientRect().width", canvas)
                   > rect[0] * 1.2)
        key("0")
        wait.until(lambda d: abs(d.execute_script("return arguments[0].getBoundingClientRect().width", canvas)
                                 - rect[0]) < 1)
        key("2")  # select object 2 by its number key
        assert driver.find_element(By.CSS_SELECTOR, "#objects li.selected").get_attribute("data-id") == "2"
        stroke([(70, 60), (90, 60), (90, 75)])
        wait.until(lambda d: saved() is not None and 2 in np.unique(saved()))
        key("1")
        key("p")  # polygon: click the corners, double-click to fill
        corners = [(10, 10), (30, 10), (30, 25), (10, 25)]
        for c in corners[:-1]:
            ActionChains(driver).move_to_element_with_offset(canvas, *at(c)).click().perform()
        ActionChains(driver).move_to_element_with_offset(canvas, *at(corners[-1])).double_click().perform()
        wait.until(lambda d: 1 in np.unique(saved()))
        first = saved()
        assert first[15, 20] == 1 and first[60, 80] == 2 and first[50, 5] == 0 and first[40, 20] == 0
        def ctrl(letter: str) -> None:
            ActionChains(driver).key_down(Keys.CONTROL).send_keys(letter).key_up(Keys.CONTROL).perform()

        ctrl("z")  # undo the polygon, then redo it
        wait.until(lambda d: 1 not in np.unique(saved()))
        ctrl("y")
        wait.until(lambda d: np.array_equal(saved(), first))
        shot("draw")

        driver.find_element(By.ID, "propagate-both").click()
        wait.until(lambda d: "propagate done" in d.find_element(By.ID, "job-state").text)
        assert sorted(p.name for p in (workspace / "masks").iterdir()) == [f"{t:05d}.png" for t in range(T)]
        key(Keys.ARROW_RIGHT)
        wait.until(lambda d: d.find_element(By.ID, "frame-index").text == "1")
        driver.find_element(By.ID, "next").click()
        wait.until(lambda d: d.find_element(By.ID, "frame-index").text == "2")
        Select(driver.find_element(By.ID, "overlay-mode")).select_by_value("outline")

        # a correction on frame 2 with a scribble (the scribble-to-mask network), propagated again (fused)
        assert not driver.find_element(By.ID, "tool-scribble").get_attribute("disabled")
        key("s")
        before = read_index_mask(workspace / "masks" / "00002.png")
        stroke([(60, 20), (100, 20), (100, 40)])
        wait.until(lambda d: d.execute_script("return state.status.edited.includes(2)"))
        assert not np.array_equal(read_index_mask(workspace / "masks" / "00002.png"), before)
        driver.find_element(By.ID, "propagate-both").click()
        wait.until(lambda d: "propagate done" in d.find_element(By.ID, "job-state").text)
        assert json.loads((workspace / "workspace.json").read_text())["interacted"] == [0, 2]
        shot("propagated")

        driver.find_element(By.ID, "export").click()
        wait.until(lambda d: d.find_element(By.ID, "export-result").text.startswith("exported to"))
        shot("exported")
        export = workspace / "export"
        pngs = sorted((export / "Annotations" / "walk").iterdir())
        assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(T)]
        assert np.array_equal(read_index_mask(pngs[0]), first)
        for t, png in enumerate(pngs):
            assert np.array_equal(read_index_mask(png), read_index_mask(workspace / "masks" / png.name)), t
        assert sorted(p.name for p in (export / "Binary" / "walk").iterdir()) == ["1", "2"]
        assert (export / "walk.mp4").is_file() and (export / "workspace.zip").is_file()
    except BaseException:
        failure = tmp_path / "failure.png"
        driver.save_screenshot(str(failure))
        print(f"screenshot of the failure: {failure}", file=sys.stderr)
        raise
    finally:
        driver.quit()

    proc.send_signal(signal.SIGINT)  # Ctrl-C: the server stops, the workspace stays
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode in (0, 130) and "Traceback" not in err, err  # 130: the signal re-raised by uvicorn
    last = err.strip().splitlines()[-1]
    assert last.startswith(("stopped; ", "interrupted by SIGINT: ")), err
    assert last.endswith(f"everything is saved in {workspace}; python interactive_demo.py --workspace {workspace} "
                         "resumes it"), last
    assert (workspace / "workspace.json").is_file()

