"""The exported GLB plays in three.js: GLTFLoader + AnimationMixer under Node (tests/js/).

Needs ``node`` and the ``three`` npm package, found as ``$AVITALK_THREE_DIR`` (the package directory),
else ``three`` in a ``$NODE_PATH`` entry or in ``npm root -g`` (CI: ``npm install -g three@0.187.0``);
skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avitalk.face.builtin import BuiltinFace
from avitalk.face.export_gltf import euler_to_quaternion, quaternion_to_matrix, write_glb
from avitalk.face.linear import euler_to_matrix, rotate_rigid
from avitalk.spaces import ARKIT52, ARKIT_BLENDSHAPES, HEAD_ROTATIONS
from avitalk.types import Motion
from face_util import talking_motion

SCRIPT = Path(__file__).parent / "js" / "gltf_playback_threejs.mjs"
#: The three.js release the test was written against (CI installs this one).
THREE_VERSION = "0.187.0"


def _three_dir() -> Path | None:
    env = os.environ.get("AVITALK_THREE_DIR")
    if env:
        return Path(env) if (Path(env) / "package.json").is_file() else None
    roots = [p for p in os.environ.get("NODE_PATH", "").split(os.pathsep) if p]
    npm = shutil.which("npm")
    if npm:
        res = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, check=False, timeout=60)
        roots.append(res.stdout.strip())
    for root in roots:
        pkg = Path(root) / "three" / "package.json"
        if root and pkg.is_file() and (pkg.parent / "examples" / "jsm" / "loaders" / "GLTFLoader.js").is_file():
            return pkg.parent
    return None


@pytest.fixture(scope="module")
def three() -> tuple[str, Path]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (three.js playback test)")
    d = _three_dir()
    if d is None:
        pytest.skip(f"the three npm package is not installed (npm install -g three@{THREE_VERSION})")
    return node, d


def _slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    q0, q1 = q0.astype(np.float64), q1.astype(np.float64)
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    theta = np.arccos(min(dot, 1.0))
    if theta < 1e-8:
        q = q0 + a * (q1 - q0)
    else:
        q = (np.sin((1 - a) * theta) * q0 + np.sin(a * theta) * q1) / np.sin(theta)
    return q / np.linalg.norm(q)


def _expected(face: BuiltinFace, motion: Motion, times: list[float], n_vertices: int = 300) -> dict:
    """What an engine must show at each time ``t``: glTF LINEAR = lerp for weights, slerp for rotations."""
    shapes = [ARKIT52.index(n) for n in ARKIT_BLENDSHAPES]
    rot = [ARKIT52.index(c) for c in HEAD_ROTATIONS]
    quats = euler_to_quaternion(*(motion.values[:, i] for i in rot))
    idx = np.random.default_rng(0).choice(len(face.neutral), n_vertices, replace=False)
    checks = []
    for t in times:
        f = t * motion.fps
        k = min(int(np.floor(f + 1e-9)), motion.n_frames - 1)
        a = float(f - k) if k + 1 < motion.n_frames else 0.0
        k1 = min(k + 1, motion.n_frames - 1)
        values = (1 - a) * motion.values[k] + a * motion.values[k1]
        q = _slerp(quats[k], quats[k1], a)
        unrotated = values.copy()
        unrotated[rot] = 0.0
        verts = face.vertices(unrotated[None].astype(np.float32))
        verts = rotate_rigid(verts, quaternion_to_matrix(q[None]), face.pivot)[0]
        if a == 0.0:  # on a keyframe the rotation is exactly the motion's Euler angles
            want = face.vertices(motion.values[k : k + 1])[0]
            np.testing.assert_allclose(verts, want, atol=1e-6)
            np.testing.assert_allclose(quaternion_to_matrix(q[None])[0], euler_to_matrix(*values[rot])[0], atol=1e-6)
        checks.append(
            {
                "t": t,
                "weights": values[shapes].astype(float).tolist(),
                "quaternion": q.tolist(),
                "vertexIndices": idx.tolist(),
                "vertices": verts[idx].astype(float).tolist(),
            }
        )
    return {
        "targetNames": list(ARKIT_BLENDSHAPES),
        "headNode": "head",
        "tolerance": {"weights": 1e-4, "quaternion": 1e-4, "vertices": 1e-5},
        "checks": checks,
    }


def test_builtin_glb_plays_in_threejs(tmp_path, three):
    node, three_dir = three
    face = BuiltinFace.create()
    motion = talking_motion(40, fps=25.0, seed=3)  # weights in [0, 1], head angles within ±0.2 rad
    glb = tmp_path / "face.glb"
    write_glb(glb, face, motion)
    times = [0.0, 0.2, 0.5 / 25, 7.37 / 25, 0.84, 21.5 / 25, 39 / 25]  # keyframes, between keyframes, the end
    (tmp_path / "expected.json").write_text(json.dumps(_expected(face, motion, times)))
    res = subprocess.run(
        [node, str(SCRIPT), str(three_dir), str(glb), str(tmp_path / "expected.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads(res.stdout)
    assert summary["failures"] == [] and summary["targets"] == 52 and summary["checks"] == len(times)
    assert summary["duration"] == pytest.approx(39 / 25, abs=1e-6)
    assert len(summary["tracks"]) == 2 and any(t.endswith(".quaternion") for t in summary["tracks"])
    assert summary["maxError"]["weights"] <= 1e-4 and summary["maxError"]["quaternion"] <= 1e-4
    assert summary["maxError"]["vertices"] <= 1e-5
