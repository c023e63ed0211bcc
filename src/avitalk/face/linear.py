"""Pure tensor functions for linear face models: blendshapes and rigid head rotation.

Everything here is stateless and batched over time; works on numpy arrays (float32).
Linear blend skinning for FLAME lives in :mod:`avitalk.face.lbs`.
"""

from __future__ import annotations

import numpy as np


def apply_blendshapes(neutral: np.ndarray, basis: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Linear blendshapes ``v_t = neutral + sum_k w_tk * basis_k``.

    Args:
        neutral: ``(V, 3)`` rest vertices.
        basis: ``(K, V, 3)`` per-shape vertex offsets from ``neutral``.
        weights: ``(T, K)`` weights.

    Returns:
        ``(T, V, 3)`` float32 vertices.
    """
    k, v, _ = basis.shape
    if weights.ndim != 2 or weights.shape[1] != k:
        raise ValueError(f"weights must be (T, {k}), got {weights.shape}")
    offsets = weights.astype(np.float32) @ basis.reshape(k, v * 3).astype(np.float32, copy=False)  # (T, V*3)
    return (offsets.reshape(-1, v, 3) + neutral[None].astype(np.float32)).astype(np.float32, copy=False)


def euler_to_matrix(pitch: np.ndarray, yaw: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Rotation matrices for head pitch (about +X), yaw (about +Y), roll (about +Z), radians.

    Composition ``R = R_yaw @ R_pitch @ R_roll`` (roll applied first). Positive pitch tilts the face
    down (nod), positive yaw turns it to the subject's left, positive roll tilts the top of the head
    toward the subject's right (counter-clockwise as the camera sees it). Live Link Face CSV head
    columns are read into these channels without sign changes (not verified on device recordings).

    Args:
        pitch, yaw, roll: ``(T,)`` angles in radians.

    Returns:
        ``(T, 3, 3)`` float32 rotation matrices.
    """
    p, y, r = (np.asarray(a, dtype=np.float64) for a in (pitch, yaw, roll))
    cp, sp, cy, sy, cr, sr = np.cos(p), np.sin(p), np.cos(y), np.sin(y), np.cos(r), np.sin(r)
    one, zero = np.ones_like(p), np.zeros_like(p)
    rx = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(-1, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return (ry @ rx @ rz).astype(np.float32)


def rotate_rigid(vertices: np.ndarray, rotations: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    """Rotate each frame's vertices rigidly about ``pivot``.

    Args:
        vertices: ``(T, V, 3)``.
        rotations: ``(T, 3, 3)``.
        pivot: ``(3,)`` centre of rotation (e.g. the neck joint).

    Returns:
        ``(T, V, 3)`` float32.
    """
    pv = pivot.astype(np.float32)
    # batched matmul with the transposed rotation: ~4x faster than the equivalent einsum
    return ((vertices - pv) @ rotations.transpose(0, 2, 1) + pv).astype(np.float32, copy=False)
