"""Speaker and clip styles: the emotion x intensity action templates the motion teacher realises.

A clip's style is sampled once (:func:`sample_clip_style`) and is the single source of truth for
both the teacher (which animates its realised action weights) and the captions (which describe the
strongest of them). Actions are named facial actions (roughly FACS action units) that map to
ARKit-52 channels in :data:`ACTIONS`; three *behaviour* actions (:data:`BEHAVIOURS`) describe how the
person talks (mouth opening, brow raises on accents, head motion) and exist for every emotion.

Side convention: ARKit's ``Left`` is the subject's left; ``side = +1`` means the subject's left.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np

from avitalk.data.labels import EMOTIONS

# ------------------------------------------------------------------------------------------- actions

ACTIONS: dict[str, dict[str, float]] = {
    # action -> {channel: weight at action weight 1}; "*" expands to Left and Right, "<" is the clip's side
    "smile": {"mouthSmile*": 0.9, "mouthDimple*": 0.2},
    "cheek_raise": {"cheekSquint*": 0.9},
    "eye_squint": {"eyeSquint*": 0.8},
    "brow_lower": {"browDown*": 0.9},
    "brow_inner_raise": {"browInnerUp": 0.9},
    "brow_outer_raise": {"browOuterUp*": 0.9},
    "nose_wrinkle": {"noseSneer*": 0.8},
    "lip_press": {"mouthPress*": 0.7, "mouthRollUpper": 0.1, "mouthRollLower": 0.1},
    "frown": {"mouthFrown*": 0.8},
    "chin_raise": {"mouthShrugLower": 0.7, "mouthShrugUpper": 0.2},
    "eye_widen": {"eyeWide*": 0.9},
    "lip_stretch": {"mouthStretch*": 0.7},
    "upper_lip_raise": {"mouthUpperUp*": 0.5},
    "jaw_drop": {"jawOpen": 0.3},
    "eye_lower": {"eyeLookDown*": 0.5, "eyeBlink*": 0.3},
    "smirk": {"mouthSmile<": 0.8, "mouthDimple<": 0.5, "mouthPress<": 0.15},
    "head_tilt": {"headRoll<": 0.10, "headPitch": -0.05, "headYaw<": 0.04},
    "head_down": {"headPitch": 0.12},
}
"""Expression actions -> ARKit channel weights (head channels in radians at weight 1)."""

BEHAVIOURS: tuple[str, ...] = ("mouth_open", "brow_accent", "head_motion")
"""Talking-behaviour actions in [0, 1]; see :func:`articulation_scale` and the teacher."""

# ------------------------------------------------------------------------------------------ templates

TEMPLATES: dict[str, dict[str, tuple[float, float, float]]] = {
    # emotion -> {action: weight at intensity (1, 2, 3)}
    "neutral": {},
    "happy": {"smile": (0.30, 0.50, 0.75), "cheek_raise": (0.20, 0.35, 0.55), "eye_squint": (0.0, 0.15, 0.35)},
    "sad": {
        "brow_inner_raise": (0.25, 0.40, 0.60),
        "frown": (0.20, 0.35, 0.50),
        "eye_lower": (0.15, 0.25, 0.40),
        "chin_raise": (0.05, 0.15, 0.30),
        "head_down": (0.15, 0.30, 0.45),
    },
    "angry": {
        "brow_lower": (0.30, 0.50, 0.75),
        "lip_press": (0.20, 0.35, 0.50),
        "eye_squint": (0.15, 0.30, 0.45),
        "nose_wrinkle": (0.10, 0.25, 0.40),
    },
    "surprised": {
        "brow_outer_raise": (0.30, 0.50, 0.75),
        "brow_inner_raise": (0.30, 0.50, 0.70),
        "eye_widen": (0.25, 0.45, 0.70),
        "jaw_drop": (0.15, 0.25, 0.40),
    },
    "fear": {
        "brow_inner_raise": (0.35, 0.55, 0.75),
        "eye_widen": (0.20, 0.40, 0.60),
        "lip_stretch": (0.15, 0.30, 0.50),
        "brow_outer_raise": (0.15, 0.30, 0.45),
        "brow_lower": (0.0, 0.10, 0.20),
    },
    "disgust": {
        "nose_wrinkle": (0.25, 0.45, 0.70),
        "upper_lip_raise": (0.15, 0.25, 0.40),
        "brow_lower": (0.15, 0.30, 0.45),
        "eye_squint": (0.10, 0.20, 0.30),
        "chin_raise": (0.05, 0.15, 0.25),
    },
    "contempt": {"smirk": (0.25, 0.40, 0.60), "head_tilt": (0.25, 0.45, 0.65), "eye_squint": (0.0, 0.10, 0.20)},
}

# per emotion, at intensity 3 (interpolated towards 1.0 at lower intensities):
#              mouth opening, brow accents, head motion, blink rate
EMOTION_BEHAVIOUR: dict[str, tuple[float, float, float, float]] = {
    "neutral": (1.00, 1.00, 1.00, 1.00),
    "happy": (1.08, 1.20, 1.15, 1.00),
    "sad": (0.82, 0.60, 0.65, 0.75),
    "angry": (1.12, 0.90, 1.30, 1.25),
    "surprised": (1.15, 1.40, 1.10, 0.85),
    "fear": (0.95, 1.10, 1.20, 1.40),
    "disgust": (0.90, 0.80, 1.00, 1.10),
    "contempt": (0.90, 0.80, 0.90, 1.00),
}

BLINK_RANGE = (9.0, 27.0)
"""Realised blink rates are clipped to this range (blinks per minute)."""


# -------------------------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class SpeakerStyle:
    """Idiosyncrasies of one speaker, fixed across their clips.

    Attributes:
        speaker_id: the speaker.
        expressiveness: multiplies the emotion action weights (0.75..1.25).
        asymmetry: left channels x ``(1 + a)``, right x ``(1 - a)`` (-0.15..0.15).
        blink_rate: base blinks per minute (12..22).
        head_motion: head-motion amplitude factor (0.6..1.4).
        mouth_open: mouth-opening factor while speaking (0.85..1.15).
        brow_accent: tendency to raise the brows on accented words (0..1).
        side: preferred side of one-sided expressions, +1 subject's left, -1 right.
    """

    speaker_id: str
    expressiveness: float
    asymmetry: float
    blink_rate: float
    head_motion: float
    mouth_open: float
    brow_accent: float
    side: int


@dataclass(frozen=True)
class ClipStyle:
    """Everything the teacher animates and the captions describe for one clip.

    Attributes:
        emotion: one of :data:`EMOTIONS`.
        intensity: 1..3 (neutral: 1).
        speaker: the speaker's style.
        actions: realised action -> weight in [0, 1]: expression actions (keys of :data:`ACTIONS`)
            strongest first, then the :data:`BEHAVIOURS`. Do not mutate.
        blink_rate: blinks per minute in this clip.
        side: side of one-sided actions (+1 subject's left, -1 right).
        onset: seconds for the expression to ramp up to full strength.
    """

    emotion: str
    intensity: int
    speaker: SpeakerStyle
    actions: dict[str, float] = field(default_factory=dict)
    blink_rate: float = 17.0
    side: int = 1
    onset: float = 0.5

    def expression(self) -> dict[str, float]:
        """The realised expression actions (no behaviours), strongest first."""
        return {k: v for k, v in self.actions.items() if k in ACTIONS}

    def to_json(self) -> dict:
        """JSON-serialisable dict; :meth:`from_json` inverts it."""
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> ClipStyle:
        return ClipStyle(**{**d, "speaker": SpeakerStyle(**d["speaker"]), "actions": dict(d["actions"])})


def speaker_style(speaker_id: str, seed: int) -> SpeakerStyle:
    """Deterministic style of ``speaker_id`` for corpus ``seed`` (stable across processes)."""
    digest = int.from_bytes(hashlib.sha256(speaker_id.encode()).digest()[:8], "little")
    rng = np.random.default_rng([seed, digest])
    return SpeakerStyle(
        speaker_id=speaker_id,
        expressiveness=float(rng.uniform(0.75, 1.25)),
        asymmetry=float(rng.uniform(-0.15, 0.15)),
        blink_rate=float(rng.uniform(12.0, 22.0)),
        head_motion=float(rng.uniform(0.6, 1.4)),
        mouth_open=float(rng.uniform(0.85, 1.15)),
        brow_accent=float(rng.uniform(0.0, 1.0)),
        side=int(rng.choice([-1, 1])),
    )


def _level(factor: float, intensity: int) -> float:
    """An intensity-3 factor scaled towards 1 for lower intensities (1: 40 %, 2: 70 %, 3: 100 %)."""
    return 1.0 + (factor - 1.0) * (0.1 + 0.3 * intensity)


def sample_clip_style(emotion: str, intensity: int, speaker: SpeakerStyle, rng: np.random.Generator) -> ClipStyle:
    """Realise the emotion x intensity template for one clip of ``speaker``.

    Each template action weight is scaled by the speaker's expressiveness and a per-clip log-normal
    jitter; behaviours combine the speaker's habits with the emotion's.

    Raises:
        ValueError: unknown emotion, intensity outside 1..3, or neutral with intensity != 1.
    """
    if emotion not in TEMPLATES:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}")
    if intensity not in (1, 2, 3) or (emotion == "neutral" and intensity != 1):
        raise ValueError(f"intensity {intensity} is not valid for {emotion!r} (neutral: 1, others: 1..3)")
    expression = {}
    for action, levels in TEMPLATES[emotion].items():
        w = levels[intensity - 1] * speaker.expressiveness * float(np.exp(rng.normal(0.0, 0.15)))
        if w > 0.0:
            expression[action] = float(np.clip(w, 0.0, 1.0))
    actions = dict(sorted(expression.items(), key=lambda kv: -kv[1]))

    mouth, brow, head, blink = (_level(f, intensity) for f in EMOTION_BEHAVIOUR[emotion])
    opening = speaker.mouth_open * mouth * float(np.exp(rng.normal(0.0, 0.05)))
    actions["mouth_open"] = float(np.clip((opening - 0.6) / 0.8, 0.0, 1.0))
    actions["brow_accent"] = float(np.clip(speaker.brow_accent * brow + rng.normal(0.0, 0.05), 0.0, 1.0))
    motion = speaker.head_motion * head * float(np.exp(rng.normal(0.0, 0.1)))
    actions["head_motion"] = float(np.clip((motion - 0.3) / 1.4, 0.0, 1.0))
    blink_rate = float(np.clip(speaker.blink_rate * blink * np.exp(rng.normal(0.0, 0.1)), *BLINK_RANGE))
    side = speaker.side if rng.random() < 0.8 else -speaker.side
    return ClipStyle(
        emotion=emotion,
        intensity=intensity,
        speaker=speaker,
        actions=actions,
        blink_rate=blink_rate,
        side=int(side),
        onset=float(rng.uniform(0.2, 1.0)),
    )


def articulation_scale(style: ClipStyle) -> float:
    """Multiplier of the speech mouth opening (0.6..1.4) from the ``mouth_open`` behaviour."""
    return 0.6 + 0.8 * style.actions.get("mouth_open", 0.5)


def head_scale(style: ClipStyle) -> float:
    """Multiplier of head-motion amplitude (0.3..1.7) from the ``head_motion`` behaviour."""
    return 0.3 + 1.4 * style.actions.get("head_motion", 0.5)
