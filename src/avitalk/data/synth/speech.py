"""Front door of speech synthesis: text + speaker + prosody + seed -> 16 kHz speech with exact phone timings.

Pipeline (every step keeps an exact time map, applied to the phone timings):

1. backend (:mod:`.tts_piper`, :mod:`.tts_espeak`, :mod:`.tts_festival`) at its native rate, with the
   speaking rate (and, for espeak, the pitch level) applied natively: :class:`RawSpeech`. Both piper and
   espeak-ng put a stop's boundary at its burst and leave the silent closure to the phone before;
   :func:`refine_closures` gives the closure to the stop (the lips are shut for /p b/ during it);
2. F0 level/range, tremor and jitter by time-varying resampling to 16 kHz (:func:`.prosody.varispeed`), then
   the spectral envelope put back where the speaker's timbre wants it (:func:`.prosody.match_envelope`);
3. aspiration noise and spectral tilt;
4. pauses: phrase breaks and some word breaks get silences of the prosody's lengths, lead/tail silence is
   normalised (silence is inserted or removed only *between* phones);
5. loudness: active-speech RMS at ``REFERENCE_DBFS + energy_db``, scaled down if the peak would exceed 0.98.

Backends are created lazily, once per process, and run on one thread (the corpus runs one worker per core).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from avitalk.data.synth import prosody as P
from avitalk.data.synth.phones import Phone, Utterance
from avitalk.data.synth.phones_ipa import VOWELS
from avitalk.data.synth.prosody import Prosody
from avitalk.data.synth.voices import SpeakerVoice
from avitalk.errors import AvitalkError

SAMPLE_RATE = 16_000
REFERENCE_DBFS = -27.0
"""Active-speech RMS of neutral speech (dBFS); emotions move it by ``Prosody.energy_db``."""
PEAK = 0.98
LEAD_S = 0.12
TAIL_S = 0.18
_FADE_S = 0.005
_HOP_S = 0.005


@dataclass(frozen=True)
class RawSpeech:
    """A backend's output before prosody post-processing.

    Attributes:
        samples: ``(T,)`` float32 mono at ``sample_rate``.
        phones: phones in time order (seconds in ``samples``), ``word`` indexing ``word_names``.
        word_names: the text of word ``i`` (index = :attr:`Phone.word`).
        phrase_after: indices ``i`` of words followed by a phrase break (punctuation, sentence end).
        pitch_applied: the backend already put F0 at the speaker's level x prosody level (espeak).
    """

    samples: np.ndarray
    sample_rate: int
    phones: tuple[Phone, ...]
    word_names: tuple[str, ...]
    phrase_after: frozenset[int] = field(default_factory=frozenset)
    pitch_applied: bool = False


class Backend(Protocol):
    """A synthesis engine."""

    def synthesize(self, text: str, speaker: SpeakerVoice, prosody: Prosody, rng: np.random.Generator) -> RawSpeech: ...


_BACKENDS: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """The process-wide instance of backend ``name`` (created on first use)."""
    if name not in _BACKENDS:
        if name == "piper":
            from avitalk.data.synth.tts_piper import PiperBackend

            _BACKENDS[name] = PiperBackend()
        elif name == "espeak":
            from avitalk.data.synth.tts_espeak import EspeakBackend

            _BACKENDS[name] = EspeakBackend()
        elif name == "festival":
            from avitalk.data.synth.tts_festival import FestivalBackend

            _BACKENDS[name] = FestivalBackend()
        else:
            raise AvitalkError(f"unknown speech backend {name!r} (piper, espeak, festival)")
    return _BACKENDS[name]


def _rng(text: str, speaker: SpeakerVoice, prosody: Prosody, seed: int) -> np.random.Generator:
    key = repr((text, speaker, prosody)).encode("utf-8")
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(key), zlib.adler32(key)])


def synthesize(text: str, speaker: SpeakerVoice, prosody: Prosody, seed: int) -> Utterance:
    """Speak ``text`` as ``speaker`` with ``prosody``.

    Deterministic: the same arguments give byte-identical samples in any process.

    Returns:
        :class:`Utterance` with ``(T,)`` float32 16 kHz samples in [-1, 1] and phone/word timings of that audio.

    Raises:
        AvitalkError: empty text, a missing engine, or text without any speakable word.
    """
    if not text or not text.strip():
        raise AvitalkError("cannot synthesise empty text")
    rng = _rng(text, speaker, prosody, seed)
    raw = get_backend(speaker.backend).synthesize(text, speaker, prosody, rng)
    if not raw.phones:
        raise AvitalkError(f"no speakable words in {text!r}")
    phones = split_shared_spans(list(raw.phones))
    raw = replace(raw, phones=tuple(refine_closures(raw.samples, raw.sample_rate, phones)))
    x, phones = _pitch_and_timbre(raw, speaker, prosody, rng)
    x = P.add_breath(x, SAMPLE_RATE, prosody.breathiness, rng)
    x = P.apply_tilt(x, SAMPLE_RATE, prosody.tilt_db + speaker.tilt_db)
    x, phones = _set_pauses(x, phones, raw.phrase_after, prosody, rng)
    x = _set_loudness(x, prosody.energy_db)
    words = words_from_phones(phones, raw.word_names)
    return Utterance(samples=x, phones=tuple(phones), words=words, sample_rate=SAMPLE_RATE)


# --------------------------------------------------------------------------------------------- steps


def _pitch_and_timbre(
    raw: RawSpeech, speaker: SpeakerVoice, prosody: Prosody, rng: np.random.Generator
) -> tuple[np.ndarray, list[Phone]]:
    """F0 level/range/tremor/jitter by varispeed, envelope restored (x ``formant_scale``); returns 16 kHz."""
    fmin, fmax = (50.0, 320.0) if speaker.gender == "male" else (90.0, 520.0)
    if raw.pitch_applied:
        target = None
    else:
        target = speaker.f0 * prosody.pitch_level
    factor, _ = P.pitch_factor_contour(
        raw.samples,
        raw.sample_rate,
        target_f0=target,
        range_scale=prosody.pitch_range,
        tremor=prosody.tremor,
        jitter=prosody.jitter,
        rng=rng,
        hop_s=_HOP_S,
        fmin=fmin,
        fmax=fmax,
    )
    y, out_time = P.varispeed(raw.samples, raw.sample_rate, SAMPLE_RATE, factor, hop_s=_HOP_S)
    ref = P.to_rate(raw.samples, raw.sample_rate, SAMPLE_RATE)
    hop = 512 // 4
    centres_t = (np.arange(y.shape[0] // hop + 1) * hop + 0.5) / SAMPLE_RATE
    in_idx = np.interp(centres_t, out_time, np.arange(out_time.shape[0], dtype=np.float64))
    y = P.match_envelope(y, ref, in_idx * SAMPLE_RATE / raw.sample_rate, formant_scale=speaker.formant_scale)
    t0 = P.map_times(np.array([p.start for p in raw.phones]), raw.sample_rate, out_time)
    t1 = P.map_times(np.array([p.end for p in raw.phones]), raw.sample_rate, out_time)
    phones = [Phone(p.symbol, float(a), float(b), p.stress, p.word) for p, a, b in zip(raw.phones, t0, t1, strict=True)]
    return y, phones


def _fade(x: np.ndarray, a: int, b: int, rising: bool) -> None:
    a, b = max(0, a), min(x.shape[0], b)
    if b <= a:
        return
    r = 0.5 - 0.5 * np.cos(np.pi * (np.arange(b - a) + 0.5) / (b - a))
    x[a:b] *= r if rising else r[::-1]


def _set_pauses(
    x: np.ndarray, phones: list[Phone], phrase_after: frozenset[int], prosody: Prosody, rng: np.random.Generator
) -> tuple[np.ndarray, list[Phone]]:
    """Set the silences between words (and at both ends) to the prosody's pause lengths.

    Returns:
        the new ``(T',)`` audio and the phones shifted to it.
    """
    sr = SAMPLE_RATE
    n_words = max(p.word for p in phones) + 1
    first = {}
    last = {}
    for i, p in enumerate(phones):
        first.setdefault(p.word, i)
        last[p.word] = i
    # (gap start s, gap end s, desired silence s)
    edits: list[tuple[float, float, float]] = []
    draws = rng.standard_normal((n_words + 1, 2))
    u = rng.random(n_words + 1)
    edits.append((0.0, phones[0].start, LEAD_S * math.exp(0.15 * draws[0, 0])))
    for w in range(n_words - 1):
        if w not in last or (w + 1) not in first:
            continue
        g0, g1 = phones[last[w]].end, phones[first[w + 1]].start
        if w in phrase_after:
            want = prosody.phrase_pause_s * math.exp(0.2 * draws[w + 1, 0])
        elif u[w + 1] < prosody.pause_prob:
            want = prosody.pause_s * math.exp(0.3 * draws[w + 1, 1])
        else:
            continue
        edits.append((g0, g1, want))
    edits.append((phones[-1].end, x.shape[0] / sr, TAIL_S * math.exp(0.15 * draws[-1, 0])))

    margin = 0.01
    pieces: list[np.ndarray] = []
    shifts: list[tuple[float, float]] = []  # (time in old audio, cumulative shift after it)
    pos = 0
    total = 0.0
    x = x.astype(np.float32, copy=True)
    for g0, g1, want in edits:
        gap = max(0.0, g1 - g0)
        mid = round(0.5 * (g0 + g1) * sr)
        if want > gap:  # insert silence
            add = round((want - gap) * sr)
            if gap < 2 * _FADE_S:  # words are joined: fade both sides of the cut
                f = int(_FADE_S * sr)
                _fade(x, mid - f, mid, rising=False)
                _fade(x, mid, mid + f, rising=True)
            pieces.append(x[pos:mid])
            pieces.append(np.zeros(add, dtype=np.float32))
            pos = mid
            total += add / sr
            shifts.append((mid / sr, total))
        else:  # remove the middle of the gap, keep margins next to the phones
            cut = min(gap - want, max(0.0, gap - 2 * margin))
            if g0 == 0.0:  # leading silence: keep the end margin only
                cut = min(gap - want, max(0.0, gap - margin))
            n_cut = round(cut * sr)
            if n_cut <= 0:
                continue
            a = (mid - n_cut // 2) if g0 > 0.0 else max(0, round(g1 * sr) - int(margin * sr) - n_cut)
            a = max(pos, a)
            b = a + n_cut
            f = int(_FADE_S * sr)
            _fade(x, a - f, a, rising=False)
            _fade(x, b, b + f, rising=True)
            pieces.append(x[pos:a])
            pos = b
            total -= n_cut / sr
            shifts.append((b / sr, total))
    pieces.append(x[pos:])
    y = np.concatenate(pieces)

    tol = 1.5 / sr  # cut positions are rounded to samples

    def shift(t: float, is_end: bool) -> float:
        """A start at a cut moves with the audio after it; an end at a cut stays with the audio before it."""
        s = 0.0
        for at, cum in shifts:
            if (t > at + tol) if is_end else (t >= at - tol):
                s = cum
            else:
                break
        return t + s

    out = [Phone(p.symbol, shift(p.start, False), shift(p.end, True), p.stress, p.word) for p in phones]
    dur = y.shape[0] / sr
    out = [Phone(p.symbol, min(p.start, dur), min(p.end, dur), p.stress, p.word) for p in out if p.start < dur]
    return y, out


def _set_loudness(x: np.ndarray, energy_db: float) -> np.ndarray:
    """Active-speech RMS to ``REFERENCE_DBFS + energy_db``; scaled down if the peak would exceed ``PEAK``."""
    hop = int(0.02 * SAMPLE_RATE)
    n = x.shape[0] // hop
    if n == 0:
        return x.astype(np.float32)
    e = np.mean(x[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1)
    active = e > e.max() * 10 ** (-35 / 10)
    rms = math.sqrt(float(np.mean(e[active]))) if active.any() else 0.0
    if rms <= 0:
        return x.astype(np.float32)
    gain = 10 ** ((REFERENCE_DBFS + energy_db) / 20) / rms
    peak = float(np.max(np.abs(x))) * gain
    if peak > PEAK:
        gain *= PEAK / peak
    return np.clip(x * gain, -1.0, 1.0).astype(np.float32)


def split_shared_spans(phones: list[Phone]) -> list[Phone]:
    """Give consecutive phones that an engine reported with the same time span equal shares of it.

    espeak-ng sometimes emits two phoneme events at one sample (e.g. the /l z/ of "smells"), which
    would make both phones cover the same span; the corpus needs phones in strict time order.
    """
    out: list[Phone] = []
    i = 0
    while i < len(phones):
        j = i + 1
        while j < len(phones) and (phones[j].start, phones[j].end) == (phones[i].start, phones[i].end):
            j += 1
        start, step = phones[i].start, (phones[i].end - phones[i].start) / (j - i)
        for k, p in enumerate(phones[i:j]):
            out.append(Phone(p.symbol, start + k * step, start + (k + 1) * step, p.stress, p.word))
        i = j
    return out


def words_from_phones(phones: list[Phone], names: tuple[str, ...]) -> tuple[tuple[str, float, float], ...]:
    """``(word, start, end)`` per word index that has phones, spanning its phones."""
    spans: dict[int, list[float]] = {}
    for p in phones:
        s = spans.setdefault(p.word, [p.start, p.end])
        s[0] = min(s[0], p.start)
        s[1] = max(s[1], p.end)
    return tuple((names[w] if w < len(names) else f"w{w}", float(a), float(b)) for w, (a, b) in sorted(spans.items()))


STOPS = frozenset({"p", "b", "t", "d", "k", "ɡ", "tʃ", "dʒ"})
MAX_CLOSURE_S = 0.15


def refine_closures(x: np.ndarray, sr: int, phones: list[Phone], drop_db: float = 20.0) -> list[Phone]:
    """Start every stop/affricate at the beginning of its closure (the low-energy run before the burst).

    Args:
        x: ``(T,)`` audio the phones describe; ``phones``: in time order.
        drop_db: a frame belongs to the closure if it is this far below the louder neighbouring phone.

    Returns:
        phones with stop starts moved to the closure onset (earlier by <= ``MAX_CLOSURE_S`` or later by
        <= 50 ms) and the previous phone's end moved with them.
    """
    hop = max(1, int(0.0025 * sr))
    win = 2 * hop
    n = max(1, (x.shape[0] - win) // hop + 1)
    fr = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), win)[::hop][:n]
    e = 10 * np.log10(np.mean(fr**2, axis=1) + 1e-10)  # (n,) frame energy, frame i starts at i * hop

    def frame(t: float) -> int:
        return int(np.clip(round(t * sr / hop), 0, n - 1))

    out = list(phones)
    for k in range(len(out)):
        p = out[k]
        if p.symbol not in STOPS:
            continue
        prev = out[k - 1] if k > 0 else None
        # search back at most MAX_CLOSURE_S (utterance-initial: 0.1 s of the leading silence)
        lo_t = max(p.start - MAX_CLOSURE_S, prev.start + 0.02) if prev is not None else max(0.0, p.start - 0.1)
        hi_t = p.start + 0.5 * (p.end - p.start)
        a, b = frame(lo_t), frame(hi_t)
        if b <= a:
            continue
        ref_hi = frame(out[k + 1].end) if k + 1 < len(out) else n - 1
        ref_lo = frame(prev.start) if prev is not None else 0
        peak = float(e[ref_lo : ref_hi + 1].max())
        low = np.concatenate([[False], e[a : b + 1] < peak - drop_db, [False]])
        edges = np.flatnonzero(np.diff(low.astype(np.int8)))
        ps = frame(p.start) - a
        runs = [(int(r0), int(r1)) for r0, r1 in zip(edges[::2], edges[1::2], strict=True) if r1 - r0 >= 4]
        # closure before the label: a low run (>= 10 ms) starting before it and reaching to within 20 ms of it
        early = [r0 for r0, r1 in runs if r0 <= ps and r1 >= ps - 8]
        # label before the closure (smooth HTS transitions): a low run starting <= 50 ms after the label
        late = [r0 for r0, r1 in runs if ps < r0 <= min(ps + 20, b - a)]
        if early:
            new_start = (a + min(early)) * hop / sr
            if prev is not None:  # keep >= 30 ms of a vowel, >= half of a consonant (weak fricatives look silent)
                keep = 0.03 if prev.symbol in VOWELS else 0.5 * (prev.end - prev.start)
                new_start = max(new_start, prev.start + keep)
        elif late:
            new_start = min((a + min(late)) * hop / sr, p.end - 0.02)
        else:
            continue
        if abs(new_start - p.start) < 0.005:
            continue
        out[k] = Phone(p.symbol, new_start, p.end, p.stress, p.word)
        if prev is not None and (prev.end > new_start or abs(prev.end - p.start) < 1e-6):
            out[k - 1] = Phone(prev.symbol, prev.start, new_start, prev.stress, prev.word)
    return out
