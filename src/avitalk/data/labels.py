"""Label vocabularies shared by every corpus: MEAD's eight emotions and their intensity levels."""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprised", "fear", "disgust", "contempt")
"""MEAD's eight emotions, in MEAD's order."""

INTENSITIES: dict[str, tuple[int, ...]] = {e: ((1,) if e == "neutral" else (1, 2, 3)) for e in EMOTIONS}
"""Valid intensity levels per emotion (MEAD: 1 weak, 2 medium, 3 strong; neutral has only level 1)."""

UNKNOWN = "unknown"
"""Emotion label of clips whose emotion is not known (e.g. an imported video); intensity is then 0."""
