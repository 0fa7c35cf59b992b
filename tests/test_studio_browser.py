"""Kinema Studio in a real browser: `kinema studio` on a free port with a tiny model, driven by Playwright in the
system's Chromium as a user would (type and generate, draw a path, upload a bad file, reload for the gallery).
A screenshot of each step lands in test-artifacts/studio/ (KINEMA_TEST_ARTIFACTS)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import av
import numpy as np
import pytest
from PIL import Image

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("KINEMA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI") != "true":
    pytest.skip("no system Chromium (apt-get install chromium)", allow_module_level=True)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("KINEMA_TEST_ARTIFACTS", "test-artifacts")) / "studio"
PROMPT = "a red ball bounces"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny text-to-video model directory: 4 frames of 16x16, 2 sampler steps."""
    from kinema.config import load_config
    from kinema.models.registry import build_model
    from kinema.models.pretrained import save_pretrained
    from conftest import TINY_OVERRIDES

    config = load_config(None, [*TINY_OVERRIDES, "sample.direction_guidance=0"])
    return save_pretrained(tmp_path_factory.mktemp("model") / "tiny", build_model(config.model_name, config.model),
                           config, {"step": 1})


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    """`kinema studio --port 0` serving the tiny model; (its address, its gallery folder)."""
    folder = tmp_path_factory.mktemp("studio")
    gallery, log = folder / "gallery", folder / "server.log"
    with open(log, "w") as output:  # a file, not a pipe: a full pipe would stall the server's progress bars
        process = subprocess.Popen([sys.executable, "-m", "kinema.cli", "studio", "--model", str(tiny_model),
                                    "--port", "0", "--gallery", str(gallery), "--device", "cpu"],
                                   stdout=output, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (found := re.search(r"at (http://\S+?)/? ", log.read_text())) and process.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert found, f"kinema studio printed {log.read_text()!r}"
    yield found.group(1), gallery
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server, request):
    """A fresh page on the studio; every request it makes must stay on this machine (the studio is offline)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    outside = []
    page.on("request", lambda r: outside.append(r.url) if urlparse(r.url).hostname not in (
        "127.0.0.1", "localhost", None) and not r.url.startswith(("data:", "blob:")) else None)
    page.goto(server[0])
    page.wait_for_function("() => /\\d+ results kept in/.test(document.querySelector('#gallery')?.innerText)")
    page.shot = lambda step: page.screenshot(path=ARTIFACTS / f"{request.node.name}-{step}.png", full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield page
    context.close()
    assert not outside, f"the page reached outside this machine: {outside}"


def _generate(page, prompt: str = PROMPT) -> None:
    page.get_by_role("tab", name="Text to video").click()
    page.locator("#prompt textarea").fill(prompt)
    page.locator("#generate").click()


def _result_video(page, tmp_path: Path, before: str | None = None) -> Path:
    """Wait for a result video (another than `before`), download it as the browser got it."""
    page.wait_for_function("before => { const v = document.querySelector('#result video');"
                           " return v && v.src && v.src !== before; }", arg=before, timeout=60_000)
    src = page.locator("#result video").get_attribute("src")
    path = tmp_path / f"seen-{len(list(tmp_path.iterdir()))}.mp4"
    path.write_bytes(page.request.get(src).body())
    return path


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _entries(gallery: Path) -> list[Path]:
    return sorted(p for p in gallery.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_typing_a_prompt_and_generating_plays_a_video_of_the_models_frames(page, server, tmp_path):
    page.shot("start")
    _generate(page)
    seen = _result_video(page, tmp_path)
    page.shot("video")
    assert _frame_count(seen) == 4  # the tiny model's frames
    page.evaluate("async () => { const v = document.querySelector('#result video'); v.muted = true; v.currentTime = 0;"
                  " await v.play(); }")
    page.wait_for_function("() => document.querySelector('#result video').currentTime > 0.1")  # it plays
    duration, width = page.evaluate("() => { const v = document.querySelector('#result video');"
                                    " return [v.duration, v.videoWidth]; }")
    assert duration == pytest.approx(4 / 8, abs=0.05) and width == 16 * 16
    settings = page.locator("#settings").inner_text()
    assert f"kinema generate '{PROMPT}'" in settings and "--checkpoint" in settings
    sheet = page.locator("#sheet img")  # the contact sheet in the page: one column per frame
    sheet.wait_for()
    assert page.evaluate("i => i.naturalWidth > 3 * i.naturalHeight", sheet.element_handle())


def test_clicking_points_on_the_canvas_draws_the_path_the_server_generates_with(page, server, tmp_path):
    page.get_by_role("tab", name="Motion control").click()
    shown = ("() => { const i = document.querySelector('#canvas img');"  # the canvas image loaded: clicks count
             " return i && i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 100; }")
    page.wait_for_function(shown)
    box = page.locator("#canvas img").bounding_box()
    clicks = [(0.2, 0.3), (0.5, 0.7), (0.8, 0.4)]
    for index, (fx, fy) in enumerate(clicks):
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        page.wait_for_function("n => document.querySelector('#trajectory-json').innerText.split('[').length - 1 >= n",
                               arg=2 + index + 1)  # '[' of objects, of points, of each point
        page.wait_for_function(shown)  # the redrawn canvas, as a user sees it before clicking again
    page.shot("path")
    assert "the red ball: min_acceleration" in page.locator("#path-status").inner_text()
    with page.expect_download() as download:
        page.locator("#trajectory-download").click()
    downloaded = json.loads(Path(download.value.path()).read_text())
    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#trajectory-projection input").check()
    page.locator("#generate-motion").click()
    _result_video(page, tmp_path)
    page.shot("video")
    newest = _entries(server[1])[-1]
    received = json.loads((newest / "trajectory.json").read_text())
    (ball,) = received["objects"]
    assert ball["description"] == "the red ball" and received["size"] == 16 and received["num_frames"] == 4
    expected = [(fx * 16, fy * 16) for fx, fy in clicks]  # the tiny model's 16x16 frame
    assert len(ball["points"]) == 3
    for (x, y), (ex, ey) in zip(ball["points"], expected):
        assert abs(x - ex) < 0.15 and abs(y - ey) < 0.15
    command = json.loads((newest / "settings.json").read_text())["command"]
    assert "--trajectory trajectory.json" in command and "--trajectory-projection 1.0" in command
    assert downloaded == received  # the file a user downloads is the one generation used
    drawn = page.locator("#canvas img").get_attribute("src")
    page.locator("#on-result").click()  # the result's first frame under the paths
    page.wait_for_function("drawn => document.querySelector('#canvas img').src !== drawn", arg=drawn)
    page.shot("on-result")


def test_a_bad_upload_shows_an_error_and_the_page_keeps_working(page, server, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    before = _entries(server[1])
    _generate(page, "")
    page.locator(".toast-body", has_text="the prompt is empty").wait_for()
    page.get_by_role("tab", name="Frames as conditions").click()
    page.get_by_label("interpolate a video").check()
    page.locator("#clip input[type=file]").set_input_files(str(bad))
    page.locator("#run-task").click()
    toast = page.locator(".toast-body").first
    toast.wait_for(timeout=30_000)
    page.shot("error")
    assert "clip.mp4" in toast.inner_text() and "/" not in toast.inner_text().split("clip.mp4")[0]
    assert _entries(server[1]) == before  # nothing half-written, nothing lost
    _generate(page, "a blue ball bounces")
    _result_video(page, tmp_path)
    page.shot("after")
    assert len(_entries(server[1])) == len(before) + 1


def test_a_reloaded_page_lists_the_gallery_entry_and_shows_its_command(page, server, tmp_path):
    _generate(page, "a green ball bounces")
    _result_video(page, tmp_path)
    page.reload()
    page.wait_for_function("() => document.querySelector('#gallery')?.innerText.includes('a green ball bounces')")
    page.shot("reloaded")
    page.locator("#gallery button", has_text="a green ball bounces").first.click()
    page.wait_for_function("() => document.querySelector('#settings').innerText.includes('a green ball bounces')")
    assert "kinema generate 'a green ball bounces'" in page.locator("#settings").inner_text()


def test_a_long_video_shows_its_frames_and_an_animated_image_comes_back_as_a_video(page, server, tmp_path):
    page.locator("#frames input").fill("7")  # more than the tiny model's 4: window by window, streamed
    _generate(page)
    seen = _result_video(page, tmp_path)
    page.shot("long")
    assert _frame_count(seen) == 7 and page.locator("#streamed img").count() == 7
    image = tmp_path / "still.png"
    Image.fromarray(np.full((24, 24, 3), (200, 30, 30), np.uint8)).save(image)
    page.get_by_role("tab", name="Frames as conditions").click()
    page.locator("#image input[type=file]").set_input_files(str(image))
    page.locator("#run-task").click()
    seen = _result_video(page, tmp_path, before=page.locator("#result video").get_attribute("src"))
    page.shot("animated")
    assert _frame_count(seen) == 4
    command = json.loads((_entries(server[1])[-1] / "settings.json").read_text())["command"]
    assert command.startswith("kinema animate image.png ")


def test_a_trajectory_file_outside_the_frame_is_refused_and_a_good_one_is_drawn(page, server, tmp_path):
    page.get_by_role("tab", name="Motion control").click()
    bad, good = tmp_path / "outside.json", tmp_path / "arc.json"
    ball = {"description": "the red ball", "radius": 2, "curve": "linear"}
    bad.write_text(json.dumps({"size": 16, "num_frames": 4, "objects": [{**ball, "points": [[2, 2], [30, 8]]}]}))
    good.write_text(json.dumps({"size": 16, "num_frames": 4, "objects": [{**ball, "points": [[2, 2], [14, 8]]}]}))

    def upload(path):
        with page.expect_file_chooser() as chooser:
            page.locator("#trajectory-upload").click()
        chooser.value.set_files(str(path))

    upload(bad)
    toast = page.locator(".toast-body").first
    toast.wait_for()
    page.shot("refused")
    assert "objects[0].points" in toast.inner_text() and "outside.json" in toast.inner_text()
    page.locator("#clear").click()  # the page still answers
    upload(good)
    page.wait_for_function("() => document.querySelector('#trajectory-json').innerText.includes('[14, 8]')")
    page.shot("loaded")
    assert "the red ball: linear" in page.locator("#path-status").inner_text()


def test_loading_another_model_shows_what_it_reads_and_offers_its_knobs(page, server):
    page.get_by_role("tab", name="Motion control").click()
    assert not page.locator("#knobs-on").is_visible()  # the tiny model has no knobs
    page.locator("#model textarea").fill("shipped")
    page.locator("#load-model").click()
    page.wait_for_function("() => document.querySelector('#model-card').innerText.includes('8 frames of 32x32')")
    page.shot("shipped")
    assert page.locator("#knobs-on").is_visible() and page.locator("#knob-speed").is_visible()
    assert not page.locator("#knob-motion_amount").is_visible()  # the shipped models have no such knob
    page.locator("#model textarea").fill("no/such/model")
    page.locator("#load-model").click()
    page.locator(".toast-body", has_text="no/such/model").wait_for()
    assert "8 frames of 32x32" in page.locator("#model-card").inner_text()  # the last good model stays
