"""Animation exports: NPZ, OBJ/PLY sequences, glTF/GLB morph-target animation, ARKit CSV.

- ``npz``: the motion coefficients (:mod:`avitalk.motionio`); avitalk, numpy.
- ``obj`` / ``ply``: one mesh per frame, ``frame_000000.obj`` ... in a new directory; Blender (mesh
  sequence add-ons), MeshLab, Houdini.
- ``glb``: morph targets + weight/rotation animation (:mod:`avitalk.face.export_gltf`); Blender,
  three.js, Unreal, Unity (glTFast).
- ``csv``: Live Link Face layout, ``arkit52`` motions only; Unreal (Live Link / MetaHuman tools), Unity.

Every output is atomic: files go through :func:`avitalk.fsutil.atomic_path`; a sequence is
written into a temporary directory beside the target and renamed onto it at the end. An existing
non-empty output directory is an error (nothing is ever deleted from it).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from avitalk.errors import AvitalkError
from avitalk.face.base import FaceModel
from avitalk.face.export_gltf import MorphRig, write_glb
from avitalk.face.render import face_colors, pose_frames
from avitalk.fsutil import atomic_path
from avitalk.motionio import LIVE_LINK_BLENDSHAPES, LIVE_LINK_COLUMNS, LIVE_LINK_HEAD_SCALE, save_motion
from avitalk.spaces import ARKIT52, ARKIT_BLENDSHAPES
from avitalk.types import Motion

FORMATS = ("npz", "obj", "ply", "glb", "csv")
#: Formats that need a face model (the others export the coefficients only).
MESH_FORMATS = ("obj", "ply", "glb")


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; rename it onto ``target`` on success.

    Raises:
        AvitalkError: ``target`` exists and is a file or a non-empty directory.
    """
    target = Path(target)
    if target.exists():
        if not target.is_dir():
            raise AvitalkError(f"{target}: exists and is not a directory; expected a new output directory")
        if any(target.iterdir()):
            raise AvitalkError(f"{target}: output directory is not empty; choose a new or empty directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            target.rmdir()  # empty, checked above
        os.replace(tmp, target)
    finally:
        if tmp.exists():  # our own temporary directory, flat
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()


def frame_names(n_frames: int, suffix: str) -> list[str]:
    """``frame_000000.obj``...: zero-padded to at least 6 digits so names sort in frame order."""
    digits = max(6, len(str(max(n_frames - 1, 0))))
    return [f"frame_{t:0{digits}d}{suffix}" for t in range(n_frames)]


def _obj_bytes(vertices: np.ndarray, face_block: bytes) -> bytes:
    v = vertices.astype(np.float64).ravel()
    text = ("v %.6f %.6f %.6f\n" * vertices.shape[0]) % tuple(v)
    return b"# avitalk mesh frame (metres, +Y up)\n" + text.encode("ascii") + face_block


def write_obj_sequence(out_dir: str | os.PathLike[str], face: FaceModel, motion: Motion) -> list[Path]:
    """One Wavefront OBJ per frame (positions and triangles, 1-based) in a new directory."""
    faces = np.asarray(face.faces, dtype=np.int64) + 1
    face_block = (("f %d %d %d\n" * faces.shape[0]) % tuple(faces.ravel())).encode("ascii")
    names = frame_names(motion.n_frames, ".obj")
    with atomic_dir(out_dir) as tmp:
        for name, verts in zip(names, pose_frames(face, motion), strict=True):
            (tmp / name).write_bytes(_obj_bytes(verts, face_block))
    return [Path(out_dir) / n for n in names]


def write_ply_sequence(out_dir: str | os.PathLike[str], face: FaceModel, motion: Motion) -> list[Path]:
    """One binary little-endian PLY per frame (float xyz, uchar rgb if the face has colours)."""
    faces = np.asarray(face.faces, dtype=np.int32)
    colors = face_colors(face)
    n_v = face.neutral.shape[0]
    vtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    header = ["ply", "format binary_little_endian 1.0", "comment avitalk mesh frame (metres, +Y up)"]
    header += [f"element vertex {n_v}", "property float x", "property float y", "property float z"]
    if colors is not None:
        vtype += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {faces.shape[0]}", "property list uchar int vertex_indices", "end_header"]
    head = ("\n".join(header) + "\n").encode("ascii")
    ftab = np.empty(faces.shape[0], dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    ftab["n"] = 3
    ftab["idx"] = faces
    face_block = ftab.tobytes()
    vtab = np.empty(n_v, dtype=vtype)
    if colors is not None:
        rgb = np.clip(np.round(colors * 255), 0, 255).astype(np.uint8)
        vtab["red"], vtab["green"], vtab["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    names = frame_names(motion.n_frames, ".ply")
    with atomic_dir(out_dir) as tmp:
        for name, verts in zip(names, pose_frames(face, motion), strict=True):
            vtab["x"], vtab["y"], vtab["z"] = verts[:, 0], verts[:, 1], verts[:, 2]
            (tmp / name).write_bytes(head + vtab.tobytes() + face_block)
    return [Path(out_dir) / n for n in names]


def live_link_timecode(frame: int, fps: float) -> str:
    """``HH:MM:SS:FF.fff`` of ``frame`` at ``fps`` (FF counts frames within the second)."""
    secs = frame / fps
    whole = math.floor(secs + 1e-9)
    ff = round((secs - whole) * fps, 3)
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{int(ff):02d}.{round((ff - int(ff)) * 1000):03d}"


def write_arkit_csv(path: str | os.PathLike[str], motion: Motion) -> None:
    """Write an ``arkit52`` motion as a Live Link Face CSV, atomically.

    Columns: ``Timecode`` (``HH:MM:SS:FF.fff`` from 00:00:00:00 at the motion's fps),
    ``BlendShapeCount`` (61), the 52 blendshapes in Apple's order with capitalised names,
    ``HeadYaw, HeadPitch, HeadRoll`` normalised as Live Link Face writes them (``radians / pi``, i.e.
    degrees / 180), and the six eye rotations (written as 0: the
    eyes are driven by the ``eyeLook*`` blendshapes).
    """
    if motion.space != ARKIT52:
        raise AvitalkError(
            f"ARKit CSV export needs a motion in {ARKIT52.key}, got {motion.space.key}; "
            "export npz, obj, ply or glb instead"
        )
    shapes = motion.values[:, [ARKIT52.index(n) for n in ARKIT_BLENDSHAPES]]
    head = motion.values[:, [ARKIT52.index(c) for c in ("headYaw", "headPitch", "headRoll")]] / LIVE_LINK_HEAD_SCALE
    n_extra = len(LIVE_LINK_COLUMNS) - 2 - len(LIVE_LINK_BLENDSHAPES)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LIVE_LINK_COLUMNS)
    for t in range(motion.n_frames):
        row = [live_link_timecode(t, motion.fps), str(n_extra + len(LIVE_LINK_BLENDSHAPES))]
        row += [f"{x:.6f}" for x in shapes[t]] + [f"{x:.9f}" for x in head[t]] + ["0.000000"] * (n_extra - 3)
        w.writerow(row)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")


def export_motion(
    path: str | os.PathLike[str], motion: Motion, fmt: str, face: FaceModel | None = None
) -> MorphRig | None:
    """Export ``motion`` as ``fmt`` (one of :data:`FORMATS`) to ``path`` (a directory for obj/ply).

    Returns:
        The :class:`~avitalk.face.export_gltf.MorphRig` for ``glb`` (its ``bake_error`` says whether
        the morph targets are exact), else None.

    Raises:
        AvitalkError: unknown format, a mesh format without a face, a face in another motion space,
            a non-arkit52 motion for csv, a non-empty output directory.
    """
    if fmt not in FORMATS:
        raise AvitalkError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt in MESH_FORMATS:
        if face is None:
            raise AvitalkError(f"{fmt} export needs a face model (--face builtin|ict:PATH|flame:PATH)")
        face.space.require_same(motion.space, "motion")
    if fmt == "npz":
        save_motion(path, motion)
    elif fmt == "csv":
        write_arkit_csv(path, motion)
    elif fmt == "obj":
        write_obj_sequence(path, face, motion)  # type: ignore[arg-type]
    elif fmt == "ply":
        write_ply_sequence(path, face, motion)  # type: ignore[arg-type]
    else:
        return write_glb(path, face, motion)  # type: ignore[arg-type]
    return None


__all__ = [
    "FORMATS",
    "MESH_FORMATS",
    "atomic_dir",
    "export_motion",
    "frame_names",
    "live_link_timecode",
    "write_arkit_csv",
    "write_obj_sequence",
    "write_ply_sequence",
]
