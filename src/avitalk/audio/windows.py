"""Overlapping windows with linear cross-fades, for encoders with a bounded context.

A sequence of ``n`` frames longer than an encoder's window is covered by windows of ``window``
frames whose starts are spread evenly so that neighbours overlap by at least ``overlap`` frames.
Each window's output is weighted by a trapezoid that ramps linearly over its overlaps with its
neighbours; the weighted sum is divided by the summed weights, so the result is continuous (no
seams) and where exactly two windows overlap the weights sum to one. Memory is linear in ``n``:
windows are added one batch at a time into a single ``(n, D)`` buffer.
"""

from __future__ import annotations

import math

import numpy as np


def plan_windows(n: int, window: int, overlap: int) -> list[int]:
    """Start frames of the windows covering ``[0, n)``.

    Args:
        n: sequence length in frames.
        window: window length in frames.
        overlap: minimum overlap between neighbouring windows, ``0 <= overlap < window``.

    Returns:
        ``[0]`` when ``n <= window``; otherwise ``k`` evenly spread starts from 0 to ``n - window``
        with ``k = ceil((n - overlap) / (window - overlap))``.
    """
    if window <= 0 or not 0 <= overlap < window:
        raise ValueError(f"need window > 0 and 0 <= overlap < window, got window={window}, overlap={overlap}")
    if n <= window:
        return [0]
    k = math.ceil((n - overlap) / (window - overlap))
    return [round(i * (n - window) / (k - 1)) for i in range(k)]


def window_weights(starts: list[int], window: int, n: int) -> list[np.ndarray]:
    """Cross-fade weights of each window: ``(L_i,)`` float32 with ``L_i = min(window, n - start_i)``.

    A window ramps from ~0 to 1 across its overlap with the previous window and back to ~0 across
    its overlap with the next (values ``(t + 0.5) / overlap``, never exactly zero).
    """
    lengths = [min(window, n - s) for s in starts]
    out = []
    for i, (s, length) in enumerate(zip(starts, lengths, strict=True)):
        t = np.arange(length, dtype=np.float64) + 0.5
        w = np.ones(length, dtype=np.float64)
        if i > 0:
            ramp_in = starts[i - 1] + lengths[i - 1] - s
            if ramp_in > 0:
                w = np.minimum(w, t / ramp_in)
        if i < len(starts) - 1:
            ramp_out = s + length - starts[i + 1]
            if ramp_out > 0:
                w = np.minimum(w, (length - t) / ramp_out)
        out.append(w.astype(np.float32))
    return out


class OverlapAdd:
    """Accumulate window outputs into a cross-faded ``(n, dim)`` float32 sequence.

    Example::

        starts = plan_windows(n, window, overlap)
        acc = OverlapAdd(n, dim, starts, window)
        for i, s in enumerate(starts):
            acc.add(i, run(s))  # run(s): (min(window, n - s), dim)
        features = acc.result()
    """

    def __init__(self, n: int, dim: int, starts: list[int], window: int) -> None:
        self.starts = starts
        self.weights = window_weights(starts, window, n)
        self.num = np.zeros((n, dim), dtype=np.float32)
        self.den = np.zeros((n, 1), dtype=np.float32)

    def add(self, i: int, values: np.ndarray) -> None:
        """Add window ``i``'s output ``(L_i, dim)``."""
        w = self.weights[i]
        if values.shape[0] != w.shape[0]:
            raise ValueError(f"window {i} has {values.shape[0]} frames, expected {w.shape[0]}")
        s = self.starts[i]
        self.num[s : s + w.shape[0]] += values * w[:, None]
        self.den[s : s + w.shape[0], 0] += w

    def result(self) -> np.ndarray:
        """The cross-faded ``(n, dim)`` float32 sequence."""
        if not (self.den > 0).all():
            raise RuntimeError("OverlapAdd: some frames were not covered by any window")
        return self.num / self.den
