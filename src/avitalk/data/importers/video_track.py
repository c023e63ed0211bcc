"""Pure numpy steps from per-frame face estimates to a corpus motion track (no MediaPipe here).

* :func:`blendshape_columns` maps MediaPipe's blendshape category names onto ``arkit52`` columns;
* :func:`matrix_to_head_angles` turns MediaPipe's facial transformation matrix into head
  pitch / yaw / roll in avitalk's convention (:func:`avitalk.face.linear.euler_to_matrix`);
* :func:`resample_masked` moves a masked track to the corpus frame rate, :func:`smooth_masked`
  low-passes it without phase shift, :func:`fit_length` pads/crops it to cover the audio.

Masks are ``(T,)`` bool: True where a face was found. Masked frames hold zeros and are never
used as data by these functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from avitalk.spaces import ARKIT52, ARKIT_BLENDSHAPES, HEAD_ROTATIONS

NOT_ESTIMATED: tuple[str, ...] = ("tongueOut",)
"""ARKit channels MediaPipe's Face Landmarker does not estimate (they stay 0)."""

IGNORED_CATEGORIES: tuple[str, ...] = ("_neutral",)
"""MediaPipe blendshape categories that are not ARKit channels."""

HEAD_COLUMNS: tuple[int, int, int] = tuple(ARKIT52.index(c) for c in HEAD_ROTATIONS)  # type: ignore[assignment]
"""Columns of headPitch, headYaw, headRoll in ``arkit52``."""


def blendshape_columns(names: Sequence[str]) -> np.ndarray:
    """For each MediaPipe category name, its ``arkit52`` column, or -1 for ignored ones (``_neutral``).

    Raises:
        ValueError: a name is not an ARKit blendshape, or an ARKit blendshape other than
            :data:`NOT_ESTIMATED` has no category (a model without the blendshape head, or another model).
    """
    unknown = [n for n in names if n not in ARKIT_BLENDSHAPES and n not in IGNORED_CATEGORIES]
    if unknown:
        raise ValueError(f"blendshape categories that are not ARKit names: {unknown}")
    missing = [n for n in ARKIT_BLENDSHAPES if n not in names and n not in NOT_ESTIMATED]
    if missing:
        raise ValueError(f"the model gives no estimate for ARKit channels {missing}")
    return np.array([-1 if n in IGNORED_CATEGORIES else ARKIT52.index(n) for n in names], dtype=np.int64)


def matrix_to_head_angles(matrix: np.ndarray) -> np.ndarray:
    """Head ``(pitch, yaw, roll)`` radians from MediaPipe facial transformation matrices.

    MediaPipe's matrix maps its canonical face model into camera space. Both frames are right-handed
    with +X the image's right (the subject's left when facing the camera), +Y up and +Z towards the
    camera, the axes of avitalk's face models; so the rotation part ``R`` is the head rotation, and we
    factor it as ``R = R_yaw @ R_pitch @ R_roll`` (:func:`avitalk.face.linear.euler_to_matrix`):

        pitch = asin(-R[1, 2]),  yaw = atan2(R[0, 2], R[2, 2]),  roll = atan2(R[1, 0], R[1, 1])

    Checked on real video: a nose displaced towards the image's right gives positive yaw, a nose
    lowered towards the mouth positive pitch (nodding down), and an image rotated counter-clockwise
    positive roll. Any scale in the matrix is removed first (nearest rotation, by SVD).

    Args:
        matrix: ``(4, 4)``, ``(3, 3)``, or batched ``(T, 4, 4)`` / ``(T, 3, 3)``.

    Returns:
        ``(3,)`` or ``(T, 3)`` float32 ``(pitch, yaw, roll)`` with ``euler_to_matrix(*angles) ≈ R``.
    """
    m = np.asarray(matrix, dtype=np.float64)
    single = m.ndim == 2
    r = m[None, :3, :3] if single else m[:, :3, :3]
    u, _, vt = np.linalg.svd(r)
    d = np.sign(np.linalg.det(u @ vt))  # keep a proper rotation
    u[:, :, 2] *= d[:, None]
    r = u @ vt
    pitch = np.arcsin(np.clip(-r[:, 1, 2], -1.0, 1.0))
    yaw = np.arctan2(r[:, 0, 2], r[:, 2, 2])
    roll = np.arctan2(r[:, 1, 0], r[:, 1, 1])
    out = np.stack([pitch, yaw, roll], axis=-1).astype(np.float32)
    return out[0] if single else out


def resample_masked(
    values: np.ndarray, mask: np.ndarray, src_fps: float, dst_fps: float, n_out: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a masked track from ``src_fps`` to ``dst_fps`` by interpolating valid frames only.

    Output frame ``k`` is centred at ``(k + 0.5) / dst_fps`` s (source frame ``i`` at
    ``(i + 0.5) / src_fps``, clamped at the ends, as :func:`avitalk.rates.resample_features`). It is
    valid when the *nearest* source frame is valid; its value interpolates linearly between the two
    neighbouring source frames if both are valid, else takes the valid one. Invalid frames are zeros.
    Equal rates return the input unchanged.

    Args:
        values: ``(T, D)`` float.
        mask: ``(T,)`` bool, True where ``values`` is valid.
        src_fps, dst_fps: frame rates in Hz.
        n_out: output length; default ``round(T * dst_fps / src_fps)``.

    Returns:
        ``(n_out, D)`` float32 values and ``(n_out,)`` bool mask.
    """
    values = np.asarray(values, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    t_src, dim = values.shape
    if mask.shape != (t_src,):
        raise ValueError(f"mask must be ({t_src},), got {mask.shape}")
    if n_out is None:
        n_out = math.floor(t_src * dst_fps / src_fps + 0.5)
    if abs(src_fps - dst_fps) < 1e-6 and n_out == t_src:
        return np.where(mask[:, None], values, 0.0).astype(np.float32), mask.copy()
    if t_src == 0 or n_out == 0:
        return np.zeros((n_out, dim), dtype=np.float32), np.zeros(n_out, dtype=bool)
    pos = np.clip((np.arange(n_out) + 0.5) * (src_fps / dst_fps) - 0.5, 0.0, t_src - 1)  # source-frame units
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t_src - 1)
    w = pos - lo
    nearest = np.where(w <= 0.5, lo, hi)  # ties go to the earlier frame
    out_mask = mask[nearest]
    w = np.where(mask[lo] & mask[hi], w, np.where(mask[lo], 0.0, 1.0))[:, None]
    out = values[lo] * (1.0 - w) + values[hi] * w  # (n_out, D)
    return np.where(out_mask[:, None], out, 0.0).astype(np.float32), out_mask


def smooth_masked(values: np.ndarray, mask: np.ndarray, fps: float, sigma_s: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing over time that ignores masked frames (normalised convolution).

    Each valid frame becomes the Gaussian-weighted mean of the *valid* frames around it (kernel
    standard deviation ``sigma_s`` seconds, truncated at 3 sigma); the kernel is symmetric, so no
    delay is introduced. Masked frames stay zeros. ``sigma_s <= 0`` returns the input.

    Args:
        values: ``(T, D)`` float.
        mask: ``(T,)`` bool.
        fps: frame rate of ``values``.
        sigma_s: kernel standard deviation in seconds.

    Returns:
        ``(T, D)`` float32.
    """
    values = np.asarray(values, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    sigma = sigma_s * fps  # frames
    if sigma_s <= 0 or values.shape[0] == 0 or sigma < 1e-3:
        return values.copy()
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    m = mask.astype(np.float64)
    weighted = np.where(mask[:, None], values, 0.0).astype(np.float64)
    num = np.stack([np.convolve(weighted[:, d], kernel, mode="same") for d in range(values.shape[1])], axis=1)
    den = np.convolve(m, kernel, mode="same")[:, None]
    out = np.where(mask[:, None], num / np.maximum(den, 1e-12), 0.0)
    return out.astype(np.float32)


def fit_length(values: np.ndarray, mask: np.ndarray, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Crop or pad a track at its end to exactly ``n_frames`` frames.

    Padding repeats the last frame and its mask (the caller bounds how much it pads).

    Returns:
        ``(n_frames, D)`` float32 and ``(n_frames,)`` bool.
    """
    t = values.shape[0]
    if t >= n_frames:
        return values[:n_frames].astype(np.float32), mask[:n_frames].copy()
    if t == 0:
        return np.zeros((n_frames, values.shape[1]), dtype=np.float32), np.zeros(n_frames, dtype=bool)
    extra = n_frames - t
    values = np.concatenate([values, np.repeat(values[-1:], extra, axis=0)]).astype(np.float32)
    return values, np.concatenate([mask, np.repeat(mask[-1:], extra)])
