"""Small in-memory face models for the face-layer tests (no asset files needed)."""

from __future__ import annotations

import numpy as np

from avitalk.face.linear import apply_blendshapes, euler_to_matrix, rotate_rigid
from avitalk.spaces import ARKIT52, ARKIT_BLENDSHAPES, FLAME, HEAD_ROTATIONS
from avitalk.types import Motion, MotionSpace


def icosphere(subdivisions: int = 3, radius: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``(V, 3)`` float32 vertices and ``(F, 3)`` int32 counter-clockwise (outward) triangles."""
    t = (1 + 5**0.5) / 2
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
             (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]  # fmt: skip
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
             (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5),
             (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]  # fmt: skip
    v = [np.array(p, float) / np.linalg.norm(p) for p in verts]
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int, cache: dict[tuple[int, int], int] = cache) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = v[a] + v[b]
                v.append(m / np.linalg.norm(m))
                cache[key] = len(v) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return (np.array(v) * radius).astype(np.float32), np.array(faces, dtype=np.int32)


class SphereFace:
    """A linear ``arkit52`` "face": an icosphere with smooth blendshapes and a neck pivot.

    ``jawOpen`` drops the lower front, ``mouthSmileLeft`` pulls the +X side up, ``eyeBlinkLeft``
    dents the upper +X front, the other channels have small smooth random offsets.
    """

    name = "sphere"
    space: MotionSpace = ARKIT52

    def __init__(self, subdivisions: int = 3, colors: bool = False) -> None:
        self._neutral, self._faces = icosphere(subdivisions)
        v = self._neutral
        n_v = v.shape[0]
        x, y, z = v[:, 0] / 0.1, v[:, 1] / 0.1, v[:, 2] / 0.1
        rng = np.random.default_rng(1)
        basis = np.zeros((len(ARKIT_BLENDSHAPES), n_v, 3), np.float32)
        for k in range(len(ARKIT_BLENDSHAPES)):
            c = rng.normal(size=3)
            basis[k] = 0.004 * np.outer(np.exp(-((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - 1) ** 2)), rng.normal(size=3))
        front = np.clip(z, 0, None)
        basis[ARKIT52.index("jawOpen"), :, 1] = -0.03 * np.clip(-y, 0, None) * front
        basis[ARKIT52.index("mouthSmileLeft"), :, 1] = 0.02 * np.clip(x, 0, None) * np.clip(-y, 0, None) * front
        basis[ARKIT52.index("eyeBlinkLeft"), :, 2] = -0.02 * np.clip(x, 0, None) * np.clip(y, 0, None) * front
        self._basis = basis
        self.pivot = np.array([0.0, -0.08, -0.02], np.float32)
        self.regions = {"lips": np.flatnonzero(y < -0.5), "upper_face": np.flatnonzero(y > 0), "eyes": np.array([0])}
        if colors:
            self.vertex_colors = np.stack([0.5 + 0.4 * x, 0.5 + 0.4 * y, 0.5 + 0.4 * z], 1).astype(np.float32)

    @property
    def neutral(self) -> np.ndarray:
        return self._neutral

    @property
    def faces(self) -> np.ndarray:
        return self._faces

    def vertices(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, np.float32)
        verts = apply_blendshapes(self._neutral, self._basis, values[:, : len(ARKIT_BLENDSHAPES)])
        rot = [ARKIT52.index(c) for c in HEAD_ROTATIONS]
        r = euler_to_matrix(values[:, rot[0]], values[:, rot[1]], values[:, rot[2]])
        return rotate_rigid(verts, r, self.pivot)


class JawFace:
    """A ``flame``-space sphere: linear expressions plus a jaw *rotation* (not linear): needs a bake."""

    name = "jawsphere"
    space: MotionSpace = FLAME

    def __init__(self) -> None:
        self._neutral, self._faces = icosphere(2)
        rng = np.random.default_rng(2)
        n_v = self._neutral.shape[0]
        self._basis = (0.002 * rng.normal(size=(50, n_v, 3))).astype(np.float32)
        self._lower = self._neutral[:, 1] < 0
        self.regions = {"lips": np.flatnonzero(self._lower), "upper_face": np.flatnonzero(~self._lower), "eyes": []}

    @property
    def neutral(self) -> np.ndarray:
        return self._neutral

    @property
    def faces(self) -> np.ndarray:
        return self._faces

    def vertices(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, np.float32)
        verts = apply_blendshapes(self._neutral, self._basis, values[:, :50])
        jaw = euler_to_matrix(values[:, 50], values[:, 51], values[:, 52])  # (T, 3, 3)
        rotated = rotate_rigid(verts, jaw, np.zeros(3, np.float32))
        return np.where(self._lower[None, :, None], rotated, verts).astype(np.float32)


def talking_motion(n_frames: int = 50, fps: float = 25.0, space: MotionSpace = ARKIT52, seed: int = 0) -> Motion:
    """A smooth, plausible motion: weights in [0, 1], head angles within ±0.2 rad."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames)[:, None] / fps
    freq = rng.uniform(0.3, 3.0, space.dim)
    phase = rng.uniform(0, 2 * np.pi, space.dim)
    values = 0.5 + 0.5 * np.sin(2 * np.pi * freq * t + phase)
    rad = np.array([u == "rad" for u in space.units])
    values[:, rad] = 0.2 * np.sin(2 * np.pi * freq[rad] * t + phase[rad])
    return Motion(values=values.astype(np.float32), space=space, fps=fps)
