"""ICT-FaceKit face model (MIT), driven by ``arkit52`` motion.

Reads a local checkout of github.com/ICT-VGL/ICT-FaceKit: ``FaceXModel/generic_neutral_mesh.obj``
(26,719 vertices, 26,384 polygons: 25,836 quads + 548 triangles, centimetres), one OBJ per
expression with the same vertex order, and ``FaceXModel/vertex_indices.json`` (68 iBUG landmark
vertices and fitting sets). Each expression OBJ holds the fully deformed mesh; its difference from
the neutral mesh is the blendshape.

Channel mapping (``arkit52`` -> ICT shape files): ARKit ``...Left``/``...Right`` is ICT ``..._L``/
``..._R`` (both mean the subject's own left/right; ICT ``_L`` shapes move the +X side, which is the
subject's left for a face looking down +Z, as in ARKit). Names without a side are identical
(``jawOpen``, ``mouthFunnel`` ...), and so are ``jawLeft``/``jawRight``/``mouthLeft``/``mouthRight``,
where the side word is the direction of motion (towards the subject's left = +X in both). Two
ARKit shapes are symmetric but split in ICT and are the sum of both halves: ``browInnerUp =
browInnerUp_L + browInnerUp_R`` and ``cheekPuff = cheekPuff_L + cheekPuff_R``. ICT has no tongue
shape: ``tongueOut`` contributes nothing. ICT's extra shapes ``cheekRaiser_L/R`` and
``PupilDilate_L/R`` have no ARKit channel and are not read. :data:`ARKIT_TO_ICT` is the full table.

Head rotation (``headPitch``/``headYaw``/``headRoll``, radians, :func:`avitalk.face.linear.
euler_to_matrix` convention) rotates the whole mesh rigidly about :data:`NECK_PIVOT`, a point at
the top of the neck behind the jaw line, read off the generic neutral head: x = 0, 7 cm below and
1.5 cm behind the ICT origin (the origin lies inside the skull at the height of the nose tip, 13 cm
behind it; the neck spans y = -7 .. -13 cm with its centre at z = -1 .. -2 cm).

Vertices: ``face_only=True`` keeps the README's "Face" geometry, vertices 0..9408 (face, forehead
and front scalp, ears; no back of head, mouth socket, teeth, eyeballs or lashes) and the triangles
whose three vertices lie in it; ``face_only=False`` keeps the full head. The face-area vertices come
first in both, so :attr:`ICTFace.regions` and :attr:`ICTFace.landmarks` are the same index sets in
both modes.

Regions (face-area vertices, from the iBUG-68 landmarks of ``vertex_indices.json``, projected on
the frontal XY plane of the neutral mesh):
- ``lips``: inside the outer lip contour (landmarks 48-59) enlarged by 10 % about its centroid;
- ``eyes``: inside either eye contour (landmarks 36-41, 42-47) scaled about its centre by 1.4
  horizontally and 2.5 vertically: both eyelids (97 % of the vertices that ``eyeBlink`` moves by
  more than 30 % of its maximum);
- ``upper_face``: at or above the height of the mid nose bridge (landmark 29): forehead, brows, eyes.

Parsing the 54 OBJ files takes seconds, so what is parsed is cached as an uncompressed ``.npz``
(no pickle) under ``$AVITALK_CACHE`` (default ``~/.cache/avitalk``) in ``face/``, keyed by a hash of
the source files' names, sizes and modification times, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np

from avitalk.errors import AvitalkError
from avitalk.face.linear import apply_blendshapes, euler_to_matrix, rotate_rigid
from avitalk.fsutil import atomic_path
from avitalk.spaces import ARKIT52, ARKIT_BLENDSHAPES, HEAD_ROTATIONS
from avitalk.types import MotionSpace

log = logging.getLogger(__name__)

#: Number of vertices of the ICT "Face" geometry (vertex indices 0..9408).
FACE_AREA_VERTICES = 9409
#: Vertex count of the ICT-FaceKit generic head.
FULL_VERTICES = 26719
#: Pivot of the rigid head rotation, metres in ICT coordinates (top of the neck, behind the jaw line).
NECK_PIVOT = np.array([0.0, -0.07, -0.015], dtype=np.float32)
#: Source units are centimetres.
CM = 0.01
#: Bump when the cache layout or the parsing changes.
CACHE_FORMAT = 1

NEUTRAL_FILE = "generic_neutral_mesh.obj"
INDICES_FILE = "vertex_indices.json"
_SUMMED = {"browInnerUp": ("browInnerUp_L", "browInnerUp_R"), "cheekPuff": ("cheekPuff_L", "cheekPuff_R")}
_MISSING = {"tongueOut": ()}
_DIRECTIONS = {"jawLeft", "jawRight", "mouthLeft", "mouthRight"}  # a direction of motion, not a side


def _ict_shapes_for(arkit_name: str) -> tuple[str, ...]:
    """ICT shape file stems (without ``.obj``) whose deltas add up to one ARKit blendshape."""
    if arkit_name in _SUMMED:
        return _SUMMED[arkit_name]
    if arkit_name in _MISSING:
        return _MISSING[arkit_name]
    if arkit_name in _DIRECTIONS:
        return (arkit_name,)
    if arkit_name.endswith("Left"):
        return (arkit_name[: -len("Left")] + "_L",)
    if arkit_name.endswith("Right"):
        return (arkit_name[: -len("Right")] + "_R",)
    return (arkit_name,)


#: ``arkit52`` blendshape name -> ICT shape names summed for it (empty: no ICT shape).
ARKIT_TO_ICT: Mapping[str, tuple[str, ...]] = MappingProxyType({n: _ict_shapes_for(n) for n in ARKIT_BLENDSHAPES})
#: The ICT expression files read, in a fixed order.
ICT_SHAPES: tuple[str, ...] = tuple(sorted({s for v in ARKIT_TO_ICT.values() for s in v}))


def default_cache_dir() -> Path:
    """``$AVITALK_CACHE`` if set, else ``~/.cache/avitalk``."""
    env = os.environ.get("AVITALK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "avitalk"


class ICTFace:
    """ICT-FaceKit generic face posed by ``arkit52`` coefficients (implements ``FaceModel``).

    Attributes:
        name: ``"ict-facekit"``.
        space: :data:`avitalk.spaces.ARKIT52`.
        face_only: whether only the face area (vertices 0..9408) is kept.
        landmarks: ``(68,)`` int64 iBUG-68 landmark vertex indices.
        pivot: ``(3,)`` float32 head-rotation pivot in metres.
        channel_names: the 52 blendshape names (Apple's order).
        basis: ``(52, V, 3)`` float32 read-only per-channel offsets (tongueOut's row is zero), e.g. for
            a lip-vertex loss or exporters.
    """

    name = "ict-facekit"
    space: MotionSpace = ARKIT52
    channel_names: tuple[str, ...] = ARKIT_BLENDSHAPES

    def __init__(
        self,
        neutral: np.ndarray,
        faces: np.ndarray,
        basis: np.ndarray,
        landmarks: np.ndarray,
        *,
        face_only: bool,
        pivot: np.ndarray = NECK_PIVOT,
    ) -> None:
        """Build from parsed arrays (use :meth:`load` for a checkout on disk).

        Args:
            neutral: ``(V, 3)`` float32 neutral vertices, metres.
            faces: ``(F, 3)`` int32 triangles.
            basis: ``(52, V, 3)`` float32 per-channel vertex offsets, metres, in ``arkit52`` order.
            landmarks: ``(68,)`` iBUG-68 landmark vertex indices (all in the face area).
            face_only: recorded as :attr:`face_only`.
            pivot: ``(3,)`` head-rotation pivot, metres.
        """
        n_v = neutral.shape[0]
        if basis.shape != (len(ARKIT_BLENDSHAPES), n_v, 3):
            raise ValueError(f"basis must be ({len(ARKIT_BLENDSHAPES)}, {n_v}, 3), got {basis.shape}")
        self._neutral = np.ascontiguousarray(neutral, dtype=np.float32)
        self._faces = np.ascontiguousarray(faces, dtype=np.int32)
        self.basis = np.ascontiguousarray(basis, dtype=np.float32)
        self.basis.flags.writeable = False
        active = np.flatnonzero(np.any(basis != 0, axis=(1, 2)))  # channels with a shape (not tongueOut)
        self._active = active
        self._basis = np.ascontiguousarray(basis[active], dtype=np.float32)  # (K, V, 3)
        self.landmarks = np.asarray(landmarks, dtype=np.int64)
        self.face_only = face_only
        self.pivot = np.asarray(pivot, dtype=np.float32)
        self._regions = MappingProxyType(_regions_from_landmarks(self._neutral, self.landmarks))
        self._rot = [ARKIT52.index(c) for c in HEAD_ROTATIONS]

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        face_only: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
    ) -> ICTFace:
        """Load the ICT-FaceKit generic model from a checkout.

        Args:
            path: the repository root (holding ``FaceXModel/``) or the ``FaceXModel`` directory itself.
            face_only: keep only the face area (vertices 0..9408, the triangles inside it); ``False``
                keeps the full head with mouth socket, teeth, eyeballs and lashes.
            cache_dir: cache root (default :func:`default_cache_dir`); the parsed model is stored in
                ``<cache_dir>/face/ict-facekit-<key>.npz``.
            use_cache: read and write the cache.

        Raises:
            AvitalkError: a file is missing or malformed (the message names it and what was expected).
        """
        src = _model_dir(Path(path))
        parsed = _load_parsed(src, Path(cache_dir) if cache_dir is not None else default_cache_dir(), use_cache)
        neutral, tris, names, deltas, landmarks = (
            parsed["neutral"],
            parsed["triangles"],
            [str(s) for s in parsed["shape_names"]],
            parsed["deltas"],
            parsed["landmarks"],
        )
        index = {s: i for i, s in enumerate(names)}
        basis = np.zeros((len(ARKIT_BLENDSHAPES), neutral.shape[0], 3), dtype=np.float32)
        for c, arkit in enumerate(ARKIT_BLENDSHAPES):
            for s in ARKIT_TO_ICT[arkit]:
                basis[c] += deltas[index[s]]
        if face_only:
            n = FACE_AREA_VERTICES
            neutral, basis = neutral[:n], basis[:, :n]
            tris = tris[np.all(tris < n, axis=1)]
        return cls(neutral, tris, basis, landmarks, face_only=face_only)

    def blendshape_basis(self) -> tuple[tuple[str, ...], np.ndarray]:
        """``(names, (52, V, 3) offsets)``: one morph target per blendshape channel (for exporters)."""
        return self.channel_names, self.basis

    @property
    def neutral(self) -> np.ndarray:
        """``(V, 3)`` float32 neutral vertices, metres."""
        return self._neutral

    @property
    def faces(self) -> np.ndarray:
        """``(F, 3)`` int32 triangles (each ICT quad ``a b c d`` split into ``a b c`` and ``a c d``)."""
        return self._faces

    @property
    def regions(self) -> Mapping[str, np.ndarray]:
        """``lips``, ``upper_face``, ``eyes``: int64 face-area vertex indices (see the module docstring)."""
        return self._regions

    def vertices(self, values: np.ndarray) -> np.ndarray:
        """Pose the face.

        Args:
            values: ``(T, 55)`` ``arkit52`` coefficients (52 blendshape weights, then head pitch, yaw,
                roll in radians).

        Returns:
            ``(T, V, 3)`` float32 vertices, metres.
        """
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != self.space.dim:
            raise ValueError(f"{self.name} expects (T, {self.space.dim}) {self.space.key} values, got {values.shape}")
        verts = apply_blendshapes(self._neutral, self._basis, values[:, self._active])  # (T, V, 3)
        head = values[:, self._rot]  # (T, 3) pitch, yaw, roll
        if np.any(head != 0):
            verts = rotate_rigid(verts, euler_to_matrix(head[:, 0], head[:, 1], head[:, 2]), self.pivot)
        return verts


# --------------------------------------------------------------------------------------------
# Regions


def _inside_polygon(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test. ``poly (N, 2)``, ``pts (M, 2)`` -> ``(M,)`` bool."""
    x, y = pts[:, 0], pts[:, 1]
    inside = np.zeros(len(pts), dtype=bool)
    for i in range(len(poly)):
        (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % len(poly)]
        if y1 == y2:
            continue
        crosses = (y1 > y) != (y2 > y)
        inside ^= crosses & (x < (x2 - x1) * (y - y1) / (y2 - y1) + x1)
    return inside


def _grow(poly: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Scale a ``(N, 2)`` polygon about its vertex centroid by ``sx`` horizontally, ``sy`` vertically."""
    c = poly.mean(axis=0)
    return c + (poly - c) * np.array([sx, sy])


def _regions_from_landmarks(neutral: np.ndarray, landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Region vertex sets of the face area from iBUG-68 landmarks (see the module docstring)."""
    face = neutral[:FACE_AREA_VERTICES]
    xy = face[:, :2]
    lm = neutral[landmarks, :2]  # (68, 2)
    lips = _inside_polygon(_grow(lm[48:60], 1.1, 1.1), xy)
    eyes = _inside_polygon(_grow(lm[36:42], 1.4, 2.5), xy) | _inside_polygon(_grow(lm[42:48], 1.4, 2.5), xy)
    upper = face[:, 1] >= neutral[landmarks[29], 1]
    return {k: np.flatnonzero(m).astype(np.int64) for k, m in (("lips", lips), ("upper_face", upper), ("eyes", eyes))}


# --------------------------------------------------------------------------------------------
# Files and cache


def _model_dir(path: Path) -> Path:
    for cand in (path / "FaceXModel", path):
        if (cand / NEUTRAL_FILE).is_file():
            return cand
    raise AvitalkError(
        f"ICT-FaceKit not found: expected {path / 'FaceXModel' / NEUTRAL_FILE} "
        "(pass a checkout of github.com/ICT-VGL/ICT-FaceKit)"
    )


def _source_files(src: Path) -> list[Path]:
    files = [src / NEUTRAL_FILE, src / INDICES_FILE] + [src / f"{s}.obj" for s in ICT_SHAPES]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise AvitalkError(f"ICT-FaceKit in {src} is incomplete: missing {', '.join(missing[:5])}{more}")
    return files


def _cache_key(files: list[Path]) -> str:
    h = hashlib.sha256(f"ict-facekit-cache-v{CACHE_FORMAT}".encode())
    for f in files:
        st = f.stat()
        h.update(f"\0{f.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


_CACHE_KEYS = ("neutral", "triangles", "shape_names", "deltas", "landmarks")


def _load_parsed(src: Path, cache_root: Path, use_cache: bool) -> dict[str, np.ndarray]:
    files = _source_files(src)
    cache_file = cache_root / "face" / f"ict-facekit-{_cache_key(files)}.npz"
    if use_cache and cache_file.is_file():
        try:
            with np.load(cache_file, allow_pickle=False) as z:
                parsed = {k: z[k] for k in _CACHE_KEYS}
            if [str(s) for s in parsed["shape_names"]] == list(ICT_SHAPES):
                return parsed
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable ICT-FaceKit cache %s: %s", cache_file, e)
    parsed = _parse(src)
    if use_cache:
        try:
            with atomic_path(cache_file) as tmp:
                np.savez(tmp, **parsed)
        except OSError as e:
            log.warning("could not write ICT-FaceKit cache %s: %s", cache_file, e)
    return parsed


def _parse(src: Path) -> dict[str, np.ndarray]:
    """Parse the checkout: metres, triangles, per-shape deltas, landmarks."""
    text = _read(src / NEUTRAL_FILE)
    neutral = _obj_vertices(text, src / NEUTRAL_FILE)  # (V, 3) cm
    if neutral.shape[0] != FULL_VERTICES:
        raise AvitalkError(
            f"{src / NEUTRAL_FILE}: expected the ICT-FaceKit generic head with {FULL_VERTICES} vertices, "
            f"found {neutral.shape[0]}"
        )
    tris = _obj_triangles(text, src / NEUTRAL_FILE, neutral.shape[0])
    deltas = np.empty((len(ICT_SHAPES), neutral.shape[0], 3), dtype=np.float32)
    for i, s in enumerate(ICT_SHAPES):
        f = src / f"{s}.obj"
        v = _obj_vertices(_read(f), f)
        if v.shape != neutral.shape:
            raise AvitalkError(f"{f}: expected {neutral.shape[0]} vertices like {NEUTRAL_FILE}, found {v.shape[0]}")
        deltas[i] = (v - neutral) * CM
    return {
        "neutral": (neutral * CM).astype(np.float32),
        "triangles": tris,
        "shape_names": np.array(ICT_SHAPES),
        "deltas": deltas,
        "landmarks": _landmarks(src / INDICES_FILE),
    }


def _read(f: Path) -> bytes:
    try:
        return f.read_bytes()
    except OSError as e:
        raise AvitalkError(f"cannot read {f}: {e.strerror or e}") from None


def _obj_vertices(text: bytes, f: Path) -> np.ndarray:
    """``(V, 3)`` float64 positions of the ``v x y z`` lines of an OBJ file."""
    lines = [ln[2:] for ln in text.split(b"\n") if ln.startswith(b"v ")]
    if not lines:
        raise AvitalkError(f"{f}: expected an OBJ mesh with 'v x y z' vertex lines, found none")
    tokens = b" ".join(lines).split()
    if len(tokens) != 3 * len(lines):
        raise AvitalkError(f"{f}: malformed vertex lines (expected 'v x y z' with three numbers each)")
    try:
        v = np.array(tokens, dtype=np.float64).reshape(-1, 3)
    except ValueError:
        raise AvitalkError(f"{f}: malformed vertex lines (expected numbers after 'v')") from None
    if not np.all(np.isfinite(v)):
        raise AvitalkError(f"{f}: vertex coordinates must be finite")
    return v


def _obj_triangles(text: bytes, f: Path, n_vertices: int) -> np.ndarray:
    """``(F, 3)`` int32 triangles of the ``f`` lines (1-based ``v/vt/vn`` refs); quads become two triangles."""
    tris: list[tuple[int, ...]] = []
    try:
        for ln in text.split(b"\n"):
            if not ln.startswith(b"f "):
                continue
            idx = [int(t.split(b"/", 1)[0]) for t in ln[2:].split()]
            if len(idx) < 3:
                raise ValueError
            tris.extend((idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1))  # fan: a b c, a c d
    except ValueError:
        raise AvitalkError(f"{f}: malformed face line (expected 'f a b c [d]' with vertex indices)") from None
    if not tris:
        raise AvitalkError(f"{f}: expected polygon ('f') lines, found none")
    arr = np.array(tris, dtype=np.int64)
    arr = np.where(arr < 0, arr + n_vertices, arr - 1)  # OBJ: 1-based, negative = relative to the end
    if arr.min() < 0 or arr.max() >= n_vertices:
        raise AvitalkError(f"{f}: face references a vertex outside 1..{n_vertices}")
    return arr.astype(np.int32)


def _landmarks(f: Path) -> np.ndarray:
    try:
        data = json.loads(_read(f))
        lm = np.asarray(data["idx_to_landmark_verts"], dtype=np.int64)
    except (ValueError, KeyError, TypeError):
        raise AvitalkError(f"{f}: expected JSON with an 'idx_to_landmark_verts' list of 68 vertex indices") from None
    if lm.shape != (68,) or lm.min() < 0 or lm.max() >= FACE_AREA_VERTICES:
        raise AvitalkError(f"{f}: 'idx_to_landmark_verts' must hold 68 face-area vertex indices (0..9408)")
    return lm
