"""The speakers of the synthetic corpus: backend, voice and per-speaker timbre.

Fifteen speakers from three offline engines:

- ``piper``: the neural en_US "joe" voice (male, F0 ~85 Hz) turned into five men by moving the spectral
  envelope (``formant_scale``: vocal-tract length) and the F0 (``f0``), see :mod:`.prosody`. Female voices
  are not derived from it: a ~2.3x F0 shift of a deep creaky voice does not sound like a woman.
- ``espeak``: espeak-ng's formant synthesiser with its voice variants (real female and male timbres).
- ``festival``: the CMU ARCTIC "slt" HTS voice (female) and the "kal" diphone voice (male).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Backend = Literal["piper", "espeak", "festival"]
Gender = Literal["male", "female"]


@dataclass(frozen=True)
class SpeakerVoice:
    """One synthetic speaker.

    Attributes:
        id: stable identifier (``"spk01"``...).
        gender: ``"male"`` or ``"female"``.
        backend: synthesis engine.
        voice: engine voice name (piper model name, espeak ``language+variant``, festival voice function).
        f0: the speaker's median F0 in neutral speech (Hz).
        formant_scale: spectral-envelope (formant) scale; > 1 shorter vocal tract (piper only).
        rate: the speaker's base speaking-rate factor (> 1 faster).
        tilt_db: the speaker's own spectral tilt (high-shelf gain, dB).
    """

    id: str
    gender: Gender
    backend: Backend
    voice: str
    f0: float
    formant_scale: float = 1.0
    rate: float = 1.0
    tilt_db: float = 0.0


SPEAKERS: tuple[SpeakerVoice, ...] = (
    SpeakerVoice("spk01", "male", "piper", "en_US-joe-medium", f0=92.0, formant_scale=1.00, rate=1.00),
    SpeakerVoice("spk02", "male", "piper", "en_US-joe-medium", f0=84.0, formant_scale=0.93, rate=0.95, tilt_db=-1.5),
    SpeakerVoice("spk03", "male", "piper", "en_US-joe-medium", f0=108.0, formant_scale=1.06, rate=1.05, tilt_db=1.0),
    SpeakerVoice("spk04", "male", "piper", "en_US-joe-medium", f0=122.0, formant_scale=1.11, rate=1.02, tilt_db=0.5),
    SpeakerVoice("spk05", "male", "piper", "en_US-joe-medium", f0=100.0, formant_scale=0.97, rate=1.08, tilt_db=-0.5),
    SpeakerVoice("spk06", "male", "espeak", "en-us+m2", f0=110.0, rate=0.98),
    SpeakerVoice("spk07", "male", "espeak", "en-us+m3", f0=98.0, rate=1.04, tilt_db=-1.0),
    SpeakerVoice("spk08", "male", "espeak", "en-us+m7", f0=120.0, rate=1.00, tilt_db=1.0),
    SpeakerVoice("spk09", "female", "espeak", "en-us+f1", f0=210.0, rate=1.00),
    SpeakerVoice("spk10", "female", "espeak", "en-us+f2", f0=195.0, rate=1.04, tilt_db=-1.0),
    SpeakerVoice("spk11", "female", "espeak", "en-us+f3", f0=225.0, rate=0.97, tilt_db=0.5),
    SpeakerVoice("spk12", "female", "espeak", "en-us+f4", f0=185.0, rate=1.02, tilt_db=-0.5),
    SpeakerVoice("spk13", "female", "espeak", "en-us+f5", f0=205.0, rate=0.96),
    SpeakerVoice("spk14", "female", "festival", "cmu_us_slt_arctic_hts", f0=172.0, rate=1.00),
    SpeakerVoice("spk15", "male", "festival", "kal_diphone", f0=105.0, rate=1.00),
)
"""All corpus speakers (9 male, 6 female)."""


def speaker(speaker_id: str) -> SpeakerVoice:
    """Look a speaker up by id (KeyError lists the valid ids)."""
    for s in SPEAKERS:
        if s.id == speaker_id:
            return s
    raise KeyError(f"unknown speaker {speaker_id!r}; expected one of {[s.id for s in SPEAKERS]}")
