"""Sample and frame rates, with checked arithmetic between them.

Audio is 16 kHz mono everywhere inside avitalk; motion is 25 fps by default. Every conversion
between audio samples, feature frames and motion frames goes through these functions so that
clip lengths agree to the frame.
"""

from __future__ import annotations

import math

import numpy as np

AUDIO_SAMPLE_RATE: int = 16_000
MOTION_FPS: int = 25


def samples_per_frame(fps: float = MOTION_FPS, sample_rate: int = AUDIO_SAMPLE_RATE) -> float:
    """Audio samples covered by one motion frame (640.0 at 16 kHz / 25 fps)."""
    if fps <= 0 or sample_rate <= 0:
        raise ValueError(f"rates must be positive, got fps={fps}, sample_rate={sample_rate}")
    return sample_rate / fps


def frames_for_samples(n_samples: int, fps: float = MOTION_FPS, sample_rate: int = AUDIO_SAMPLE_RATE) -> int:
    """Number of motion frames that cover ``n_samples`` audio samples (rounded to nearest).

    A clip of ``n`` samples has ``round(n * fps / sample_rate)`` frames; data checks allow a
    difference of one frame from this.
    """
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    return math.floor(n_samples * fps / sample_rate + 0.5)


def seconds_to_frame(t: float, fps: float = MOTION_FPS) -> int:
    """Index of the frame whose interval [k/fps, (k+1)/fps) contains time ``t`` seconds."""
    return math.floor(t * fps + 1e-9)


def resample_features(values: np.ndarray, src_rate: float, dst_rate: float, n_out: int | None = None) -> np.ndarray:
    """Resample a feature sequence from ``src_rate`` to ``dst_rate`` frames per second.

    Linear interpolation at the centre times of the output frames, clamped at the ends, so the
    result is exact when ``dst_rate`` divides ``src_rate`` (e.g. 50 Hz Whisper -> 25 fps motion
    averages neighbouring pairs).

    Args:
        values: ``(T_src, D)`` float array.
        src_rate, dst_rate: frame rates in Hz.
        n_out: output length; default ``round(T_src * dst_rate / src_rate)``.

    Returns:
        ``(n_out, D)`` float32 array.
    """
    if values.ndim != 2:
        raise ValueError(f"expected (T, D) features, got shape {values.shape}")
    t_src = values.shape[0]
    if n_out is None:
        n_out = math.floor(t_src * dst_rate / src_rate + 0.5)
    if t_src == 0 or n_out == 0:
        return np.zeros((n_out, values.shape[1]), dtype=np.float32)
    # centre of output frame k in source-frame units: ((k + 0.5) / dst - 0.5 / src) * src
    centres = (np.arange(n_out) + 0.5) * (src_rate / dst_rate) - 0.5
    centres = np.clip(centres, 0.0, t_src - 1)
    lo = np.floor(centres).astype(np.int64)
    hi = np.minimum(lo + 1, t_src - 1)
    w = (centres - lo)[:, None]
    out = values[lo] * (1.0 - w) + values[hi] * w
    return out.astype(np.float32)
