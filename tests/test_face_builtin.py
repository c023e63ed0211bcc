"""The built-in procedural face: protocol, mesh validity, blendshape semantics, determinism."""

from __future__ import annotations

import time

import numpy as np
import pytest

from avitalk.face.base import FaceModel
from avitalk.face.builtin import MATERIALS, BuiltinFace
from avitalk.face.builtin_mesh import build_head
from avitalk.face.builtin_shapes import build_basis
from avitalk.face.linear import euler_to_matrix, rotate_rigid
from avitalk.spaces import ARKIT52, ARKIT_BLENDSHAPES


@pytest.fixture(scope="module")
def face() -> BuiltinFace:
    return BuiltinFace.create()


def pose(face: BuiltinFace, **weights: float) -> np.ndarray:
    """``(V, 3)`` vertices for the named ``arkit52`` channel values (others zero)."""
    values = np.zeros((1, ARKIT52.dim), np.float32)
    for name, w in weights.items():
        values[0, ARKIT52.index(name)] = w
    return face.vertices(values)[0]


def test_protocol_and_shapes(face):
    assert isinstance(face, FaceModel)
    assert face.space is ARKIT52 and face.name == "builtin"
    v, f = face.neutral, face.faces
    assert v.dtype == np.float32 and v.ndim == 2 and v.shape[1] == 3
    assert 5000 <= len(v) <= 20000
    assert f.dtype == np.int32 and f.ndim == 2 and f.shape[1] == 3
    assert len(f) <= 14000  # cheap to render
    assert f.min() >= 0 and f.max() < len(v)
    assert np.all(np.abs(v) < 0.3)  # metres, head near the origin
    assert -0.03 < v[:, 1].mean() < 0.03 and abs(v[:, 0].mean()) < 1e-3
    out = face.vertices(np.zeros((3, ARKIT52.dim), np.float32))
    assert out.shape == (3, len(v), 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[1], v)
    with pytest.raises(ValueError):
        face.vertices(np.zeros((2, 52), np.float32))


def test_regions_landmarks_colors(face):
    n = len(face.neutral)
    for key in ("lips", "upper_face", "eyes", "jaw", "mouth_interior"):
        idx = face.regions[key]
        assert idx.dtype == np.int64 and idx.size > 20 and idx.min() >= 0 and idx.max() < n, key
    v = face.neutral
    lips = v[face.regions["lips"]]
    assert np.all(np.abs(lips[:, 1] - v[face.landmarks["upper_lip"], 1]) < 0.015)
    assert v[face.regions["upper_face"], 1].min() > v[face.landmarks["nose_tip"], 1]
    assert face.landmarks["pupil_left"] in set(face.regions["eyes"].tolist())
    c = face.vertex_colors
    assert c.shape == (n, 3) and c.dtype == np.float32 and c.min() >= 0 and c.max() <= 1
    assert face.material_ids.shape == (n,) and face.material_ids.max() < len(MATERIALS)
    used = {MATERIALS[i] for i in np.unique(face.material_ids)}
    assert {"skin", "lips", "eye_white", "iris", "pupil", "teeth", "mouth_interior", "tongue"} <= used
    names, basis = face.blendshape_basis()
    assert tuple(names) == ARKIT_BLENDSHAPES and basis.shape == (52, n, 3) and basis.dtype == np.float32


def test_mesh_is_closed_oriented_manifold(face):
    v, f = face.neutral.astype(np.float64), face.faces.astype(np.int64)
    n = len(v)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    assert area.min() > 1e-10  # no degenerate triangles (0.0001 mm^2)
    assert np.all((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0]))
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    key = directed[:, 0] * n + directed[:, 1]
    assert len(np.unique(key)) == len(key)  # each directed edge once: manifold, consistently oriented
    assert np.all(np.isin(directed[:, 1] * n + directed[:, 0], key))  # every edge has its twin: closed
    assert len(np.unique(f)) == n  # no unused vertices
    # components (skin+interiors, 2 eyeballs, 2 teeth rows, tongue): spheres, outward facing
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_comp, label = connected_components(coo_matrix((np.ones(len(directed)), directed.T), shape=(n, n)))
    assert n_comp == 6
    for k in range(n_comp):
        fk = f[label[f[:, 0]] == k]
        n_v = np.count_nonzero(label == k)
        assert n_v - len(fk) * 3 // 2 + len(fk) == 2  # Euler characteristic of a sphere
        ctr = v[label == k].mean(0)
        vol = np.einsum("ij,ij->i", v[fk[:, 0]] - ctr, np.cross(v[fk[:, 1]] - ctr, v[fk[:, 2]] - ctr)).sum()
        assert vol > 0


def test_every_channel_moves_and_is_linear(face):
    n = len(face.neutral)
    values = np.eye(52, ARKIT52.dim, dtype=np.float32)
    posed = face.vertices(values)
    offsets = posed - face.neutral
    np.testing.assert_allclose(offsets, face.basis, atol=1e-6)
    reach = np.linalg.norm(face.basis, axis=2).max(axis=1)
    moved = dict(zip(ARKIT_BLENDSHAPES, reach, strict=True))
    assert all(r > 0.0015 for r in moved.values()), {k: r for k, r in moved.items() if r <= 0.0015}
    assert all(r < 0.06 for r in moved.values())
    w = np.random.default_rng(0).uniform(0, 1, (2, 52)).astype(np.float32)
    combo = face.vertices(np.concatenate([w, np.zeros((2, 3), np.float32)], 1))
    np.testing.assert_allclose(combo, face.neutral + np.einsum("tk,kvc->tvc", w, face.basis), atol=1e-5)
    assert n == face.basis.shape[1]


def test_jaw_open_lowers_chin_and_opens_lips(face):
    lm, rest = face.landmarks, face.neutral
    gap0 = rest[lm["upper_lip"], 1] - rest[lm["lower_lip"], 1]
    assert abs(gap0) < 1e-6  # lips closed at rest
    v = pose(face, jawOpen=1.0)
    assert v[lm["chin"], 1] < rest[lm["chin"], 1] - 0.02
    assert v[lm["upper_lip"], 1] - v[lm["lower_lip"], 1] > 0.02
    assert abs(v[lm["upper_lip"], 1] - rest[lm["upper_lip"], 1]) < 1e-3  # upper lip stays
    np.testing.assert_allclose(v[face.regions["upper_face"]], rest[face.regions["upper_face"]], atol=1e-4)
    closed = pose(face, jawOpen=1.0, mouthClose=1.0)
    assert np.linalg.norm(closed[lm["upper_lip"]] - closed[lm["lower_lip"]]) < 1e-3
    assert closed[lm["chin"], 1] < rest[lm["chin"], 1] - 0.02  # jaw still open


@pytest.mark.parametrize("side", ["Left", "Right"])
def test_blink_closes_the_lids(face, side):
    lm, rest = face.landmarks, face.neutral
    up, low = lm[f"upper_lid_{side.lower()}"], lm[f"lower_lid_{side.lower()}"]
    assert rest[up, 1] - rest[low, 1] > 0.008
    v = pose(face, **{f"eyeBlink{side}": 1.0})
    assert np.linalg.norm(v[up] - v[low]) < 1e-4
    assert v[up, 1] < rest[up, 1] - 0.006
    half = pose(face, **{f"eyeBlink{side}": 0.5})
    assert 0.002 < half[up, 1] - half[low, 1] < rest[up, 1] - rest[low, 1]
    other = "right" if side == "Left" else "left"
    o_up, o_low = lm[f"upper_lid_{other}"], lm[f"lower_lid_{other}"]
    assert v[o_up, 1] - v[o_low, 1] == pytest.approx(rest[o_up, 1] - rest[o_low, 1], abs=1e-6)


def test_smile_raises_the_subjects_corner(face):
    lm, rest = face.landmarks, face.neutral
    left, right = lm["mouth_corner_left"], lm["mouth_corner_right"]
    assert rest[left, 0] > 0 > rest[right, 0]  # subject's left is +X
    v = pose(face, mouthSmileLeft=1.0)
    assert v[left, 1] > rest[left, 1] + 0.004 and v[left, 0] > rest[left, 0]
    assert abs(v[right, 1] - rest[right, 1]) < 1e-3
    v = pose(face, mouthSmileRight=1.0)
    assert v[right, 1] > rest[right, 1] + 0.004 and v[right, 0] < rest[right, 0]
    v = pose(face, mouthFrownLeft=1.0)
    assert v[left, 1] < rest[left, 1] - 0.003


def test_eyes_look_and_brows(face):
    lm, rest = face.landmarks, face.neutral
    pupil = lm["pupil_left"]
    assert pose(face, eyeLookOutLeft=1.0)[pupil, 0] > rest[pupil, 0] + 0.003
    assert pose(face, eyeLookInLeft=1.0)[pupil, 0] < rest[pupil, 0] - 0.003
    assert pose(face, eyeLookUpLeft=1.0)[pupil, 1] > rest[pupil, 1] + 0.003
    assert pose(face, eyeLookDownLeft=1.0)[pupil, 1] < rest[pupil, 1] - 0.003
    assert pose(face, eyeLookOutRight=1.0)[lm["pupil_right"], 0] < rest[lm["pupil_right"], 0] - 0.003
    upper = face.regions["upper_face"]
    assert (pose(face, browInnerUp=1.0)[upper, 1] - rest[upper, 1]).max() > 0.004
    assert (pose(face, browDownLeft=1.0)[upper, 1] - rest[upper, 1]).min() < -0.004


def test_head_rotation_is_rigid_about_the_pivot(face):
    values = np.zeros((1, ARKIT52.dim), np.float32)
    values[0, ARKIT52.index("headYaw")] = 0.3
    values[0, ARKIT52.index("jawOpen")] = 0.5
    got = face.vertices(values)[0]
    unrotated = pose(face, jawOpen=0.5)
    r = euler_to_matrix(np.zeros(1), np.full(1, 0.3), np.zeros(1))
    np.testing.assert_allclose(got, rotate_rigid(unrotated[None], r, face.pivot)[0], atol=1e-6)
    nose = face.landmarks["nose_tip"]
    assert got[nose, 0] > face.neutral[nose, 0] + 0.02  # yaw turns the face to the subject's left


def test_deterministic_and_golden(face):
    mesh = build_head()
    np.testing.assert_array_equal(mesh.vertices.astype(np.float32), face.neutral)
    np.testing.assert_array_equal(mesh.faces, face.faces)
    np.testing.assert_array_equal(build_basis(mesh), face.basis)
    v = face.neutral.astype(np.float64)
    np.testing.assert_allclose(v[face.landmarks["nose_tip"]], GOLDEN_NOSE_TIP, atol=2e-5)
    np.testing.assert_allclose(v[face.landmarks["chin"]], GOLDEN_CHIN, atol=2e-5)
    assert (len(v), len(face.faces)) == GOLDEN_COUNTS
    np.testing.assert_allclose([np.abs(v).sum(), (v * v).sum()], GOLDEN_SUMS, rtol=1e-6)


def test_construction_is_cheap_and_cached(face):
    t0 = time.perf_counter()
    mesh = build_head()
    build_basis(mesh)
    assert time.perf_counter() - t0 < 3.0  # ~0.5 s on one core; generous for busy CI machines
    t0 = time.perf_counter()
    assert BuiltinFace.create() is face
    assert time.perf_counter() - t0 < 0.01


# Golden values of this version of the built-in face (update together with intentional geometry changes).
GOLDEN_COUNTS = (6229, 12434)
GOLDEN_NOSE_TIP = (0.0, -0.01918, 0.124332)
GOLDEN_CHIN = (0.0, -0.088348, 0.094986)
GOLDEN_SUMS = (935.2060669980274, 69.50334916020381)


def test_default_framing_centres_on_the_face(face):
    from avitalk.face.render import RenderConfig, face_box, renderer_for

    v = face.neutral
    lo, hi = face_box(face)
    brows = (face.material_ids == MATERIALS.index("hair")) & (v[:, 2] > 0.05) & (v[:, 1] < 0.07)
    assert brows.sum() > 50
    inside = [face.landmarks[k] for k in ("chin", "nose_tip", "pupil_left", "pupil_right", "mouth_corner_left")]
    for p in np.concatenate([v[inside], v[brows]]):
        assert np.all(p[:2] >= lo[:2]) and np.all(p[:2] <= hi[:2]), p
    assert hi[1] - lo[1] < 0.6 * (v[:, 1].max() - v[:, 1].min())  # not the whole head and neck
    assert lo[1] > v[face.landmarks["chin"], 1] - 0.04 and lo[1] > v[:, 1].min() + 0.05

    def skin_fraction(framing):
        r = renderer_for(face, RenderConfig(size=96, framing=framing, workers=1))
        return float(np.mean(np.any(r.render(v) != r._background, axis=2)))

    assert skin_fraction("face") > 2 * skin_fraction("head")  # ~0.58 vs ~0.25 of the frame
