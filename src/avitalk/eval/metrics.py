"""Pure evaluation metrics for generated facial motion (stage 2).

Every function takes numpy arrays, returns a Python ``float`` and never prints or writes.

Conventions:
    * Vertex sequences are ``(T, V, 3)`` arrays in **metres** (any float dtype; computed in float64).
    * A prediction and its ground truth may differ in length by **at most one frame** (off-by-one
      from audio framing); both are truncated to the shorter length. A larger difference, a vertex
      count or coordinate mismatch, empty inputs or out-of-range indices raise :class:`ValueError`.
    * Unit conversions: ``1 m = 1e3 mm``, so a squared distance in m² times ``1e6`` is in mm².
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "jitter",
    "lip_vertex_error",
    "mean_vertex_error",
    "motion_diversity",
    "upper_face_dynamics_deviation",
]

_M_TO_MM = 1e3
_M2_TO_MM2 = 1e6
_MAX_FRAME_DIFF = 1


def _vertices(a: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{name} must be (T, V, 3) vertices, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    return arr


def _pair(pred_v: np.ndarray, gt_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a prediction/ground-truth pair and truncate both to the shorter length."""
    pred = _vertices(pred_v, "pred_v")
    gt = _vertices(gt_v, "gt_v")
    if pred.shape[1] != gt.shape[1]:
        raise ValueError(f"vertex count mismatch: pred_v {pred.shape} vs gt_v {gt.shape}")
    if abs(pred.shape[0] - gt.shape[0]) > _MAX_FRAME_DIFF:
        raise ValueError(
            f"frame count mismatch: pred_v has {pred.shape[0]} frames, gt_v {gt.shape[0]} "
            f"(at most {_MAX_FRAME_DIFF} frame of difference is tolerated)"
        )
    t = min(pred.shape[0], gt.shape[0])
    return pred[:t], gt[:t]


def _indices(idx: np.ndarray | None, n_vertices: int, name: str) -> np.ndarray | slice:
    if idx is None:
        return slice(None)
    arr = np.asarray(idx)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D index array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer vertex indices, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n_vertices:
        raise ValueError(f"{name} has indices outside [0, {n_vertices}): min {arr.min()}, max {arr.max()}")
    return arr.astype(np.int64)


def lip_vertex_error(pred_v: np.ndarray, gt_v: np.ndarray, lip_idx: np.ndarray) -> float:
    """Lip vertex error (LVE) as in FaceFormer / CodeTalker, in **mm²**.

    For every frame, the maximum over lip vertices of the squared L2 distance between predicted
    and ground-truth positions; then the mean over frames. Inputs are metres, so the squared
    error in m² is multiplied by ``1e6`` (a 1 mm error on the worst lip vertex gives ``1.0``).
    Papers quoting LVE "×10⁻⁴" (m²) on VOCASET/BIWI report ``value / 100`` of this number.

    Args:
        pred_v: ``(T, V, 3)`` predicted vertices (metres).
        gt_v: ``(T', V, 3)`` ground-truth vertices (metres), ``|T - T'| <= 1``.
        lip_idx: ``(L,)`` integer lip vertex indices.

    Returns:
        LVE in mm².
    """
    pred, gt = _pair(pred_v, gt_v)
    idx = _indices(lip_idx, pred.shape[1], "lip_idx")
    sq = np.sum((pred[:, idx] - gt[:, idx]) ** 2, axis=-1)  # (T, L) m²
    return float(np.mean(np.max(sq, axis=1)) * _M2_TO_MM2)


def upper_face_dynamics_deviation(
    pred_v: np.ndarray,
    gt_v: np.ndarray,
    upper_idx: np.ndarray,
    template: np.ndarray,
    *,
    absolute: bool = False,
) -> float:
    """Upper-face dynamics deviation (FDD) as computed by CodeTalker (Xing et al., CVPR 2023), in **mm²**.

    With ``d_t(v) = ||x_t(v) - template(v)||²`` the *squared* displacement of upper-face vertex
    ``v`` from the neutral template at frame ``t``, and ``std_t`` the population standard
    deviation over frames (``ddof=0``)::

        FDD = mean_v [ std_t d_t^gt(v) - std_t d_t^pred(v) ]

    This is CodeTalker's evaluation code (also the torchmetrics ``upper_face_dynamics_deviation``):
    signed (positive when the prediction is less dynamic than the ground truth), squared norms,
    hence a quantity in m² that is returned here ×``1e6`` as mm². CodeTalker's tables print FDD
    "×10⁻⁵" (m²), i.e. ``value / 10`` of this number. Averaging over sequences is left to the caller.
    With ``absolute=True`` the per-vertex differences are taken in absolute value before averaging
    (``mean_v |...|``; not CodeTalker's figure, but it cannot cancel between vertices).

    Because displacements are measured from the template, FDD is invariant to rigid offsets of the
    whole sequence only when the offset leaves ``d_t`` unchanged up to a constant (e.g. orthogonal
    to the motion); it is not a pure frame-difference measure.

    Args:
        pred_v: ``(T, V, 3)`` predicted vertices (metres).
        gt_v: ``(T', V, 3)`` ground-truth vertices (metres), ``|T - T'| <= 1``.
        upper_idx: ``(U,)`` integer upper-face vertex indices.
        template: ``(V, 3)`` neutral mesh (metres).
        absolute: average ``|std_gt - std_pred|`` instead of the signed difference.

    Returns:
        FDD in mm².
    """
    pred, gt = _pair(pred_v, gt_v)
    tmpl = np.asarray(template, dtype=np.float64)
    if tmpl.shape != pred.shape[1:]:
        raise ValueError(f"template must be (V, 3) = {pred.shape[1:]}, got {tmpl.shape}")
    idx = _indices(upper_idx, pred.shape[1], "upper_idx")
    d_pred = np.sum((pred[:, idx] - tmpl[idx]) ** 2, axis=-1)  # (T, U) m²
    d_gt = np.sum((gt[:, idx] - tmpl[idx]) ** 2, axis=-1)
    diff = np.std(d_gt, axis=0) - np.std(d_pred, axis=0)  # (U,)
    if absolute:
        diff = np.abs(diff)
    return float(np.mean(diff) * _M2_TO_MM2)


def mean_vertex_error(pred_v: np.ndarray, gt_v: np.ndarray, idx: np.ndarray | None = None) -> float:
    """Mean Euclidean vertex error in **mm**: mean over frames and (selected) vertices of ``||pred - gt||``.

    Args:
        pred_v: ``(T, V, 3)`` predicted vertices (metres).
        gt_v: ``(T', V, 3)`` ground-truth vertices (metres), ``|T - T'| <= 1``.
        idx: optional ``(K,)`` integer vertex indices; all vertices when ``None``.

    Returns:
        Mean vertex error in mm (metres ×``1e3``).
    """
    pred, gt = _pair(pred_v, gt_v)
    sel = _indices(idx, pred.shape[1], "idx")
    return float(np.mean(np.linalg.norm(pred[:, sel] - gt[:, sel], axis=-1)) * _M_TO_MM)


def motion_diversity(samples: np.ndarray) -> float:
    """Diversity of several samples generated for the same condition.

    Mean over unordered sample pairs ``(i < j)`` of the per-frame L2 distance
    ``mean_t ||s_i[t] - s_j[t]||``. Zero when all samples are identical; same unit as the input
    (flatten vertices to ``(N, T, V*3)`` and multiply by ``1e3`` for mm if desired).

    Args:
        samples: ``(N, T, D)`` with ``N >= 2`` samples of ``T >= 1`` frames.

    Returns:
        Mean pairwise distance.
    """
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim != 3:
        raise ValueError(f"samples must be (N, T, D), got shape {s.shape}")
    if s.shape[0] < 2:
        raise ValueError(f"motion_diversity needs at least 2 samples, got {s.shape[0]}")
    if s.shape[1] == 0 or s.shape[2] == 0:
        raise ValueError(f"samples is empty: shape {s.shape}")
    i, j = np.triu_indices(s.shape[0], k=1)
    dist = np.linalg.norm(s[i] - s[j], axis=-1)  # (P, T)
    return float(np.mean(dist))


def jitter(values: np.ndarray) -> float:
    """Jitter: mean absolute second difference ``mean_{t,d} |x[t+1] - 2 x[t] + x[t-1]|``.

    Zero for constant or linearly ramping signals; same unit as the input per frame².

    Args:
        values: ``(T, D)`` sequence with ``T >= 3``.

    Returns:
        Mean absolute second difference.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"values must be (T, D), got shape {x.shape}")
    if x.shape[0] < 3 or x.shape[1] == 0:
        raise ValueError(f"jitter needs at least 3 frames and 1 channel, got shape {x.shape}")
    return float(np.mean(np.abs(np.diff(x, n=2, axis=0))))
