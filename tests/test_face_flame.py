"""FLAME loader on a small file of the real structure, and the restricted unpickler.

The test writes its own model pickle the way FLAME's are built: a dict of numpy arrays, ``chumpy.ch.Ch``
objects (from a fake ``chumpy`` module injected into ``sys.modules``), a ``scipy.sparse`` CSC
``J_regressor`` and a uint32 ``kintree_table``, pickled with protocol 2 and with the module names of
Python 2 era files (``numpy.core.multiarray``, ``scipy.sparse.csc``).
"""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.transform import Rotation

from avitalk.errors import AvitalkError
from avitalk.face.base import FaceModel
from avitalk.face.flame import FLAME_N_SHAPE, FLAMEFace, load_flame_pickle
from avitalk.face.models import load_face
from avitalk.spaces import FLAME, FLAME_NECK

EYE_L, EYE_R = np.array([0.031, 0.03, 0.03]), np.array([-0.031, 0.03, 0.03])
JOINTS = np.array([[0.0, -0.06, -0.03], [0.0, -0.05, -0.03], [0.0, -0.03, -0.01], EYE_L, EYE_R])
MOUTH_Y = -0.045


@pytest.fixture
def fake_chumpy(monkeypatch):
    """Modules ``chumpy``, ``chumpy.ch`` and ``chumpy.reordering`` with minimal ``Ch``/``Select`` classes."""

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x, dtype=np.float64)
            self._dirty_vars = {"x"}
            self._itr = None
            self._depends_on_deps = {}
            self._make_dense = False
            self._make_sparse = False

    class Select(Ch):
        def __init__(self, a, idxs, preferred_shape):
            self.a, self.idxs, self.preferred_shape = a, idxs, preferred_shape
            self._dirty_vars = set()

    mods = {}
    for name, cls in (("chumpy.ch", Ch), ("chumpy.reordering", Select)):
        cls.__module__, cls.__qualname__ = name, cls.__name__
        mods[name] = types.ModuleType(name)
        setattr(mods[name], cls.__name__, cls)
    monkeypatch.setitem(sys.modules, "chumpy", types.ModuleType("chumpy"))
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return types.SimpleNamespace(Ch=Ch, Select=Select)


def make_model(n_shape_total: int = 400, posedirs: bool = False) -> dict:
    """A tiny face: a curved grid (front surface), eyeball rings, joint-marker vertices."""
    xs, ys = np.linspace(-0.07, 0.07, 15), np.linspace(-0.1, 0.08, 19)
    gx, gy = np.meshgrid(xs, ys)
    grid = np.stack([gx.ravel(), gy.ravel(), 0.05 - 3.0 * gx.ravel() ** 2], axis=1)
    ang = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    ring = 0.012 * np.stack([np.cos(ang), np.sin(ang), np.zeros(6)], axis=1)
    v = np.concatenate([grid, EYE_L + ring, EYE_R + ring, JOINTS[:3]])
    n_g, n_v = len(grid), len(v)
    tri = []
    for r in range(len(ys) - 1):
        for c in range(len(xs) - 1):
            a = r * len(xs) + c
            tri += [(a, a + 1, a + 1 + len(xs)), (a, a + 1 + len(xs), a + len(xs))]
    w = np.zeros((n_v, 5))
    w[:n_g, 1] = 1.0  # head skin on the neck joint
    w[:n_g][grid[:, 1] < MOUTH_Y, 1] = 0.0
    w[:n_g][grid[:, 1] < MOUTH_Y, 2] = 1.0  # lower lip and chin on the jaw
    w[n_g : n_g + 6, 3] = 1.0
    w[n_g + 6 : n_g + 12, 4] = 1.0
    w[n_g + 12 :, 0] = 1.0
    jreg = np.zeros((5, n_v))
    jreg[0, n_g + 12], jreg[1, n_g + 13], jreg[2, n_g + 14] = 1.0, 1.0, 1.0
    jreg[3, n_g : n_g + 6] = 1 / 6
    jreg[4, n_g + 6 : n_g + 12] = 1 / 6
    rng = np.random.default_rng(0)
    shapedirs = 1e-3 * rng.normal(size=(n_v, 3, n_shape_total))
    shapedirs[n_g:, :, :] = 0.0  # eyeballs and markers keep their place: joints do not move
    return {
        "v_template": v,
        "f": np.array(tri, dtype=np.uint32),
        "shapedirs": shapedirs,
        "posedirs": 1e-3 * rng.normal(size=(n_v, 3, 36)) if posedirs else np.zeros((n_v, 3, 36)),
        "J_regressor": jreg,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.uint32),
        "weights": w,
        "J": jreg @ v,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def write_flame(path, model: dict, chumpy, protocol: int = 2, sparse_fmt: str = "csc", select: bool = False):
    d = dict(model)
    if select:
        flat = chumpy.Ch(model["v_template"].ravel())
        d["v_template"] = chumpy.Select(flat, np.arange(flat.x.size), model["v_template"].shape)
    else:
        d["v_template"] = chumpy.Ch(model["v_template"])
    d["shapedirs"] = chumpy.Ch(model["shapedirs"])
    d["J_regressor"] = (
        sp.csc_matrix(model["J_regressor"]) if sparse_fmt == "csc" else sp.csr_matrix(model["J_regressor"])
    )
    data = pickle.dumps(d, protocol=protocol)
    if protocol == 2:  # the module names of Python 2 era FLAME files
        data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        data = data.replace(b"scipy.sparse._csc\n", b"scipy.sparse.csc\n")
        assert b"numpy.core.multiarray\n" in data and b"chumpy.ch\nCh\n" in data
    path.write_bytes(data)
    return path


@pytest.fixture
def flame_file(tmp_path, fake_chumpy):
    return write_flame(tmp_path / "generic_model.pkl", make_model(), fake_chumpy)


def _values(space=FLAME, n=1):
    return np.zeros((n, space.dim), dtype=np.float32)


def test_load_structure(flame_file):
    model = make_model()
    d = load_flame_pickle(flame_file)
    np.testing.assert_array_equal(d["v_template"], model["v_template"])
    np.testing.assert_array_equal(d["J_regressor"], model["J_regressor"])
    assert d["bs_style"] == "lbs"
    face = FLAMEFace.load(flame_file)
    assert isinstance(face, FaceModel) and face.space is FLAME and face.n_expression == 50
    assert face.neutral.dtype == np.float32 and face.neutral.shape == model["v_template"].shape
    assert face.faces.dtype == np.int32 and face.faces.shape == model["f"].shape
    assert face.parents.tolist() == [-1, 0, 1, 1, 1]
    np.testing.assert_allclose(face.joints_rest, JOINTS, atol=1e-7)
    out = face.vertices(_values(n=3))
    assert out.shape == (3, len(model["v_template"]), 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.broadcast_to(face.neutral, out.shape), atol=1e-7)
    with pytest.raises(ValueError, match=r"\(T, 53\)"):
        face.vertices(np.zeros((2, 55), np.float32))


def test_expression_blendshapes_are_linear(flame_file):
    model = make_model()
    face = FLAMEFace.load(flame_file)
    a, b = _values(), _values()
    a[0, 0], b[0, 7] = 1.0, 1.0
    va, vb = face.vertices(a)[0] - face.neutral, face.vertices(b)[0] - face.neutral
    np.testing.assert_allclose(va, model["shapedirs"][:, :, FLAME_N_SHAPE], atol=1e-7)
    mix = _values()
    mix[0, 0], mix[0, 7] = 2.5, -1.5
    np.testing.assert_allclose(face.vertices(mix)[0] - face.neutral, 2.5 * va - 1.5 * vb, atol=1e-6)
    # n_expression=10: channels 10..49 contribute nothing.
    face10 = FLAMEFace.load(flame_file, n_expression=10)
    c = _values()
    c[0, 20] = 3.0
    np.testing.assert_array_equal(face10.vertices(c)[0], face10.neutral)


def test_jaw_rotation_moves_only_jaw_vertices(flame_file):
    model = make_model()
    face = FLAMEFace.load(flame_file)
    x = _values()
    x[0, FLAME.index("jawPoseX")] = 0.3
    out = face.vertices(x)[0]
    moved = np.linalg.norm(out - face.neutral, axis=1) > 1e-6
    jaw = model["weights"][:, 2] > 0
    np.testing.assert_array_equal(moved, jaw)
    jaw_j = JOINTS[2]
    want = Rotation.from_rotvec([0.3, 0, 0]).apply(model["v_template"][jaw] - jaw_j) + jaw_j
    np.testing.assert_allclose(out[jaw], want, atol=1e-6)
    assert out[jaw, 2].mean() < face.neutral[jaw, 2].mean()  # positive X rotation opens the mouth (chin back/down)


def test_neck_space_and_pose_correctives(tmp_path, fake_chumpy):
    model = make_model(posedirs=True)
    path = write_flame(tmp_path / "m.pkl", model, fake_chumpy, protocol=0, sparse_fmt="csr")
    face = FLAMEFace.load(path, neck=True)
    assert face.space is FLAME_NECK
    x = _values(FLAME_NECK)
    x[0, FLAME_NECK.index("neckPoseY")] = 0.2
    out = face.vertices(x)[0]
    # Root-only vertices move by the pose corrective alone: posedirs . vec(R_neck - I) (other joints at rest).
    root = model["weights"][:, 0] == 1.0
    feat = np.zeros(36)
    feat[:9] = (Rotation.from_rotvec([0, 0.2, 0]).as_matrix() - np.eye(3)).ravel()
    np.testing.assert_allclose(out[root] - face.neutral[root], model["posedirs"][root] @ feat, atol=1e-7)
    # Everything skinned to the neck or below turns with it.
    turned = np.linalg.norm(out - face.neutral, axis=1) > 1e-3
    np.testing.assert_array_equal(turned, ~root)


def test_betas_and_select_template(tmp_path, fake_chumpy):
    model = make_model()
    path = write_flame(tmp_path / "m.pkl", model, fake_chumpy, select=True)
    betas = np.array([1.0, -2.0])
    face = FLAMEFace.load(path, betas=betas)
    want = model["v_template"] + model["shapedirs"][:, :, :2] @ betas
    np.testing.assert_allclose(face.neutral, want, atol=1e-7)
    with pytest.raises(AvitalkError, match="300 identity"):
        FLAMEFace.load(path, betas=np.zeros(301))


def test_regions(flame_file):
    face = FLAMEFace.load(flame_file)
    v = face.neutral
    assert set(face.regions) >= {"lips", "upper_face", "eyes"}
    for k, idx in face.regions.items():
        assert idx.dtype == np.int64 and idx.size > 0 and idx.max() < len(v), k
    eyes = v[face.regions["eyes"]]
    assert np.all(np.minimum(np.linalg.norm(eyes - EYE_L, axis=1), np.linalg.norm(eyes - EYE_R, axis=1)) < 0.025)
    lips = v[face.regions["lips"]]
    assert abs(lips[:, 1].mean() - MOUTH_Y) < 0.01 and np.all(np.abs(lips[:, 0]) < 0.03)
    assert v[face.regions["upper_face"], 1].min() > 0.0


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "chumpy.ch_ops.add"])
def test_restricted_unpickler_refuses_code(tmp_path, monkeypatch, payload, fake_chumpy):
    marker = tmp_path / "pwned"
    if payload == "os.system":
        evil = _Evil(os.system, f"touch {marker}")
        expected = f"{os.system.__module__}.system"  # posix.system / nt.system
    elif payload == "builtins.eval":
        evil = _Evil(eval, f"open({str(marker)!r}, 'w').close()")
        expected = "__builtin__.eval"  # protocol 2 writes Python 2 names
    else:  # a chumpy operation class the loader does not evaluate

        class add(fake_chumpy.Ch):  # chumpy's own class name
            pass

        add.__module__, add.__qualname__ = "chumpy.ch_ops", "add"
        ops = types.ModuleType("chumpy.ch_ops")
        ops.add = add
        monkeypatch.setitem(sys.modules, "chumpy.ch_ops", ops)
        evil, expected = add(np.zeros(3)), "chumpy.ch_ops.add"
    model = make_model()
    model["shapedirs"] = evil
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(model, protocol=2))
    with pytest.raises(AvitalkError, match=r"refusing to load .*evil\.pkl.*class") as err:
        FLAMEFace.load(path)
    assert not marker.exists()
    assert expected in str(err.value)


def test_malformed_files(tmp_path, fake_chumpy):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(AvitalkError, match="not a readable FLAME model pickle"):
        FLAMEFace.load(bad)
    bad.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(AvitalkError, match="expected a pickled dict"):
        FLAMEFace.load(bad)
    model = make_model()
    del model["weights"]
    with pytest.raises(AvitalkError, match="missing 'weights'"):
        FLAMEFace.load(write_flame(tmp_path / "a.pkl", model, fake_chumpy))
    with pytest.raises(AvitalkError, match="shapedirs has 340 components"):
        FLAMEFace.load(write_flame(tmp_path / "b.pkl", make_model(n_shape_total=340), fake_chumpy))
    model = make_model()
    model["weights"] = model["weights"][:, :4]
    with pytest.raises(AvitalkError, match="'weights' must have shape"):
        FLAMEFace.load(write_flame(tmp_path / "c.pkl", model, fake_chumpy))
    with pytest.raises(AvitalkError, match="n_expression"):
        FLAMEFace.load(tmp_path / "c.pkl", n_expression=51)


def test_load_face_specs(flame_file):
    assert isinstance(load_face(f"flame:{flame_file}"), FLAMEFace)
    assert load_face(f"flame:{flame_file}", neck=True).space is FLAME_NECK
    with pytest.raises(AvitalkError, match=r"builtin, ict:PATH, flame:PATH"):
        load_face("smpl:/x")
    with pytest.raises(AvitalkError, match="no path"):
        load_face("flame:")
    with pytest.raises(AvitalkError, match="not found"):
        load_face(f"flame:{flame_file}.missing")
    try:
        face = load_face("builtin")
    except AvitalkError as e:
        assert "built-in face not available" in str(e)
    else:
        assert isinstance(face, FaceModel)


def test_default_framing_centres_on_the_face(flame_file):
    from avitalk.face.render import face_box

    face = FLAMEFace.load(flame_file)
    lo, hi = face_box(face)
    v = face.neutral
    assert np.all(lo >= v.min(axis=0) - 1e-9) and np.all(hi <= v.max(axis=0) + 1e-9)
    for p in (EYE_L, EYE_R, np.array([0.0, MOUTH_Y, 0.0])):
        assert np.all(p[:2] >= lo[:2]) and np.all(p[:2] <= hi[:2])
    d = EYE_L[1] - MOUTH_Y  # eye-to-mouth height: brows ~0.4 d above the eyes
    assert EYE_L[1] + 0.4 * d < hi[1] < EYE_L[1] + 0.8 * d
