"""``Pipeline`` + ``avitalk animate`` + ``export_checkpoint`` on tiny trained, exported stage-2 models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from avitalk.cli import main
from avitalk.errors import AvitalkError
from avitalk.rates import frames_for_samples
from pipeline_fixtures import DESCRIBED, FakeDescriber, speechy, tiny_models_dir


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_models_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def pipe(models):
    from avitalk.pipeline import Pipeline

    p = Pipeline.load(models)
    p._describer = FakeDescriber()
    return p


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    a = speechy(1.3)
    sf.write(str(path), a.samples, a.sample_rate)
    return path


def test_export_is_stripped_atomic_and_loads_like_the_run(models, tmp_path):
    from avitalk.train.checkpoint import load_checkpoint, read_checkpoint
    from avitalk.train.export import export_checkpoint

    names = sorted(p.name for p in (models / "motion").iterdir())
    assert names == ["generator.safetensors", "meta.json", "stats.safetensors", "style_encoder.safetensors"]
    meta = json.loads((models / "motion" / "meta.json").read_text())
    assert meta["states"] == [] and meta["exported"]["dtype"] == "float16" and "rng.json" not in meta["files"]
    src = read_checkpoint(meta["exported"]["source"])
    assert read_checkpoint(models / "motion").step == src.step
    # fp16 export halves the generator; the stats stay float32
    from safetensors import safe_open

    with safe_open(str(models / "motion" / "generator.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    with safe_open(str(models / "motion" / "stats.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}
    # a float32 export holds exactly the trained weights
    from avitalk.motion.config import Stage2Config
    from avitalk.motion.model import build_stage2

    out = export_checkpoint(src.path, tmp_path / "m32", modules=["generator", "stats", "style_encoder"])
    cfg = Stage2Config.from_dict(src.config["model"])
    a, b = build_stage2(cfg).generator, build_stage2(cfg).generator
    load_checkpoint(src.path, {"generator": a})
    load_checkpoint(out, {"generator": b})
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    # re-export over an export is fine; over another directory is an error; nothing half-written remains
    export_checkpoint(src.path, out)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(AvitalkError, match="not an exported checkpoint"):
        export_checkpoint(src.path, tmp_path / "busy")
    with pytest.raises(AvitalkError, match="no module"):
        export_checkpoint(src.path, tmp_path / "bad", modules=["nope"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "m32"]


def test_load_errors_are_one_clear_line(tmp_path, monkeypatch):
    from avitalk import pipeline
    from avitalk.pipeline import Pipeline

    with pytest.raises(AvitalkError, match="not a models directory"):
        Pipeline.load(tmp_path)
    monkeypatch.setattr(pipeline, "default_models_dir", lambda: tmp_path / "none")
    with pytest.raises(AvitalkError, match="no default models") as e:
        Pipeline.load()
    assert "\n" not in str(e.value)


def test_animate_describes_writes_all_formats_atomically(pipe, wav, tmp_path):
    from avitalk.face.video import probe_video
    from avitalk.motionio import load_motion

    events = []
    out = tmp_path / "out"
    r = pipe.animate(wav, out_dir=out, seed=0, progress=lambda s, d, t: events.append((s, d, t)))
    assert r.described and r.instruction == DESCRIBED and pipe._describer.calls[-1][2] == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "arkit.csv",
        "face.glb",
        "instruction.txt",
        "motion.npz",
        "render.mp4",
    ]
    assert (out / "instruction.txt").read_text() == DESCRIBED + "\n"
    (m,) = r.motions
    n = frames_for_samples(len(r.audio.samples))
    assert m.n_frames == n and np.isfinite(m.values).all()
    assert np.allclose(load_motion(out / "motion.npz").values, m.values)
    info = probe_video(out / "render.mp4")
    assert info.n_frames == n and info.audio_codec == "aac"
    assert {s for s, _, _ in events} == {"audio", "describe", "synthesize", "npz", "csv", "glb", "mp4"}
    assert ("mp4", n, n) in events
    assert set(r.paths) == {out / f for f in ("arkit.csv", "face.glb", "instruction.txt", "motion.npz", "render.mp4")}


def test_animate_instruction_samples_seed_and_per_sample_names(pipe, wav, tmp_path):
    calls = len(pipe._describer.calls)
    out = tmp_path / "o"
    r = pipe.animate(wav, instruction="speak angrily", samples=2, seed=1, out_dir=out, formats=("instruction", "npz"))
    assert len(pipe._describer.calls) == calls and not r.described  # stage 1 skipped
    assert sorted(p.name for p in out.iterdir()) == ["instruction.txt", "motion_1.npz", "motion_2.npz"]
    assert not np.allclose(r.motions[0].values, r.motions[1].values)
    again = pipe.animate(wav, instruction="speak angrily", samples=2, seed=1)
    assert again.paths == []
    assert all(np.array_equal(a.values, b.values) for a, b in zip(r.motions, again.motions, strict=True))


def test_time_varying_instruction_runs_end_to_end(pipe, wav, tmp_path):
    segs = [{"start": 0, "end": 0.6, "text": "calm and neutral"}, {"start": 0.6, "text": "furious, brows lowered"}]
    r = pipe.animate(wav, instruction=segs, seed=0, out_dir=tmp_path, formats=("instruction", "npz"))
    assert r.instruction == "0-0.6s: calm and neutral; 0.6s-: furious, brows lowered"
    assert (tmp_path / "instruction.txt").read_text().strip() == r.instruction
    calm = pipe.animate(wav, instruction="calm and neutral", seed=0).motions[0].values
    # before the cross-fade (0.6 s - 0.25 s) the first segment's style alone drives the motion, up to
    # the generator's attention reaching across the boundary: far closer to 'calm' than the rest is
    early, late = slice(0, 5), slice(20, None)
    v = r.motions[0].values
    assert np.abs(v[early] - calm[early]).mean() < np.abs(v[late] - calm[late]).mean()


def test_failure_leaves_no_partial_outputs(pipe, wav, tmp_path, monkeypatch):
    from avitalk import pipeline

    def boom(*a, **k):
        raise AvitalkError("encoder exploded")

    monkeypatch.setattr(pipeline.Pipeline, "_render", boom)
    with pytest.raises(AvitalkError, match="exploded"):
        pipe.animate(wav, instruction="happy", out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_animate_cli(models, wav, tmp_path, capsys, monkeypatch):
    from avitalk import pipeline

    dtypes: list[str] = []

    def fake_stage1(run, device, llm_dtype, llm_backend):
        dtypes.append((llm_dtype, llm_backend))
        return FakeDescriber("A man is quite sad.")

    monkeypatch.setattr(pipeline, "_load_stage1", fake_stage1)
    (models_with_stage1 := tmp_path / "models").mkdir()
    for part in ("motion", "align"):
        (models_with_stage1 / part).symlink_to(models / part)
    (models_with_stage1 / "instruct").mkdir()
    (models_with_stage1 / "instruct" / "meta.json").write_text("{}")
    out = tmp_path / "out"
    base = ["animate", str(wav), "-o", str(out), "--models", str(models_with_stage1)]
    assert main([*base, "--formats", "npz,csv", "--seed", "0"]) == 0
    captured = capsys.readouterr()
    assert "A man is quite sad." in captured.out and "stage 2: motion" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["arkit.csv", "instruction.txt", "motion.npz"]
    # the product's defaults: bfloat16 LLM where the CPU computes it natively, our own LLaMA implementation
    assert dtypes == [("auto", "auto")]
    argv = [*base, "--formats", "npz", "--llm-dtype", "float32", "--llm-backend", "transformers"]
    assert main(argv) == 0 and dtypes[-1] == ("float32", "transformers")
    capsys.readouterr()

    seg = tmp_path / "segs.yaml"
    seg.write_text("- {start: 0, end: 0.5, text: calm}\n- {start: 0.5, text: angry}\n")
    assert main([*base, "--instruction", f"@{seg}", "--samples", "2", "--formats", "npz", "--guidance", "1"]) == 0
    assert "0-0.5s: calm; 0.5s-: angry" in capsys.readouterr().out
    assert (out / "motion_2.npz").is_file()

    bad = [
        (["animate", str(tmp_path / "nope.wav"), "-o", str(out), "--models", str(models)], "no such audio file"),
        ([*base, "--instruction", "0-1s: calm; 2s-: angry"], "gap between"),
        ([*base, "--instruction", "@" + str(tmp_path / "missing.json")], "no such instruction file"),
        ([*base, "--formats", "mp4,gif"], "unknown output format gif"),
        (["animate", str(seg), "-o", str(out), "--models", str(models), "--instruction", "x"], "cannot decode audio"),
        (
            ["animate", str(wav), "-o", str(seg / "x"), "--models", str(models), "--instruction", "x"],
            "output directory",
        ),
        (["animate", str(wav), "-o", str(out), "--models", str(tmp_path)], "not a models directory"),
    ]
    for argv, message in bad:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and err[-1].startswith("avitalk: error:"), (argv, err)
