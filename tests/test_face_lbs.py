"""Golden values for Rodrigues rotations and linear blend skinning."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from avitalk.face.lbs import lbs, rigid_transforms, rodrigues

HALF_PI = np.pi / 2


def test_rodrigues_golden_angles():
    np.testing.assert_array_equal(rodrigues(np.zeros(3)), np.eye(3, dtype=np.float32))
    rz90 = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32)
    np.testing.assert_allclose(rodrigues(np.array([0.0, 0.0, HALF_PI])), rz90, atol=1e-7)
    np.testing.assert_allclose(rodrigues(np.array([np.pi, 0.0, 0.0])), np.diag([1.0, -1.0, -1.0]), atol=1e-7)
    # 120 degrees about (1,1,1) cycles the axes x -> y -> z.
    axis = np.ones(3) / np.sqrt(3.0)
    np.testing.assert_allclose(rodrigues(axis * 2 * np.pi / 3), np.roll(np.eye(3), 1, axis=0), atol=1e-6)


def test_rodrigues_batch_matches_scipy_and_small_angles():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(2, 4, 3))
    r[0, 0] = [1e-7, -2e-7, 3e-8]  # Taylor branch
    got = rodrigues(r)
    assert got.shape == (2, 4, 3, 3) and got.dtype == np.float32
    want = Rotation.from_rotvec(r.reshape(-1, 3)).as_matrix().reshape(2, 4, 3, 3)
    np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        rodrigues(np.zeros((4, 2)))


def _chain():
    """Root at the origin, a 'jaw' child at (0, 1, 0); vertex 0 on the root, 1 on the jaw, 2 half/half."""
    joints = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    parents = np.array([-1, 0])
    v = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    w = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    return v, joints, parents, w


def test_identity_pose_is_rest_pose_even_with_posedirs():
    v, joints, parents, w = _chain()
    posedirs = np.random.default_rng(1).normal(size=(3, 3, 9))
    out = lbs(v, joints, parents, np.zeros((3, 2, 3)), w, posedirs)
    assert out.shape == (3, 3, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.broadcast_to(v, (3, 3, 3)), atol=1e-7)


def test_jaw_rotation_90_degrees_golden():
    v, joints, parents, w = _chain()
    pose = np.zeros((1, 2, 3))
    pose[0, 1] = [HALF_PI, 0.0, 0.0]  # 90 degrees about +X at the jaw joint
    out = lbs(v, joints, parents, pose, w)[0]
    np.testing.assert_allclose(out[0], [1.0, 0.0, 0.0], atol=1e-6)  # root vertex untouched
    # (0,1,1): offset (0,0,1) from the jaw joint rotates to (0,-1,0) -> (0,0,0).
    np.testing.assert_allclose(out[1], [0.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out[2], [0.0, 0.5, 0.5], atol=1e-6)  # linear blend of both


def test_root_rotation_carries_children():
    v, joints, parents, w = _chain()
    pose = np.zeros((1, 2, 3))
    pose[0, 0] = [0.0, 0.0, HALF_PI]  # 90 degrees about +Z at the root
    out = lbs(v, joints, parents, pose, w)[0]
    rz = Rotation.from_rotvec([0, 0, HALF_PI]).as_matrix()
    np.testing.assert_allclose(out, v @ rz.T, atol=1e-6)


def test_per_frame_shapes_and_joints_and_posedirs():
    v, joints, parents, w = _chain()
    n_t = 300  # more than one internal chunk
    v_t = np.broadcast_to(v, (n_t, 3, 3)) + np.linspace(0, 1, n_t)[:, None, None]
    j_t = np.broadcast_to(joints, (n_t, 2, 3)) + np.linspace(0, 1, n_t)[:, None, None]
    posedirs = np.zeros((3, 3, 9))
    posedirs[1, 2, 0] = 1.0  # vertex 1 z += (R_jaw - I)[0, 0]
    pose = np.zeros((n_t, 2, 3))
    pose[:, 1, 2] = 0.5  # about +Z: (R - I)[0, 0] = cos(0.5) - 1
    out = lbs(v_t, j_t, parents, pose, w, posedirs)
    np.testing.assert_allclose(out[:, 0], v_t[:, 0], atol=1e-6)
    corr = np.cos(0.5) - 1.0
    rel = np.array([0.0, 0.0, 1.0 + corr])  # vertex 1 relative to the jaw after the corrective
    np.testing.assert_allclose(out[:, 1], j_t[:, 1] + Rotation.from_rotvec([0, 0, 0.5]).apply(rel), atol=1e-5)


def test_rigid_transforms_and_bad_parents():
    v, joints, parents, w = _chain()
    g = rigid_transforms(np.broadcast_to(np.eye(3), (1, 2, 3, 3)), joints, parents)
    np.testing.assert_allclose(g[0], np.broadcast_to(np.eye(4), (2, 4, 4)))
    with pytest.raises(ValueError, match="parents"):
        lbs(v, joints, np.array([-1, 1]), np.zeros((1, 2, 3)), w)
    with pytest.raises(ValueError, match="weights"):
        lbs(v, joints, parents, np.zeros((1, 2, 3)), w[:2])
