"""ICT-FaceKit loader on the real files (skipped when they are not on this machine)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import avitalk.face.ict as ict
from avitalk.errors import AvitalkError
from avitalk.face.base import FaceModel
from avitalk.face.ict import ARKIT_TO_ICT, FACE_AREA_VERTICES, ICT_SHAPES, NECK_PIVOT, ICTFace
from avitalk.face.models import load_face
from avitalk.spaces import ARKIT52, ARKIT_BLENDSHAPES

# A checkout of github.com/ICT-VGL/ICT-FaceKit: $AVITALK_ICT_FACEKIT, else ../shared/assets beside the repository.
_DEFAULT_ICT = Path(__file__).resolve().parents[2] / "shared" / "assets" / "ICT-FaceKit"
ICT_DIR = Path(os.environ.get("AVITALK_ICT_FACEKIT", _DEFAULT_ICT))
needs_ict = pytest.mark.skipif(
    not (ICT_DIR / "FaceXModel" / "generic_neutral_mesh.obj").is_file(),
    reason=f"ICT-FaceKit files not present at {ICT_DIR} (clone github.com/ICT-VGL/ICT-FaceKit there)",
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("avitalk-cache")


@pytest.fixture(scope="module")
def face(cache_dir):
    if not (ICT_DIR / "FaceXModel" / "generic_neutral_mesh.obj").is_file():
        pytest.skip(f"ICT-FaceKit files not present at {ICT_DIR}")
    return ICTFace.load(ICT_DIR, cache_dir=cache_dir)  # parses once, writes the cache


def _pose(face, **channels):
    x = np.zeros((1, ARKIT52.dim), dtype=np.float32)
    for k, v in channels.items():
        x[0, ARKIT52.index(k)] = v
    return face.vertices(x)[0]


def test_channel_mapping_table():
    assert set(ARKIT_TO_ICT) == set(ARKIT_BLENDSHAPES)
    assert ARKIT_TO_ICT["eyeBlinkLeft"] == ("eyeBlink_L",) and ARKIT_TO_ICT["mouthSmileRight"] == ("mouthSmile_R",)
    assert ARKIT_TO_ICT["jawLeft"] == ("jawLeft",) and ARKIT_TO_ICT["mouthRight"] == ("mouthRight",)
    assert ARKIT_TO_ICT["browInnerUp"] == ("browInnerUp_L", "browInnerUp_R")
    assert ARKIT_TO_ICT["cheekPuff"] == ("cheekPuff_L", "cheekPuff_R")
    assert ARKIT_TO_ICT["tongueOut"] == ()


@needs_ict
def test_mapping_covers_the_real_expression_list():
    listed = json.loads((ICT_DIR / "FaceXModel" / "vertex_indices.json").read_text())["expressions"]
    assert sorted(listed) == sorted(ICT_SHAPES)  # every ICT expression is used, every name exists


@needs_ict
def test_counts_and_golden_values(face, cache_dir):
    assert isinstance(face, FaceModel) and face.space is ARKIT52 and face.face_only
    assert face.neutral.shape == (FACE_AREA_VERTICES, 3) and face.neutral.dtype == np.float32
    assert face.faces.shape == (18461, 3) and face.faces.dtype == np.int32 and face.faces.max() < FACE_AREA_VERTICES
    np.testing.assert_allclose(face.neutral[0], [0.0, -0.0248251, 0.118387], atol=1e-7)  # metres (file: cm)
    np.testing.assert_allclose(face.neutral[4841], [0.0, 0.0009096, 0.130882], atol=1e-7)  # nose tip, max z
    full = ICTFace.load(ICT_DIR, face_only=False, cache_dir=cache_dir)
    assert full.neutral.shape == (26719, 3) and full.faces.shape == (52220, 3)  # 25836 quads * 2 + 548
    np.testing.assert_array_equal(full.neutral[:FACE_AREA_VERTICES], face.neutral)
    for k in ("lips", "upper_face", "eyes"):
        np.testing.assert_array_equal(full.regions[k], face.regions[k])


@needs_ict
def test_regions(face):
    sizes = {k: len(v) for k, v in face.regions.items()}
    assert sizes == {"lips": 1055, "upper_face": 3946, "eyes": 826}
    v = face.neutral
    for idx in face.regions.values():
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0) and idx.max() < len(v)
    assert (
        v[face.regions["lips"], 1].mean() < v[face.regions["eyes"], 1].mean() < v[face.regions["upper_face"], 1].max()
    )
    moved = np.linalg.norm(_pose(face, jawOpen=1.0) - v, axis=1)
    assert moved[face.regions["lips"]].mean() > 5 * moved[face.regions["upper_face"]].mean()
    blink = np.linalg.norm(_pose(face, eyeBlinkLeft=1.0, eyeBlinkRight=1.0) - v, axis=1)
    assert blink[face.regions["eyes"]].mean() > 5 * blink[face.regions["lips"]].mean()


@needs_ict
def test_triangles_face_outwards(face):
    v, f = face.neutral, face.faces
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    front = v[f].mean(axis=1)[:, 2] > 0.11  # the front of the face (nose, lips, cheeks)
    assert (n[front, 2] > 0).mean() > 0.8


@needs_ict
def test_blendshapes(face):
    v0 = face.neutral
    np.testing.assert_array_equal(face.vertices(np.zeros((2, ARKIT52.dim), np.float32)), np.stack([v0, v0]))
    jaw = _pose(face, jawOpen=1.0) - v0
    assert abs(np.linalg.norm(jaw, axis=1).max() - 0.041987) < 1e-5  # 4.2 cm at the chin
    assert jaw[face.regions["lips"], 1].mean() < -0.01  # the mouth opens downwards
    np.testing.assert_allclose(_pose(face, jawOpen=0.5) - v0, 0.5 * jaw, atol=1e-6)  # linear
    left = _pose(face, eyeBlinkLeft=1.0) - v0
    assert v0[np.linalg.norm(left, axis=1) > 1e-3, 0].mean() > 0.02  # subject's left = +X
    smile_r = _pose(face, mouthSmileRight=1.0) - v0
    assert v0[np.linalg.norm(smile_r, axis=1) > 1e-3, 0].mean() < -0.01
    assert (_pose(face, mouthLeft=1.0) - v0)[face.regions["lips"], 0].mean() > 0.005  # moves towards +X
    np.testing.assert_array_equal(_pose(face, tongueOut=1.0), v0)  # ICT has no tongue shape
    brow = _pose(face, browInnerUp=1.0) - v0
    side = np.linalg.norm(brow, axis=1) > 1e-3
    assert (v0[side, 0] > 0.01).any() and (v0[side, 0] < -0.01).any()  # both halves


@needs_ict
def test_head_rotation_is_rigid_about_the_neck(face):
    v0 = face.neutral
    yawed = _pose(face, headYaw=0.3)
    np.testing.assert_allclose(
        np.linalg.norm(yawed - NECK_PIVOT, axis=1), np.linalg.norm(v0 - NECK_PIVOT, axis=1), atol=1e-6
    )
    assert yawed[4841, 0] > 0.02  # the nose turns to the subject's left (+X)
    pitched = _pose(face, headPitch=0.3)
    assert pitched[4841, 1] < v0[4841, 1] - 0.02  # positive pitch nods down
    both = _pose(face, jawOpen=1.0, headRoll=0.2)
    np.testing.assert_allclose(
        np.linalg.norm(both - NECK_PIVOT, axis=1).mean(),
        np.linalg.norm(_pose(face, jawOpen=1.0) - NECK_PIVOT, axis=1).mean(),
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match=r"\(T, 55\)"):
        face.vertices(np.zeros((3, 53), np.float32))


@needs_ict
def test_cache_is_used_and_pickle_free(face, cache_dir, monkeypatch):
    files = list((cache_dir / "face").glob("ict-facekit-*.npz"))
    assert len(files) == 1
    with np.load(files[0], allow_pickle=False) as z:
        assert z["deltas"].shape == (len(ICT_SHAPES), 26719, 3) and z["deltas"].dtype == np.float32

    def no_parse(src):
        raise AssertionError("cache should have been used")

    monkeypatch.setattr(ict, "_parse", no_parse)
    again = ICTFace.load(ICT_DIR / "FaceXModel", cache_dir=cache_dir)
    np.testing.assert_array_equal(again.neutral, face.neutral)
    np.testing.assert_array_equal(again.faces, face.faces)


@needs_ict
def test_corrupt_cache_is_rebuilt(face, cache_dir, tmp_path, monkeypatch):
    src = ict._model_dir(ICT_DIR)
    with np.load(next((cache_dir / "face").glob("*.npz")), allow_pickle=False) as z:
        parsed = {k: z[k] for k in z.files}
    calls = []
    monkeypatch.setattr(ict, "_parse", lambda s: calls.append(s) or parsed)
    own = tmp_path / "cache"
    target = own / "face" / f"ict-facekit-{ict._cache_key(ict._source_files(src))}.npz"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated")
    again = ICTFace.load(ICT_DIR, cache_dir=own)
    assert calls == [src]
    np.testing.assert_array_equal(again.neutral, face.neutral)
    with np.load(target, allow_pickle=False) as z:  # rewritten, readable
        assert z["neutral"].shape == (26719, 3)


def test_cache_key_tracks_size_and_mtime(tmp_path):
    f = tmp_path / "a.obj"
    f.write_text("v 0 0 0\n")
    k1 = ict._cache_key([f])
    f.write_text("v 0 0 1\nv 1 1 1\n")
    assert ict._cache_key([f]) != k1


def test_missing_and_malformed_files(tmp_path, monkeypatch):
    with pytest.raises(AvitalkError, match=r"ICT-FaceKit not found: expected .*generic_neutral_mesh\.obj"):
        ICTFace.load(tmp_path)
    d = tmp_path / "FaceXModel"
    d.mkdir()
    (d / "generic_neutral_mesh.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(
        AvitalkError, match=r"incomplete: missing vertex_indices\.json, browDown_L\.obj, .* and 49 more"
    ):
        ICTFace.load(tmp_path, cache_dir=tmp_path / "c")
    (d / "vertex_indices.json").write_text(json.dumps({"idx_to_landmark_verts": list(range(68))}))
    for s in ICT_SHAPES:
        (d / f"{s}.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(AvitalkError, match=r"generic_neutral_mesh\.obj: expected the ICT-FaceKit generic head"):
        ICTFace.load(tmp_path, cache_dir=tmp_path / "c")
    bad = d / "jawOpen.obj"
    with pytest.raises(AvitalkError, match=r"jawOpen\.obj: malformed vertex lines"):
        ict._obj_vertices(b"v 0 0 0\nv 1 x 0\n", bad)
    with pytest.raises(AvitalkError, match=r"jawOpen\.obj: malformed vertex lines"):
        ict._obj_vertices(b"v 0 0 0\nv 1 0\n", bad)
    with pytest.raises(AvitalkError, match=r"jawOpen\.obj: expected an OBJ mesh"):
        ict._obj_vertices(b"# empty\n", bad)
    with pytest.raises(AvitalkError, match=r"outside 1\.\.3"):
        ict._obj_triangles(b"f 1 2 4\n", bad, 3)
    np.testing.assert_array_equal(ict._obj_triangles(b"f 1/1 2/2 3/3 4/4\n", bad, 4), [[0, 1, 2], [0, 2, 3]])
    (d / "vertex_indices.json").write_text("{}")
    with pytest.raises(AvitalkError, match=r"vertex_indices\.json: expected JSON with an 'idx_to_landmark_verts'"):
        ict._landmarks(d / "vertex_indices.json")


@needs_ict
def test_load_face_spec(cache_dir):
    f = load_face(f"ict:{ICT_DIR}", cache_dir=cache_dir)
    assert isinstance(f, ICTFace) and f.face_only
    assert load_face(f"ict:{ICT_DIR}", face_only=False, cache_dir=cache_dir).neutral.shape[0] == 26719


def test_default_framing_centres_on_the_face(face, cache_dir):
    from avitalk.face.render import face_box

    v = face.neutral
    lo, hi = face_box(face)
    for i in (8, 19, 24, 0, 16, 30, 48, 54):  # chin, brows, jaw ends, nose tip, mouth corners (iBUG-68)
        p = v[face.landmarks[i]]
        assert np.all(p[:2] >= lo[:2]) and np.all(p[:2] <= hi[:2]), i
    assert hi[1] - lo[1] < 0.65 * (v[:, 1].max() - v[:, 1].min())  # not the scalp and neck
    assert lo[1] > v[:, 1].min() + 0.05
    full = ICTFace.load(ICT_DIR, face_only=False, cache_dir=cache_dir)
    np.testing.assert_allclose(face_box(full)[:, :2], np.stack([lo, hi])[:, :2], atol=0.01)


def test_full_basis_is_exposed_for_losses_and_exporters(face):
    names, basis = face.blendshape_basis()
    assert names == ARKIT_BLENDSHAPES and basis.shape == (52, face.neutral.shape[0], 3)
    assert not basis[ARKIT_BLENDSHAPES.index("tongueOut")].any() and not basis.flags.writeable
    want = face.neutral + 0.5 * basis[ARKIT_BLENDSHAPES.index("jawOpen")]
    np.testing.assert_allclose(_pose(face, jawOpen=0.5), want, atol=1e-6)
