"""CPU renderer figures (issue 4, face layer).

Prints, on this machine and in one run:
  1. frames/s of the full path (pose the face + render + shade) at 512x512 for the ICT-FaceKit face
     area and the built-in face (always available), with 1 and with 2 render threads, with the
     default camera (framing the face from brows to chin, so the face covers most of the frame);
  2. the same frames/s for rasterisation only (no shading) and for 2x supersampling;
  3. a baseline measured in the same run: a straightforward pure-numpy per-triangle renderer (bounding
     box, vectorised barycentrics per triangle, z-buffer, per-vertex lighting) on a few frames, and
     the speed-up ratio;
  4. peak memory while rendering a long motion (default 10 minutes at 25 fps) frame by frame,
     sampled at 10 %, 50 % and 100 %: it stays flat because frames are generated, not stored.

Usage:
    python bench/bench_render.py [--ict PATH] [--size 512] [--long-seconds 600] [--quick]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from avitalk.errors import AvitalkError
from avitalk.face import raster
from avitalk.face.render import MeshRenderer, RenderConfig, pose_frames, render_motion, renderer_for
from avitalk.types import Motion

DEFAULT_ICT = Path(__file__).resolve().parents[2] / "shared" / "assets" / "ICT-FaceKit"


def talking_motion(n_frames: int, space, fps: float = 25.0, seed: int = 0) -> Motion:
    """Smooth sinusoidal motion: weights in [0, 1], rotations within ±0.2 rad."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames, dtype=np.float32)[:, None] / fps
    freq, phase = rng.uniform(0.3, 3.0, space.dim), rng.uniform(0, 2 * np.pi, space.dim)
    values = 0.5 + 0.5 * np.sin(2 * np.pi * freq * t + phase)
    rad = np.array([u == "rad" for u in space.units])
    values[:, rad] = 0.2 * np.sin(2 * np.pi * freq[rad] * t + phase[rad])
    return Motion(values.astype(np.float32), space, fps)


def naive_render(renderer: MeshRenderer, verts: np.ndarray) -> np.ndarray:
    """Baseline: one numpy-vectorised bounding-box pass per triangle in a Python loop (Gouraud)."""
    faces = renderer.faces
    sx, sy, invz = renderer.camera.project(verts)
    normals = np.zeros_like(verts)
    fn = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    for k in range(3):
        np.add.at(normals, faces[:, k], fn)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    light = renderer._lights[0, :3]
    shade = renderer._albedo * (0.15 + np.clip(normals @ light, 0, None))[:, None]  # (V, 3) linear
    n = renderer._inner
    zbuf = np.zeros((n, n), np.float32)
    img = renderer._background.astype(np.float32) / 255
    for a, b, c in faces:
        xs, ys = sx[[a, b, c]], sy[[a, b, c]]
        x0, x1 = max(int(xs.min()), 0), min(int(np.ceil(xs.max())), n - 1)
        y0, y1 = max(int(ys.min()), 0), min(int(np.ceil(ys.max())), n - 1)
        if x0 > x1 or y0 > y1:
            continue
        area = (xs[1] - xs[0]) * (ys[2] - ys[0]) - (xs[2] - xs[0]) * (ys[1] - ys[0])
        if area == 0:
            continue
        px, py = np.meshgrid(np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5)
        l0 = ((xs[1] - px) * (ys[2] - py) - (xs[2] - px) * (ys[1] - py)) / area
        l1 = ((xs[2] - px) * (ys[0] - py) - (xs[0] - px) * (ys[2] - py)) / area
        l2 = 1 - l0 - l1
        iz = l0 * invz[a] + l1 * invz[b] + l2 * invz[c]
        win = zbuf[y0 : y1 + 1, x0 : x1 + 1]
        ok = (l0 >= 0) & (l1 >= 0) & (l2 >= 0) & (iz > win)
        if not ok.any():
            continue
        win[ok] = iz[ok]
        col = l0[..., None] * shade[a] + l1[..., None] * shade[b] + l2[..., None] * shade[c]
        img[y0 : y1 + 1, x0 : x1 + 1][ok] = col[ok] ** (1 / 2.2)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def raster_only(renderer: MeshRenderer, verts: np.ndarray) -> None:
    """Projection + normals + rasterisation, no shading pass."""
    zbuf, tri, bary, facing, normals, _ = renderer._buffers()
    sx, sy, invz = renderer.camera.project(verts)
    zbuf.fill(0)
    tri.fill(-1)
    raster.vertex_normals(verts, renderer.faces, normals)
    raster.rasterize(sx, sy, invz, renderer.faces, zbuf, tri, bary, facing, renderer.cull_back)


def fps_of(frames, n: int) -> float:
    t0 = time.perf_counter()
    count = sum(1 for _ in frames)
    assert count == n
    return n / (time.perf_counter() - t0)


def bench_face(label: str, face, size: int, n_frames: int, n_naive: int) -> None:
    motion = talking_motion(n_frames, face.space)
    n_v, n_f, framing = face.neutral.shape[0], face.faces.shape[0], RenderConfig().framing
    print(f"\n== {label}: {n_v} vertices, {n_f} triangles, {size}x{size}, default camera framing ({framing!r})")
    list(render_motion(face, talking_motion(4, face.space), RenderConfig(size=size)))  # JIT warm-up / cache load
    results = {}
    for workers in (1, 2):
        results[workers] = fps_of(render_motion(face, motion, RenderConfig(size=size, workers=workers)), n_frames)
        print(f"full path (pose+render+shade), {workers} thread(s): {results[workers]:7.1f} frames/s")
    ss = fps_of(render_motion(face, motion, RenderConfig(size=size, supersample=2, workers=2)), n_frames)
    print(f"2x supersampled, 2 threads:                 {ss:7.1f} frames/s")
    r = renderer_for(face, RenderConfig(size=size, workers=1))
    poses = list(pose_frames(face, motion))
    t0 = time.perf_counter()
    for v in poses:
        raster_only(r, v)
    print(f"rasterise only (no shading), 1 thread:      {n_frames / (time.perf_counter() - t0):7.1f} frames/s")
    t0 = time.perf_counter()
    for v in poses[:n_naive]:
        naive_render(r, v)
    naive = n_naive / (time.perf_counter() - t0)
    print(f"baseline: numpy per-triangle loop, {n_naive} frames: {naive:7.2f} frames/s")
    best = max(results.values())
    print(f"speed-up vs baseline: {best / naive:.0f}x   target >= 25 frames/s: {'met' if best >= 25 else 'NOT met'}")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_memory(face, size: int, seconds: float) -> None:
    n = int(seconds * 25)
    motion = talking_motion(n, face.space)
    print(f"\n== peak memory, {seconds:.0f} s motion ({n} frames) on {face.name}, {size}x{size}, counting frames")
    checkpoints = {max(1, n // 10): "10%", max(1, n // 2): "50%", n: "100%"}
    base = rss_mb()
    print(f"before: peak RSS {base:.0f} MB (motion array {motion.values.nbytes / 2**20:.1f} MB)")
    t0 = time.perf_counter()
    for i, frame in enumerate(render_motion(face, motion, RenderConfig(size=size)), start=1):
        assert frame.shape == (size, size, 3)
        if i in checkpoints:
            took = time.perf_counter() - t0
            print(f"after {checkpoints[i]:>4} ({i:6d} frames, {took:6.1f} s): peak RSS {rss_mb():.0f} MB")
    print(f"storing the frames instead would take {n * size * size * 3 / 2**30:.1f} GB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ict", type=Path, default=DEFAULT_ICT, help="ICT-FaceKit checkout")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--naive-frames", type=int, default=2)
    ap.add_argument("--long-seconds", type=float, default=600.0)
    ap.add_argument("--quick", action="store_true", help="fewer frames, 60 s long motion")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.naive_frames, args.long_seconds = 100, 1, 60.0
    from avitalk.face.models import load_face

    faces = []
    try:
        faces.append(("ICT-FaceKit face area", load_face(f"ict:{args.ict}")))
    except AvitalkError as e:
        print(f"(skipping ICT-FaceKit: {e})")
    try:
        faces.append(("built-in face", load_face("builtin")))
    except AvitalkError as e:
        print(f"(skipping built-in face: {e})")
    if not faces:
        raise SystemExit("no face model available")
    for label, face in faces:
        bench_face(label, face, args.size, args.frames, args.naive_frames)
    bench_memory(faces[0][1], args.size, args.long_seconds)


if __name__ == "__main__":
    main()
