"""MeadText-style instructions for imported videos, from the *measured* facial activity (a heuristic).

A real video comes without a caption, but the corpus format needs at least one. We describe what
the Face Landmarker measured, in the vocabulary of :mod:`avitalk.data.synth.captions`::

    A person speaks with noticeably lowered brows, moderate mouth movements and minimal head movements.

How (all numbers are constants below, documented in docs/importers.md):

* **expression actions** (smile, lowered brows, pressed lips, ...): the mean over face frames of the
  action's ARKit channels, minus a *resting level* (what MediaPipe reports for neutral talking faces:
  e.g. ``eyeSquint*`` reads about 0.35-0.4 on relaxed eyes in the GRID samples), divided by the span
  to a full-strength level and clipped to [0, 1]. Scores >= :data:`MIN_SCORE` are mentioned (at
  most 3, strongest first) with weak / medium / strong words at :data:`~avitalk.data.synth.captions.LEVELS`;
* **behaviours**, always mentioned: mouth opening (90th percentile of ``jawOpen``) and head motion
  (RMS deviation of the head angles from their mean);
* the emotion, when the user gives it (``--emotion``); otherwise none is claimed.

These are estimates of estimates: good enough to tell a broad smile from a still face, not a
substitute for human captions such as MeadText's.
"""

from __future__ import annotations

import hashlib

import numpy as np

from avitalk.data.synth.captions import (
    EMOTION_WORDS,
    INTENSITY_WORDS,
    LEVELS,
    WHO,
    action_phrase,
    augment,
    fix_articles,
)
from avitalk.spaces import ARKIT52

ACTION_MEASURES: dict[str, tuple[tuple[str, ...], float, float]] = {
    # action -> (ARKit channels averaged, resting level, full-strength level)
    "smile": (("mouthSmileLeft", "mouthSmileRight"), 0.05, 0.60),
    "cheek_raise": (("cheekSquintLeft", "cheekSquintRight"), 0.02, 0.40),
    "eye_squint": (("eyeSquintLeft", "eyeSquintRight"), 0.45, 0.80),
    "brow_lower": (("browDownLeft", "browDownRight"), 0.15, 0.60),
    "brow_inner_raise": (("browInnerUp",), 0.05, 0.50),
    "brow_outer_raise": (("browOuterUpLeft", "browOuterUpRight"), 0.20, 0.70),
    "nose_wrinkle": (("noseSneerLeft", "noseSneerRight"), 0.05, 0.50),
    "lip_press": (("mouthPressLeft", "mouthPressRight"), 0.15, 0.60),
    "frown": (("mouthFrownLeft", "mouthFrownRight"), 0.05, 0.40),
    "eye_widen": (("eyeWideLeft", "eyeWideRight"), 0.05, 0.40),
    "lip_stretch": (("mouthStretchLeft", "mouthStretchRight"), 0.05, 0.40),
    "upper_lip_raise": (("mouthUpperUpLeft", "mouthUpperUpRight"), 0.05, 0.40),
    "head_down": (("headPitch",), 0.10, 0.35),  # radians, mean pitch (positive = nodding down)
}
"""How each expression action of the caption vocabulary is scored from measured channels."""

MIN_SCORE = 0.1
"""Expression actions scoring below this are not mentioned."""
MAX_ACTIONS = 3
MOUTH_OPEN_LEVELS = (0.20, 0.40)
"""90th percentile of ``jawOpen`` between small / moderate / wide mouth movements."""
HEAD_MOTION_LEVELS = (0.025, 0.06)
"""RMS head-angle deviation (rad) between minimal / gentle / lively head movements."""


def _level(x: float, thresholds: tuple[float, float]) -> int:
    return int(x >= thresholds[0]) + int(x >= thresholds[1])


def activity_scores(motion: np.ndarray, mask: np.ndarray | None) -> dict[str, float]:
    """Measured activity of a clip: expression action scores in [0, 1] and the two behaviour measures.

    Args:
        motion: ``(T, 55)`` float32 in ``arkit52``.
        mask: ``(T,)`` bool (True where a face was found), or None when all frames are valid.

    Returns:
        ``{action: score}`` for :data:`ACTION_MEASURES`, plus ``"jaw_open_p90"`` (weight) and
        ``"head_motion_rms"`` (rad). Empty if no frame is valid.
    """
    valid = motion if mask is None else motion[np.asarray(mask, dtype=bool)]
    if valid.shape[0] == 0:
        return {}
    out: dict[str, float] = {}
    for action, (channels, rest, full) in ACTION_MEASURES.items():
        mean = float(valid[:, [ARKIT52.index(c) for c in channels]].mean())
        out[action] = round(float(np.clip((mean - rest) / (full - rest), 0.0, 1.0)), 4)
    out["jaw_open_p90"] = round(float(np.percentile(valid[:, ARKIT52.index("jawOpen")], 90)), 4)
    head = valid[:, [ARKIT52.index(c) for c in ("headPitch", "headYaw", "headRoll")]]
    out["head_motion_rms"] = round(float(np.sqrt(((head - head.mean(0)) ** 2).sum(1).mean())), 4)
    return out


def caption_phrases(scores: dict[str, float]) -> list[str]:
    """The action phrases a caption of ``scores`` mentions: strongest expressions, then behaviours."""
    expr = sorted(((a, s) for a, s in scores.items() if a in ACTION_MEASURES and s >= MIN_SCORE), key=lambda x: -x[1])
    phrases = [action_phrase(a, _level(s, LEVELS)) for a, s in expr[:MAX_ACTIONS]]
    phrases.append(action_phrase("mouth_open", _level(scores.get("jaw_open_p90", 0.0), MOUTH_OPEN_LEVELS)))
    phrases.append(action_phrase("head_motion", _level(scores.get("head_motion_rms", 0.0), HEAD_MOTION_LEVELS)))
    return phrases


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def describe(scores: dict[str, float], gender: str = "unknown", emotion: str | None = None, intensity: int = 0) -> str:
    """One caption: ``"A woman feels fairly happy and speaks with a clear smile and ..."``.

    Args:
        scores: from :func:`activity_scores`.
        gender: ``male`` / ``female`` give "A man" / "A woman"; anything else "A person".
        emotion: one of MEAD's eight emotions, or None / ``unknown`` (no emotion is claimed).
        intensity: 1..3 for the emotion's adverb.
    """
    who = WHO.get(gender.strip().lower(), ("a person",))[0]
    acts = _join(caption_phrases(scores))
    if emotion and emotion in EMOTION_WORDS:
        adjective = EMOTION_WORDS[emotion][0]
        emo = adjective if emotion == "neutral" else f"{INTENSITY_WORDS[min(max(intensity, 1), 3)][0]} {adjective}"
        text = f"{who} feels {emo} and speaks with {acts}."
    else:
        text = f"{who} speaks with {acts}."
    return fix_articles(text[0].upper() + text[1:])


def make_instructions(
    scores: dict[str, float], key: str, gender: str = "unknown", emotion: str | None = None, intensity: int = 0
) -> list[str]:
    """The canonical caption (:func:`describe`) and up to two synonym paraphrases (deterministic per ``key``)."""
    canonical = describe(scores, gender, emotion, intensity)
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    out = [canonical]
    for _ in range(8):
        text = augment(canonical, rng)
        if text not in out:
            out.append(text)
        if len(out) == 3:
            break
    return out
