"""The built-in face: a human head generated in code, driven by the ``arkit52`` motion space.

No file is read or downloaded: :mod:`avitalk.face.builtin_mesh` sculpts the head (skin with eye
and mouth openings, eyeballs, mouth cavity, teeth, tongue) from a signed-distance function and
:mod:`avitalk.face.builtin_shapes` defines one blendshape per ARKit channel. Head pitch/yaw/roll
rotate the whole head rigidly about a neck pivot.

Usage::

    face = BuiltinFace.create()          # cached; ~0.5 s the first time in a process
    verts = face.vertices(values)        # (T, 55) arkit52 -> (T, V, 3) float32 metres
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from avitalk.face.builtin_mesh import (
    EYE_CENTER,
    MATERIALS,
    NECK_PIVOT,
    PART_EYEBALL,
    PART_MOUTH,
    PART_SKIN,
    PART_TEETH_LOW,
    PART_TEETH_UP,
    PART_TONGUE,
    Y_MOUTH,
    HeadMesh,
    build_head,
    vermilion,
)
from avitalk.face.builtin_shapes import build_basis
from avitalk.face.linear import apply_blendshapes, euler_to_matrix, rotate_rigid
from avitalk.spaces import ARKIT52, ARKIT_BLENDSHAPES, HEAD_ROTATIONS
from avitalk.types import MotionSpace

__all__ = ["MATERIALS", "BuiltinFace"]


class BuiltinFace:
    """A procedural human head implementing :class:`~avitalk.face.base.FaceModel` for ``arkit52``.

    Attributes:
        name: ``"builtin"``.
        space: :data:`~avitalk.spaces.ARKIT52`.
        channel_names: the 52 blendshape names (``basis`` order, Apple's order).
        basis: ``(52, V, 3)`` float32 per-channel vertex offsets (metres).
        pivot: ``(3,)`` float32 neck pivot of the head rotation.
        vertex_colors: ``(V, 3)`` float32 sRGB albedo in [0, 1].
        material_ids: ``(V,)`` uint8 indices into :attr:`materials`.
        materials: material names (``skin``, ``lips``, ``eye_white``, ``iris``, ``pupil``,
            ``teeth``, ``mouth_interior``, ``tongue``, ``hair``).
        part_ids: ``(V,)`` int8 mesh part (0 skin, 1 mouth cavity, 2 eye sockets, 3 eyeballs,
            4 upper teeth, 5 lower teeth, 6 tongue).
        landmarks: vertex index of named points: ``upper_lip``/``lower_lip`` (mid-mouth lip
            margins, coincident at rest), ``mouth_corner_left``/``_right``, ``upper_lid_left``/
            ``lower_lid_left`` (mid-fissure lid margins, likewise ``_right``), ``pupil_left``/
            ``_right``, ``nose_tip``, ``chin``.
    """

    name = "builtin"
    closed = True  # every part is a closed, consistently oriented surface: renderers may cull back faces
    space: MotionSpace = ARKIT52
    materials: tuple[str, ...] = MATERIALS
    channel_names: tuple[str, ...] = ARKIT_BLENDSHAPES

    def __init__(self, mesh: HeadMesh, basis: np.ndarray) -> None:
        self._neutral = np.ascontiguousarray(mesh.vertices, dtype=np.float32)
        self._faces = np.ascontiguousarray(mesh.faces, dtype=np.int32)
        self.basis = np.ascontiguousarray(basis, dtype=np.float32)
        self.pivot = NECK_PIVOT.astype(np.float32)
        self.vertex_colors = mesh.colors.astype(np.float32)
        self.material_ids = mesh.material.astype(np.uint8)
        self.part_ids = mesh.part.astype(np.int8)
        for a in (self._neutral, self._faces, self.basis, self.vertex_colors, self.material_ids, self.part_ids):
            a.flags.writeable = False
        self._regions = MappingProxyType(_regions(mesh, basis))
        self.landmarks: Mapping[str, int] = MappingProxyType(_landmarks(mesh))
        self._rot = [ARKIT52.index(c) for c in HEAD_ROTATIONS]

    @classmethod
    def create(cls) -> BuiltinFace:
        """The built-in face (built once per process, then shared; it is immutable)."""
        return _create()

    @property
    def neutral(self) -> np.ndarray:
        """``(V, 3)`` float32 neutral vertices (metres)."""
        return self._neutral

    @property
    def faces(self) -> np.ndarray:
        """``(F, 3)`` int32 counter-clockwise (outward) triangles."""
        return self._faces

    @property
    def regions(self) -> Mapping[str, np.ndarray]:
        """Vertex sets (int64): ``lips`` (red of the lips and inner lip roll), ``upper_face``
        (forehead, brows, lids, upper nose), ``eyes`` (eyeballs and lid margins), ``jaw`` (moves
        with the jaw), ``mouth_interior`` (cavity, teeth, tongue)."""
        return self._regions

    def blendshape_basis(self) -> tuple[tuple[str, ...], np.ndarray]:
        """``(names, (52, V, 3) offsets)``: one morph target per blendshape channel (for exporters)."""
        return self.channel_names, self.basis

    def vertices(self, values: np.ndarray) -> np.ndarray:
        """Pose the face.

        Args:
            values: ``(T, 55)`` ``arkit52`` coefficients: 52 blendshape weights, then head pitch,
                yaw and roll in radians.

        Returns:
            ``(T, V, 3)`` float32 vertices in metres.
        """
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != self.space.dim:
            raise ValueError(f"values must be (T, {self.space.dim}) {self.space.key}, got {values.shape}")
        verts = apply_blendshapes(self._neutral, self.basis, values[:, : len(ARKIT_BLENDSHAPES)])
        p, y, r = (values[:, i] for i in self._rot)
        if not (np.any(p) or np.any(y) or np.any(r)):
            return verts
        return rotate_rigid(verts, euler_to_matrix(p, y, r), self.pivot)


def _regions(m: HeadMesh, basis: np.ndarray) -> dict[str, np.ndarray]:
    v = m.vertices
    skin = m.part == PART_SKIN
    lips = (skin & (vermilion(v[:, 0], v[:, 1], m.mouth_side) > 0.5) & (v[:, 2] > 0.07)) | (
        (m.part == PART_MOUTH) & (m.ring == 1)
    )
    azimuth = np.degrees(np.abs(np.arctan2(v[:, 0], v[:, 2])))
    upper = skin & (v[:, 1] > EYE_CENTER[1] - 0.02) & (v[:, 1] < 0.085) & (v[:, 2] > 0.03) & (azimuth < 60)
    margins = skin & (m.lid_eye >= 0) & (m.lid_d < 0.004) & (np.abs(m.lid_s) < 1.1)
    eyes = (m.part == PART_EYEBALL) | margins
    jaw_shape = basis[ARKIT_BLENDSHAPES.index("jawOpen")]
    jaw = np.linalg.norm(jaw_shape, axis=1) > 0.5 * np.linalg.norm(jaw_shape, axis=1).max()
    interior = ((m.part == PART_MOUTH) & (m.ring >= 2)) | np.isin(m.part, [PART_TEETH_UP, PART_TEETH_LOW, PART_TONGUE])
    out = {"lips": lips, "upper_face": upper, "eyes": eyes, "jaw": jaw, "mouth_interior": interior}
    regions = {k: np.flatnonzero(s).astype(np.int64) for k, s in out.items()}
    for idx in regions.values():
        idx.flags.writeable = False
    return regions


def _landmarks(m: HeadMesh) -> dict[str, int]:
    v = m.vertices
    out: dict[str, int] = {}
    loop = m.extra["mouth_loop"]
    half = (len(loop) - 2) // 2  # loop = [corner, upper..., corner, lower (reversed)...]
    upper, lower = loop[1 : half + 1], loop[half + 2 :][::-1]
    mid = int(np.argmin(np.abs(v[upper, 0])))
    out["upper_lip"], out["lower_lip"] = int(upper[mid]), int(lower[mid])
    corners = (int(loop[0]), int(loop[half + 1]))
    out["mouth_corner_left"], out["mouth_corner_right"] = sorted(corners, key=lambda i: -v[i, 0])
    for k, side in enumerate(("left", "right")):
        loop = m.extra["eye_loops"][k]
        half = (len(loop) - 2) // 2
        upper, lower = loop[1 : half + 1], loop[half + 2 :][::-1]
        mid = int(np.argmin(np.abs(m.lid_s[upper])))
        out[f"upper_lid_{side}"], out[f"lower_lid_{side}"] = int(upper[mid]), int(lower[mid])
        out[f"pupil_{side}"] = int(m.extra["eyeballs"][k][0])
    skin = np.flatnonzero(m.part == PART_SKIN)
    out["nose_tip"] = int(skin[np.argmax(v[skin, 2])])
    front = skin[(np.abs(v[skin, 0]) < 0.003) & (v[skin, 1] < Y_MOUTH - 0.03)]
    out["chin"] = int(front[np.argmax(v[front, 2])])
    return out


@functools.cache
def _create() -> BuiltinFace:
    mesh = build_head()
    return BuiltinFace(mesh, build_basis(mesh))
