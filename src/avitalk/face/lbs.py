"""Linear blend skinning (SMPL/FLAME style) as pure numpy functions.

Conventions: rotations are axis-angle vectors (radians, right-hand rule); ``parents[0] == -1`` and
every other joint's parent comes before it (``parents[j] < j``), as in SMPL/FLAME kinematic trees.
Rest-pose joint regression (``J = J_regressor @ v_shaped``) is the caller's job.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 128  # frames per skinning block in :func:`lbs`


def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """Rotation matrices from axis-angle vectors (Rodrigues' formula).

    ``R = I + A K + B K^2`` with ``K = [r]_x`` (the cross-product matrix of the unnormalised vector),
    ``A = sin(t)/t``, ``B = (1 - cos(t))/t^2``, ``t = |r|``; both factors switch to their Taylor series
    near zero, so ``rodrigues(0) == I`` exactly and small angles stay accurate.

    Args:
        axis_angle: ``(..., 3)`` rotation vectors.

    Returns:
        ``(..., 3, 3)`` float32 rotation matrices.
    """
    return _rodrigues64(axis_angle).astype(np.float32)


def _rodrigues64(axis_angle: np.ndarray) -> np.ndarray:
    """``(..., 3)`` axis-angle -> ``(..., 3, 3)`` float64 rotations (see :func:`rodrigues`)."""
    r = np.asarray(axis_angle, dtype=np.float64)
    if r.shape[-1:] != (3,):
        raise ValueError(f"axis_angle must have shape (..., 3), got {r.shape}")
    t2 = np.sum(r * r, axis=-1)  # (...)
    t = np.sqrt(t2)
    small = t < 1e-4
    t_safe = np.where(small, 1.0, t)
    a = np.where(small, 1.0 - t2 / 6.0, np.sin(t_safe) / t_safe)  # (...)
    b = np.where(small, 0.5 - t2 / 24.0, (1.0 - np.cos(t_safe)) / (t_safe * t_safe))  # (...)
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*r.shape[:-1], 3, 3)  # (..., 3, 3)
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def rigid_transforms(rotations: np.ndarray, joints: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """World transforms of a kinematic chain, relative to the rest pose.

    Args:
        rotations: ``(T, J, 3, 3)`` local joint rotations.
        joints: ``(J, 3)`` or ``(T, J, 3)`` rest-pose joint locations.
        parents: ``(J,)`` parent index per joint, ``-1`` for the root; ``parents[j] < j``.

    Returns:
        ``(T, J, 4, 4)`` float64 transforms that map a rest-pose point skinned fully to joint ``j``
        to its posed location (``G_j @ [v, 1]``).
    """
    n_t, n_j = rotations.shape[:2]
    parents = np.asarray(parents, dtype=np.int64)
    ok = parents.shape == (n_j,) and parents[0] == -1 and np.all((parents[1:] >= 0) & (parents[1:] < np.arange(1, n_j)))
    if not ok:
        raise ValueError(f"parents must be (J,) with parents[0] == -1 and 0 <= parents[j] < j, got {parents.tolist()}")
    jnt = np.broadcast_to(np.asarray(joints, dtype=np.float64), (n_t, n_j, 3))  # (T, J, 3)
    rel = jnt.copy()
    rel[:, 1:] -= jnt[:, parents[1:]]  # (T, J, 3) joint offsets from parents
    local = np.zeros((n_t, n_j, 4, 4))
    local[..., :3, :3] = rotations
    local[..., :3, 3] = rel
    local[..., 3, 3] = 1.0
    world = np.empty_like(local)  # (T, J, 4, 4)
    world[:, 0] = local[:, 0]
    for j in range(1, n_j):
        world[:, j] = world[:, parents[j]] @ local[:, j]
    # Remove the rest-pose joint location so the transform applies to rest-pose vertices directly.
    world[..., :3, 3] -= np.einsum("tjab,tjb->tja", world[..., :3, :3], jnt)
    return world


def lbs(
    v_shaped: np.ndarray,
    joints: np.ndarray,
    parents: np.ndarray,
    pose: np.ndarray,
    weights: np.ndarray,
    posedirs: np.ndarray | None = None,
) -> np.ndarray:
    """Linear blend skinning with optional pose-corrective blendshapes (SMPL/FLAME ``lbs``).

    ``v_posed = v_shaped + posedirs . vec(R_1.. - I)``;
    ``v_out[v] = (sum_j weights[v, j] G_j) @ [v_posed[v], 1]``.

    Args:
        v_shaped: ``(V, 3)`` or ``(T, V, 3)`` rest-pose vertices (template + shape/expression offsets).
        joints: ``(J, 3)`` or ``(T, J, 3)`` rest-pose joint locations (regressed by the caller).
        parents: ``(J,)`` parent indices, ``parents[0] == -1``, ``parents[j] < j``.
        pose: ``(T, J, 3)`` axis-angle local rotation per joint (joint 0 is the global rotation).
        weights: ``(V, J)`` skinning weights (rows sum to 1).
        posedirs: optional ``(V, 3, 9 * (J - 1))`` pose-corrective basis, driven by the flattened
            ``R_j - I`` of joints ``1..J-1`` (the layout stored in SMPL/FLAME model files).

    Returns:
        ``(T, V, 3)`` float32 posed vertices.
    """
    pose = np.asarray(pose, dtype=np.float64)
    if pose.ndim != 3 or pose.shape[2] != 3:
        raise ValueError(f"pose must be (T, J, 3) axis-angle, got {pose.shape}")
    n_t, n_j, _ = pose.shape
    weights = np.asarray(weights, dtype=np.float64)
    v = np.asarray(v_shaped, dtype=np.float64)
    if v.ndim == 2:
        v = v[None]
    if v.ndim != 3 or v.shape[2] != 3 or v.shape[0] not in (1, n_t):
        raise ValueError(f"v_shaped must be (V, 3) or ({n_t}, V, 3), got {np.shape(v_shaped)}")
    n_v = v.shape[1]
    if weights.shape != (n_v, n_j):
        raise ValueError(f"weights must be ({n_v}, {n_j}), got {weights.shape}")
    rot = _rodrigues64(pose)  # (T, J, 3, 3)
    if posedirs is not None:
        n_p = 9 * (n_j - 1)
        pd = np.asarray(posedirs, dtype=np.float64)
        if pd.shape != (n_v, 3, n_p):
            raise ValueError(f"posedirs must be ({n_v}, 3, {n_p}), got {pd.shape}")
        feat = (rot[:, 1:] - np.eye(3)).reshape(n_t, n_p)  # (T, 9(J-1))
        v = v + np.einsum("vcp,tp->tvc", pd, feat)  # (T, V, 3)
    world = rigid_transforms(rot, joints, parents)[..., :3, :].reshape(n_t, n_j, 12).astype(np.float32)  # (T, J, 12)
    w32 = weights.astype(np.float32)
    v32 = v.astype(np.float32)
    out = np.empty((n_t, n_v, 3), dtype=np.float32)
    for s in range(0, n_t, _CHUNK):  # bound the (T, V, 12) blended-transform buffer
        e = min(s + _CHUNK, n_t)
        blended = (w32 @ world[s:e]).reshape(e - s, n_v, 3, 4)  # (t, V, 3, 4)
        vs = v32[s:e] if v32.shape[0] == n_t else v32  # (t or 1, V, 3)
        out[s:e] = np.einsum("tvab,tvb->tva", blended[..., :3], np.broadcast_to(vs, (e - s, n_v, 3)))
        out[s:e] += blended[..., 3]
    return out
