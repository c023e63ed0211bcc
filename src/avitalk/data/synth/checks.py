"""Figures of merit for teacher motion: lip closure at bilabials, mouth rest in silence, blink rate.

Pure functions on ``(T, 55)`` ARKit-52 motion (:data:`avitalk.spaces.ARKIT52`) and timed phones;
used by the teacher tests and the corpus bench. Targets on a corpus sample:
``bilabial_closure_rate >= 0.99``, ``silence_opening_ratio < 0.05``, ``blink_rate`` in 8..30 / min.

Lip aperture (vertical lip separation in blendshape units, >= 0)::

    aperture = max(0, jawOpen - mouthClose
                      + 0.5 * mean(mouthLowerDownLeft, mouthLowerDownRight)
                      + 0.3 * mean(mouthUpperUpLeft, mouthUpperUpRight)
                      + 0.3 * mouthFunnel
                      - 0.2 * (mouthRollLower + mouthRollUpper))

``jawOpen`` parts the lips unless ``mouthClose`` (lips together with the jaw open) cancels it;
lowering the lower lip, raising the upper lip and funnelling part them further; rolling the lips in
hides the gap. Typical speech averages 0.2-0.4; closed lips are ``<= CLOSED_APERTURE``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from avitalk.data.synth.phones import Phone
from avitalk.data.synth.visemes import viseme
from avitalk.rates import MOTION_FPS
from avitalk.spaces import ARKIT52

CLOSED_APERTURE = 0.05
"""Lips count as closed at or below this aperture."""
SILENCE_MARGIN = 0.1
"""Silence frames for :func:`silence_opening_ratio` are at least this far (s) from any phone."""
BLINK_THRESHOLD = 0.5
"""A blink is an upward crossing of this value by the mean of both eyeBlink channels."""

_I = ARKIT52.index


def lip_aperture(values: np.ndarray) -> np.ndarray:
    """Lip aperture per frame (see the module docstring).

    Args:
        values: ``(T, 55)`` motion in ARKit-52 order.

    Returns:
        ``(T,)`` float64, >= 0.
    """
    v = np.asarray(values, dtype=np.float64)
    a = (
        v[:, _I("jawOpen")]
        - v[:, _I("mouthClose")]
        + 0.5 * 0.5 * (v[:, _I("mouthLowerDownLeft")] + v[:, _I("mouthLowerDownRight")])
        + 0.3 * 0.5 * (v[:, _I("mouthUpperUpLeft")] + v[:, _I("mouthUpperUpRight")])
        + 0.3 * v[:, _I("mouthFunnel")]
        - 0.2 * (v[:, _I("mouthRollLower")] + v[:, _I("mouthRollUpper")])
    )
    return np.maximum(a, 0.0)


def _centres(n_frames: int, fps: float) -> np.ndarray:
    return (np.arange(n_frames) + 0.5) / fps


def speech_mask(phones: Sequence[Phone], n_frames: int, fps: float = MOTION_FPS) -> np.ndarray:
    """``(T,)`` bool: frames whose centre lies inside some phone."""
    t = _centres(n_frames, fps)
    mask = np.zeros(n_frames, dtype=bool)
    for p in phones:
        mask |= (t >= p.start) & (t < p.end)
    return mask


def silence_mask(
    phones: Sequence[Phone], n_frames: int, fps: float = MOTION_FPS, margin: float = SILENCE_MARGIN
) -> np.ndarray:
    """``(T,)`` bool: frames whose centre is at least ``margin`` seconds away from every phone."""
    t = _centres(n_frames, fps)
    mask = np.ones(n_frames, dtype=bool)
    for p in phones:
        mask &= (t < p.start - margin) | (t >= p.end + margin)
    return mask


def bilabial_closures(phones: Sequence[Phone], values: np.ndarray, fps: float = MOTION_FPS) -> tuple[int, int]:
    """``(closed, total)`` bilabial phones; closed = some frame centre in ``[start - ½ frame, end + ½ frame]``
    has aperture ``<= CLOSED_APERTURE``. Phones outside the clip are not counted."""
    ap = lip_aperture(values)
    t = _centres(ap.shape[0], fps)
    closed = total = 0
    for p in phones:
        if not viseme(p.symbol).bilabial:
            continue
        sel = (t >= p.start - 0.5 / fps) & (t <= p.end + 0.5 / fps)
        if not sel.any():
            continue
        total += 1
        closed += bool((ap[sel] <= CLOSED_APERTURE).any())
    return closed, total


def bilabial_closure_rate(phones: Sequence[Phone], values: np.ndarray, fps: float = MOTION_FPS) -> float:
    """Fraction of bilabial phones (p, b, m) whose lips close (see :func:`bilabial_closures`); NaN if none."""
    closed, total = bilabial_closures(phones, values, fps)
    return closed / total if total else float("nan")


def silence_opening_ratio(phones: Sequence[Phone], values: np.ndarray, fps: float = MOTION_FPS) -> float:
    """Mean aperture over silence frames (:func:`silence_mask`) / mean aperture over speech frames.

    NaN when the clip has no such silence frames or no open speech.
    """
    ap = lip_aperture(values)
    sil, sp = silence_mask(phones, ap.shape[0], fps), speech_mask(phones, ap.shape[0], fps)
    if not sil.any() or not sp.any() or ap[sp].mean() <= 0.0:
        return float("nan")
    return float(ap[sil].mean() / ap[sp].mean())


def count_blinks(values: np.ndarray) -> int:
    """Number of upward crossings of :data:`BLINK_THRESHOLD` by the mean eyeBlink of both eyes."""
    v = np.asarray(values, dtype=np.float64)
    lid = 0.5 * (v[:, _I("eyeBlinkLeft")] + v[:, _I("eyeBlinkRight")])
    above = lid >= BLINK_THRESHOLD
    return int(above[0]) + int(np.count_nonzero(above[1:] & ~above[:-1]))


def blink_rate(values: np.ndarray, fps: float = MOTION_FPS) -> float:
    """Blinks per minute of ``(T, 55)`` motion."""
    minutes = values.shape[0] / fps / 60.0
    return count_blinks(values) / minutes if minutes > 0 else float("nan")


def teacher_figures(clips: Iterable[tuple[Sequence[Phone], np.ndarray]], fps: float = MOTION_FPS) -> dict[str, float]:
    """Corpus-level figures over ``(phones, values)`` clips.

    Returns:
        ``bilabial_closure_rate`` (pooled over all bilabials), ``silence_opening_ratio`` (pooled mean
        silence aperture / pooled mean speech aperture), ``blink_rate`` (all blinks / all minutes),
        and the counts ``n_clips``, ``n_bilabials``, ``minutes``.
    """
    closed = total = blinks = frames = n = 0
    sil_sum = sil_n = sp_sum = sp_n = 0.0
    for phones, values in clips:
        c, k = bilabial_closures(phones, values, fps)
        closed, total = closed + c, total + k
        ap = lip_aperture(values)
        sil, sp = silence_mask(phones, ap.shape[0], fps), speech_mask(phones, ap.shape[0], fps)
        sil_sum, sil_n = sil_sum + ap[sil].sum(), sil_n + sil.sum()
        sp_sum, sp_n = sp_sum + ap[sp].sum(), sp_n + sp.sum()
        blinks, frames, n = blinks + count_blinks(values), frames + values.shape[0], n + 1
    minutes = frames / fps / 60.0
    return {
        "bilabial_closure_rate": closed / total if total else float("nan"),
        "silence_opening_ratio": float((sil_sum / sil_n) / (sp_sum / sp_n))
        if sil_n and sp_n and sp_sum
        else float("nan"),
        "blink_rate": blinks / minutes if minutes else float("nan"),
        "n_clips": float(n),
        "n_bilabials": float(total),
        "minutes": minutes,
    }
