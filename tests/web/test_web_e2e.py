"""The web app end to end in headless Chromium: upload a clip, wait for the instruction and the face,
check a screenshot shows the face, regenerate with an edited timed instruction and two samples.

Needs ``node``, Debian's ``chromium`` (``apt-get install -y chromium``; ``$AVITALK_CHROMIUM`` may point
elsewhere) and the npm package ``playwright-core`` (``npm install -g playwright-core``; found as
``$AVITALK_PLAYWRIGHT_DIR`` or in ``npm root -g``). Skipped when one is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline_fixtures import DESCRIBED, FakeDescriber, speechy, tiny_models_dir

SCRIPT = Path(__file__).with_name("e2e.mjs")


def _tools() -> tuple[str, str, Path]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    chromium = os.environ.get("AVITALK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).is_file():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    env = os.environ.get("AVITALK_PLAYWRIGHT_DIR")
    pw = Path(env) if env else None
    if pw is None and (npm := shutil.which("npm")):
        res = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, check=False, timeout=60)
        pw = Path(res.stdout.strip()) / "playwright-core"
    if pw is None or not (pw / "package.json").is_file():
        pytest.skip("the playwright-core npm package is not installed (npm install -g playwright-core)")
    return node, chromium, pw


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("uvicorn")
    tools = _tools()
    import uvicorn

    from avitalk.app.server import create_app
    from avitalk.pipeline import Pipeline

    pipe = Pipeline.load(tiny_models_dir(tmp_path_factory))
    pipe._describer = FakeDescriber()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(pipe), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline:
            pytest.fail("the web app did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", tools
    srv.should_exit = True
    thread.join(timeout=30)


def test_upload_describe_view_and_regenerate_in_chromium(server, tmp_path):
    from PIL import Image

    url, (node, chromium, pw) = server
    clip = tmp_path / "clip.wav"
    a = speechy(1.5, seed=3)
    sf.write(str(clip), a.samples, a.sample_rate)
    res = subprocess.run(
        [node, str(SCRIPT), str(pw), chromium, url, str(clip), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    print(json.dumps(seen, indent=1))
    assert seen["ready"] == "1" and seen["errors"] == [] and seen["instruction"] == DESCRIBED, seen
    assert not seen["offsite"]  # nothing is fetched from anywhere but the app itself
    assert {link.rsplit("/", 1)[1] for link in seen["links"]} == {"face.glb", "arkit.csv", "motion.npz", "render.mp4"}
    assert not [c for c in seen["console"] if c.startswith(("error", "pageerror"))], seen["console"]
    assert seen["ready2"] == "2" and seen["canvases2"] == 2
    assert seen["used2"].endswith("0-0.7s: calm and neutral; 0.7s-: increasingly angry, brows lowered")

    # the face is drawn: many pixels differ from the canvas background, with skin-like colours
    img = np.asarray(Image.open(tmp_path / "face.png").convert("RGB")).astype(int)
    background = np.array([22, 23, 26])  # the viewer's clear colour (0.085, 0.09, 0.1)
    drawn = np.abs(img - background).sum(axis=2) > 30
    print(f"face pixels: {drawn.mean():.1%} of {img.shape[1]}x{img.shape[0]}")
    assert 0.1 < drawn.mean() < 0.9
    skin = img[drawn]
    assert (skin[:, 0] > skin[:, 2]).mean() > 0.6  # mostly warm (skin, lips, hair), not a flat grey
