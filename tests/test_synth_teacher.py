"""The motion teacher on hand-built phone sequences (no TTS): shapes, constraints, expression, eyes, head."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from avitalk.data.synth import checks
from avitalk.data.synth.coarticulation import articulate
from avitalk.data.synth.phones import Phone
from avitalk.data.synth.style import EMOTIONS, ClipStyle, sample_clip_style, speaker_style
from avitalk.data.synth.teacher import blink_curve, teach
from avitalk.data.synth.visemes import VISEMES, known, viseme
from avitalk.spaces import ARKIT52

FPS = 25
I = ARKIT52.index
CONSONANTS = ("p", "b", "m", "f", "v", "t", "d", "s", "z", "k", "ɡ", "n", "l", "ɹ", "w", "ʃ", "tʃ", "dʒ", "θ", "h")
VOWELS = ("i", "ɪ", "eɪ", "ɛ", "æ", "ɑ", "ɔ", "oʊ", "ʊ", "u", "ʌ", "ə", "ɚ", "aɪ", "aʊ")


def sentence(rng: np.random.Generator, seconds: float, lead: float = 0.3) -> tuple[list[Phone], int]:
    """Random CV(C) syllables in words of 1-3 syllables, with phrase pauses; ``(phones, n_frames)``."""
    phones, t, word = [], lead, 0
    while t < seconds - 0.6:
        stressed = int(rng.integers(0, 3))
        for syl in range(int(rng.integers(1, 4))):
            for sym in (rng.choice(CONSONANTS), rng.choice(VOWELS), rng.choice(CONSONANTS))[: int(rng.integers(2, 4))]:
                vowel = sym in VOWELS
                d = rng.uniform(0.06, 0.17) if vowel else rng.uniform(0.03, 0.10)
                phones.append(Phone(str(sym), t, t + d, int(vowel and syl == stressed), word))
                t += d
        word += 1
        if rng.random() < 0.15:
            t += rng.uniform(0.2, 0.5)
    return phones, round((t + 0.5) * FPS)


def style(emotion: str = "neutral", intensity: int = 1, seed: int = 0, speaker: str = "spk") -> ClipStyle:
    return sample_clip_style(emotion, intensity, speaker_style(speaker, seed), np.random.default_rng(seed))


def run(phones, n, st=None, seed=0):
    return teach(phones, n, st or style(), np.random.default_rng(seed), fps=FPS)


def test_shape_dtype_and_ranges_for_every_emotion_and_intensity():
    rng = np.random.default_rng(0)
    phones, n = sentence(rng, 4.0)
    for emotion in EMOTIONS:
        for intensity in (1,) if emotion == "neutral" else (1, 2, 3):
            v = run(phones, n, style(emotion, intensity, seed=intensity))
            assert v.shape == (n, ARKIT52.dim) and v.dtype == np.float32
            assert np.isfinite(v).all()
            assert v[:, :52].min() >= 0.0 and v[:, :52].max() <= 1.0
            assert np.abs(v[:, 52:]).max() < 0.25  # a few degrees of head motion, in radians


def test_deterministic_given_rng():
    phones, n = sentence(np.random.default_rng(1), 3.0)
    st = style("happy", 2)
    assert np.array_equal(run(phones, n, st, seed=5), run(phones, n, st, seed=5))
    assert not np.array_equal(run(phones, n, st, seed=5), run(phones, n, st, seed=6))
    assert style("sad", 3, seed=4) == style("sad", 3, seed=4)


def test_empty_and_degenerate_inputs():
    assert run([], 0).shape == (0, 55)
    v = run([], 30)  # all silence
    assert checks.lip_aperture(v).max() < 0.02
    v = run([Phone("p", 0.5, 0.5), Phone("ɑ", 0.5, 0.7, 1)], 25)  # zero-length phone is ignored
    assert v.shape == (25, 55)


def test_bilabials_close_on_random_sentences():
    rng = np.random.default_rng(2)
    clips = [sentence(rng, 3.0) for _ in range(20)]
    closed = total = 0
    for k, (phones, n) in enumerate(clips):
        c, t = checks.bilabial_closures(phones, run(phones, n, style(EMOTIONS[k % 8], 1 if k % 8 == 0 else 3), k))
        closed, total = closed + c, total + t
    assert total > 30 and closed == total


@pytest.mark.parametrize("offset", np.linspace(0.0, 0.04, 9))
def test_a_30ms_p_between_open_vowels_closes_the_lips(offset):
    t0 = 0.5 + offset
    phones = [Phone("ɑ", 0.3, t0, 1, 0), Phone("p", t0, t0 + 0.03, 0, 0), Phone("æ", t0 + 0.03, t0 + 0.25, 0, 0)]
    v = run(phones, 30, style("surprised", 3))
    assert checks.bilabial_closure_rate(phones, v, FPS) == 1.0
    k = int(np.floor((t0 + 0.015) * FPS))  # the frame nearest the /p/ centre
    assert checks.lip_aperture(v)[k] <= 1e-6
    assert checks.lip_aperture(v)[k - 3] > 0.3  # the vowels around it stay open


def test_labiodentals_tuck_the_lower_lip():
    phones = [Phone("ɑ", 0.2, 0.4, 1, 0), Phone("f", 0.4, 0.5, 0, 1), Phone("æ", 0.5, 0.7, 0, 1)]
    v = run(phones, 25)
    k = int(0.45 * FPS)
    assert v[k, I("mouthRollLower")] >= 0.3
    assert v[k, I("mouthRollLower")] > 3 * v[int(0.3 * FPS), I("mouthRollLower")]


def test_jaw_opening_follows_vowel_openness():
    def jaw(vowel: str) -> float:
        v = run([Phone("h", 0.3, 0.35), Phone(vowel, 0.35, 0.65, 1)], 25)
        return float(v[int(0.5 * FPS), I("jawOpen")])

    assert jaw("ɑ") > jaw("æ") > jaw("ɛ") > jaw("ɪ") > jaw("i")


def test_anticipatory_rounding_spreads_onto_preceding_consonants():
    def pucker_at_s(vowel: str) -> float:
        phones = [Phone("ɛ", 0.2, 0.35, 1), Phone("s", 0.35, 0.45), Phone("t", 0.45, 0.5), Phone(vowel, 0.5, 0.7, 1)]
        return float(articulate(phones, 30, FPS)["pucker"][int(0.4 * FPS)])

    assert pucker_at_s("u") > pucker_at_s("i") + 0.1


def test_mouth_relaxes_closed_in_silence():
    rng = np.random.default_rng(3)
    a, _ = sentence(rng, 1.5, lead=0.2)
    gap_start = a[-1].end
    b = [Phone(p.symbol, p.start + gap_start + 1.0, p.end + gap_start + 1.0, p.stress, p.word + 99) for p in a]
    phones, n = a + b, int((b[-1].end + 0.6) * FPS)
    for emotion, intensity in (("neutral", 1), ("surprised", 3), ("disgust", 3), ("happy", 3)):
        v = run(phones, n, style(emotion, intensity))
        ap = checks.lip_aperture(v)
        speech = ap[checks.speech_mask(phones, n, FPS)].mean()
        t = (np.arange(n) + 0.5) / FPS
        in_gap = (t > gap_start + 0.15) & (t < gap_start + 0.85)
        assert ap[in_gap].max() < 0.05 * speech, emotion
        assert checks.silence_opening_ratio(phones, v, FPS) < 0.05


def test_blink_rate_duration_and_both_eyes():
    phones, n = sentence(np.random.default_rng(4), 60.0)
    for emotion in ("neutral", "fear", "sad"):
        st = style(emotion, 1 if emotion == "neutral" else 3, seed=9)
        v = run(phones, n, st)
        assert 8.0 <= checks.blink_rate(v, FPS) <= 30.0
        assert np.allclose(v[:, I("eyeBlinkLeft")] >= 0.5, v[:, I("eyeBlinkRight")] >= 0.5)
    lid = blink_curve(60 * FPS, 20.0, np.random.default_rng(0), FPS)
    closed = lid >= 0.5
    starts, ends = np.flatnonzero(closed[1:] & ~closed[:-1]), np.flatnonzero(~closed[1:] & closed[:-1])
    assert 1 <= (ends - starts[: len(ends)]).max() <= 6  # each blink is above 0.5 for <= 240 ms
    assert ((lid > 0.2) & (lid < 0.5) & (np.roll(lid, 1) < lid) & (np.roll(lid, -1) < lid)).any()  # half blinks


def test_blink_rate_is_modulated_by_emotion():
    rates = {e: np.mean([style(e, 3, seed=s, speaker=f"s{s}").blink_rate for s in range(20)]) for e in ("fear", "sad")}
    assert rates["fear"] > 1.4 * rates["sad"]


def _mean(emotion: str, intensity: int, channels: list[str], seeds=range(4)) -> float:
    phones, n = sentence(np.random.default_rng(5), 4.0)
    return float(np.mean([run(phones, n, style(emotion, intensity, seed=s), s)[:, [I(c) for c in channels]].mean()
                          for s in seeds]))  # fmt: skip


@pytest.mark.parametrize(
    ("emotion", "channels"),
    [
        ("happy", ["mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft", "cheekSquintRight"]),
        ("sad", ["browInnerUp", "mouthFrownLeft", "mouthFrownRight"]),
        ("angry", ["browDownLeft", "browDownRight", "mouthPressLeft", "mouthPressRight"]),
        ("surprised", ["eyeWideLeft", "eyeWideRight", "browOuterUpLeft", "browOuterUpRight"]),
        ("fear", ["browInnerUp", "eyeWideLeft", "mouthStretchLeft", "mouthStretchRight"]),
        ("disgust", ["noseSneerLeft", "noseSneerRight", "mouthUpperUpLeft", "browDownLeft"]),
    ],
)
def test_emotion_templates_raise_their_channels_with_intensity(emotion, channels):
    neutral, weak, strong = _mean("neutral", 1, channels), _mean(emotion, 1, channels), _mean(emotion, 3, channels)
    assert strong > weak > neutral


def test_contempt_is_one_sided():
    phones, n = sentence(np.random.default_rng(6), 4.0)
    st = style("contempt", 3)
    v = run(phones, n, st)
    side = "Left" if st.side > 0 else "Right"
    other = "Right" if side == "Left" else "Left"
    assert v[:, I("mouthSmile" + side)].mean() > 3 * v[:, I("mouthSmile" + other)].mean() + 0.1
    assert st.side * v[:, I("headRoll")].mean() > 0.02


def test_brow_raises_and_nods_follow_accents():
    phones, n = sentence(np.random.default_rng(7), 10.0)
    base = style("neutral")
    lo = ClipStyle(**{**base.__dict__, "actions": {**base.actions, "brow_accent": 0.0}})
    hi = ClipStyle(**{**base.__dict__, "actions": {**base.actions, "brow_accent": 1.0}})
    assert run(phones, n, hi)[:, I("browOuterUpLeft")].mean() > 1.5 * run(phones, n, lo)[:, I("browOuterUpLeft")].mean()
    head = run(phones, n)[:, 52:]
    assert 0.003 < head.std(axis=0).min() and head.std(axis=0).max() < 0.1  # radians


def test_speaker_styles_are_stable_and_distinct():
    assert speaker_style("anna", 1) == speaker_style("anna", 1)
    assert speaker_style("anna", 1) != speaker_style("bert", 1)
    st = style("angry", 2)
    assert ClipStyle.from_json(st.to_json()) == st
    with pytest.raises(ValueError):
        style("neutral", 2)
    with pytest.raises(ValueError):
        style("bored", 1)


def test_viseme_table_covers_the_phone_inventory():
    phones_ipa = pytest.importorskip("avitalk.data.synth.phones_ipa")
    missing = sorted(s for s in phones_ipa.PHONE_INVENTORY if not known(s))
    assert not missing
    assert {s for s in phones_ipa.PHONE_INVENTORY if viseme(s).bilabial} == set(phones_ipa.BILABIALS)


def test_unknown_symbols_fall_back_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert viseme("ʘ") is VISEMES["ə"]
    assert "ʘ" in caplog.text
    assert viseme("ˈɔː") is VISEMES["ɔ"] and viseme("g") is VISEMES["ɡ"]
    v = run([Phone("ʘ", 0.2, 0.4, 1), Phone("m", 0.4, 0.5)], 20)
    assert v.shape == (20, 55)
