"""The sentence list of the synthetic corpus: ``sentences.txt``, one sentence per line.

596 English sentences written for avitalk (not taken from any corpus), 5-16 words each:
statements, questions, exclamations and sentences with commas (phrase breaks), covering every
English phoneme, with many bilabials (p b m), labiodentals (f v) and rounded vowels for the lips.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load_sentences() -> tuple[str, ...]:
    """All sentences in file order (a sentence's index is its stable id)."""
    text = resources.files("avitalk.data.synth").joinpath("sentences.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())
