"""Speech synthesis for the synthetic corpus: backends, timings, prosody, speakers, determinism."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import sys
import unicodedata

import numpy as np
import pytest

from avitalk.data.synth import phones_ipa
from avitalk.data.synth.phones import Utterance
from avitalk.data.synth.phones_ipa import BILABIALS, PHONE_INVENTORY, VOWELS, tokenize
from avitalk.data.synth.prosody import (
    EMOTIONS,
    INTENSITIES,
    NEUTRAL,
    Prosody,
    prosodic_features,
    sample_prosody,
    table_prosody,
)
from avitalk.data.synth.voices import SPEAKERS, SpeakerVoice, speaker
from avitalk.errors import AvitalkError

TEXT = "Bob may pay the man, maybe."
SR = 16_000


def _first(backend: str, gender: str | None = None) -> SpeakerVoice:
    return next(s for s in SPEAKERS if s.backend == backend and (gender is None or s.gender == gender))


def _backend_or_skip(name: str) -> None:
    from avitalk.data.synth.speech import get_backend

    try:
        get_backend(name)
    except AvitalkError as e:  # espeak-ng / festival not installed on this machine
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def utterances() -> dict[str, Utterance]:
    """One neutral utterance per backend (skipping engines that are not installed)."""
    from avitalk.data.synth.speech import get_backend, synthesize

    out = {}
    for name in ("piper", "espeak", "festival"):
        try:
            get_backend(name)
        except AvitalkError:
            continue
        out[name] = synthesize(TEXT, _first(name), NEUTRAL, seed=3)
    return out


# --------------------------------------------------------------------------------------------- speakers


def test_speakers_cover_both_genders_and_are_unique() -> None:
    assert len(SPEAKERS) >= 12
    ids = [s.id for s in SPEAKERS]
    assert len(set(ids)) == len(ids)
    assert sum(s.gender == "female" for s in SPEAKERS) >= 5
    assert sum(s.gender == "male" for s in SPEAKERS) >= 5
    assert {s.backend for s in SPEAKERS} <= {"piper", "espeak", "festival"}
    assert len({(s.backend, s.voice, s.f0, s.formant_scale, s.rate) for s in SPEAKERS}) == len(SPEAKERS)
    assert speaker("spk01") is SPEAKERS[0]
    with pytest.raises(KeyError):
        speaker("nobody")


# --------------------------------------------------------------------------------------------- prosody table


def test_prosody_table_covers_emotions_and_intensities() -> None:
    assert EMOTIONS == ("neutral", "happy", "sad", "angry", "surprised", "fear", "disgust", "contempt")
    assert INTENSITIES["neutral"] == (1,)
    rng = np.random.default_rng(0)
    for emo in EMOTIONS:
        for level in INTENSITIES[emo]:
            p = sample_prosody(emo, level, rng)
            assert isinstance(p, Prosody) and p.emotion == emo and p.intensity == level
            assert p.pitch_level > 0 and p.rate > 0 and p.pitch_range >= 0
    with pytest.raises(ValueError):
        table_prosody("neutral", 2)
    with pytest.raises(ValueError):
        table_prosody("bored", 1)
    # intensity moves away from neutral monotonically
    lv = [table_prosody("angry", i).energy_db for i in (1, 2, 3)]
    assert lv[0] < lv[1] < lv[2]
    sad = [table_prosody("sad", i).rate for i in (1, 2, 3)]
    assert sad[0] > sad[1] > sad[2]
    # the same generator state gives the same prosody
    assert sample_prosody("fear", 2, np.random.default_rng(5)) == sample_prosody("fear", 2, np.random.default_rng(5))


# --------------------------------------------------------------------------------------------- phone symbols


def test_tokenizer_merges_diphthongs_and_moves_stress() -> None:
    toks = tokenize(list(unicodedata.normalize("NFD", "mˈeɪbiː tʃˈɜːtʃ bˈʌʔn̩")))
    assert [t.symbol for t in toks] == ["m", "eɪ", "b", "i", "tʃ", "ɜ", "tʃ", "b", "ʌ", "ʔ", "n"]
    assert [t.stress for t in toks if t.symbol in VOWELS] == [1, 0, 1, 1]
    for mapping in (phones_ipa.FESTIVAL_TO_IPA.values(), [[v] for v in phones_ipa.NORMALIZE.values()]):
        for symbols in mapping:
            assert set(symbols) <= PHONE_INVENTORY
    assert {sym for sym, _ in phones_ipa.split_phoneme("ɔːɹ")} == {"ɔ", "ɹ"}


# --------------------------------------------------------------------------------------------- backends


@pytest.mark.parametrize("backend", ["piper", "espeak", "festival"])
def test_backend_audio_and_timings(backend: str, utterances: dict[str, Utterance]) -> None:
    if backend not in utterances:
        _backend_or_skip(backend)
    u = utterances[backend]
    x = u.samples
    assert u.sample_rate == SR and x.dtype == np.float32 and x.ndim == 1 and x.size > SR // 2
    assert np.all(np.isfinite(x)) and np.abs(x).max() <= 1.0 and np.abs(x).max() > 0.05
    ph = u.phones
    assert len(ph) >= 12
    assert all(p.end > p.start >= 0 for p in ph)
    assert all(a.end <= b.start + 1e-9 for a, b in itertools.pairwise(ph))  # ordered, no overlap
    assert ph[-1].end <= u.duration + 1e-9
    assert {p.symbol for p in ph} <= PHONE_INVENTORY
    assert all(p.stress == 0 for p in ph if p.symbol not in VOWELS)
    assert any(p.stress == 1 for p in ph)
    assert [w.lower() for w, _, _ in u.words][:3] == ["bob", "may", "pay"]
    assert all(a[2] <= b[1] + 1e-9 for a, b in zip(u.words, u.words[1:], strict=False))
    # speech lies inside the phones: the louder half of 10 ms frames is mostly covered by phones
    hop = SR // 100
    e = np.array([np.mean(x[i : i + hop] ** 2) for i in range(0, x.size - hop, hop)])
    loud = np.flatnonzero(e > np.median(e))
    covered = [any(p.start - 0.02 <= i / 100 <= p.end + 0.02 for p in ph) for i in loud]
    assert np.mean(covered) > 0.95


@pytest.mark.parametrize("backend", ["piper", "espeak", "festival"])
def test_bilabial_closures_are_inside_p_and_b(backend: str, utterances: dict[str, Utterance]) -> None:
    """/p b/ spans start with the lip closure: a quiet stretch well below the following vowel."""
    if backend not in utterances:
        _backend_or_skip(backend)
    u = utterances[backend]
    x = u.samples.astype(np.float64)

    def db(a: float, b: float) -> float:
        seg = x[int(a * SR) : max(int(b * SR), int(a * SR) + 1)]
        return 10 * np.log10(np.mean(seg**2) + 1e-12)

    checked = 0
    for k, p in enumerate(u.phones[:-1]):
        nxt = u.phones[k + 1]
        if p.symbol not in BILABIALS - {"m"} or nxt.symbol not in VOWELS:
            continue
        closure = min(db(t, t + 0.01) for t in np.arange(p.start, max(p.start + 0.01, p.end - 0.01), 0.0025))
        vowel = db(nxt.start, nxt.end)
        assert closure < vowel - 12, (p, closure, vowel)
        checked += 1
    assert checked >= 3


def test_angry_is_louder_and_higher_than_sad() -> None:
    from avitalk.data.synth.speech import synthesize

    for spk in (_first("piper"), _first("espeak", "female")):
        if spk.backend == "espeak":
            _backend_or_skip("espeak")
        angry = synthesize("Nobody told me about the meeting today.", spk, table_prosody("angry", 2), seed=1)
        sad = synthesize("Nobody told me about the meeting today.", spk, table_prosody("sad", 2), seed=1)
        fa = prosodic_features(angry.samples, SR, len(angry.phones))
        fs = prosodic_features(sad.samples, SR, len(sad.phones))
        assert fa["f0_mean"] > fs["f0_mean"] + 3.0  # semitones
        assert fa["energy_db"] > fs["energy_db"] + 8.0
        assert fa["f0_std"] > fs["f0_std"] and fa["f0_range"] > fs["f0_range"]
        assert fa["rate"] > fs["rate"] * 1.3
        assert sad.duration > angry.duration * 1.3


# --------------------------------------------------------------------------------------------- determinism

_HASH_SCRIPT = """
import hashlib, sys
from avitalk.data.synth.prosody import table_prosody
from avitalk.data.synth.speech import synthesize
from avitalk.data.synth.voices import speaker
for sid in sys.argv[1:]:
    u = synthesize("Maybe the purple boat will move.", speaker(sid), table_prosody("fear", 2), seed=11)
    print(sid, hashlib.sha256(u.samples.tobytes()).hexdigest(), repr(u.phones[3]))
"""


def test_determinism_within_and_across_processes() -> None:
    from avitalk.data.synth.speech import synthesize

    ids = [_first("piper").id, _first("espeak").id]
    local = []
    for sid in ids:
        a = synthesize("Maybe the purple boat will move.", speaker(sid), table_prosody("fear", 2), seed=11)
        b = synthesize("Maybe the purple boat will move.", speaker(sid), table_prosody("fear", 2), seed=11)
        assert a.samples.tobytes() == b.samples.tobytes() and a.phones == b.phones
        local.append(f"{sid} {hashlib.sha256(a.samples.tobytes()).hexdigest()} {a.phones[3]!r}")
    other = synthesize("Maybe the purple boat will move.", speaker(ids[0]), table_prosody("fear", 2), seed=12)
    assert other.samples.tobytes() != a.samples.tobytes() or len(other.samples) != len(a.samples)
    out = subprocess.run(
        [sys.executable, "-c", _HASH_SCRIPT, *ids], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    assert out.strip().splitlines() == local


# --------------------------------------------------------------------------------------------- errors


def test_missing_espeak_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from avitalk.data.synth import tts_espeak

    def no_lib(name: str) -> None:
        raise OSError(name)

    monkeypatch.setattr(tts_espeak.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(tts_espeak.ctypes, "CDLL", no_lib)
    with pytest.raises(AvitalkError, match="apt-get install espeak-ng"):
        tts_espeak.EspeakBackend()


def test_empty_text_is_a_user_error() -> None:
    from avitalk.data.synth.speech import synthesize

    with pytest.raises(AvitalkError):
        synthesize("   ", SPEAKERS[0], NEUTRAL, seed=0)


def test_inserted_pauses_are_not_inside_phones() -> None:
    """Slow, pause-rich prosody: silences go between words, never into a vowel or sonorant."""
    from avitalk.data.synth.speech import synthesize

    sad = Prosody(emotion="sad", intensity=3, rate=0.7, pause_prob=1.0, pause_s=0.3, phrase_pause_s=0.5)
    u = synthesize("We will always remember you, my dear old friend.", _first("piper"), sad, seed=4)
    x = u.samples
    silent = np.abs(x) < 1e-7
    for p in u.phones:
        if p.symbol in {"p", "b", "t", "d", "k", "ɡ", "tʃ", "dʒ"}:
            continue
        seg = silent[int(p.start * SR) : int(p.end * SR)]
        runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], seg.astype(np.int8), [0]]))))[::2]
        assert runs.size == 0 or runs.max() < 0.02 * SR, p
    gaps = [b[1] - a[2] for a, b in itertools.pairwise(u.words)]
    assert min(gaps) > 0.15  # every word break got a pause
    assert 0.08 < u.phones[0].start < 0.2 and 0.1 < u.duration - u.phones[-1].end < 0.3


def test_phones_reported_with_one_span_share_it_in_order():
    from avitalk.data.synth.phones import Phone
    from avitalk.data.synth.speech import split_shared_spans

    phones = [Phone("ɛ", 0.4, 0.6, 1, 1), Phone("l", 0.6, 0.7, 0, 1), Phone("z", 0.6, 0.7, 0, 1), Phone("k", 0.7, 0.8)]
    out = split_shared_spans(phones)
    assert [p.symbol for p in out] == ["ɛ", "l", "z", "k"]
    assert [(round(p.start, 3), round(p.end, 3)) for p in out] == [(0.4, 0.6), (0.6, 0.65), (0.65, 0.7), (0.7, 0.8)]
