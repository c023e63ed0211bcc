"""glTF 2.0 binary (GLB) export: one morph target per blendshape channel plus a head-rotation node.

What engines read (Blender, three.js, Unreal's and Unity's glTF importers):
- one mesh, one primitive (``POSITION``, ``NORMAL``, optional ``COLOR_0``, ``uint32`` indices), one
  morph target (``POSITION`` offsets) per blendshape channel, target names in
  ``mesh.extras.targetNames`` (the convention Blender and three.js use);
- one animation: a ``weights`` sampler over time (LINEAR) for all morph targets and, if the motion
  has head pitch/yaw/roll, a ``rotation`` sampler (unit quaternions ``x, y, z, w``) on a ``head``
  node placed at the face model's ``pivot``; the mesh hangs under it translated by ``-pivot``, so a
  vertex moves exactly like :func:`avitalk.face.linear.rotate_rigid` moves it.
- glTF axes are avitalk's: metres, +Y up, the face looking down +Z.

Where the blendshapes come from (:func:`linear_rig`):
1. the face model's optional ``blendshape_basis() -> (names, (K, V, 3) offsets)``;
2. otherwise the model is *probed*: each weight channel's offset is ``vertices(e_k) - vertices(0)``
   and linearity is checked on random combinations; head rotation must match ``rotate_rigid``
   about the model's ``pivot``;
3. models that are not linear in their channels (FLAME's jaw is skinned by LBS) are *baked*:
   the animated vertices are compressed by PCA into at most ``max_components`` morph targets
   (``pca00``...) whose weights reproduce the motion; the largest reconstruction error is stored
   in ``asset.extras.bakeMaxErrorMetres`` and returned.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from avitalk import __version__
from avitalk.errors import AvitalkError
from avitalk.face.base import FaceModel
from avitalk.face.linear import euler_to_matrix, rotate_rigid
from avitalk.face.raster import srgb_to_linear, vertex_normals
from avitalk.face.render import SKIN_TONE, face_colors
from avitalk.fsutil import atomic_path
from avitalk.types import Motion

HEAD_CHANNELS = ("headPitch", "headYaw", "headRoll")

_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_GLB_MAGIC, _JSON_CHUNK, _BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942


@dataclass(frozen=True)
class MorphRig:
    """A face expressed as morph targets (+ optional rigid head rotation).

    Attributes:
        neutral: ``(V, 3)`` float32 base mesh.
        names: ``(K,)`` morph target names.
        targets: ``(K, V, 3)`` float32 offsets from ``neutral``.
        weights: ``(T, K)`` float32 animation of the target weights.
        rotations: ``(T, 4)`` float32 head quaternions ``(x, y, z, w)`` or None.
        pivot: ``(3,)`` float32 head-rotation centre (used when ``rotations`` is set).
        bake_error: largest vertex error in metres of a PCA bake (None if the rig is exact).
    """

    neutral: np.ndarray
    names: tuple[str, ...]
    targets: np.ndarray
    weights: np.ndarray
    rotations: np.ndarray | None
    pivot: np.ndarray
    bake_error: float | None = None


def euler_to_quaternion(pitch: np.ndarray, yaw: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(T, 4)`` ``(x, y, z, w)`` of :func:`~avitalk.face.linear.euler_to_matrix`.

    ``R = R_yaw @ R_pitch @ R_roll`` becomes ``q = q_yaw * q_pitch * q_roll`` (Hamilton product);
    signs are made continuous over time so that interpolation takes the short way.
    """
    p, y, r = (np.asarray(a, dtype=np.float64) / 2 for a in (pitch, yaw, roll))
    zero = np.zeros_like(p)
    qx = np.stack([np.sin(p), zero, zero, np.cos(p)], -1)
    qy = np.stack([zero, np.sin(y), zero, np.cos(y)], -1)
    qz = np.stack([zero, zero, np.sin(r), np.cos(r)], -1)
    q = _qmul(_qmul(qy, qx), qz)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    for t in range(1, q.shape[0]):
        if np.dot(q[t], q[t - 1]) < 0:
            q[t] = -q[t]
    return q.astype(np.float32)


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ],
        -1,
    )


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """``(T, 4)`` ``(x, y, z, w)`` unit quaternions to ``(T, 3, 3)`` rotation matrices."""
    x, y, z, w = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    m = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        -1,
    )  # fmt: skip
    return m.reshape(-1, 3, 3).astype(np.float32)


def _probe_linear(face: FaceModel, tol: float) -> tuple[tuple[str, ...], np.ndarray, bool] | None:
    """Per-channel offsets of a model that is linear in its non-rotation channels, else None.

    Returns ``(names, (K, V, 3) offsets, has_head_rotation)``.
    """
    space = face.space
    head = all(c in space.channels for c in HEAD_CHANNELS) and getattr(face, "pivot", None) is not None
    rot_idx = [space.index(c) for c in HEAD_CHANNELS] if head else []
    lin_idx = [i for i, u in enumerate(space.units) if u != "rad"]
    other_rad = [i for i, u in enumerate(space.units) if u == "rad" and i not in rot_idx]
    if other_rad:
        return None  # e.g. FLAME jaw pose: skinned, not linear
    d = space.dim
    probe = np.zeros((1 + len(lin_idx), d), np.float32)
    for row, i in enumerate(lin_idx, start=1):
        probe[row, i] = 1.0
    verts = face.vertices(probe)  # (1+K, V, 3)
    base = verts[0]
    offsets = verts[1:] - base  # (K, V, 3)
    rng = np.random.default_rng(0)
    check = np.zeros((3, d), np.float32)
    check[:, lin_idx] = rng.uniform(-0.5, 1.0, (3, len(lin_idx)))
    if head:
        check[:, rot_idx] = rng.uniform(-0.3, 0.3, (3, 3))
    got = face.vertices(check)
    want = base + np.einsum("tk,kvc->tvc", check[:, lin_idx], offsets)
    if head:
        r = euler_to_matrix(check[:, rot_idx[0]], check[:, rot_idx[1]], check[:, rot_idx[2]])
        want = rotate_rigid(want, r, np.asarray(face.pivot, np.float32))
    scale = max(float(np.abs(offsets).max(initial=0.0)), 1e-3)
    if float(np.abs(got - want).max()) > tol * scale:
        return None
    names = tuple(space.channels[i] for i in lin_idx)
    return names, offsets.astype(np.float32), head


def linear_rig(face: FaceModel, motion: Motion, *, tol: float = 1e-4, max_components: int = 64) -> MorphRig:
    """Express ``motion`` on ``face`` as morph-target weights (+ head rotation), see module docs."""
    face.space.require_same(motion.space, "motion")
    space = face.space
    basis_fn = getattr(face, "blendshape_basis", None)
    found: tuple[tuple[str, ...], np.ndarray, bool] | None = None
    if callable(basis_fn):
        names, offsets = basis_fn()
        head = all(c in space.channels for c in HEAD_CHANNELS) and getattr(face, "pivot", None) is not None
        found = (tuple(names), np.asarray(offsets, np.float32), head)
    else:
        found = _probe_linear(face, tol)
    if found is None:
        return bake_rig(face, motion, max_components=max_components)
    names, offsets, head = found
    weights = motion.values[:, [space.index(n) for n in names]].astype(np.float32)
    rotations = None
    pivot = np.asarray(getattr(face, "pivot", np.zeros(3)), np.float32)
    if head:
        p, y, r = (motion.values[:, space.index(c)] for c in HEAD_CHANNELS)
        rotations = euler_to_quaternion(p, y, r)
    neutral = face.vertices(np.zeros((1, space.dim), np.float32))[0]
    return MorphRig(neutral, names, offsets, weights, rotations, pivot)


def bake_rig(face: FaceModel, motion: Motion, *, max_components: int = 64, max_samples: int = 512) -> MorphRig:
    """PCA-bake any face model's animation into at most ``max_components`` morph targets.

    The basis is fitted on up to ``max_samples`` evenly spaced frames; all frames are then
    projected chunk by chunk (memory stays flat), and the largest error over all frames is kept.
    """
    neutral = face.vertices(np.zeros((1, face.space.dim), np.float32))[0]
    n_v = neutral.shape[0]
    idx = np.unique(np.linspace(0, motion.n_frames - 1, min(max_samples, motion.n_frames)).round().astype(int))
    x = (face.vertices(motion.values[idx].astype(np.float32)) - neutral).reshape(len(idx), -1).astype(np.float64)
    gram = x @ x.T  # (N, N)
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
    total = float(evals.sum())
    keep = [k for k in range(min(max_components, len(evals))) if total > 0 and evals[k] > 1e-12 * total]
    comps = np.zeros((max(1, len(keep)), n_v * 3))
    for j, k in enumerate(keep):
        comps[j] = x.T @ evecs[:, k] / np.sqrt(evals[k])  # unit-norm principal directions
    weights = np.empty((motion.n_frames, comps.shape[0]), np.float32)
    err = 0.0
    t = 0
    for v in _pose_chunks(face, motion):
        d = (v - neutral).reshape(v.shape[0], -1).astype(np.float64)
        w = d @ comps.T
        weights[t : t + len(v)] = w
        err = max(err, float(np.abs(w @ comps - d).max(initial=0.0)))
        t += len(v)
    names = tuple(f"pca{j:02d}" for j in range(comps.shape[0]))
    targets = comps.reshape(-1, n_v, 3).astype(np.float32)
    return MorphRig(neutral, names, targets, weights, None, np.zeros(3, np.float32), bake_error=err)


def _pose_chunks(face: FaceModel, motion: Motion, chunk: int = 256) -> Iterator[np.ndarray]:
    """``(t, V, 3)`` vertex blocks of ``motion`` on ``face``, ``chunk`` frames at a time."""
    for start in range(0, motion.n_frames, chunk):
        yield face.vertices(np.ascontiguousarray(motion.values[start : start + chunk], dtype=np.float32))


class _Bin:
    """Accumulates the GLB binary chunk and the bufferViews/accessors that point into it."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.length = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, array: np.ndarray, type_: str, *, target: int | None = None, minmax: bool = False) -> int:
        data = np.ascontiguousarray(array)
        comp = _UINT32 if data.dtype == np.uint32 else _FLOAT
        if comp == _FLOAT:
            data = data.astype(np.float32, copy=False)
        raw = data.tobytes()
        view: dict = {"buffer": 0, "byteOffset": self.length, "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.parts.append(raw)
        self.length += len(raw)
        pad = (-self.length) % 4
        if pad:
            self.parts.append(b"\0" * pad)
            self.length += pad
        self.views.append(view)
        n_comp = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[type_]
        acc: dict = {"bufferView": len(self.views) - 1, "componentType": comp, "count": data.size // n_comp}
        acc["type"] = type_
        if minmax:
            flat = data.reshape(-1, n_comp)
            acc["min"] = [float(v) for v in flat.min(axis=0)]
            acc["max"] = [float(v) for v in flat.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def write_glb(path: str | os.PathLike[str], face: FaceModel, motion: Motion, *, max_components: int = 64) -> MorphRig:
    """Write ``motion`` on ``face`` as an animated GLB (see module docs), atomically.

    Returns:
        The :class:`MorphRig` written (``bake_error`` tells whether it is exact).
    """
    rig = linear_rig(face, motion, max_components=max_components)
    faces = np.ascontiguousarray(face.faces, dtype=np.uint32)
    if motion.n_frames < 1:
        raise AvitalkError("motion has no frames; nothing to export")
    b = _Bin()
    normals = np.zeros_like(rig.neutral)
    vertex_normals(rig.neutral, faces.astype(np.int32), normals)
    attributes = {
        "POSITION": b.add(rig.neutral, "VEC3", target=_ARRAY_BUFFER, minmax=True),
        "NORMAL": b.add(_safe_normals(normals), "VEC3", target=_ARRAY_BUFFER),
    }
    colors = face_colors(face)
    if colors is not None and colors.shape == rig.neutral.shape:
        attributes["COLOR_0"] = b.add(srgb_to_linear(colors), "VEC3", target=_ARRAY_BUFFER)
    indices = b.add(faces.reshape(-1), "SCALAR", target=_ELEMENT_ARRAY_BUFFER)
    targets = [{"POSITION": b.add(t, "VEC3", target=_ARRAY_BUFFER, minmax=True)} for t in rig.targets]
    times = np.arange(motion.n_frames, dtype=np.float64) / motion.fps
    t_acc = b.add(times.astype(np.float32), "SCALAR", minmax=True)
    samplers = [{"input": t_acc, "output": b.add(rig.weights.reshape(-1), "SCALAR"), "interpolation": "LINEAR"}]
    names = list(rig.names)
    skin = srgb_to_linear(np.array(SKIN_TONE)).tolist()
    mesh = {
        "name": getattr(face, "name", "face"),
        "primitives": [{"attributes": attributes, "indices": indices, "material": 0, "mode": 4, "targets": targets}],
        "weights": [0.0] * len(names),
        "extras": {"targetNames": names},
    }
    if rig.rotations is not None:
        pivot = [float(v) for v in rig.pivot]
        nodes = [
            {"name": "head", "translation": pivot, "children": [1]},
            {"name": "face", "mesh": 0, "translation": [-v for v in pivot]},
        ]
        samplers.append({"input": t_acc, "output": b.add(rig.rotations, "VEC4"), "interpolation": "LINEAR"})
        channels = [
            {"sampler": 0, "target": {"node": 1, "path": "weights"}},
            {"sampler": 1, "target": {"node": 0, "path": "rotation"}},
        ]
    else:
        nodes = [{"name": "face", "mesh": 0}]
        channels = [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]
    asset: dict = {"version": "2.0", "generator": f"avitalk {__version__}"}
    asset["extras"] = {"motionSpace": motion.space.key, "fps": motion.fps}
    if rig.bake_error is not None:
        asset["extras"]["bakeMaxErrorMetres"] = rig.bake_error
    gltf = {
        "asset": asset,
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": nodes,
        "meshes": [mesh],
        "materials": [
            {
                "name": "skin",
                "pbrMetallicRoughness": {
                    "baseColorFactor": [*skin, 1.0],
                    "metallicFactor": 0.0,
                    "roughnessFactor": 0.6,
                },
                "doubleSided": True,
            }
        ],
        "animations": [{"name": "avitalk", "samplers": samplers, "channels": channels}],
        "buffers": [{"byteLength": b.length}],
        "bufferViews": b.views,
        "accessors": b.accessors,
    }
    payload = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    payload += b" " * ((-len(payload)) % 4)
    binary = b"".join(b.parts)
    total = 12 + 8 + len(payload) + 8 + len(binary)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<III", _GLB_MAGIC, 2, total))
        f.write(struct.pack("<II", len(payload), _JSON_CHUNK))
        f.write(payload)
        f.write(struct.pack("<II", len(binary), _BIN_CHUNK))
        f.write(binary)
    return rig


def _safe_normals(n: np.ndarray) -> np.ndarray:
    """Unit normals; vertices without faces get +Z (glTF requires unit length)."""
    n = n.copy()
    zero = np.linalg.norm(n, axis=1) < 0.5
    n[zero] = (0.0, 0.0, 1.0)
    return n


def read_glb(path: str | os.PathLike[str]) -> tuple[dict, bytes]:
    """Split a GLB file into its JSON document and binary chunk (for tests and tools)."""
    data = open(path, "rb").read()
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != _GLB_MAGIC or version != 2 or total != len(data):
        raise AvitalkError(f"{path}: not a glTF 2.0 binary file")
    jlen, _ = struct.unpack_from("<II", data, 12)
    doc = json.loads(data[20 : 20 + jlen])
    off = 20 + jlen
    blen, _ = struct.unpack_from("<II", data, off)
    return doc, data[off + 8 : off + 8 + blen]


__all__ = [
    "MorphRig",
    "bake_rig",
    "euler_to_quaternion",
    "linear_rig",
    "quaternion_to_matrix",
    "read_glb",
    "write_glb",
]
