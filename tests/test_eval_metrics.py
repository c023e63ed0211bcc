"""Tests for the pure stage-2 evaluation metrics (:mod:`avitalk.eval.metrics`)."""

from __future__ import annotations

import numpy as np
import pytest

from avitalk.eval import (
    jitter,
    lip_vertex_error,
    mean_vertex_error,
    motion_diversity,
    upper_face_dynamics_deviation,
)

MM = 1e-3  # metres


def _mesh(t: int = 2, v: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(scale=0.05, size=(t, v, 3)).astype(np.float32)


# --- LVE ----------------------------------------------------------------------------------------


def test_lve_one_mm_on_one_lip_vertex_is_one_mm2() -> None:
    gt = _mesh()
    pred = gt.copy()
    pred[:, 1, 0] += 1 * MM
    assert lip_vertex_error(pred, gt, np.array([0, 1])) == pytest.approx(1.0, rel=1e-4)


def test_lve_takes_max_per_frame_then_mean() -> None:
    gt = np.zeros((2, 3, 3), np.float32)
    pred = gt.copy()
    pred[0, 0, 0] = 1 * MM  # frame 0: 1 mm² on lip vertex 0
    pred[0, 1, 1] = 0.5 * MM  # smaller, ignored by the max
    pred[1, 1, 2] = 2 * MM  # frame 1: 4 mm²
    pred[:, 2, :] = 1.0  # non-lip vertex: ignored
    assert lip_vertex_error(pred, gt, np.array([0, 1])) == pytest.approx(2.5, rel=1e-4)


def test_identical_inputs_give_zero() -> None:
    v = _mesh(4, 5)
    idx = np.array([0, 2, 4])
    assert lip_vertex_error(v, v, idx) == 0.0
    assert mean_vertex_error(v, v) == 0.0
    assert upper_face_dynamics_deviation(v, v, idx, v[0]) == 0.0


# --- FDD ----------------------------------------------------------------------------------------


def test_fdd_golden_value() -> None:
    template = np.zeros((3, 3), np.float32)
    gt = np.zeros((2, 3, 3), np.float32)
    gt[1, 0, 0] = 2 * MM  # d = 0, 4 mm² -> population std 2 mm²
    pred = np.zeros_like(gt)  # static: std 0
    assert upper_face_dynamics_deviation(pred, gt, np.array([0]), template) == pytest.approx(2.0, rel=1e-4)
    # Prediction more dynamic than ground truth -> negative (CodeTalker's signed convention).
    assert upper_face_dynamics_deviation(gt, pred, np.array([0]), template) == pytest.approx(-2.0, rel=1e-4)


def test_fdd_zero_when_dynamics_match_despite_offset() -> None:
    template = np.zeros((3, 3), np.float32)
    gt = np.zeros((3, 3, 3), np.float32)
    gt[:, 0, 0] = np.array([0.0, 2.0, 1.0]) * MM
    pred = gt.copy()
    pred[:, 0, 1] += 5 * MM  # constant offset orthogonal to the motion: d_t shifts by a constant
    assert upper_face_dynamics_deviation(pred, gt, np.array([0]), template) == pytest.approx(0.0, abs=1e-6)


def test_fdd_absolute_does_not_cancel() -> None:
    template = np.zeros((2, 3), np.float32)
    a = np.zeros((2, 2, 3), np.float32)
    a[1, 0, 0] = 2 * MM  # vertex 0 moves in a
    b = np.zeros_like(a)
    b[1, 1, 0] = 2 * MM  # vertex 1 moves in b
    idx = np.array([0, 1])
    assert upper_face_dynamics_deviation(a, b, idx, template) == pytest.approx(0.0, abs=1e-6)
    assert upper_face_dynamics_deviation(a, b, idx, template, absolute=True) == pytest.approx(2.0, rel=1e-4)


def test_fdd_rejects_bad_template() -> None:
    v = _mesh()
    with pytest.raises(ValueError, match="template"):
        upper_face_dynamics_deviation(v, v, np.array([0]), np.zeros((4, 3)))


# --- MVE, diversity, jitter ---------------------------------------------------------------------


def test_mean_vertex_error_golden_and_subset() -> None:
    gt = _mesh()
    pred = gt.copy()
    pred[:, :2] += np.array([3, 4, 0], np.float32) * MM  # 5 mm on vertices 0 and 1
    assert mean_vertex_error(pred, gt, np.array([0, 1])) == pytest.approx(5.0, rel=1e-4)
    assert mean_vertex_error(pred, gt) == pytest.approx(10.0 / 3.0, rel=1e-4)


def test_motion_diversity() -> None:
    s = np.array([[[0.0, 0.0]], [[3.0, 4.0]], [[0.0, 0.0]]])  # pairs: 5, 0, 5
    assert motion_diversity(s) == pytest.approx(10.0 / 3.0)
    same = np.repeat(np.random.default_rng(1).normal(size=(1, 6, 4)), 3, axis=0)
    assert motion_diversity(same) == 0.0


def test_jitter() -> None:
    ramp = np.stack([np.linspace(0, 1, 10), np.linspace(3, -2, 10)], axis=1)
    assert jitter(ramp) == pytest.approx(0.0, abs=1e-12)
    assert jitter(np.array([[0.0], [1.0], [0.0]])) == pytest.approx(2.0)


# --- lengths and errors -------------------------------------------------------------------------


def test_one_frame_length_difference_is_truncated() -> None:
    gt = _mesh(3, 3)
    pred = np.concatenate([gt, gt[-1:] + 1.0])  # extra frame with a huge error is dropped
    assert mean_vertex_error(pred, gt) == 0.0
    assert lip_vertex_error(gt[:2], gt, np.array([0])) == 0.0


@pytest.mark.parametrize(
    ("pred", "gt", "match"),
    [
        (np.zeros((5, 3, 3)), np.zeros((3, 3, 3)), "frame count"),
        (np.zeros((3, 4, 3)), np.zeros((3, 3, 3)), "vertex count"),
        (np.zeros((3, 3)), np.zeros((3, 3, 3)), r"\(T, V, 3\)"),
        (np.zeros((0, 3, 3)), np.zeros((0, 3, 3)), "empty"),
    ],
)
def test_shape_errors(pred: np.ndarray, gt: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mean_vertex_error(pred, gt)


def test_index_and_sample_errors() -> None:
    v = _mesh()
    with pytest.raises(ValueError, match="non-empty"):
        lip_vertex_error(v, v, np.array([], np.int64))
    with pytest.raises(ValueError, match="outside"):
        lip_vertex_error(v, v, np.array([3]))
    with pytest.raises(ValueError, match="integer"):
        lip_vertex_error(v, v, np.array([0.5]))
    with pytest.raises(ValueError, match="at least 2"):
        motion_diversity(np.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match="at least 3"):
        jitter(np.zeros((2, 4)))


# --- built-in face ------------------------------------------------------------------------------


def test_builtin_face_jaw_open_gives_positive_lve() -> None:
    from avitalk.face.builtin import BuiltinFace
    from avitalk.spaces import ARKIT_BLENDSHAPES

    face = BuiltinFace.create()
    values = np.zeros((4, face.space.dim), np.float32)
    opened = values.copy()
    opened[:, ARKIT_BLENDSHAPES.index("jawOpen")] = 0.1
    gt = face.vertices(values)
    pred = face.vertices(opened)
    lips, upper = face.regions["lips"], face.regions["upper_face"]
    assert lip_vertex_error(pred, gt, lips) > 0.0
    assert lip_vertex_error(gt, gt, lips) == 0.0
    assert mean_vertex_error(pred, gt, lips) > 0.0
    # A static jaw opening has no temporal dynamics on the upper face.
    assert upper_face_dynamics_deviation(pred, gt, upper, face.neutral) == pytest.approx(0.0, abs=1e-6)
