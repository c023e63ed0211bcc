"""Exports: GLB round trip (pygltflib + Khronos validator), OBJ/PLY sequences, CSV, atomic directories."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from avitalk.errors import AvitalkError
from avitalk.face.export import export_motion, frame_names, live_link_timecode
from avitalk.face.export_gltf import euler_to_quaternion, quaternion_to_matrix, read_glb, write_glb
from avitalk.face.linear import euler_to_matrix
from avitalk.motionio import load_motion
from avitalk.spaces import ARKIT52, ARKIT_BLENDSHAPES, FLAME
from face_util import JawFace, SphereFace, talking_motion

VALIDATOR_JS = """
const fs = require('fs');
const validator = require('gltf-validator');
validator.validateBytes(new Uint8Array(fs.readFileSync(process.argv[1])), {maxIssues: 50})
  .then((r) => { console.log(JSON.stringify(r.issues)); })
  .catch((e) => { console.error(String(e)); process.exit(1); });
"""


def _accessor(doc, binary, index):
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    n = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[acc["type"]]
    dtype = {5126: np.float32, 5125: np.uint32}[acc["componentType"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    return np.frombuffer(binary, dtype, acc["count"] * n, start).reshape(acc["count"], n)


def _evaluate(doc, binary, frame):
    """Pose the exported GLB at a keyframe like an engine would: morphs, then the node transforms."""
    mesh = doc["meshes"][0]
    prim = mesh["primitives"][0]
    base = _accessor(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64)
    anim = doc["animations"][0]
    ch = {c["target"]["path"]: anim["samplers"][c["sampler"]] for c in anim["channels"]}
    k = len(prim["targets"])
    w = _accessor(doc, binary, ch["weights"]["output"]).reshape(-1, k)[frame]
    verts = base + sum(w[j] * _accessor(doc, binary, t["POSITION"]) for j, t in enumerate(prim["targets"]))
    if "rotation" in ch:
        q = _accessor(doc, binary, ch["rotation"]["output"])[frame]
        r = quaternion_to_matrix(q[None])[0].astype(np.float64)
        head, face = doc["nodes"]
        verts = (verts + face["translation"]) @ r.T + head["translation"]
    return verts


def test_quaternion_matches_euler_convention():
    rng = np.random.default_rng(0)
    p, y, r = rng.uniform(-1, 1, (3, 20))
    q = euler_to_quaternion(p, y, r)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(quaternion_to_matrix(q), euler_to_matrix(p, y, r), atol=1e-6)
    assert np.all(np.sum(q[1:] * q[:-1], axis=1) >= 0)  # continuous signs


def test_glb_round_trip_linear_face(tmp_path):
    face = SphereFace(colors=True)
    m = talking_motion(40, fps=25)
    out = tmp_path / "face.glb"
    rig = write_glb(out, face, m)
    assert rig.bake_error is None and rig.rotations is not None
    doc, binary = read_glb(out)
    mesh = doc["meshes"][0]
    assert mesh["extras"]["targetNames"] == list(ARKIT_BLENDSHAPES)
    assert len(mesh["primitives"][0]["targets"]) == 52
    assert "COLOR_0" in mesh["primitives"][0]["attributes"]
    samplers = doc["animations"][0]["samplers"]
    assert all(s["interpolation"] == "LINEAR" for s in samplers)
    times = _accessor(doc, binary, samplers[0]["input"])[:, 0]
    assert len(times) == 40 and times[-1] == pytest.approx(39 / 25)
    weights = _accessor(doc, binary, samplers[0]["output"]).reshape(40, 52)
    np.testing.assert_allclose(weights, m.values[:, :52], atol=1e-4)
    # an engine evaluating the file gets the same vertices as the face model
    want = face.vertices(m.values)
    for t in (0, 17, 39):
        np.testing.assert_allclose(_evaluate(doc, binary, t), want[t], atol=2e-6)


def test_glb_reloads_with_pygltflib(tmp_path):
    pygltflib = pytest.importorskip("pygltflib")
    face = SphereFace(subdivisions=2)
    m = talking_motion(12)
    write_glb(tmp_path / "f.glb", face, m)
    g = pygltflib.GLTF2().load(str(tmp_path / "f.glb"))
    assert g.asset.version == "2.0"
    assert len(g.meshes[0].primitives[0].targets) == 52
    assert g.meshes[0].extras["targetNames"][17] == "jawOpen"
    anim = g.animations[0]
    assert {c.target.path for c in anim.channels} == {"weights", "rotation"}
    assert g.accessors[anim.samplers[0].input].count == 12
    assert g.accessors[anim.samplers[0].output].count == 12 * 52
    assert g.accessors[anim.samplers[1].output].type == "VEC4"


def test_glb_bake_for_nonlinear_face(tmp_path):
    face = JawFace()
    m = talking_motion(30, space=FLAME)
    rig = write_glb(tmp_path / "flame.glb", face, m)
    assert rig.bake_error is not None and rig.bake_error < 1e-5
    assert rig.rotations is None and rig.names[0] == "pca00" and len(rig.names) <= 64
    doc, binary = read_glb(tmp_path / "flame.glb")
    assert doc["asset"]["extras"]["bakeMaxErrorMetres"] == pytest.approx(rig.bake_error)
    want = face.vertices(m.values)
    np.testing.assert_allclose(_evaluate(doc, binary, 11), want[11], atol=2e-5)


def _validator() -> list[str] | None:
    node = shutil.which("node")
    if node is None:
        return None
    roots = []
    npm = shutil.which("npm")
    if npm:
        res = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, check=False)
        roots.append(res.stdout.strip())
    for root in roots:
        if root and (subprocess.run([node, "-e", "require('gltf-validator')"], cwd=root, capture_output=True,
                                    env={"NODE_PATH": root, "PATH": ""}, check=False).returncode == 0):  # fmt: skip
            return [node, "-e", VALIDATOR_JS, "--", root]
    return None


@pytest.mark.parametrize("kind", ["linear", "baked"])
def test_khronos_validator_reports_no_errors(tmp_path, kind):
    cmd = _validator()
    if cmd is None:
        pytest.skip("node + gltf-validator not installed (npm install -g gltf-validator)")
    face, m = (
        (SphereFace(colors=True), talking_motion(20))
        if kind == "linear"
        else (JawFace(), talking_motion(8, space=FLAME))
    )
    out = tmp_path / "v.glb"
    write_glb(out, face, m)
    node, flag, script, _, root = cmd
    res = subprocess.run([node, flag, script, str(out)], capture_output=True, text=True, env={"NODE_PATH": root},
                         check=True)  # fmt: skip
    issues = json.loads(res.stdout)
    errors = [i for i in issues["messages"] if i["severity"] == 0]
    assert issues["numErrors"] == 0, errors
    assert issues["numWarnings"] == 0, issues["messages"]


def test_obj_and_ply_sequences(tmp_path):
    face = SphereFace(subdivisions=1, colors=True)
    m = talking_motion(3)
    want = face.vertices(m.values)
    export_motion(tmp_path / "obj", m, "obj", face)
    files = sorted((tmp_path / "obj").iterdir())
    assert [f.name for f in files] == ["frame_000000.obj", "frame_000001.obj", "frame_000002.obj"]
    lines = files[1].read_text().splitlines()
    v = np.array([[float(x) for x in ln.split()[1:]] for ln in lines if ln.startswith("v ")])
    f = np.array([[int(x) for x in ln.split()[1:]] for ln in lines if ln.startswith("f ")])
    np.testing.assert_allclose(v, want[1], atol=1e-6)
    np.testing.assert_array_equal(f - 1, face.faces)

    export_motion(tmp_path / "ply", m, "ply", face)
    data = (tmp_path / "ply" / "frame_000002.ply").read_bytes()
    head, body = data.split(b"end_header\n", 1)
    assert b"format binary_little_endian 1.0" in head and b"property uchar red" in head
    n_v = len(face.neutral)
    vt = np.frombuffer(body, dtype=[("p", "<f4", (3,)), ("c", "u1", (3,))], count=n_v)
    np.testing.assert_allclose(vt["p"], want[2], atol=1e-7)
    ft = np.frombuffer(body[vt.nbytes :], dtype=[("n", "u1"), ("i", "<i4", (3,))])
    assert np.all(ft["n"] == 3)
    np.testing.assert_array_equal(ft["i"], face.faces)


def test_sequence_directory_is_atomic_and_never_overwritten(tmp_path):
    face = SphereFace(subdivisions=1)
    out = tmp_path / "seq"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(AvitalkError, match="not empty"):
        export_motion(out, talking_motion(2), "obj", face)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    class Broken(SphereFace):
        def vertices(self, values):
            raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError):
        export_motion(tmp_path / "new", talking_motion(2), "ply", Broken(subdivisions=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]


def test_export_dispatch_errors(tmp_path):
    m = talking_motion(2)
    with pytest.raises(AvitalkError, match="needs a face model"):
        export_motion(tmp_path / "x.glb", m, "glb")
    with pytest.raises(AvitalkError, match="unknown export format"):
        export_motion(tmp_path / "x.fbx", m, "fbx")
    with pytest.raises(AvitalkError, match="flame@v1"):
        export_motion(tmp_path / "x.glb", talking_motion(2, space=FLAME), "glb", SphereFace(subdivisions=1))
    export_motion(tmp_path / "m.npz", m, "npz")
    np.testing.assert_array_equal(load_motion(tmp_path / "m.npz").values, m.values)


def test_csv_layout_and_timecodes(tmp_path):
    m = talking_motion(30, fps=25)
    export_motion(tmp_path / "t.csv", m, "csv")
    rows = [r.split(",") for r in (tmp_path / "t.csv").read_text().splitlines()]
    assert rows[0][:3] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft"] and len(rows[0]) == 63
    assert rows[0][-6:] == ["LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll"]
    assert rows[1][:2] == ["00:00:00:00.000", "61"] and rows[26][0] == "00:00:01:00.000"
    assert float(rows[5][rows[0].index("JawOpen")]) == pytest.approx(m.channel("jawOpen")[4], abs=1e-6)
    # Live Link writes head rotations normalised: degrees / 180 = radians / pi
    assert float(rows[5][rows[0].index("HeadYaw")]) == pytest.approx(m.channel("headYaw")[4] / np.pi, abs=1e-8)
    assert live_link_timecode(3600 * 30 + 7, 30) == "01:00:00:07.000"
    assert frame_names(1_234_567, ".ply")[-1] == "frame_1234566.ply"
    assert ARKIT52.dim == 55
