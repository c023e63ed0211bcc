"""Training-window and reference-frame sampling for the motion prior (numpy, seedable).

A training example is a window of ``T`` frames of one clip (content features + target motion) and
``S`` reference frames of the *same clip* drawn *outside* that window for the style encoder, so the
style embedding cannot copy the lip shapes it is asked to predict::

    rng = np.random.default_rng(seed)
    start = random_window(n_frames, cfg.window, rng, min_outside=cfg.n_ref)
    idx = reference_indices(n_frames, (start, cfg.window), cfg.n_ref, rng)
    motion_win, content_win = crop_window(motion, start, cfg.window), crop_window(content, start, cfg.window)
    refs = motion[idx]                                   # (S, D)

Not to be confused with :func:`avitalk.motion.denoiser.sample_style` (diffusion sampling).
"""

from __future__ import annotations

from typing import Literal, TypeVar

import numpy as np
import torch

from avitalk.errors import AvitalkError
from avitalk.rates import resample_features

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def random_window(n_frames: int, length: int, rng: np.random.Generator, min_outside: int = 0) -> int:
    """Start frame of a uniformly random window of ``length`` frames in a clip of ``n_frames``.

    ``min_outside`` checks that at least that many frames of the clip lie outside the window (room
    for reference frames); for clips shorter than ``length + min_outside`` take a shorter window
    from :func:`window_length` first.

    Returns:
        ``start`` with ``0 <= start <= n_frames - length``.
    """
    if length < 1 or n_frames < length:
        raise AvitalkError(f"cannot take a {length}-frame window from a {n_frames}-frame clip")
    if n_frames - length < min_outside:
        raise AvitalkError(
            f"a {length}-frame window leaves {n_frames - length} frames of a {n_frames}-frame clip "
            f"for references, fewer than {min_outside}"
        )
    # the window always leaves n_frames - length frames outside, wherever it starts
    return int(rng.integers(0, n_frames - length + 1))


def window_length(n_frames: int, length: int, min_outside: int) -> int:
    """The longest window ``<= length`` that leaves ``min_outside`` frames of the clip outside it.

    Raises:
        AvitalkError: the clip has fewer than ``min_outside + 1`` frames.
    """
    out = min(length, n_frames - min_outside)
    if out < 1:
        raise AvitalkError(f"a {n_frames}-frame clip is too short for {min_outside} reference frames plus a window")
    return out


def reference_indices(
    n_frames: int,
    window: tuple[int, int],
    n_ref: int,
    rng: np.random.Generator,
    mode: Literal["random", "contiguous"] = "random",
    margin: int = 0,
) -> np.ndarray:
    """Indices of ``S`` reference frames of a clip, all outside the predicted window.

    Args:
        n_frames: clip length.
        window: ``(start, length)`` of the predicted window.
        n_ref: ``S``.
        rng: numpy generator (seedable).
        mode: ``"random"``: ``S`` distinct frames uniformly from outside the window (with replacement
            only if fewer than ``S`` exist); ``"contiguous"``: one run of ``S`` consecutive frames on
            one side of the window if a side is long enough, otherwise as ``"random"``.
        margin: frames within ``margin`` of the window are excluded too (guards against leaking
            the window's content through smooth motion).

    Returns:
        ``(S,)`` int64 indices, sorted ascending, none in ``[start - margin, start + length + margin)``.

    Raises:
        AvitalkError: no frame lies outside the window (+ margin).
    """
    start, length = window
    if not (0 <= start and length >= 0 and start + length <= n_frames):
        raise AvitalkError(f"window {window} is not inside a {n_frames}-frame clip")
    lo, hi = max(start - margin, 0), min(start + length + margin, n_frames)
    if mode == "contiguous":
        runs = [(a, b) for a, b in ((0, lo), (hi, n_frames)) if b - a >= n_ref]
        if runs:
            a, b = runs[int(rng.integers(len(runs)))]
            s = int(rng.integers(a, b - n_ref + 1))
            return np.arange(s, s + n_ref, dtype=np.int64)
    elif mode != "random":
        raise AvitalkError(f"unknown reference sampling mode {mode!r}; expected random or contiguous")
    outside = np.concatenate([np.arange(0, lo), np.arange(hi, n_frames)]).astype(np.int64)
    if outside.size == 0:
        raise AvitalkError(f"no frames of a {n_frames}-frame clip lie outside window {window} (margin {margin})")
    idx = rng.choice(outside, size=n_ref, replace=outside.size < n_ref)
    return np.sort(idx).astype(np.int64)


def reference_frames(
    motion: ArrayT,
    window: tuple[int, int],
    n_ref: int,
    rng: np.random.Generator,
    mode: Literal["random", "contiguous"] = "random",
    margin: int = 0,
) -> ArrayT:
    """``(S, D)`` reference frames of ``motion`` ``(T, D)`` (numpy or torch), outside ``window``.

    See :func:`reference_indices` for the arguments.
    """
    idx = reference_indices(int(motion.shape[0]), window, n_ref, rng, mode, margin)
    if isinstance(motion, torch.Tensor):
        return motion[torch.from_numpy(idx).to(motion.device)]
    return motion[idx]


def crop_window(x: ArrayT, start: int, length: int) -> ArrayT:
    """``x[start : start + length]`` along the first (time) axis, checked to be in range."""
    if start < 0 or start + length > x.shape[0]:
        raise AvitalkError(f"window [{start}, {start + length}) exceeds a {x.shape[0]}-frame sequence")
    return x[start : start + length]


def content_at_motion_rate(features: np.ndarray, feature_rate: float, n_frames: int, fps: float) -> np.ndarray:
    """Speech features ``(T_a, C)`` at ``feature_rate`` resampled to exactly ``n_frames`` motion frames
    at ``fps`` (:func:`avitalk.rates.resample_features`); returns ``(n_frames, C)`` float32."""
    return resample_features(features, feature_rate, fps, n_out=n_frames)
