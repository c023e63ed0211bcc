"""Festival backend: the CMU ARCTIC "slt" HTS voice (female, 32 kHz) and the "kal" diphone voice (male, 16 kHz).

One ``festival -b script.scm`` process per utterance (argument list, ``check=True``): the script selects the
voice, sets the speaking rate (HTS engine ``-r`` speed for slt, ``Duration_Stretch`` for kal), synthesises,
saves the wave and prints every segment with its end time, syllable stress and word index. Festival's
``radio`` phones are mapped to the espeak IPA inventory (:data:`.phones_ipa.FESTIVAL_TO_IPA`). The rate is
pre-compensated for the tempo change of the varispeed pitch step (:mod:`.speech`), as for piper.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from avitalk.data.synth.phones import Phone
from avitalk.data.synth.phones_ipa import FESTIVAL_SILENCE, FESTIVAL_TO_IPA, VOWELS
from avitalk.data.synth.prosody import Prosody
from avitalk.data.synth.speech import RawSpeech
from avitalk.data.synth.voices import SpeakerVoice
from avitalk.errors import AvitalkError

INSTALL_HINT = "install festival: apt-get install festival festvox-us-slt-hts festvox-kallpc16k"
SOURCE_F0 = {"cmu_us_slt_arctic_hts": 170.0, "kal_diphone": 101.0}
"""Median F0 of each festival voice in neutral speech (Hz)."""
TIMEOUT_S = 120.0

_SCRIPT = """(voice_{voice})
{rate}
(set! utt (Utterance Text "{text}"))
(utt.synth utt)
(utt.save.wave utt "{wav}" 'riff)
(set! avitalk_w 0)
(mapcar (lambda (w) (item.set_feat w "avitalk_idx" avitalk_w) (set! avitalk_w (+ avitalk_w 1)))
        (utt.relation.items utt 'Word))
(mapcar (lambda (w) (format t "W\\t%s\\t%s\\n" (item.feat w "avitalk_idx") (item.feat w "R:Token.parent.name")))
        (utt.relation.items utt 'Word))
(mapcar (lambda (s) (format t "S\\t%s\\t%f\\t%s\\t%s\\n" (item.name s) (item.feat s "end")
                            (item.feat s "R:SylStructure.parent.stress")
                            (item.feat s "R:SylStructure.parent.parent.avitalk_idx")))
        (utt.relation.items utt 'Segment))
"""


def _scheme_string(text: str) -> str:
    """``text`` as the inside of a Scheme string literal (one line)."""
    return " ".join(text.replace("\\", " ").replace('"', " ").split())


class FestivalBackend:
    """Runs the ``festival`` program (found on PATH)."""

    def __init__(self) -> None:
        exe = shutil.which("festival")
        if exe is None:
            raise AvitalkError(f"festival not found; {INSTALL_HINT}")
        self.exe = exe

    def synthesize(self, text: str, speaker: SpeakerVoice, prosody: Prosody, rng: np.random.Generator) -> RawSpeech:
        """Speech at the voice's rate (32 or 16 kHz) with phones; speaking rate applied natively."""
        del rng  # festival is deterministic
        if speaker.voice not in SOURCE_F0:
            raise AvitalkError(f"unknown festival voice {speaker.voice!r}; expected one of {sorted(SOURCE_F0)}")
        pitch_factor = speaker.f0 * prosody.pitch_level / SOURCE_F0[speaker.voice]
        stretch = float(np.clip(pitch_factor / (speaker.rate * prosody.rate), 0.3, 4.0))
        if speaker.voice.endswith("_hts"):
            rate = f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {1.0 / stretch:.4f}))))'
        else:
            rate = f"(Parameter.set 'Duration_Stretch {stretch:.4f})"
        with tempfile.TemporaryDirectory(prefix="avitalk-festival-") as tmp:
            wav = Path(tmp) / "out.wav"
            script = Path(tmp) / "synth.scm"
            script.write_text(
                _SCRIPT.format(voice=speaker.voice, rate=rate, text=_scheme_string(text), wav=wav.as_posix()),
                encoding="utf-8",
            )
            try:
                proc = subprocess.run(
                    [self.exe, "-b", str(script)], check=True, capture_output=True, text=True, timeout=TIMEOUT_S
                )
            except subprocess.CalledProcessError as e:
                msg = (e.stderr or e.stdout or "").strip().splitlines()
                raise AvitalkError(f"festival failed ({speaker.voice}): {msg[-1] if msg else e}; {INSTALL_HINT}") from e
            x, sr = sf.read(str(wav), dtype="float32", always_2d=False)
        if x.ndim == 2:
            x = x.mean(axis=1)
        return _parse(proc.stdout, np.ascontiguousarray(x, dtype=np.float32), int(sr))


def _parse(out: str, x: np.ndarray, sr: int) -> RawSpeech:
    """Phones, words and phrase breaks from the script's ``W``/``S`` lines."""
    names: dict[int, str] = {}
    phones: list[Phone] = []
    phrase_after: set[int] = set()
    prev_end = 0.0
    last_word = -1
    duration = x.shape[0] / sr
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] == "W" and len(parts) == 3:
            names[int(float(parts[1]))] = parts[2]
        elif parts[0] == "S" and len(parts) == 5:
            name, end, stress, word = parts[1], min(float(parts[2]), duration), parts[3], parts[4]
            start, prev_end = prev_end, end
            if name in FESTIVAL_SILENCE or end <= start:
                if name in FESTIVAL_SILENCE and last_word >= 0:
                    phrase_after.add(last_word)
                continue
            symbols = FESTIVAL_TO_IPA.get(name)
            if symbols is None:
                raise AvitalkError(f"festival phone {name!r} has no IPA mapping")
            w = int(float(word))
            last_word = w
            weights = [2.0 if s in VOWELS else 1.0 for s in symbols]
            t = start
            for sym, wt in zip(symbols, weights, strict=True):
                d = (end - start) * wt / sum(weights)
                st = int(float(stress)) if sym in VOWELS else 0
                phones.append(Phone(sym, t, t + d, min(st, 2), w))
                t += d
    n_words = max([*names, *(p.word for p in phones), -1]) + 1
    word_names = tuple(names.get(w, f"w{w}") for w in range(n_words))
    return RawSpeech(x, sr, tuple(phones), word_names, frozenset(phrase_after))
