"""The web app's HTTP API (Starlette TestClient) on tiny exported models with a fake stage 1."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
import soundfile as sf

from pipeline_fixtures import DESCRIBED, FakeDescriber, speechy, tiny_models_dir

pytest.importorskip("starlette")
pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from avitalk.pipeline import Pipeline

    p = Pipeline.load(tiny_models_dir(tmp_path_factory))
    p._describer = FakeDescriber()
    return p


@pytest.fixture
def client(pipe, tmp_path):
    from starlette.testclient import TestClient

    from avitalk.app.server import JobStore, ServerConfig, create_app

    store = JobStore(max_jobs=3, root=tmp_path / "jobs")
    store.root.mkdir()
    app = create_app(pipe, ServerConfig(max_upload_mb=1.0, max_seconds=3.0, max_samples=3), store=store)
    with TestClient(app) as c:
        c.store = store
        yield c
    assert not store.root.exists()  # everything the server wrote is gone at shutdown


def _wav(seconds: float = 1.2, seed: int = 0, fmt: str = "WAV") -> bytes:
    a = speechy(seconds, seed)
    buf = io.BytesIO()
    sf.write(buf, a.samples, a.sample_rate, format=fmt)
    return buf.getvalue()


def test_page_static_and_info(client):
    page = client.get("/")
    assert page.status_code == 200 and "avitalk" in page.text and "/static/app.js" in page.text
    for name in ("app.js", "viewer.js", "style.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and len(r.content) > 100
    assert "cdn" not in client.get("/static/app.js").text.lower()
    info = client.get("/api/info").json()
    assert info["space"] == "arkit52@v1" and info["fps"] == 25.0 and info["stage1"] is True
    assert info["max_upload_mb"] == 1.0


def test_animate_describes_and_serves_every_export(client):
    r = client.post("/api/animate?seed=0", content=_wav(), headers={"content-type": "audio/wav"})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["instruction"] == DESCRIBED and job["described"] and job["n_frames"] == 30
    files = job["samples"][0]["files"]
    assert set(files) == {"npz", "csv", "glb", "mp4"}
    glb = client.get(files["glb"])
    assert glb.status_code == 200 and glb.content[:4] == b"glTF"
    assert client.get(files["csv"]).text.startswith("Timecode,BlendShapeCount")
    assert client.get(job["files"]["instruction"]).text.strip() == DESCRIBED
    mp4 = client.get(files["mp4"])  # rendered on first request
    assert mp4.status_code == 200 and mp4.content[4:8] == b"ftyp"
    assert client.get(files["mp4"]).content == mp4.content  # not rendered again


def test_edited_timed_instruction_and_samples(client):
    timed = "0-0.5s: calm and neutral; 0.5s-: increasingly angry, brows lowered"
    r = client.post("/api/animate", params={"instruction": timed, "samples": 2, "seed": 3}, content=_wav(fmt="FLAC"))
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["instruction"] == timed and not job["described"] and len(job["segments"]) == 2
    a, b = (np.load(io.BytesIO(client.get(s["files"]["npz"]).content))["values"] for s in job["samples"])
    assert a.shape == b.shape and not np.allclose(a, b)


@pytest.mark.parametrize(
    ("body", "params", "status", "message"),
    [
        (b"", {}, 400, "no audio"),
        (b"<html>not audio</html>" * 10, {}, 415, "unsupported audio"),
        (b"RIFF\x00\x00\x00\x00WAVEgarbage" * 10, {}, 422, "cannot decode audio"),
        (b"RIFF" + b"\x00" * (2 * 1024 * 1024), {}, 413, "too large"),
        (None, {"samples": "9"}, 422, "samples must be between 1 and 3"),
        (None, {"samples": "x"}, 422, "must be integers"),
        (None, {"instruction": "0-1s: a; 2s-: b"}, 422, "gap between"),
        (None, {"path": "../../etc"}, 422, "unknown parameter"),
    ],
)
def test_bad_uploads_are_rejected_and_leave_nothing(client, body, params, status, message):
    r = client.post("/api/animate", params=params, content=_wav() if body is None else body)
    assert r.status_code == status and message in r.json()["error"], r.text
    assert list(client.store.root.iterdir()) == []


def test_too_long_and_silent_speech(client):
    r = client.post("/api/animate", content=_wav(4.0))
    assert r.status_code == 422 and "limit is 3 s" in r.json()["error"]
    buf = io.BytesIO()
    sf.write(buf, np.zeros(16000, np.float32), 16000, format="WAV")
    r = client.post("/api/animate", content=buf.getvalue())
    assert r.status_code == 422 and "silent" in r.json()["error"]


def test_files_are_served_only_from_their_job(client):
    job = client.post("/api/animate", params={"instruction": "happy"}, content=_wav()).json()
    base = f"/api/jobs/{job['job']}/"
    for bad in ("nope.glb", "..%2F..%2Fetc%2Fpasswd", "upload.wav"):
        assert client.get(base + bad).status_code == 404
    assert client.get("/api/jobs/unknown/face.glb").status_code == 404
    # the oldest jobs are deleted beyond max_jobs (3)
    for _ in range(3):
        client.post("/api/animate", params={"instruction": "happy"}, content=_wav())
    assert client.get(base + "face.glb").status_code == 404
    assert len(list(client.store.root.iterdir())) == 3


def test_concurrent_requests_do_not_mix(client, pipe):
    texts = ["calm and neutral", "furious, brows lowered", "quite sad"]
    from avitalk.types import Audio

    def decoded(i: int) -> Audio:  # what the server hears: the 16-bit WAV, not the float original
        x, rate = sf.read(io.BytesIO(_wav(1.0, i)), dtype="float32")
        return Audio(x, rate)

    expected = {t: pipe.animate(decoded(i), instruction=t, seed=i).motions[0].values for i, t in enumerate(texts)}
    results: dict[str, dict] = {}

    def post(i: int, t: str) -> None:
        results[t] = client.post("/api/animate", params={"instruction": t, "seed": i}, content=_wav(1.0, i)).json()

    threads = [threading.Thread(target=post, args=(i, t)) for i, t in enumerate(texts)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len({r["job"] for r in results.values()}) == 3
    for t, job in results.items():
        assert job["instruction"] == t
        values = np.load(io.BytesIO(client.get(job["samples"][0]["files"]["npz"]).content))["values"]
        np.testing.assert_allclose(values, expected[t], atol=1e-5)
    assert json.loads(json.dumps(results))  # plain JSON all the way
