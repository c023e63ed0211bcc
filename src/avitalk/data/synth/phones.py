"""Timed phones: the contract between the speech synthesisers and the motion teacher."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Phone:
    """One phoneme with its time span in the synthesised audio.

    Attributes:
        symbol: one IPA phoneme as espeak-ng writes it (e.g. ``"p"``, ``"aɪ"``, ``"ð"``, ``"ɚ"``),
            without stress or length marks.
        start, end: seconds from the start of the audio (``end > start``).
        stress: 0 unstressed, 1 primary, 2 secondary (vowels; consonants 0).
        word: index of the word in the sentence this phone belongs to.
    """

    symbol: str
    start: float
    end: float
    stress: int = 0
    word: int = 0


@dataclass(frozen=True)
class Utterance:
    """Synthesised speech with phone timings.

    Attributes:
        samples: ``(T,)`` float32 mono audio at 16 kHz in [-1, 1].
        phones: phones in time order; time not covered by any phone is silence.
        words: ``(word, start, end)`` per word, in order.
    """

    samples: np.ndarray
    phones: tuple[Phone, ...]
    words: tuple[tuple[str, float, float], ...]
    sample_rate: int = 16_000

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / self.sample_rate
