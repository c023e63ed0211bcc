"""espeak-ng backend (ctypes on ``libespeak-ng.so.1``): formant speech at 22.05 kHz with phoneme events.

- Synchronous mode with phoneme events in IPA (``espeakINITIALIZE_PHONEME_EVENTS | _IPA``): each event
  gives the phoneme and its start sample; a phone ends where the next event starts. Word events give the
  text span of every word; pause events (empty names) and clause ends mark phrase breaks. Stress comes
  from ``espeak_TextToPhonemes`` (IPA with stress marks), aligned to the event phones.
- Rate (words per minute) and pitch level are set natively (``espeakRATE``, ``espeakPITCH``; the pitch
  parameter is calibrated per voice once per process by measuring F0); range, tremor and jitter are applied
  afterwards like for the other backends (:mod:`.speech`).
- Determinism: espeak-ng keeps synthesis state between calls (phase, noise, ``rand()``), so the same
  text gives slightly different audio (even a different length) on the second call. Each call therefore
  runs in a forked child of the process's freshly initialised engine (the parent never synthesises), with
  ``srand(seed)``: every call starts from the same state, in any process. A fork costs ~10 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import difflib
import json
import math
import os
import re
import struct
import unicodedata
from dataclasses import dataclass

import numpy as np

from avitalk.data.synth.phones import Phone
from avitalk.data.synth.phones_ipa import VOWELS, split_phoneme, tokenize
from avitalk.data.synth.prosody import Prosody, to_rate, track_f0
from avitalk.data.synth.speech import RawSpeech
from avitalk.data.synth.voices import SpeakerVoice
from avitalk.errors import AvitalkError

INSTALL_HINT = "install espeak-ng: apt-get install espeak-ng"

# speak_lib.h
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_PHONEME_IPA = 0x0002
INITIALIZE_DONT_EXIT = 0x8000
CHARS_UTF8 = 1
POS_CHARACTER = 1
EV_LIST_TERMINATED, EV_WORD, EV_SENTENCE, EV_MARK, EV_PLAY, EV_END, EV_MSG_TERMINATED, EV_PHONEME = range(8)
P_RATE, P_VOLUME, P_PITCH, P_RANGE, P_WORDGAP = 1, 2, 3, 4, 7
PHONEMES_IPA = 0x02

# F0 relative to pitch 50 at pitch parameter 0, 25, 50, 75, 100 (measured on en-us, m3, f2, f4, klatt4)
_PITCH_PARAM = np.array([0.0, 25.0, 50.0, 75.0, 100.0])
_PITCH_LOG_RATIO = np.log(np.array([0.66, 0.80, 1.0, 1.29, 1.67]))
_CALIBRATION_TEXT = "We were away a year ago, and now we are all here."


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class _Result:
    audio: bytes
    events: list[tuple[int, int, int, int, str]]  # (type, text_position, length, sample, phoneme)
    ipa: list[str]


def find_library() -> str:
    """Path/name of libespeak-ng, or AvitalkError with the install hint."""
    name = ctypes.util.find_library("espeak-ng")
    for candidate in (name, "libespeak-ng.so.1", "libespeak-ng.so"):
        if not candidate:
            continue
        try:
            ctypes.CDLL(candidate)
        except OSError:
            continue
        return candidate
    raise AvitalkError(f"espeak-ng library not found; {INSTALL_HINT}")


class EspeakBackend:
    """espeak-ng through ctypes; one initialised engine per process, one forked child per utterance."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(find_library())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        options = INITIALIZE_PHONEME_EVENTS | INITIALIZE_PHONEME_IPA | INITIALIZE_DONT_EXIT
        sr = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, options)
        if sr <= 0:
            raise AvitalkError(f"espeak-ng failed to initialise (data missing?); {INSTALL_HINT}")
        self.lib = lib
        self.sample_rate = int(sr)
        self._chunks: list[bytes] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        self._callback = _CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self._libc = ctypes.CDLL(None)
        self._f0_at_50: dict[str, float] = {}

    # -- engine calls (run in the child) ------------------------------------------------------------------

    def _on_audio(self, wav: ctypes.Array, n: int, events: ctypes.Array) -> int:
        if n > 0:
            self._chunks.append(ctypes.string_at(wav, 2 * n))
        i = 0
        while events[i].type != EV_LIST_TERMINATED:
            ev = events[i]
            name = ""
            if ev.type == EV_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
            self._events.append((int(ev.type), int(ev.text_position), int(ev.length), int(ev.sample), name))
            i += 1
        return 0

    def _speak(self, voice: str, text: str, rate: int, pitch: int, seed: int) -> _Result:
        lib = self.lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise AvitalkError(f"espeak-ng voice {voice!r} not found")
        for param, value in ((P_RATE, rate), (P_PITCH, pitch), (P_RANGE, 50), (P_VOLUME, 100), (P_WORDGAP, 0)):
            lib.espeak_SetParameter(param, int(value), 0)
        self._libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data)
        if lib.espeak_Synth(buf, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None) != 0:
            raise AvitalkError("espeak-ng synthesis failed")
        lib.espeak_Synchronize()
        ipa: list[str] = []
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        while ptr.value:
            out = lib.espeak_TextToPhonemes(ctypes.byref(ptr), CHARS_UTF8, PHONEMES_IPA)
            if out is None:
                break
            ipa.append(out.decode("utf-8", "replace"))
        return _Result(b"".join(self._chunks), list(self._events), ipa)

    def _speak_isolated(self, voice: str, text: str, rate: int, pitch: int, seed: int) -> _Result:
        """:meth:`_speak` in a forked child so that every call starts from the same engine state."""
        if not hasattr(os, "fork"):
            return self._speak(voice, text, rate, pitch, seed)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: synthesise, send, exit without running any parent cleanup
            code = 1
            try:
                os.close(r)
                res = self._speak(voice, text, rate, pitch, seed)
                head = json.dumps({"events": res.events, "ipa": res.ipa}).encode("utf-8")
                with os.fdopen(w, "wb") as f:
                    f.write(struct.pack("<QQ", len(head), len(res.audio)))
                    f.write(head)
                    f.write(res.audio)
                code = 0
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or len(data) < 16:
            raise AvitalkError(f"espeak-ng synthesis failed for voice {voice!r}")
        n_head, n_audio = struct.unpack("<QQ", data[:16])
        head = json.loads(data[16 : 16 + n_head].decode("utf-8"))
        audio = data[16 + n_head : 16 + n_head + n_audio]
        return _Result(audio, [tuple(e) for e in head["events"]], head["ipa"])

    # -- public -------------------------------------------------------------------------------------------

    def f0_at_pitch50(self, voice: str) -> float:
        """Median F0 (Hz) of ``voice`` at the default pitch parameter (measured once per process)."""
        if voice not in self._f0_at_50:
            res = self._speak_isolated(voice, _CALIBRATION_TEXT, 175, 50, 0)
            x = np.frombuffer(res.audio, dtype=np.int16).astype(np.float32) / 32768.0
            f0, v = track_f0(to_rate(x, self.sample_rate, 8000), 8000, fmin=50.0, fmax=600.0)
            self._f0_at_50[voice] = float(np.median(f0[v])) if v.any() else 120.0
        return self._f0_at_50[voice]

    def pitch_param(self, voice: str, f0: float) -> int:
        """espeak pitch parameter (0-100) that gives median F0 ``f0`` for ``voice``."""
        lr = math.log(f0 / self.f0_at_pitch50(voice))
        return round(float(np.interp(lr, _PITCH_LOG_RATIO, _PITCH_PARAM)))

    def synthesize(self, text: str, speaker: SpeakerVoice, prosody: Prosody, rng: np.random.Generator) -> RawSpeech:
        """Speech at 22.05 kHz with phones; rate and pitch level applied natively."""
        rate = int(np.clip(round(175 * speaker.rate * prosody.rate), 80, 450))
        pitch = self.pitch_param(speaker.voice, speaker.f0 * prosody.pitch_level)
        res = self._speak_isolated(speaker.voice, text, rate, pitch, int(rng.integers(0, 2**31 - 1)))
        x = np.frombuffer(res.audio, dtype=np.int16).astype(np.float32) / 32768.0
        phones, names, phrase_after = _phones_from_events(res.events, text, x.shape[0], self.sample_rate)
        phones = _apply_stress(phones, res.ipa)
        return RawSpeech(x, self.sample_rate, tuple(phones), names, frozenset(phrase_after), pitch_applied=True)


def _phones_from_events(
    events: list[tuple[int, int, int, int, str]], text: str, n_samples: int, sr: int
) -> tuple[list[Phone], tuple[str, ...], set[int]]:
    """Phones (split into inventory symbols), word names and phrase breaks from espeak events.

    A phone ends where the next phoneme/clause-end event starts; phonemes belong to the last word event.
    """
    stops = sorted({s for (t, _, _, s, _) in events if t in (EV_PHONEME, EV_END, EV_MSG_TERMINATED)} | {n_samples})
    phones: list[Phone] = []
    words: list[str] = []
    phrase_after: set[int] = set()
    word = -1
    for t, pos, length, sample, name in events:
        if t == EV_WORD and length > 0:
            word += 1
            words.append(_word_at(text, pos - 1, length))
            continue
        if t == EV_END and word >= 0:
            phrase_after.add(word)
            continue
        if t != EV_PHONEME:
            continue
        if not name:  # a pause
            if word >= 0:
                phrase_after.add(word)
            continue
        end = next((s for s in stops if s > sample), n_samples)
        t0 = sample / sr
        dur = (end - sample) / sr
        for sym, frac in split_phoneme(name):
            phones.append(Phone(sym, t0, t0 + frac * dur, 0, max(word, 0)))
            t0 += frac * dur
    if not words:
        words = [text.strip()]
    return [p for p in phones if p.end > p.start], tuple(words), phrase_after


_TOKEN_RE = re.compile(r"\w+(?:['’]\w+)*")


def _word_at(text: str, start: int, length: int) -> str:
    """The text token at character ``start`` (espeak's word lengths stop at apostrophes: "Don't" -> 3)."""
    start = max(0, start)
    m = _TOKEN_RE.search(text, start)
    if m is not None and m.start() <= start + max(length, 1) + 2:
        return m.group(0)
    return text[start : start + length].strip()


def _apply_stress(phones: list[Phone], ipa: list[str]) -> list[Phone]:
    """Copy stress from espeak's IPA transcription (with stress marks) onto the event phones by alignment."""
    chars = list(unicodedata.normalize("NFD", " ".join(ipa)))
    toks = tokenize(chars)
    a = [p.symbol for p in phones]
    b = [t.symbol for t in toks]
    out = list(phones)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for block in matcher.get_matching_blocks():
        for j in range(block.size):
            p = out[block.a + j]
            stress = toks[block.b + j].stress if p.symbol in VOWELS else 0
            out[block.a + j] = Phone(p.symbol, p.start, p.end, stress, p.word)
    return out
