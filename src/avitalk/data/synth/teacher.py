"""The motion teacher: exact ground-truth ARKit-52 face motion from timed phones and a clip style.

``teach`` layers, per frame (all at frame centres, 25 fps by default):

1. speech articulation: dominance-blended visemes with closed lips at bilabials and a relaxed,
   closed mouth in pauses (:mod:`.coarticulation`), scaled by the clip's mouth opening;
2. the emotion expression: the clip's realised actions (:mod:`.style`) with an onset ramp and slow
   fluctuations; lip-parting expression channels are damped while not speaking;
3. eyes: blinks (100-250 ms, both eyes, some half blinks) at the clip's rate, and small gaze shifts;
4. brows and head: brow raises and small nods on pitch accents (primary-stressed vowels, one per
   word), slow head drift, emotion head offsets.

Head rotations are radians with the conventions of :func:`avitalk.face.linear.euler_to_matrix`
(positive pitch nods down, positive yaw turns toward the subject's left, positive roll tilts the
top of the head toward the subject's right). The result is deterministic given ``rng``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avitalk.data.synth.coarticulation import Articulation, articulate, frame_times
from avitalk.data.synth.phones import Phone
from avitalk.data.synth.style import (
    ACTIONS,
    ClipStyle,
    SpeakerStyle,
    articulation_scale,
    head_scale,
    sample_clip_style,
    speaker_style,
)
from avitalk.data.synth.visemes import viseme
from avitalk.rates import MOTION_FPS
from avitalk.spaces import ARKIT52, ARKIT_BLENDSHAPES

__all__ = ["ClipStyle", "SpeakerStyle", "sample_clip_style", "speaker_style", "teach"]

REST_OPEN = 0.1  # fraction of lip-parting expression (jaw drop, upper-lip raise) kept in pauses
FLUCTUATION = 0.08  # relative amplitude of the slow expression fluctuations
BLINK_DURATION = (0.10, 0.25)  # s
HALF_BLINK = 0.12  # probability that a blink is a half blink (does not reach 0.5)
MIN_BLINK_GAP = 0.3  # s
GAZE_SHIFT = 1.5  # s, mean time between gaze shifts
GAZE_STD = (0.08, 0.05)  # horizontal, vertical eyeLook weight
ACCENT_PROB = (0.3, 0.4)  # p(accent) = a + b * brow_accent, per primary-stressed word
PHRASE_PAUSE = 0.15  # s; a word followed by a longer pause ends a phrase (nuclear accent)
BROW_ACCENT = (0.08, 0.25)  # brow raise = a + b * brow_accent (x expressiveness)
NOD = (0.008, 0.03)  # rad, nod amplitude range at head_scale 1
DRIFT = {"headPitch": 0.025, "headYaw": 0.035, "headRoll": 0.015}  # rad, drift std at head_scale 1
HEAD_LIMIT = 0.6  # rad

_I = ARKIT52.index
_N_BLEND = len(ARKIT_BLENDSHAPES)


def _expand(channel: str, side: int) -> list[tuple[str, float]]:
    """``mouthSmile*`` -> both sides; ``mouthSmile<`` -> the clip's side; head ``<`` -> signed by side."""
    if channel.endswith("*"):
        return [(channel[:-1] + "Left", 1.0), (channel[:-1] + "Right", 1.0)]
    if channel.endswith("<"):
        if channel.startswith("head"):
            return [(channel[:-1], float(side))]
        return [(channel[:-1] + ("Left" if side > 0 else "Right"), 1.0)]
    return [(channel, 1.0)]


def _smooth_noise(t: np.ndarray, rng: np.random.Generator, freqs: tuple[float, float], n: int = 3) -> np.ndarray:
    """``(T,)`` smooth zero-mean noise of unit std: a sum of ``n`` random sinusoids in ``freqs`` Hz."""
    f = rng.uniform(*freqs, size=n)
    phase = rng.uniform(0.0, 2 * np.pi, size=n)
    return np.sin(2 * np.pi * f[None] * t[:, None] + phase[None]).sum(axis=1) * np.sqrt(2.0 / n)


def _bump(t: np.ndarray, centre: float, rise: float, fall: float) -> np.ndarray:
    """``(T,)`` raised-cosine bump peaking at 1 at ``centre``, ``rise`` s before and ``fall`` s after."""
    x = np.where(t < centre, (centre - t) / rise, (t - centre) / fall)
    return np.where(x < 1.0, 0.5 * (1.0 + np.cos(np.pi * np.minimum(x, 1.0))), 0.0)


def _expression(style: ClipStyle, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(T, 55)`` emotion expression: realised actions x onset ramp x (1 + slow fluctuation)."""
    out = np.zeros((t.shape[0], ARKIT52.dim))
    start = rng.uniform(0.4, 0.8)
    x = np.clip(t / style.onset, 0.0, 1.0)
    ramp = start + (1.0 - start) * x * x * (3.0 - 2.0 * x)  # smoothstep onset
    asym = style.speaker.asymmetry
    for action, weight in style.expression().items():
        env = weight * ramp * (1.0 + FLUCTUATION * _smooth_noise(t, rng, (0.1, 0.5)))
        for channel, w in ACTIONS[action].items():
            for name, sign in _expand(channel, style.side):
                lr = 1.0 + asym if name.endswith("Left") else 1.0 - asym if name.endswith("Right") else 1.0
                out[:, _I(name)] += sign * w * lr * env
    return out


def _mouth(out: np.ndarray, art: Articulation, expr: np.ndarray, style: ClipStyle) -> None:
    """Write the speech articulation plus the expression's mouth channels into ``out``."""
    scale = articulation_scale(style)
    gate = REST_OPEN + (1.0 - REST_OPEN) * art.speech  # lip-parting expression fades in pauses
    seal = art["seal"]
    a = 0.5 * style.speaker.asymmetry
    jaw = art["jaw"] * scale + expr[:, _I("jawOpen")] * gate
    out[:, _I("jawOpen")] = jaw
    out[:, _I("mouthClose")] = seal * np.clip(jaw, 0.0, 1.0)
    out[:, _I("mouthFunnel")] = (art["funnel"] * scale + expr[:, _I("mouthFunnel")] * gate) * (1.0 - seal)
    pucker = art["pucker"] * scale + expr[:, _I("mouthPucker")]
    out[:, _I("mouthPucker")] = pucker
    out[:, _I("mouthRollLower")] = art["roll_lo"] + expr[:, _I("mouthRollLower")]
    out[:, _I("mouthRollUpper")] = art["roll_up"] + expr[:, _I("mouthRollUpper")]
    out[:, _I("mouthShrugUpper")] = art["shrug_up"] + expr[:, _I("mouthShrugUpper")]
    out[:, _I("mouthShrugLower")] = expr[:, _I("mouthShrugLower")]
    out[:, _I("tongueOut")] = art["tongue"]
    for side, lr in (("Left", 1.0 + a), ("Right", 1.0 - a)):
        for name, key in (("mouthLowerDown", "lower"), ("mouthUpperUp", "upper")):
            ch = _I(name + side)
            out[:, ch] = (art[key] * scale * lr + expr[:, ch] * gate) * (1.0 - seal)
        out[:, _I("mouthStretch" + side)] = art["stretch"] * lr + expr[:, _I("mouthStretch" + side)]
        out[:, _I("mouthPress" + side)] = art["press"] * lr + expr[:, _I("mouthPress" + side)]
        out[:, _I("mouthSmile" + side)] = expr[:, _I("mouthSmile" + side)] * (1.0 - 0.6 * np.clip(pucker, 0.0, 1.0))
        for name in ("mouthFrown", "mouthDimple"):
            out[:, _I(name + side)] = expr[:, _I(name + side)]


def blink_curve(n_frames: int, rate: float, rng: np.random.Generator, fps: float = MOTION_FPS) -> np.ndarray:
    """``(T,)`` eyelid closure in [0, 1] with full blinks at ``rate`` per minute (plus some half blinks).

    Blink onsets follow a stationary gamma renewal process (regular-ish, at least :data:`MIN_BLINK_GAP`
    apart, so short clips get the right rate on average);
    each blink peaks on a frame centre, closes in 35 % and reopens in 65 % of its duration.
    """
    t = frame_times(n_frames, fps)
    lid = np.zeros(n_frames)
    mean_gap = 60.0 / (rate / (1.0 - HALF_BLINK))  # half blinks come on top of the full ones
    s = -5.0 * mean_gap  # start the renewal process early so that it is stationary within the clip
    while s < n_frames / fps:
        dur = rng.uniform(*BLINK_DURATION)
        amp = rng.uniform(0.25, 0.42) if rng.random() < HALF_BLINK else rng.uniform(0.9, 1.0)
        if s >= 0.0:
            peak = (np.floor(s * fps) + 0.5) / fps
            lid = np.maximum(lid, amp * _bump(t, peak, 0.35 * dur, 0.65 * dur))
        s += max(MIN_BLINK_GAP, rng.gamma(3.0, mean_gap / 3.0))
    return lid


def _eyes(
    out: np.ndarray, expr: np.ndarray, style: ClipStyle, t: np.ndarray, rng: np.random.Generator, fps: float
) -> None:
    """Blinks over the expression's lid/eye channels, plus gaze shifts."""
    blink = blink_curve(t.shape[0], style.blink_rate, rng, fps)
    for side in ("Left", "Right"):
        for name in ("eyeSquint", "eyeLookDown", "eyeLookUp", "eyeLookIn", "eyeLookOut"):
            out[:, _I(name + side)] = expr[:, _I(name + side)]
        base = np.clip(expr[:, _I("eyeBlink" + side)], 0.0, 0.3)
        out[:, _I("eyeBlink" + side)] = base + (1.0 - base) * blink
        out[:, _I("eyeWide" + side)] = expr[:, _I("eyeWide" + side)] * (1.0 - blink)
    # gaze: fixations held between shifts, each shift takes one frame
    gaze = np.zeros((t.shape[0], 2))
    s, h, v = 0.0, 0.0, 0.0
    while s < t[-1] + 1.0 / fps:
        h, v = rng.normal(0.0, GAZE_STD[0]), rng.normal(0.0, GAZE_STD[1])
        gaze[t >= s] = (h, v)
        s += rng.gamma(2.0, GAZE_SHIFT / 2.0)
    gaze[1:] = 0.5 * (gaze[1:] + gaze[:-1])
    h, v = gaze[:, 0], gaze[:, 1]  # h > 0: looking towards the subject's left
    out[:, _I("eyeLookOutLeft")] += np.maximum(h, 0.0)
    out[:, _I("eyeLookInRight")] += np.maximum(h, 0.0)
    out[:, _I("eyeLookInLeft")] += np.maximum(-h, 0.0)
    out[:, _I("eyeLookOutRight")] += np.maximum(-h, 0.0)
    for side in ("Left", "Right"):
        out[:, _I("eyeLookUp" + side)] += np.maximum(v, 0.0)
        out[:, _I("eyeLookDown" + side)] += np.maximum(-v, 0.0)


def accents(phones: Sequence[Phone], brow_accent: float, rng: np.random.Generator) -> list[Phone]:
    """Pitch-accented vowels: the first primary-stressed vowel of each word, kept with probability
    ``ACCENT_PROB[0] + ACCENT_PROB[1] * brow_accent`` (+0.2 for a nuclear accent: the word ends a phrase)."""
    phones = sorted(phones, key=lambda p: p.start)
    starts = np.array([p.start for p in phones])
    word_end: dict[int, float] = {}
    for p in phones:
        word_end[p.word] = max(word_end.get(p.word, p.end), p.end)
    out, seen = [], set()
    for p in phones:
        if p.stress != 1 or p.word in seen or not viseme(p.symbol).vowel:
            continue
        seen.add(p.word)
        end = word_end[p.word]
        later = starts[starts >= end - 1e-6]
        nuclear = later.size == 0 or later.min() - end > PHRASE_PAUSE
        if rng.random() < ACCENT_PROB[0] + ACCENT_PROB[1] * brow_accent + (0.2 if nuclear else 0.0):
            out.append(p)
    return out


def _brows_and_head(
    out: np.ndarray,
    expr: np.ndarray,
    phones: Sequence[Phone],
    art: Articulation,
    style: ClipStyle,
    t: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Expression brows + accent brow raises; head drift + accent nods + expression head offsets."""
    for name in ("browInnerUp", "browOuterUpLeft", "browOuterUpRight", "browDownLeft", "browDownRight"):
        out[:, _I(name)] = expr[:, _I(name)]
    for name in ("cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "cheekPuff"):
        out[:, _I(name)] = expr[:, _I(name)]
    lowered = style.actions.get("brow_lower", 0.0) >= 0.3  # angry/disgusted speakers knit, not raise
    amp_b = (BROW_ACCENT[0] + BROW_ACCENT[1] * style.actions.get("brow_accent", 0.5)) * style.speaker.expressiveness
    hs = head_scale(style)
    pitch = np.zeros_like(t)
    for p in accents(phones, style.actions.get("brow_accent", 0.5), rng):
        c = 0.5 * (p.start + p.end)
        bump = rng.uniform(0.7, 1.3) * amp_b * _bump(t, c, 0.18, 0.45)
        if lowered and rng.random() < 0.7:
            out[:, _I("browDownLeft")] += 0.6 * bump
            out[:, _I("browDownRight")] += 0.6 * bump
        else:
            out[:, _I("browInnerUp")] += 0.8 * bump
            out[:, _I("browOuterUpLeft")] += bump
            out[:, _I("browOuterUpRight")] += bump
        if rng.random() < 0.7:
            pitch += hs * rng.uniform(*NOD) * _bump(t, c + 0.05, 0.15, 0.25)
    talk = 0.6 + 0.4 * art.speech  # the head moves more while speaking
    for name, std in DRIFT.items():
        drift = hs * std * (_smooth_noise(t, rng, (0.05, 0.35)) * talk + rng.normal(0.0, 0.3))
        out[:, _I(name)] = drift + expr[:, _I(name)]
    out[:, _I("headPitch")] += pitch


def teach(
    phones: Sequence[Phone], n_frames: int, style: ClipStyle, rng: np.random.Generator, fps: float = MOTION_FPS
) -> np.ndarray:
    """Ground-truth face motion for one clip.

    Args:
        phones: timed phones of the utterance (time not covered by a phone is silence).
        n_frames: number of output frames ``T``.
        style: the clip style from :func:`sample_clip_style` (the captions describe the same object).
        rng: the only source of randomness.
        fps: frame rate of the output.

    Returns:
        ``(T, 55)`` float32 in ARKIT52 order: blendshape weights in [0, 1], head pitch/yaw/roll in radians.
    """
    t = frame_times(n_frames, fps)
    out = np.zeros((n_frames, ARKIT52.dim))
    if n_frames == 0:
        return out.astype(np.float32)
    art = articulate(phones, n_frames, fps)
    expr = _expression(style, t, rng)
    _mouth(out, art, expr, style)
    _eyes(out, expr, style, t, rng, fps)
    _brows_and_head(out, expr, phones, art, style, t, rng)
    out[:, :_N_BLEND] = np.clip(out[:, :_N_BLEND], 0.0, 1.0)
    out[:, _N_BLEND:] = np.clip(out[:, _N_BLEND:], -HEAD_LIMIT, HEAD_LIMIT)
    return out.astype(np.float32)
