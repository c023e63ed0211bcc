"""``avitalk train all``: corpus -> motion -> align -> instruct -> export on a tiny synthetic corpus, then the
exported models animate the bundled example; re-running skips finished recipes; float16 exports load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from avitalk.cli import main
from avitalk.errors import AvitalkError
from avitalk.rates import frames_for_samples
from avitalk.train import all_recipe
from conftest import write_corpus
from instruct_fixtures import EMOTIONS, emotion_clip
from pipeline_fixtures import require_backends

torch.set_num_threads(1)

SETS = [
    "train.progress=false",
    "train.log_every=5",
    "motion.train.max_steps=6",
    "motion.train.batch_size=4",
    "align.train.max_steps=6",
    "align.train.batch_size=8",
    "instruct.align.train.max_steps=4",
    "instruct.project.train.max_steps=4",
    "instruct.align.train.batch_size=4",
    "instruct.project.train.batch_size=4",
]
HAPPY = "A woman feels very happy and speaks with a broad smile."


def _argv(runs: Path, rav: Path, *extra: str, sets=SETS) -> list[str]:
    base = ["train", "all", "--out", str(runs), "--preset", "tiny", "--ravdess", str(rav)]
    return [*base, *extra, *(a for s in sets for a in ("--set", s))]


def _latest(run: Path) -> str:
    return (run / "checkpoints" / "latest").read_text().strip()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(runs, ravdess corpus)`` after one ``train all --preset tiny`` that synthesised its own corpus."""
    require_backends()
    root = tmp_path_factory.mktemp("train-all")
    rav = root / "ravdess"  # an already imported, audio-only corpus (RAVDESS stand-in)
    rav.mkdir()
    emos = list(EMOTIONS)
    write_corpus(rav, {"train": [emotion_clip(200 + i, emos[i % 4], motion=False) for i in range(4)]})
    runs = root / "runs"
    assert main(_argv(runs, rav, "--hours", "0.001", "--workers", "1")) == 0
    return runs, rav


def test_split_overrides_routes_by_recipe():
    got = all_recipe.split_overrides(["motion.lr=1e-3", "train.batch_size=4", "instruct.project.lr=0.1"], devices=2)
    assert got["motion"] == ["lr=1e-3", "train.batch_size=4", "train.devices=2"]
    assert got["align"] == ["train.batch_size=4", "train.devices=2"]
    assert got["instruct"] == [
        "align.train.batch_size=4",
        "project.train.batch_size=4",
        "project.lr=0.1",
        "align.train.devices=2",
        "project.train.devices=2",
    ]
    for bad in ("lr=1", "motion=3", "stage2.lr=1"):
        with pytest.raises(AvitalkError, match="start the key with the recipe"):
            all_recipe.split_overrides([bad])


def test_float16_export_keeps_tensors_that_would_overflow():
    from avitalk.train.export import _castable

    assert _castable(torch.randn(4), torch.float16) and not _castable(torch.arange(3), torch.float16)
    assert not _castable(torch.tensor([1.0, 1e6]), torch.float16)  # beyond float16's 65504: stays float32
    assert not _castable(torch.randn(4, dtype=torch.float16), torch.float16)


def test_train_all_exports_models_that_animate_the_example(trained, tmp_path, capsys):
    from avitalk.examples import example_path
    from avitalk.pipeline import Pipeline

    runs, rav = trained
    export = runs / "export"
    assert sorted(p.name for p in export.iterdir()) == ["align", "instruct", "motion", "training.json"]
    for part in ("motion", "align", "instruct"):
        names = {p.name for p in (export / part).iterdir()}
        assert "meta.json" in names and not names & {"optim.safetensors", "optim.json", "rng.json"}
    assert _latest(runs / "motion") == "step-000006" and _latest(runs / "align") == "step-000006"
    assert _latest(runs / "stage1" / "align") == _latest(runs / "stage1" / "project") == "step-000004"
    info = json.loads((export / "training.json").read_text())
    assert info["preset"] == "tiny" and info["command"].startswith("avitalk train all --out")
    assert all(r["trained_now"] and r["finished"] for r in info["recipes"].values())
    assert info["recipes"]["motion"]["steps"] == {"train": 6}
    assert info["recipes"]["instruct"]["steps"] == {"align": 4, "project": 4}
    assert info["recipes"]["align"]["command"].startswith("avitalk train align --data ")
    assert "--set train.max_steps=6" in info["recipes"]["align"]["command"]
    assert info["corpora"]["stage2"]["source"] == "synth" and len(info["corpora"]["stage1"]) == 2
    assert all(len(c["manifest_sha256"]) == 64 for c in info["corpora"]["stage1"])
    assert info["export"]["dtype"] == "float16" and info["versions"]["torch"] == torch.__version__
    assert info["export"]["bytes"] == sum(m["bytes"] for m in info["export"]["models"].values())

    # float16 on disk (statistics stay float32) ...
    with safe_open(str(export / "motion" / "generator.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    with safe_open(str(export / "motion" / "stats.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}
    with safe_open(str(export / "instruct" / "qformer.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    # ... float32 in memory, and the exported models animate the bundled example
    pipe = Pipeline.load(export)
    synth = pipe.synthesizer
    assert {p.dtype for m in (synth.generator, synth.aligner, synth.prior) for p in m.parameters()} == {torch.float32}
    out = tmp_path / "out"
    r = pipe.animate(example_path(), instruction=HAPPY, seed=0, out_dir=out, formats=("instruction", "npz"))
    (m,) = r.motions
    assert m.n_frames == frames_for_samples(len(r.audio.samples)) and 150 <= m.n_frames <= 152
    assert np.isfinite(m.values).all() and sorted(p.name for p in out.iterdir()) == ["instruction.txt", "motion.npz"]
    assert isinstance(pipe.describe(example_path(), seed=0), str)  # the exported stage 1 (tiny random LLM) loads

    # a float32 export of the same runs (--export-only) gives nearly the same motion
    f32 = tmp_path / "f32"
    assert main([*_argv(runs, rav, "--export-only", "--export", str(f32), "--export-dtype", "float32")]) == 0
    assert "nothing is trained" in capsys.readouterr().out
    assert json.loads((f32 / "training.json").read_text())["export_only"] is True
    ref = Pipeline.load(f32).animate(example_path(), instruction=HAPPY, seed=0).motions[0].values
    scale = np.abs(ref).max()
    assert np.abs(ref - m.values).max() < 0.005 * scale, np.abs(ref - m.values).max() / scale

    # the CLI main command on the bundled clip
    cli_out = tmp_path / "cli"
    argv = ["animate", "--example", "-o", str(cli_out), "--models", str(export), "--instruction", HAPPY]
    assert main([*argv, "--formats", "npz"]) == 0
    assert (cli_out / "motion.npz").is_file() and HAPPY in capsys.readouterr().out


def test_rerun_skips_finished_recipes_and_continues_raised_steps(trained, monkeypatch, capsys):
    from avitalk.train import align_recipe, instruct_recipe, motion_recipe

    runs, rav = trained
    before = {p: _latest(runs / p) for p in ("motion", "align", "stage1/align", "stage1/project")}

    def refuse(*args, **kwargs):
        raise AssertionError("a finished recipe was started again")

    monkeypatch.setattr(motion_recipe, "train_motion", refuse)
    monkeypatch.setattr(align_recipe, "train_align", refuse)
    real_instruct = instruct_recipe.train_instruct
    monkeypatch.setattr(instruct_recipe, "train_instruct", refuse)
    assert main(_argv(runs, rav, "--hours", "0.001", "--workers", "1")) == 0
    said = capsys.readouterr().out
    assert said.count("finished at step") == 3
    assert {p: _latest(runs / p) for p in before} == before
    info = json.loads((runs / "export" / "training.json").read_text())
    assert not any(r["trained_now"] for r in info["recipes"].values())

    # more projection steps: only the projection phase trains (the rest stays as it was)
    phases = []

    def spy(cfg, data, out, argv, phase="all", **kw):
        phases.append((phase, argv))
        return real_instruct(cfg, data, out, argv, phase, **kw)

    monkeypatch.setattr(instruct_recipe, "train_instruct", spy)
    sets = [*SETS, "instruct.project.train.max_steps=6"]
    assert main(_argv(runs, rav, "--data", str(runs / "corpus"), sets=sets)) == 0
    assert [p for p, _ in phases] == ["project"] and phases[0][1][:2] == ["train", "instruct"]
    assert _latest(runs / "stage1" / "project") == "step-000006"
    assert {p: _latest(runs / p) for p in ("motion", "align", "stage1/align")} == {
        p: before[p] for p in ("motion", "align", "stage1/align")
    }
    info = json.loads((runs / "export" / "training.json").read_text())
    assert info["recipes"]["instruct"]["trained_now"] and info["export"]["models"]["instruct"]["step"] == 6


def test_errors_are_one_line_and_early(trained, tmp_path, capsys):
    runs, rav = trained
    corpus = ["--data", str(runs / "corpus")]
    assert main(_argv(runs, rav, *corpus, sets=["lr=3"])) == 2
    assert "start the key with the recipe" in capsys.readouterr().err
    assert main(_argv(runs, rav, *corpus, sets=["motion.train.max_step=3"])) == 2
    assert "did you mean train.max_steps" in capsys.readouterr().err
    # the runs hold tiny models: asking for the default preset there is refused before any work
    assert main(["train", "all", "--out", str(runs), *corpus, "--set", "train.progress=false"]) == 2
    assert "holds a motion model with another config" in capsys.readouterr().err
    assert main(_argv(tmp_path / "r", rav, "--data", str(tmp_path))) == 2
    assert "not a corpus directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --hours and --data are exclusive
        main(_argv(tmp_path / "r", rav, "--hours", "1", *corpus))
    assert main(["train", "all", "--out", str(tmp_path / "none"), "--export-only", *corpus]) == 2
    assert "no such motion run" in capsys.readouterr().err
