"""Speech articulation by dominance blending (Cohen & Massaro 1993) with hard lip constraints.

Every phone, and every pause, is a *segment* with a viseme target (:mod:`.visemes`) and a
dominance that is flat over the segment's core and decays exponentially away from it::

    D_s(t) = alpha_s * exp(-rate_s * rho_s * dist(t, core_s))          (per channel group)
    F(t)   = sum_s D_s(t) * target_s / sum_s D_s(t)

- vowels hold their target over the middle :data:`VOWEL_CORE` of their duration, consonants at
  their centre, pauses over their whole span; inside a pause the phones' dominance decays
  :data:`RELEASE` times faster, so the mouth relaxes to closed within ~100-150 ms;
- rounded phones decay :data:`ANTICIPATION` times slower *backwards* in the rounding group, so
  their pucker spreads onto the preceding consonants (anticipatory rounding);
- ``rho_s`` adapts the decay to the local speech rate (faster speech -> narrower dominance), and the
  blend is lightly smoothed with a rate-dependent Gaussian;
- afterwards, bilabials are forced to a full lip seal on every frame inside the phone and on the
  frame nearest the phone centre (so a 30 ms /p/ still closes the lips), easing in and out over
  :data:`CLOSURE_RAMP`; labiodentals get at least :data:`TUCK` of their lower-lip tuck.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter1d

from avitalk.data.synth.phones import Phone
from avitalk.data.synth.visemes import ART_CHANNELS, CHANNEL_GROUP, DIPHTHONGS, SILENCE, VISEMES, Viseme, viseme
from avitalk.rates import MOTION_FPS

MIN_PAUSE = 0.06  # s; shorter gaps between phones are not pauses
VOWEL_CORE = 0.4  # fraction of a vowel's duration held at its target
ANTICIPATION = 0.35  # rounded phones: backward decay-rate factor in the rounding group
REF_PHONE = 0.085  # s; a typical phone duration (rho = REF_PHONE / local mean duration)
RHO_RANGE = (0.7, 1.5)
SMOOTH = (0.3, 0.010, 0.030)  # Gaussian sigma = 0.3 x median phone duration, clipped to [10, 30] ms
RELEASE = 2.0  # inside a pause, speech dominance decays this many times faster (the mouth relaxes)
CLOSURE_RAMP = 0.05  # s; the lip seal eases in/out over this distance around a bilabial
TUCK = 0.8  # labiodentals keep at least this fraction of their lower-lip tuck

CH = {name: i for i, name in enumerate(ART_CHANNELS)}


@dataclass(frozen=True)
class Articulation:
    """Blended speech articulation sampled at frame centres.

    Attributes:
        values: ``(T, len(ART_CHANNELS))`` float64 articulation channels (see :mod:`.visemes`).
        speech: ``(T,)`` speech activity in [0, 1] (1 while speaking, 0 in pauses), blended like the jaw.
    """

    values: np.ndarray
    speech: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[:, CH[name]]


def frame_times(n_frames: int, fps: float = MOTION_FPS) -> np.ndarray:
    """``(n_frames,)`` centre time in seconds of each frame (frame ``k`` covers ``[k, k+1) / fps``)."""
    return (np.arange(n_frames) + 0.5) / fps


def nearest_frame(t: float, n_frames: int, fps: float = MOTION_FPS) -> int:
    """Index of the frame whose centre is nearest to time ``t`` (clamped to the clip)."""
    return int(np.clip(np.floor(t * fps), 0, max(n_frames - 1, 0)))


class _Segment(NamedTuple):
    core0: float  # the dominance is flat (maximal) over [core0, core1]
    core1: float
    vis: Viseme
    rho: float  # speech-rate factor of the decay rate
    speech: float  # 1 for a phone, 0 for a pause
    start: float  # the segment's time span
    end: float


def _segments(phones: Sequence[Phone], t_end: float) -> list[_Segment]:
    """One segment for every phone (two for a diphthong) and every pause, in time order."""
    segs: list[_Segment] = []
    rest = VISEMES[SILENCE]
    durs = np.array([p.end - p.start for p in phones])
    prev_end = -1.0
    for i, p in enumerate(phones):
        if p.start - prev_end >= MIN_PAUSE or i == 0:
            segs.append(_Segment(prev_end, p.start, rest, 1.0, 0.0, prev_end, p.start))
        local = durs[max(i - 1, 0) : i + 2].mean()
        rho = float(np.clip(REF_PHONE / max(local, 1e-3), *RHO_RANGE))
        parts = [(p.symbol, p.start, p.end)]
        if p.symbol in DIPHTHONGS:
            first, second, frac = DIPHTHONGS[p.symbol]
            mid = p.start + frac * (p.end - p.start)
            parts = [(first, p.start, mid), (second, mid, p.end)]
        for sym, a, b in parts:
            v = viseme(sym)
            if p.symbol in DIPHTHONGS and viseme(p.symbol).rounded:  # e.g. oʊ: round the whole glide
                v = replace(v, rounded=True)
            c, h = 0.5 * (a + b), 0.5 * (b - a) * (VOWEL_CORE if v.vowel else 0.0)
            segs.append(_Segment(c - h, c + h, v, rho, 1.0, a, b))
        prev_end = max(prev_end, p.end)
    end = max(t_end, prev_end) + 1.0
    segs.append(_Segment(prev_end, end, rest, 1.0, 0.0, prev_end, end))
    return segs


def _blend(segs: list[_Segment], t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dominance-weighted targets ``(T, C)`` and speech activity ``(T,)`` at times ``t``."""
    core0 = np.array([s.core0 for s in segs])[:, None]  # (S, 1)
    core1 = np.array([s.core1 for s in segs])[:, None]
    rate = np.array([s.vis.rate * s.rho for s in segs])[:, None]
    alpha = np.stack([s.vis.alpha for s in segs]).astype(np.float64)  # (S, 3)
    target = np.stack([s.vis.target for s in segs]).astype(np.float64)  # (S, C)
    speech = np.array([s.speech for s in segs])  # (S,)
    back = np.ones_like(alpha)  # backward decay-rate factor per group
    back[:, 2] = [ANTICIPATION if s.vis.rounded else 1.0 for s in segs]
    d_back = np.maximum(core0 - t[None], 0.0)  # (S, T)
    d_fwd = np.maximum(t[None] - core1, 0.0)
    # depth into a pause: distance from t to the nearest phone (0 while speaking)
    talk = speech > 0
    a, b = np.array([s.start for s in segs])[talk, None], np.array([s.end for s in segs])[talk, None]
    depth = np.min(np.maximum(a - t[None], 0.0) + np.maximum(t[None] - b, 0.0), axis=0)  # (T,)
    depth = np.where(talk[:, None], (RELEASE - 1.0) * depth[None], 0.0)  # (S, T), speech segments only
    out = np.zeros((t.shape[0], target.shape[1]))
    activity = np.zeros(t.shape[0])
    for g in range(alpha.shape[1]):
        dom = alpha[:, g, None] * np.exp(-rate * (d_back * back[:, g, None] + d_fwd + depth))  # (S, T)
        w = dom / np.maximum(dom.sum(axis=0, keepdims=True), 1e-12)
        cols = [c for c, grp in enumerate(CHANNEL_GROUP) if grp == g]
        out[:, cols] = w.T @ target[:, cols]
        if g == 0:
            activity = w.T @ speech
    return out, activity


def articulate(phones: Sequence[Phone], n_frames: int, fps: float = MOTION_FPS) -> Articulation:
    """Blend the visemes of ``phones`` into ``n_frames`` frames and enforce the lip constraints.

    Args:
        phones: timed phones (any order; zero-length phones are ignored). Time not covered is silence.
        n_frames: number of output frames.
        fps: frame rate; values are sampled at frame centres.

    Returns:
        the :class:`Articulation` (``(T, C)`` channels and ``(T,)`` speech activity).
    """
    t = frame_times(n_frames, fps)
    phones = sorted((p for p in phones if p.end > p.start), key=lambda p: p.start)
    if n_frames == 0 or not phones:
        return Articulation(np.zeros((n_frames, len(ART_CHANNELS))), np.zeros(n_frames))
    values, speech = _blend(_segments(phones, n_frames / fps), t)

    scale, lo, hi = SMOOTH
    sigma = float(np.clip(scale * np.median([p.end - p.start for p in phones]), lo, hi)) * fps
    values = gaussian_filter1d(values, sigma, axis=0, mode="nearest")
    speech = gaussian_filter1d(speech, sigma, mode="nearest")

    for p in phones:
        v = viseme(p.symbol)
        if not (v.bilabial or v.labiodental) or p.start > t[-1] + 0.5 / fps:
            continue
        dist = np.maximum(p.start - t, 0.0) + np.maximum(t - p.end, 0.0)
        if v.bilabial:
            need = np.clip(1.0 - dist / CLOSURE_RAMP, 0.0, 1.0)
            need[nearest_frame(0.5 * (p.start + p.end), n_frames, fps)] = 1.0
            values[:, CH["seal"]] = np.maximum(values[:, CH["seal"]], need)
            values[:, CH["press"]] = np.maximum(values[:, CH["press"]], need * v.target[CH["press"]])
        else:
            inside = dist <= 0.0
            inside[nearest_frame(0.5 * (p.start + p.end), n_frames, fps)] = True
            tuck = TUCK * v.target[CH["roll_lo"]]
            values[inside, CH["roll_lo"]] = np.maximum(values[inside, CH["roll_lo"]], tuck)
            values[inside, CH["lower"]] = np.minimum(values[inside, CH["lower"]], 0.05)
    return Articulation(values, np.clip(speech, 0.0, 1.0))
