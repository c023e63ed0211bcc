"""CPU triangle rasteriser and shader kernels (numba, no OpenGL context).

Why numba: a pure-numpy per-triangle loop renders the ICT face area (9.4k vertices, 18.5k
triangles) at 512x512 in seconds per frame, and vectorising the rasterisation over
pixel/triangle pairs in numpy spends most of its time allocating ragged index arrays. The same
scan-conversion loop compiled with numba runs in a few milliseconds per frame; the kernels
release the GIL (``nogil=True``) so :mod:`avitalk.face.render` renders frames in parallel
threads. numba ships wheels for every platform pip supports (no compiler at install time); the
compiled kernels are cached on disk (``cache=True``), so only the first run pays the compile
time (a few seconds).

The renderer is deferred: :func:`rasterize` writes a visibility buffer (nearest triangle id and
two screen-space barycentrics per pixel, depth-tested on ``1/z``), then :func:`shade` lights each
covered pixel once with perspective-correct interpolated normals and colours (Phong shading,
Blinn-Phong specular, key + fill light + hemisphere ambient), and converts linear light to sRGB
through a lookup table.

All kernels take preallocated output arrays so the caller controls memory; nothing is allocated
per triangle.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Entries of the linear -> sRGB lookup table used by :func:`shade`.
LUT_SIZE = 4096


def srgb_lut() -> np.ndarray:
    """``(LUT_SIZE,)`` uint8 table mapping linear light in [0, 1] to 8-bit sRGB."""
    x = np.linspace(0.0, 1.0, LUT_SIZE)
    s = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)
    return np.clip(np.round(s * 255.0), 0, 255).astype(np.uint8)


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 1] (any shape) to linear light, float32."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


@njit(cache=True, nogil=True, fastmath=True)
def vertex_normals(verts: np.ndarray, faces: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - jitted
    """Area-weighted unit vertex normals.

    Args:
        verts: ``(V, 3)`` float32 positions.
        faces: ``(F, 3)`` int32 counter-clockwise triangles.
        out: ``(V, 3)`` float32, overwritten with the normals (zero for unused vertices).
    """
    out[:] = 0.0
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        e1x = verts[b, 0] - verts[a, 0]
        e1y = verts[b, 1] - verts[a, 1]
        e1z = verts[b, 2] - verts[a, 2]
        e2x = verts[c, 0] - verts[a, 0]
        e2y = verts[c, 1] - verts[a, 1]
        e2z = verts[c, 2] - verts[a, 2]
        nx = e1y * e2z - e1z * e2y
        ny = e1z * e2x - e1x * e2z
        nz = e1x * e2y - e1y * e2x
        for v in (a, b, c):
            out[v, 0] += nx
            out[v, 1] += ny
            out[v, 2] += nz
    for v in range(out.shape[0]):
        n = np.sqrt(out[v, 0] * out[v, 0] + out[v, 1] * out[v, 1] + out[v, 2] * out[v, 2])
        if n > 0.0:
            out[v, 0] /= n
            out[v, 1] /= n
            out[v, 2] /= n


@njit(cache=True, nogil=True)
def rasterize(
    sx: np.ndarray,
    sy: np.ndarray,
    invz: np.ndarray,
    faces: np.ndarray,
    zbuf: np.ndarray,
    tri: np.ndarray,
    bary: np.ndarray,
    facing: np.ndarray,
    cull_back: bool = False,
) -> None:  # pragma: no cover - jitted
    """Scan-convert triangles into a visibility buffer with a ``1/z`` depth test.

    Both windings are drawn unless ``cull_back`` (an open surface such as the ICT face area shows
    its inside through an open mouth; a mesh made of closed, consistently oriented surfaces, such
    as the built-in face, never shows a back face, so culling them skips hidden work); ``facing``
    records which side each triangle shows. Pixel centres are at ``+0.5``.

    Args:
        sx, sy: ``(V,)`` float32 pixel coordinates (x right, y down).
        invz: ``(V,)`` float32 reciprocal view depth (> 0 in front of the camera, 0 = culled).
        faces: ``(F, 3)`` int32 triangles, counter-clockwise seen from outside.
        zbuf: ``(H, W)`` float32, must start at 0; keeps the largest ``1/z`` per pixel.
        tri: ``(H, W)`` int32, must start at -1; id of the visible triangle.
        bary: ``(H, W, 2)`` float32 screen-space barycentrics of vertices 0 and 1.
        facing: ``(F,)`` int8 out: 1 if the triangle's front faces the camera, else 0.
    """
    h, w = zbuf.shape
    for f in range(faces.shape[0]):
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        z0, z1, z2 = invz[i0], invz[i1], invz[i2]
        if z0 <= 0.0 or z1 <= 0.0 or z2 <= 0.0:
            continue
        x0, y0 = sx[i0], sy[i0]
        x1, y1 = sx[i1], sy[i1]
        x2, y2 = sx[i2], sy[i2]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        # y points down on screen, so a counter-clockwise (front) triangle has negative area
        facing[f] = 1 if area < 0.0 else 0
        if area == 0.0 or (cull_back and area > 0.0):
            continue
        xmin = max(int(np.floor(min(x0, x1, x2))), 0)
        xmax = min(int(np.ceil(max(x0, x1, x2))), w - 1)
        ymin = max(int(np.floor(min(y0, y1, y2))), 0)
        ymax = min(int(np.ceil(max(y0, y1, y2))), h - 1)
        if xmin > xmax or ymin > ymax:
            continue
        inv_area = 1.0 / area
        # barycentric of vertex k = edge function of the opposite edge / area; affine in (x, y)
        a0 = (y1 - y2) * inv_area  # d(l0)/dx
        a1 = (y2 - y0) * inv_area  # d(l1)/dx
        for y in range(ymin, ymax + 1):
            py = y + 0.5
            px = xmin + 0.5
            l0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) * inv_area
            l1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) * inv_area
            for x in range(xmin, xmax + 1):
                l2 = 1.0 - l0 - l1
                if l0 >= 0.0 and l1 >= 0.0 and l2 >= 0.0:
                    iz = l0 * z0 + l1 * z1 + l2 * z2
                    if iz > zbuf[y, x]:
                        zbuf[y, x] = iz
                        tri[y, x] = f
                        bary[y, x, 0] = l0
                        bary[y, x, 1] = l1
                l0 += a0
                l1 += a1


@njit(cache=True, nogil=True, fastmath=True)
def shade(
    tri: np.ndarray,
    bary: np.ndarray,
    facing: np.ndarray,
    faces: np.ndarray,
    invz: np.ndarray,
    normals: np.ndarray,
    colors: np.ndarray,
    lights: np.ndarray,
    params: np.ndarray,
    lut: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Light every covered pixel of the visibility buffer into ``out`` (uncovered pixels untouched).

    Args:
        tri, bary, facing, faces, invz: as produced for / by :func:`rasterize`.
        normals: ``(V, 3)`` float32 unit vertex normals (view space = world axes).
        colors: ``(V, 3)`` float32 linear-light albedo.
        lights: ``(L, 6)`` float32 rows ``(dx, dy, dz, r, g, b)``: unit direction towards the light
            and linear intensity; row 0 also casts the specular highlight.
        params: ``(5,)`` float32 ``(ambient, sky_extra, specular, shininess, backface_gain)``.
        lut: ``(N,)`` uint8 linear -> sRGB table (:func:`srgb_lut`).
        out: ``(H, W, 3)`` uint8 image, holding the background on entry.
    """
    h, w = tri.shape
    n_lut = lut.shape[0] - 1
    ambient, sky, spec_k, shininess, back_gain = params[0], params[1], params[2], params[3], params[4]
    # half vector of the key light with a view direction along +Z (camera far compared to the face)
    hx, hy, hz = lights[0, 0], lights[0, 1], lights[0, 2] + 1.0
    hn = np.sqrt(hx * hx + hy * hy + hz * hz)
    hx, hy, hz = hx / hn, hy / hn, hz / hn
    for y in range(h):
        for x in range(w):
            f = tri[y, x]
            if f < 0:
                continue
            i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
            b0 = bary[y, x, 0] * invz[i0]
            b1 = bary[y, x, 1] * invz[i1]
            b2 = (1.0 - bary[y, x, 0] - bary[y, x, 1]) * invz[i2]
            s = b0 + b1 + b2
            b0, b1, b2 = b0 / s, b1 / s, b2 / s
            nx = b0 * normals[i0, 0] + b1 * normals[i1, 0] + b2 * normals[i2, 0]
            ny = b0 * normals[i0, 1] + b1 * normals[i1, 1] + b2 * normals[i2, 1]
            nz = b0 * normals[i0, 2] + b1 * normals[i1, 2] + b2 * normals[i2, 2]
            nn = np.sqrt(nx * nx + ny * ny + nz * nz)
            if nn > 0.0:
                nx, ny, nz = nx / nn, ny / nn, nz / nn
            gain = 1.0
            if facing[f] == 0:
                nx, ny, nz = -nx, -ny, -nz
                gain = back_gain
            cr = b0 * colors[i0, 0] + b1 * colors[i1, 0] + b2 * colors[i2, 0]
            cg = b0 * colors[i0, 1] + b1 * colors[i1, 1] + b2 * colors[i2, 1]
            cb = b0 * colors[i0, 2] + b1 * colors[i1, 2] + b2 * colors[i2, 2]
            amb = ambient + sky * ny
            lr, lg, lb = amb, amb, amb
            for k in range(lights.shape[0]):
                d = nx * lights[k, 0] + ny * lights[k, 1] + nz * lights[k, 2]
                if d > 0.0:
                    lr += d * lights[k, 3]
                    lg += d * lights[k, 4]
                    lb += d * lights[k, 5]
            nh = nx * hx + ny * hy + nz * hz
            sp = spec_k * nh**shininess if nh > 0.0 else 0.0
            r = (cr * lr + sp) * gain
            g = (cg * lg + sp) * gain
            b = (cb * lb + sp) * gain
            out[y, x, 0] = lut[min(max(int(r * n_lut + 0.5), 0), n_lut)]
            out[y, x, 1] = lut[min(max(int(g * n_lut + 0.5), 0), n_lut)]
            out[y, x, 2] = lut[min(max(int(b * n_lut + 0.5), 0), n_lut)]


@njit(cache=True, nogil=True)
def downsample(src: np.ndarray, factor: int, out: np.ndarray) -> None:  # pragma: no cover - jitted
    """Box-filter ``src`` ``(H*factor, W*factor, 3)`` uint8 into ``out`` ``(H, W, 3)`` uint8.

    Averaging sRGB values (not linear light) is the usual cheap supersampling resolve.
    """
    h, w, _ = out.shape
    norm = factor * factor
    for y in range(h):
        for x in range(w):
            for c in range(3):
                acc = 0
                for dy in range(factor):
                    for dx in range(factor):
                        acc += src[y * factor + dy, x * factor + dx, c]
                out[y, x, c] = (acc + norm // 2) // norm
