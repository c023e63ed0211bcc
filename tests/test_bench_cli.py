"""``avitalk bench`` and the bench/bench_animate.py, bench/bench_streaming.py smoke runs on tiny exported models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

from avitalk.cli import main
from pipeline_fixtures import speechy, tiny_models_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models_dir(tmp_path_factory)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_bench_reports_every_stage(models, tmp_path, capsys):
    wav = tmp_path / "speech.wav"
    a = speechy(0.7)
    sf.write(str(wav), a.samples, a.sample_rate)
    out = tmp_path / "b" / "bench.json"
    argv = ["bench", "--models", str(models), "--audio", str(wav), "--seconds", "1.5", "--threads", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["audio"]["seconds"] == pytest.approx(1.5) and doc["machine"]["threads"] == 1
    stages = {s["key"]: s for s in doc["stages"]}
    assert list(stages) == ["encode", "describe", "style", "generate", "pose", "render", "npz", "csv", "glb", "mp4"]
    for key, s in stages.items():
        if key == "describe":  # the tiny models have no stage 1
            assert s["seconds"] is None and "no stage 1" in s["note"]
            continue
        assert s["seconds"] > 0 and s["rtf"] == pytest.approx(s["seconds"] / 1.5)
        assert s["label"] in printed
    loads = {x["key"]: x for x in doc["load"]}
    assert loads["stage2"]["first"] > 0 and loads["stage2"]["again"] > 0 and loads["stage1"]["first"] is None
    an = doc["animate"]
    assert an["seconds"] > 0 and not an["described"] and set(an["timings"]) >= {"synthesize", "mp4", "glb"}
    assert "no stage 1 in the models" in printed and "RTF" in printed
    # the report reads it
    assert main(["eval", "report", "--bench", str(out), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"{stages['mp4']['seconds']:.3f}" in md and (tmp_path / "r" / "speed.png").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "{tmp}/nope"], "no such directory"),
        (["--models", "{tmp}"], "not a models directory"),
        (["--models", "{models}", "--audio", "{tmp}/missing.wav"], "no such file"),
        (["--models", "{models}", "--seconds", "0"], "--seconds must be > 0"),
        (["--models", "{models}", "--repeats", "0"], "--repeats must be >= 1"),
        (["--models", "{models}", "--out", "{tmp}"], "is a directory"),
    ],
)
def test_bench_errors_are_one_line(models, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, models=models) for a in argv]
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("avitalk: error:") and message in err and "\n" not in err


def _script(name: str, models: Path, out: Path, *extra: str) -> tuple[dict, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "bench" / name), "--models", str(models), "--quick", "--out", str(out), *extra]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, timeout=600)
    return json.loads(out.read_text()), res.stdout


def test_bench_streaming_quick(models, tmp_path):
    doc, stdout = _script("bench_streaming.py", models, tmp_path / "s.json", "--cores", "1")
    names = [f["figure"] for f in doc["figures"]]
    assert len(names) == 4 and "first motion frame" in names[0] and "sustained real-time factor" in names[1]
    assert "seam jitter" in names[2] and "streamed jitter" in names[3]
    assert doc["first_frame"]["warm"][0]["frames"] >= 1  # a frame comes out of the first 200 ms chunk
    assert doc["sustained"]["rtf"] > 0 and doc["seams"]["windows"] >= 2
    for f in doc["figures"]:
        assert ("PASS" if f["pass"] else "FAIL") in stdout and f["measured"] in stdout


def test_bench_animate_quick(models, tmp_path):
    doc, stdout = _script("bench_animate.py", models, tmp_path / "a.json", "--threads", "1", "--long-seconds", "6")
    assert [f["target"] for f in doc["figures"]] == ["<= 15", "<= 5", "< 4"]
    assert doc["fresh"]["wall_s"] > doc["loaded"]["wall_s"] > 0
    assert any("render video" in line for line in doc["fresh"]["stages"])
    assert doc["memory"]["peak_rss_mb"] > 50 and doc["audio"]["long_seconds"] == 6
    assert set(doc["loaded"]["files"]) == {"instruction.txt", "motion.npz", "render.mp4", "face.glb", "arkit.csv"}
    assert "QUICK MODE" in stdout and stdout.count("PASS") + stdout.count("FAIL") == 3
