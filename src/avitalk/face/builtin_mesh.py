"""Geometry of the built-in face: a human head generated in code (no mesh data is stored or downloaded).

Construction (all deterministic, float64 until the end):

1. **Skin.** A smooth implicit head (a signed-distance function made of smoothly blended
   ellipsoids and tapered capsules: cranium, mid-face, mandible, chin, cheekbones, brow ridges,
   nose, lips, eye sockets with lid shells, ears, neck) is sampled by rays cast from the vertical
   axis. Ray ``(row, column)`` has azimuth ``column`` and a row-dependent origin/elevation that never
   crosses its neighbours, so the samples form a fold-free grid over the head. A fine grid
   (:data:`N_ROWS` x :data:`N_COLS`) is thinned to three levels of detail (~2.2 mm at the eyes,
   nose and mouth, ~4.5 mm on the rest of the face and the ears, ~9 mm on the back of the head and
   the neck), triangulated as a spherical Delaunay triangulation (convex hull of the grid mapped to
   a unit sphere) and improved by 3D Delaunay edge flips.
2. **Openings.** The mouth and both eyes are slits cut along grid rows (upper and lower lips/lids
   get separate vertices, the corners stay shared). The eye slits are then opened by rotating the
   lids about the eyeball centres (almond-shaped aperture); blinking rotates them back.
3. **Interiors.** The mouth slit is bridged to a closed mouth cavity (inner lip roll, vestibule,
   oral cavity, throat); each eye slit to a short socket tube that ends inside the eyeball. The
   skin with its interiors is a closed, consistently oriented 2-manifold.
4. **Parts.** Eyeballs (sclera, iris, pupil rings, slight cornea bulge), upper and lower teeth
   arches with notches between teeth, and a tongue; each a separate closed mesh.
5. **Colours.** Per-vertex sRGB albedo and material ids (skin, lips, sclera, iris, pupil, teeth,
   mouth interior, tongue, hair/brows).

Coordinates: metres, +X is the subject's left, +Y up, +Z towards the viewer, the head centred
near the origin (eyes at y = 13 mm, mouth at y = -53 mm, chin at about y = -100 mm, neck cut at
y = -180 mm).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import ConvexHull

# ---------------------------------------------------------------------------------------------
# Landmarks (metres). Left = subject's left = +X.
Y_MOUTH = -0.053  #: height of the closed lips' meeting line
MOUTH_HALF_WIDTH = 0.025  #: x of the mouth corners
EYE_CENTER = np.array([0.032, 0.013, 0.0695])  #: left eyeball centre (right eye mirrored in x)
EYE_RADIUS = 0.012  #: eyeball radius
LID_RADIUS = 0.0134  #: radius of the lid shell around the eyeball centre
EYE_SLIT_DY = -0.0025  #: lid meeting line relative to the eye centre
EYE_HALF_WIDTH = 0.0148  #: half width of the palpebral fissure
#: Jaw-opening axis (parallel to X) through this point: below the real joint, since the condyle also
#: slides forwards, so that the angle of the jaw does not swing back into the neck.
JAW_HINGE = np.array([0.0, -0.04, -0.006])
NECK_PIVOT = np.array([0.0, -0.075, -0.02])  #: head-rotation centre
UPPER_LID_OPEN = np.radians(31.0)  #: lid rotation opening the upper lid at the fissure's middle
LOWER_LID_OPEN = np.radians(13.0)  #: ... and the lower lid
UPPER_LID_REACH = 0.019  #: how far above the slit the upper lid motion fades out (m)
LOWER_LID_REACH = 0.011  #: ... below the slit for the lower lid

N_ROWS = 208  #: fine grid rows, pole to pole (row 0 = bottom of the neck, N_ROWS = crown)
N_COLS = 168  #: fine grid columns, evenly spaced in arc length around the head (column N_COLS/2 faces +Z)

# Ray family (rows): a bottom fan from (0, _Y_LO, _Z_LO), horizontal rays from (0, y, z_axis(y)) for
# _Y_LO <= y <= _Y_HI, a top fan from (0, _Y_HI, _Z_AXIS); columns turn the rays about the vertical axis.
# Rays of different rows never cross inside the head, so the grid cannot fold.
_Y_LO, _Y_HI = -0.1, 0.04
_T1, _T2 = 0.3, 0.55
_Z_AXIS = 0.04  # the rays' vertical axis sits in front of the head centre: the face gets more samples
_Z_LO = -0.005  # ... but moves back below the mouth, to the neck's axis

MATERIALS: tuple[str, ...] = (
    "skin", "lips", "eye_white", "iris", "pupil", "teeth", "mouth_interior", "tongue", "hair",
)  # fmt: skip
SKIN, LIPS, EYE_WHITE, IRIS, PUPIL, TEETH, MOUTH, TONGUE, HAIR = range(len(MATERIALS))

#: Part ids (``HeadMesh.part``).
PART_SKIN, PART_MOUTH, PART_SOCKET, PART_EYEBALL, PART_TEETH_UP, PART_TEETH_LOW, PART_TONGUE = range(7)


# ---------------------------------------------------------------------------------------------
# Signed distance function of the head.


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (smooth union) with blend radius ``k`` metres."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k * 0.25


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth maximum (smooth intersection / subtraction with ``-b``)."""
    return -_smin(-a, -b, k)


def _ell(x: np.ndarray, y: np.ndarray, z: np.ndarray, c: tuple, r: tuple) -> np.ndarray:
    """Approximate distance to an axis-aligned ellipsoid (centre ``c``, semi-axes ``r``)."""
    qx, qy, qz = (x - c[0]) / r[0], (y - c[1]) / r[1], (z - c[2]) / r[2]
    k0 = np.sqrt(qx * qx + qy * qy + qz * qz)
    k1 = np.sqrt((qx / r[0]) ** 2 + (qy / r[1]) ** 2 + (qz / r[2]) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)


def _cone(x: np.ndarray, y: np.ndarray, z: np.ndarray, a: tuple, b: tuple, ra: float, rb: float) -> np.ndarray:
    """Approximate distance to a capsule from ``a`` to ``b`` whose radius goes from ``ra`` to ``rb``."""
    bx, by, bz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    px, py, pz = x - a[0], y - a[1], z - a[2]
    h = np.clip((px * bx + py * by + pz * bz) / (bx * bx + by * by + bz * bz), 0.0, 1.0)
    dx, dy, dz = px - h * bx, py - h * by, pz - h * bz
    return np.sqrt(dx * dx + dy * dy + dz * dz) - (ra + h * (rb - ra))


def head_sdf(p: np.ndarray) -> np.ndarray:
    """Signed distance (approximate, metres; negative inside) of the skin surface.

    Args:
        p: ``(N, 3)`` points.

    Returns:
        ``(N,)`` distances.
    """
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    ax = np.abs(x)  # bilateral features are modelled on the +X side and mirrored
    d = _ell(x, y, z, (0, 0.03, -0.004), (0.073, 0.097, 0.095))  # cranium
    d = _smin(d, _ell(x, y, z, (0, 0.05, -0.02), (0.0745, 0.076, 0.082)), 0.02)  # parietal
    d = _smin(d, _ell(x, y, z, (0, -0.02, 0.022), (0.062, 0.062, 0.068)), 0.02)  # mid-face
    d = _smin(d, _ell(ax, y, z, (0.046, 0.002, 0.05), (0.021, 0.013, 0.025)), 0.015)  # cheekbones
    d = _smin(d, _ell(ax, y, z, (0.038, -0.022, 0.062), (0.018, 0.019, 0.019)), 0.014)  # cheeks
    d = _smin(d, _ell(x, y, z, (0, -0.06, 0.026), (0.05, 0.042, 0.056)), 0.025)  # lower face
    gonion = (0.05, -0.072, -0.008)
    d = _smin(d, _cone(ax, y, z, gonion, (0.012, -0.097, 0.066), 0.007, 0.008), 0.02)  # jaw line
    d = _smin(d, _cone(ax, y, z, gonion, (0.056, -0.02, -0.012), 0.008, 0.008), 0.02)  # ramus
    d = _smin(d, _ell(x, y, z, (0, -0.087, 0.083), (0.021, 0.014, 0.012)), 0.018)  # chin
    d = _smin(d, _ell(x, y, z, (0, -0.097, 0.035), (0.038, 0.016, 0.04)), 0.02)  # under the chin
    d = _smin(d, _ell(x, y, z, (0, -0.052, 0.068), (0.034, 0.03, 0.028)), 0.012)  # muzzle
    d = _smin(d, _ell(ax, y, z, (0.027, 0.036, 0.073), (0.025, 0.0075, 0.016)), 0.012)  # brow ridges
    # eye sockets carved out, then the lid shells around the eyeballs added back
    d = _smax(d, -_ell(ax, y, z, (EYE_CENTER[0], 0.014, 0.09), (0.019, 0.0135, 0.018)), 0.016)
    ex, ey, ez = ax - EYE_CENTER[0], y - EYE_CENTER[1], z - EYE_CENTER[2]
    d = _smin(d, np.sqrt(ex * ex + ey * ey + ez * ez) - LID_RADIUS, 0.005)
    # nose
    d = _smin(d, _cone(x, y, z, (0, 0.024, 0.081), (0, -0.021, 0.093), 0.005, 0.0145), 0.012)  # base
    d = _smin(d, _cone(x, y, z, (0, 0.022, 0.0845), (0, -0.017, 0.112), 0.0052, 0.0078), 0.008)  # dorsum
    d = _smin(d, _ell(x, y, z, (0, 0.039, 0.082), (0.013, 0.009, 0.011)), 0.01)  # glabella
    d = _smin(d, _ell(x, y, z, (0, -0.0205, 0.1145), (0.0085, 0.009, 0.0095)), 0.008)  # tip
    d = _smin(d, _ell(ax, y, z, (0.0125, -0.027, 0.099), (0.0068, 0.0062, 0.0085)), 0.007)  # alae
    d = _smin(d, _ell(x, y, z, (0, -0.029, 0.107), (0.0045, 0.0042, 0.008)), 0.004)  # columella
    # lips: upper and lower bulges meeting at Y_MOUTH
    zb = z + 12.0 * x * x  # lips bent around the dental arch
    d = _smin(d, _ell(x, y, zb, (0, Y_MOUTH + 0.0055, 0.0955), (0.027, 0.0062, 0.01)), 0.006)
    d = _smin(d, _ell(x, y, zb, (0, Y_MOUTH - 0.0074, 0.093), (0.025, 0.0078, 0.0108)), 0.006)
    d = _smin(d, _ell(ax, y, z, (0.073, 0.002, -0.016), (0.009, 0.029, 0.017)), 0.006)  # ears
    d = _smin(d, _cone(x, y, z, (0, -0.2, -0.012), (0, -0.07, -0.02), 0.054, 0.05), 0.02)  # neck
    return np.maximum(d, -0.18 - y)  # neck cut


# ---------------------------------------------------------------------------------------------
# Ray family and casting.


def _ray(t: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions ``(N, 3)`` of rays with row parameters ``t`` in [0, 1], azimuths ``theta``."""
    t, theta = np.broadcast_arrays(np.asarray(t, np.float64), np.asarray(theta, np.float64))
    y0 = np.where(t < _T1, _Y_LO, np.where(t > _T2, _Y_HI, _Y_LO + (_Y_HI - _Y_LO) * (t - _T1) / (_T2 - _T1)))
    alpha = np.where(t < _T1, -np.pi / 2 * (1 - t / _T1), np.where(t > _T2, np.pi / 2 * (t - _T2) / (1 - _T2), 0.0))
    ca = np.cos(alpha)
    dirs = np.stack([ca * np.sin(theta), np.sin(alpha), ca * np.cos(theta)], -1)
    z_axis = np.interp(y0, [_Y_LO, -0.07], [_Z_LO, _Z_AXIS])
    orig = np.stack([np.zeros_like(y0), y0, z_axis], -1)
    return orig, dirs


def _t_of_band_y(y: float) -> float:
    """Row parameter of the horizontal ray at height ``y``."""
    return _T1 + (y - _Y_LO) / (_Y_HI - _Y_LO) * (_T2 - _T1)


def cast_rays(orig: np.ndarray, dirs: np.ndarray, t_start: float = 0.2, iters: int = 80) -> np.ndarray:
    """Outermost intersection of rays with the skin, marching inwards from ``t_start`` (sphere tracing).

    Args:
        orig, dirs: ``(N, 3)`` ray origins (inside the head) and unit directions.

    Returns:
        ``(N, 3)`` surface points.
    """
    t = np.full(len(orig), t_start)
    active = np.arange(len(orig))
    for _ in range(iters):
        p = orig[active] + t[active, None] * dirs[active]
        d = head_sdf(p)
        t[active] -= 0.95 * d
        active = active[np.abs(d) > 2e-6]
        if active.size == 0:
            break
    return orig + t[:, None] * dirs


# ---------------------------------------------------------------------------------------------
# Mesh container.


@dataclass
class HeadMesh:
    """The built-in head with the per-vertex annotations the blendshapes are built from.

    Attributes:
        vertices: ``(V, 3)`` float64 neutral positions.
        faces: ``(F, 3)`` int32 outward counter-clockwise triangles.
        part: ``(V,)`` int8 part id (``PART_*``).
        material: ``(V,)`` uint8 index into :data:`MATERIALS`.
        colors: ``(V, 3)`` float32 sRGB albedo in [0, 1].
        mouth_side: ``(V,)`` int8: +1 upper lip side, -1 lower lip side, 0 on the corners/elsewhere
            (skin near the mouth and the mouth cavity; by height elsewhere).
        mouth_s: ``(V,)`` lateral mouth coordinate (x / corner x) of mouth-cavity ring vertices.
        ring: ``(V,)`` int8 depth of a cavity/socket ring vertex behind its slit (0 for other vertices).
        attach: ``(V,)`` int64 slit vertex a ring vertex hangs from (-1 if none).
        lid_eye: ``(V,)`` int8 0 left eye, 1 right eye, -1 not a lid vertex.
        lid_side: ``(V,)`` int8 +1 upper lid, -1 lower lid.
        lid_s: ``(V,)`` position across the fissure, -1 medial (inner) corner .. +1 lateral corner.
        lid_d: ``(V,)`` distance from the lid margin before opening (m).
        eye_centers: ``(2, 3)`` left and right eyeball centres.
        mouth_corners: ``(2, 3)`` left (+X) and right mouth corner.
        extra: construction details (slit loops, eyeball/teeth vertex ranges, grid rows).
    """

    vertices: np.ndarray
    faces: np.ndarray
    part: np.ndarray
    material: np.ndarray
    colors: np.ndarray
    mouth_side: np.ndarray
    mouth_s: np.ndarray
    ring: np.ndarray
    attach: np.ndarray
    lid_eye: np.ndarray
    lid_side: np.ndarray
    lid_s: np.ndarray
    lid_d: np.ndarray
    eye_centers: np.ndarray
    mouth_corners: np.ndarray
    extra: dict = field(default_factory=dict)


class _Builder:
    """Accumulates vertices, triangles and per-vertex annotations."""

    def __init__(self) -> None:
        self.v: list[np.ndarray] = []
        self.f: list[np.ndarray] = []
        self.n = 0
        self.ann: dict[str, list[np.ndarray]] = {}
        self.defaults = {
            "part": (np.int8, PART_SKIN), "mouth_side": (np.int8, 0), "mouth_s": (np.float64, 0.0),
            "ring": (np.int8, 0), "attach": (np.int64, -1), "lid_eye": (np.int8, -1), "lid_side": (np.int8, 0),
            "lid_s": (np.float64, 0.0), "lid_d": (np.float64, 1.0),
        }  # fmt: skip

    def add(self, pts: np.ndarray, **ann: np.ndarray | float | int) -> np.ndarray:
        """Append ``(N, 3)`` vertices with annotations; returns their indices."""
        pts = np.asarray(pts, np.float64).reshape(-1, 3)
        idx = np.arange(self.n, self.n + len(pts))
        self.v.append(pts)
        for key, (dt, default) in self.defaults.items():
            val = ann.get(key, default)
            self.ann.setdefault(key, []).append(np.broadcast_to(np.asarray(val, dt), (len(pts),)).copy())
        self.n += len(pts)
        return idx

    def tris(self, f: np.ndarray) -> None:
        self.f.append(np.asarray(f, np.int64).reshape(-1, 3))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        return np.concatenate(self.v), np.concatenate(self.f), {k: np.concatenate(v) for k, v in self.ann.items()}


def _strip(a: np.ndarray, b: np.ndarray, closed: bool = True) -> np.ndarray:
    """Triangles bridging two vertex loops of equal length (``a[i]`` pairs ``b[i]``)."""
    n = len(a)
    i = np.arange(n if closed else n - 1)
    j = (i + 1) % n
    return np.concatenate([np.stack([a[i], a[j], b[j]], 1), np.stack([a[i], b[j], b[i]], 1)])


def _fan(loop: np.ndarray, centre: int) -> np.ndarray:
    """Triangles closing a loop with a centre vertex (edge ``loop[i] -> loop[i+1]`` in each)."""
    i = np.arange(len(loop))
    return np.stack([loop[i], loop[(i + 1) % len(loop)], np.full(len(loop), centre)], 1)


def _tube(loops: list[np.ndarray], centre: int | None, skin_faces: np.ndarray) -> np.ndarray:
    """Strips between consecutive ``loops`` (and a closing fan), oriented to match ``skin_faces``.

    ``loops[0]`` is a hole boundary of ``skin_faces``; the result continues that surface consistently.
    """
    parts = [_strip(a, b) for a, b in itertools.pairwise(loops)]
    if centre is not None:
        parts.append(_fan(loops[-1], centre))
    tris = np.concatenate(parts)
    a0, a1 = loops[0][0], loops[0][1]
    e = skin_faces
    same = np.any(
        ((e[:, 0] == a0) & (e[:, 1] == a1)) | ((e[:, 1] == a0) & (e[:, 2] == a1)) | ((e[:, 2] == a0) & (e[:, 0] == a1))
    )
    return tris[:, ::-1] if same else tris


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((np.asarray(x, np.float64) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def rot_x(angle: np.ndarray, p: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Rotate points ``p`` ``(N, 3)`` about the X-parallel axis through ``centre`` by per-point ``angle``
    (radians, positive turns +Z towards -Y, i.e. the front downwards)."""
    q = p - centre
    c, s = np.cos(angle), np.sin(angle)
    return centre + np.stack([q[:, 0], c * q[:, 1] - s * q[:, 2], s * q[:, 1] + c * q[:, 2]], 1)


# ---------------------------------------------------------------------------------------------
# Skin grid.


def _profile(n: int = 480) -> dict[str, np.ndarray]:
    """Arc length of the ray family along a few azimuths (front weighted) to place the rows."""
    t = np.linspace(0.0, 1.0, n)
    thetas = np.array([0.0, np.pi / 2, np.pi, -np.pi / 2])
    weights = np.array([3.0, 1.0, 1.0, 1.0])
    tt, th = np.meshgrid(t, thetas)
    o, d = _ray(tt.ravel(), th.ravel())
    hits = cast_rays(o, d).reshape(len(thetas), n, 3)
    seg = np.linalg.norm(np.diff(hits, axis=1), axis=-1)  # (A, n-1)
    arc = np.concatenate([[0.0], np.cumsum(weights @ seg / weights.sum())])
    rho = np.linalg.norm(hits[:, :, [0, 2]], axis=-1).mean(0)
    return {"t": t, "arc": arc, "front_y": hits[0, :, 1], "rho": rho}


def _columns() -> tuple[np.ndarray, np.ndarray]:
    """Column azimuths spaced evenly in arc length around the head, and each column's x at eye level."""
    half = np.linspace(0.0, np.pi, 721)
    rows = np.array([_t_of_band_y(y) for y in (Y_MOUTH, -0.02, EYE_CENTER[1], 0.035)])
    tt, th = np.meshgrid(rows, half, indexing="ij")
    hits = cast_rays(*_ray(tt.ravel(), th.ravel())).reshape(len(rows), len(half), 3)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(hits, axis=1), axis=-1).mean(0))])
    theta_half = np.interp(np.linspace(0.0, arc[-1], N_COLS // 2 + 1), arc, half)
    theta = np.concatenate([-theta_half[::-1], theta_half[1:-1]])  # N_COLS values, theta[N_COLS // 2] = 0
    x_ref = np.interp(np.abs(theta), half, hits[2, :, 0]) * np.sign(theta)
    return theta, x_ref


def _level(x: np.ndarray, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Level of detail of fine-grid samples at eye-level x ``x``, front height ``y`` and azimuth ``theta``:
    1 (every sample), 2 (every 2nd row and column) or 4."""
    a, front = np.abs(x), np.abs(theta) < np.pi / 2
    eyes = (a > 0.012) & (a < 0.054) & (y > -0.006) & (y < 0.045)
    nose = ((a < 0.02) & (y > -0.04) & (y < -0.008)) | ((a < 0.012) & (y > -0.04) & (y < 0.02))
    mouth = (a < 0.038) & (y > -0.084) & (y < -0.036)
    face = (a < 0.064) & (y > -0.114) & (y < 0.08)
    sides = (np.abs(theta) < np.radians(125)) & (y > -0.035) & (y < 0.045)
    lvl = np.full(a.shape, 4)
    lvl[(face & front) | sides] = 2
    lvl[(eyes | nose | mouth) & front] = 1
    return lvl


def _skin_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Kept fine-grid samples: ``points (N, 3)``, ``rows (N,)``, ``cols (N,)`` (-1 for poles), faces."""
    prof = _profile()
    s_rows = np.linspace(0.0, prof["arc"][-1], N_ROWS + 1)
    t_rows = np.interp(s_rows, prof["arc"], prof["t"])
    slit_rows = {}
    for name, y in (("mouth", Y_MOUTH), ("eye", EYE_CENTER[1] + EYE_SLIT_DY)):
        ts = _t_of_band_y(y)
        r = int(np.argmin(np.abs(t_rows - ts)))
        t_rows[r] = ts
        slit_rows[name] = r
    front_y = np.interp(t_rows, prof["t"], prof["front_y"])
    rho = np.interp(t_rows, prof["t"], prof["rho"])
    elev = -np.pi / 2 + np.pi * np.interp(t_rows, prof["t"], prof["arc"]) / prof["arc"][-1]

    theta, x_ref = _columns()
    cols = np.arange(N_COLS)
    rr, cc = np.meshgrid(np.arange(1, N_ROWS), cols, indexing="ij")
    lvl = _level(x_ref[cc], front_y[rr], theta[cc])
    pole = 2 ** np.clip(np.floor(np.log2(0.09 / np.maximum(rho[rr], 1e-3))), 0, 4).astype(int)
    keep = (rr % lvl == 0) & ((cc - N_COLS // 2) % (lvl * pole) == 0)
    r_k, c_k = rr[keep], cc[keep]
    o, d = _ray(t_rows[r_k], theta[c_k])
    o_p, d_p = _ray(np.array([0.0, 1.0]), np.zeros(2))
    pts = cast_rays(np.concatenate([o, o_p]), np.concatenate([d, d_p]))
    rows = np.concatenate([r_k, [0, N_ROWS]])
    colv = np.concatenate([c_k, [-1, -1]])

    # spherical Delaunay triangulation of the grid
    e = elev[rows]
    th = np.where(colv >= 0, theta[np.maximum(colv, 0)], 0.0)
    sph = np.stack([np.cos(e) * np.sin(th), np.sin(e), np.cos(e) * np.cos(th)], 1)
    hull = ConvexHull(sph)
    faces = hull.simplices.astype(np.int64)
    a, b, c = sph[faces[:, 0]], sph[faces[:, 1]], sph[faces[:, 2]]
    flip = np.einsum("ij,ij->i", np.cross(b - a, c - a), a + b + c) < 0
    faces[flip] = faces[flip][:, ::-1]
    info = {"slit_rows": slit_rows, "theta": theta, "t_rows": t_rows}
    return pts, rows, colv, faces, info


def flip_edges(pts: np.ndarray, faces: np.ndarray, frozen: np.ndarray, passes: int = 12) -> np.ndarray:
    """Improve a triangulation of a smooth surface by Delaunay edge flips measured in 3D.

    An edge shared by two nearly coplanar triangles is flipped when its two opposite angles sum to
    more than 180 degrees and the flipped pair keeps the surface orientation. Edges touching
    ``frozen`` vertices are kept.

    Args:
        pts: ``(N, 3)`` vertices.
        faces: ``(F, 3)`` consistently oriented triangles.
        frozen: ``(N,)`` bool.

    Returns:
        ``(F, 3)`` triangles (same count, same orientation convention).
    """
    faces = faces.copy()
    n = len(pts)
    for _ in range(passes):
        a, b = faces, np.roll(faces, -1, axis=1)  # directed edges a -> b, opposite vertex np.roll(-2)
        c = np.roll(faces, -2, axis=1)
        lo, hi = np.minimum(a, b).ravel(), np.maximum(a, b).ravel()
        key = lo * n + hi
        order = np.argsort(key, kind="stable")
        ks = key[order]
        first = np.flatnonzero(ks[:-1] == ks[1:])
        e1, e2 = order[first], order[first + 1]  # flat indices (tri * 3 + corner) of the two half-edges
        t1, t2 = e1 // 3, e2 // 3
        va, vb = a.ravel()[e1], b.ravel()[e1]
        vc, vd = c.ravel()[e1], c.ravel()[e2]
        pa, pb, pc, pd = pts[va], pts[vb], pts[vc], pts[vd]

        def angle(p, q, r):  # angle at p in triangle p, q, r
            u, w = q - p, r - p
            cos = np.einsum("ij,ij->i", u, w) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(w, axis=1), 1e-30)
            return np.arccos(np.clip(cos, -1.0, 1.0))

        n1, n2 = np.cross(pb - pa, pc - pa), np.cross(pa - pb, pd - pb)
        u1, u2 = n1 / np.linalg.norm(n1, axis=1, keepdims=True), n2 / np.linalg.norm(n2, axis=1, keepdims=True)
        m1, m2 = np.cross(pa - pc, pd - pc), np.cross(pb - pd, pc - pd)  # new (c, a, d) and (d, b, c)
        avg = u1 + u2
        ok = (np.einsum("ij,ij->i", u1, u2) > 0.97) & (np.einsum("ij,ij->i", m1, avg) > 0)
        ok &= np.einsum("ij,ij->i", m2, avg) > 0
        ok &= ~(frozen[va] | frozen[vb])
        excess = angle(pc, pa, pb) + angle(pd, pa, pb) - np.pi
        cand = np.flatnonzero(ok & (excess > 1e-3))
        if cand.size == 0:
            break
        existing = set(key.tolist())
        used = np.zeros(len(faces), bool)
        flipped = 0
        for i in cand[np.argsort(-excess[cand], kind="stable")]:
            i1, i2 = t1[i], t2[i]
            k = min(vc[i], vd[i]) * n + max(vc[i], vd[i])
            if used[i1] or used[i2] or k in existing:
                continue
            used[i1] = used[i2] = True
            existing.add(k)
            faces[i1] = (vc[i], va[i], vd[i])
            faces[i2] = (vd[i], vb[i], vc[i])
            flipped += 1
        if flipped == 0:
            break
    return faces


# ---------------------------------------------------------------------------------------------
# Slits.


def _cut_slit(
    pts: np.ndarray, rows: np.ndarray, cols: np.ndarray, faces: np.ndarray, row: int, c_lo: int, c_hi: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split the row ``row`` between columns ``c_lo`` and ``c_hi`` (exclusive) into upper and lower sides.

    Returns the new ``pts, rows, cols, faces`` and the boundary loop ``[c_lo, upper..., c_hi, lower...]``.
    """
    lookup = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(rows, cols, strict=True))}
    interior = [lookup.get((row, c)) for c in range(c_lo + 1, c_hi)]
    corners = [lookup.get((row, c_lo)), lookup.get((row, c_hi))]
    if any(i is None for i in interior + corners):
        raise RuntimeError("slit row is not fully sampled")
    upper = np.array(interior, np.int64)
    lower = np.arange(len(pts), len(pts) + len(upper))
    below = rows[faces] < row  # (F, 3)
    above = rows[faces] > row
    dup = dict(zip(upper.tolist(), lower.tolist(), strict=True))
    line = np.concatenate([[corners[0]], upper, [corners[1]]])
    n = len(pts)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    want = np.sort(np.stack([line[:-1], line[1:]], 1), axis=1)
    if not np.all(np.isin(want[:, 0] * n + want[:, 1], edges[:, 0] * n + edges[:, 1])):
        raise RuntimeError("slit does not follow mesh edges")
    faces = faces.copy()
    touched = np.isin(faces, upper).any(1)
    if np.any(touched & below.any(1) & above.any(1)):
        raise RuntimeError("a triangle spans the slit")
    for fi in np.flatnonzero(touched & below.any(1)):
        faces[fi] = [dup.get(int(v), int(v)) for v in faces[fi]]
    pts = np.concatenate([pts, pts[upper]])
    rows = np.concatenate([rows, rows[upper]])
    cols = np.concatenate([cols, cols[upper]])
    loop = np.concatenate([[corners[0]], upper, [corners[1]], lower[::-1]])
    return pts, rows, cols, faces, loop


def _column_near(pts: np.ndarray, rows: np.ndarray, cols: np.ndarray, row: int, x: float) -> int:
    on = np.flatnonzero(rows == row)
    return int(cols[on[np.argmin(np.abs(pts[on, 0] - x))]])


def _open_lids(pts: np.ndarray, info: dict) -> dict[str, np.ndarray]:
    """Lid annotations of skin vertices near both eyes and the opened lid positions."""
    n = len(pts)
    lid_eye = np.full(n, -1, np.int8)
    lid_side = np.zeros(n, np.int8)
    lid_s = np.zeros(n)
    lid_d = np.ones(n)
    out = pts.copy()
    for k, sign in enumerate((1.0, -1.0)):
        centre = EYE_CENTER * np.array([sign, 1, 1])
        th_lo, th_hi = info["eye_theta"][k]
        th_mid, th_half = (th_lo + th_hi) / 2, (th_hi - th_lo) / 2
        s = (info["vtheta"] - th_mid) / th_half * sign  # +1 lateral
        y_slit = centre[1] + EYE_SLIT_DY
        side = info["eye_side"][k]
        near = (np.abs(s) < 1.6) & (np.abs(pts[:, 1] - y_slit) < 0.03) & (pts[:, 2] > 0.04) & (side != 0)
        near |= (np.abs(s) < 1.6) & (side != 0) & (info["vrows"] == info["slit_rows"]["eye"])
        idx = np.flatnonzero(near & (info["vcols"] >= 0))
        lid_eye[idx] = k
        lid_side[idx] = side[idx]
        lid_s[idx] = s[idx]
        lid_d[idx] = np.abs(pts[idx, 1] - y_slit)
        ang = lid_open_angle(lid_side[idx], lid_s[idx], lid_d[idx], UPPER_LID_OPEN, LOWER_LID_OPEN)
        out[idx] = rot_x(-ang, pts[idx], centre)
    return {"lid_eye": lid_eye, "lid_side": lid_side, "lid_s": lid_s, "lid_d": lid_d, "pts": out}


def lid_profile(s: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Almond-shaped aperture profile across the fissure: 1 in the middle, 0 at and beyond the corners.

    The upper lid peaks slightly medially (``s < 0``), the lower lid dips lowest slightly laterally.
    """
    shift = np.where(side > 0, -0.1, 0.12)
    u = np.clip((s - shift) / (1.0 + np.where(s > shift, -shift, shift)), -1.0, 1.0)
    return np.clip(1.0 - u * u, 0.0, 1.0) ** 0.75


def lid_falloff(side: np.ndarray, d: np.ndarray) -> np.ndarray:
    """How much of the lid-margin motion a lid vertex at distance ``d`` from the margin follows."""
    reach = np.where(side > 0, UPPER_LID_REACH, LOWER_LID_REACH)
    return 1.0 - _smoothstep(0.0, 1.0, d / reach)


def lid_open_angle(side: np.ndarray, s: np.ndarray, d: np.ndarray, upper: float, lower: float) -> np.ndarray:
    """Per-vertex lid rotation (radians, positive = upwards) for margin rotations ``upper``/``lower``."""
    amp = np.where(side > 0, upper, -lower)
    return amp * lid_profile(s, side) * lid_falloff(side, d)


# ---------------------------------------------------------------------------------------------
# Separate parts.


def _polar_mesh(pts_rings: np.ndarray, front: np.ndarray, back: np.ndarray, centre: np.ndarray) -> tuple:
    """Closed mesh from rings ``(R, K, 3)`` between a front and a back pole, oriented outwards from ``centre``."""
    n_ring, n_seg, _ = pts_rings.shape
    pts = np.concatenate([front[None], pts_rings.reshape(-1, 3), back[None]])
    loops = [1 + i * n_seg + np.arange(n_seg) for i in range(n_ring)]
    f = [_fan(loops[0], 0)]
    f += [_strip(a, b) for a, b in itertools.pairwise(loops)]
    f.append(_fan(loops[-1], len(pts) - 1))
    faces = np.concatenate(f)
    a, b, c = (pts[faces[:, i]] - centre for i in range(3))
    vol = np.einsum("ij,ij->i", a, np.cross(b, c))
    faces[vol < 0] = faces[vol < 0][:, ::-1]
    return pts, faces


def _eyeball(centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eyeball sphere with pupil/iris rings around +Z and a slight cornea bulge: ``points, faces, materials``."""
    beta = np.radians([6, 10.5, 12.5, 20, 27.5, 30.5, 40, 58, 85, 120, 155])
    mats = np.array([PUPIL, PUPIL, IRIS, IRIS, IRIS, EYE_WHITE] + [EYE_WHITE] * 5)
    n_seg = _EYE_SEG
    phi = np.arange(n_seg) * 2 * np.pi / n_seg
    bb, pp = np.meshgrid(beta, phi, indexing="ij")
    r = EYE_RADIUS + 0.0004 * np.cos(np.clip(bb / np.radians(30), 0, 1) * np.pi / 2) ** 2  # cornea bulge
    rings = np.stack([r * np.sin(bb) * np.cos(pp), r * np.sin(bb) * np.sin(pp), r * np.cos(bb)], -1) + centre
    front, back = centre + np.array([0, 0, EYE_RADIUS + 0.0004]), centre - np.array([0, 0, EYE_RADIUS])
    pts, faces = _polar_mesh(rings, front, back, centre)
    return pts, faces, np.concatenate([[PUPIL], np.repeat(mats, n_seg), [EYE_WHITE]])


def _closed_tube(sections: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A closed tube through ``sections`` ``(S, K, 3)`` (K-gons) with flat end caps: ``points, faces``."""
    s, k, _ = sections.shape
    pts = sections.reshape(-1, 3)
    loops = [i * k + np.arange(k) for i in range(s)]
    f = [_strip(a, b) for a, b in itertools.pairwise(loops)]
    for loop, rev in ((loops[0], True), (loops[-1], False)):
        fan = np.stack([np.full(k - 2, loop[0]), loop[1:-1], loop[2:]], 1)
        f.append(fan[:, ::-1] if rev else fan)
    faces = np.concatenate(f)
    # orient outwards (signed volume positive)
    a, b, c = pts[faces[:, 0]], pts[faces[:, 1]], pts[faces[:, 2]]
    if np.einsum("ij,ij->i", a, np.cross(b, c)).sum() < 0:
        faces = faces[:, ::-1]
    return pts, faces


def _teeth(upper: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One dental arch: ``points, faces, tooth_edge (per point, 1 at the gaps between teeth)``."""
    widths = np.array([8.5, 6.5, 7.5, 7.0, 6.5, 10.0]) if upper else np.array([5.5, 6.0, 7.0, 7.0, 7.0, 10.5])
    widths = widths * 1e-3
    edges = np.concatenate([[0.0], np.cumsum(widths)])
    s_side = np.sort(np.concatenate([edges, (edges[:-1] + edges[1:]) / 2]))
    s = np.concatenate([-s_side[::-1], s_side[1:]])  # arc length along the arch, 0 at the midline
    gap = np.concatenate([np.isin(s_side, edges)[::-1], np.isin(s_side[1:], edges)]).astype(float)
    gap[[0, -1]] = 0.0
    # arch centre line: parabola z = z0 - k x^2, sampled by arc length
    z0, k = (0.0915, 62.0) if upper else (0.0868, 66.0)
    xs = np.linspace(0, 0.05, 2000)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(xs), np.diff(k * xs * xs)))])
    ax = np.interp(np.abs(s), arc, xs) * np.sign(s)
    az = z0 - k * ax * ax
    tx, tz = np.ones_like(ax), -2 * k * ax  # tangent
    nrm = np.hypot(tx, tz)
    nx, nz = -tz / nrm, tx / nrm  # outward (front) normal of the arch
    if upper:
        y_cut, y_root, thick = Y_MOUTH - 0.0025, Y_MOUTH + 0.0095, 0.0062
    else:
        y_cut, y_root, thick = Y_MOUTH + 0.0004, Y_MOUTH - 0.0088, 0.0058
    notch = 0.0006 * gap
    cut = y_cut + (0.0009 * gap if upper else -0.0009 * gap)
    # cross-section: front-root, front-cut, back-cut, back-root (as offsets along the normal)
    prof = [(-notch, y_root), (-notch - 0.0003, cut), (-thick + 0.0015, cut), (-thick, y_root)]
    sec = np.stack([np.stack([ax + o * nx, np.broadcast_to(yy, ax.shape), az + o * nz], -1) for o, yy in prof], 1)
    pts, faces = _closed_tube(sec)
    return pts, faces, np.repeat(gap, len(prof))


def _tongue() -> tuple[np.ndarray, np.ndarray]:
    """A flattened ellipsoid lying on the mouth floor: ``points, faces``."""
    n_seg, n_ring = 12, 7
    beta = np.linspace(0, np.pi, n_ring + 2)[1:-1]
    phi = np.arange(n_seg) * 2 * np.pi / n_seg
    bb, pp = np.meshgrid(beta, phi, indexing="ij")
    # long axis along z (front pole first)
    u = np.stack([np.sin(bb) * np.cos(pp), np.sin(bb) * np.sin(pp), np.cos(bb)], -1).reshape(-1, 3)
    centre, radii = np.array([0.0, Y_MOUTH - 0.0125, 0.056]), np.array([0.0195, 0.0072, 0.0265])
    pts = np.concatenate([[[0, 0, 1]], u, [[0, 0, -1]]]) * radii + centre
    pts[:, 1] += 0.003 * np.clip(pts[:, 1] - centre[1], 0, None) / radii[1] * (1 - np.abs(pts[:, 0]) / radii[0])
    return _polar_mesh(pts[1:-1].reshape(n_ring, n_seg, 3), pts[0], pts[-1], centre)


# ---------------------------------------------------------------------------------------------
# Assembly.


def _mouth_ring(k: int, p: np.ndarray, side: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Ring ``k`` (1..6) of the mouth cavity behind lip-line points ``p`` (sides ``side``, ``s = x / x_corner``)."""
    e = np.sqrt(np.clip(1.0 - s * s, 0.0, 1.0))
    x, z = p[:, 0], p[:, 2]
    if k == 1:  # inner roll of the lips
        return np.stack([x * 0.965, Y_MOUTH + side * 0.0024 * e, z - 0.0034], 1)
    if k == 2:  # inner lip surface, in front of the teeth
        return np.stack([x * 0.94, Y_MOUTH + side * 0.0078 * e**0.8, z - 0.0088], 1)
    xs, ys, zs, y0, w = {
        3: (0.0245, 0.0150, (0.083, 0.027), 0.0, 0.7),
        4: (0.0275, 0.0190, (0.052, 0.02), 0.0, 0.6),
        5: (0.024, 0.0170, (0.012, 0.01), -0.003, 0.6),
        6: (0.011, 0.0090, (-0.018, 0.0), -0.006, 0.6),
    }[k]
    return np.stack([s * xs, Y_MOUTH + y0 + side * ys * e**w, zs[0] - zs[1] * s * s], 1)


N_MOUTH_RINGS = 6
_EYE_SEG = 16  # eyeball segments around the gaze axis


def build_head() -> HeadMesh:
    """Build the built-in head (deterministic; about 0.5 s)."""
    pts, rows, cols, faces, info = _skin_grid()
    theta = info["theta"]
    r_m, r_e = info["slit_rows"]["mouth"], info["slit_rows"]["eye"]

    # --- slits (columns first, so that edge flips leave the slit rows alone)
    c_lo = _column_near(pts, rows, cols, r_m, -MOUTH_HALF_WIDTH)
    c_hi = _column_near(pts, rows, cols, r_m, MOUTH_HALF_WIDTH)
    eye_cols = []
    for sign in (1.0, -1.0):
        xs = sorted(sign * EYE_CENTER[0] + np.array([-EYE_HALF_WIDTH, EYE_HALF_WIDTH]))
        eye_cols.append(tuple(_column_near(pts, rows, cols, r_e, x) for x in xs))
    frozen = (rows == r_m) & (cols >= c_lo - 1) & (cols <= c_hi + 1)
    for e_lo, e_hi in eye_cols:
        frozen |= (rows == r_e) & (cols >= e_lo - 1) & (cols <= e_hi + 1)
    faces = flip_edges(pts, faces, frozen | (cols < 0))
    n0 = len(pts)
    pts, rows, cols, faces, mouth_loop = _cut_slit(pts, rows, cols, faces, r_m, c_lo, c_hi)
    mouth_dups = np.arange(n0, len(pts))
    eye_loops, eye_theta, eye_dups = [], [], []
    for e_lo, e_hi in eye_cols:
        n0 = len(pts)
        pts, rows, cols, faces, loop = _cut_slit(pts, rows, cols, faces, r_e, e_lo, e_hi)
        eye_loops.append(loop)
        eye_theta.append((theta[e_lo], theta[e_hi]))
        eye_dups.append(np.arange(n0, len(pts)))
    n_skin = len(pts)

    def sides(row: int, dups: np.ndarray, slit: np.ndarray) -> np.ndarray:
        side = np.sign(rows - row).astype(np.int8)
        side[slit] = 1
        side[dups] = -1
        return side

    mouth_side = sides(r_m, mouth_dups, mouth_loop[1 : len(mouth_dups) + 1])
    eye_side = [sides(r_e, d, lp[1 : len(d) + 1]) for d, lp in zip(eye_dups, eye_loops, strict=True)]
    vtheta = np.where(cols >= 0, theta[np.maximum(cols, 0)], 0.0)
    lids = _open_lids(
        pts,
        {"eye_theta": eye_theta, "vtheta": vtheta, "eye_side": eye_side, "vrows": rows, "vcols": cols,
         "slit_rows": info["slit_rows"]},
    )  # fmt: skip
    pts = lids["pts"]

    b = _Builder()
    b.add(pts, mouth_side=mouth_side, lid_eye=lids["lid_eye"], lid_side=lids["lid_side"], lid_s=lids["lid_s"],
          lid_d=lids["lid_d"])  # fmt: skip
    b.tris(faces)

    # --- mouth cavity
    lp = pts[mouth_loop]
    x_l, x_r = pts[mouth_loop[0], 0], pts[mouth_loop[len(mouth_dups) + 1], 0]
    s = np.where(lp[:, 0] < 0, -lp[:, 0] / x_l, lp[:, 0] / x_r)
    s = np.clip(s, -1.0, 1.0)
    side = mouth_side[mouth_loop]
    loops = [mouth_loop]
    for k in range(1, N_MOUTH_RINGS + 1):
        loops.append(b.add(_mouth_ring(k, lp, side, s), part=PART_MOUTH, mouth_side=side, mouth_s=s, ring=k,
                           attach=mouth_loop))  # fmt: skip
    cap = b.add(np.array([0.0, Y_MOUTH - 0.007, -0.026]), part=PART_MOUTH, ring=N_MOUTH_RINGS + 1)[0]
    b.tris(_tube(loops, cap, faces))

    # --- eye sockets (end inside the eyeballs)
    centres = np.array([EYE_CENTER * [1, 1, 1], EYE_CENTER * [-1, 1, 1]])
    for k, loop in enumerate(eye_loops):
        c = centres[k]
        q = pts[loop] - c
        rad = np.linalg.norm(q, axis=1, keepdims=True)
        ann = {"part": PART_SOCKET, "attach": loop, "lid_eye": k, "lid_side": lids["lid_side"][loop],
               "lid_s": lids["lid_s"][loop], "lid_d": 0.0}  # fmt: skip
        r1 = b.add(c + q * (EYE_RADIUS - 0.0006) / rad, ring=1, **ann)
        r2 = b.add(c + q * 0.007 / rad + np.array([0, 0, -0.002]), ring=2, **ann)
        cap = b.add(c + np.array([0, 0, -0.005]), part=PART_SOCKET, ring=3)[0]
        b.tris(_tube([loop, r1, r2], cap, faces))

    # --- eyeballs, teeth, tongue
    eyeball_idx, eyeball_mat = [], []
    for c in centres:
        e_pts, e_faces, e_mat = _eyeball(c)
        idx = b.add(e_pts, part=PART_EYEBALL)
        b.tris(e_faces + idx[0])
        eyeball_idx.append(idx)
        eyeball_mat.append(e_mat)
    teeth_gap = {}
    for upper, part in ((True, PART_TEETH_UP), (False, PART_TEETH_LOW)):
        t_pts, t_faces, gap = _teeth(upper)
        idx = b.add(t_pts, part=part, mouth_side=1 if upper else -1)
        b.tris(t_faces + idx[0])
        teeth_gap[part] = (idx, gap)
    t_pts, t_faces = _tongue()
    idx = b.add(t_pts, part=PART_TONGUE, mouth_side=-1)
    b.tris(t_faces + idx[0])

    verts, tris, ann = b.arrays()
    corners = verts[[mouth_loop[len(mouth_dups) + 1], mouth_loop[0]]]
    mesh = HeadMesh(
        vertices=verts,
        faces=tris.astype(np.int32),
        part=ann["part"],
        material=np.zeros(len(verts), np.uint8),
        colors=np.zeros((len(verts), 3), np.float32),
        mouth_side=ann["mouth_side"],
        mouth_s=ann["mouth_s"],
        ring=ann["ring"],
        attach=ann["attach"],
        lid_eye=ann["lid_eye"],
        lid_side=ann["lid_side"],
        lid_s=ann["lid_s"],
        lid_d=ann["lid_d"],
        eye_centers=centres,
        mouth_corners=corners,
        extra={
            "n_skin": n_skin, "eyeballs": eyeball_idx, "eyeball_materials": eyeball_mat, "teeth_gap": teeth_gap,
            "mouth_loop": mouth_loop, "eye_loops": eye_loops, "rows": rows, "slit_rows": info["slit_rows"],
            "vtheta": vtheta,
        },
    )  # fmt: skip
    _paint(mesh)
    return mesh


# ---------------------------------------------------------------------------------------------
# Colours.

_COLORS = {
    "skin": (0.86, 0.64, 0.53), "lips": (0.74, 0.40, 0.40), "lips_inner": (0.62, 0.27, 0.28),
    "mouth": (0.36, 0.10, 0.10), "throat": (0.10, 0.02, 0.02), "sclera": (0.93, 0.91, 0.87),
    "iris": (0.33, 0.45, 0.55), "iris_rim": (0.16, 0.2, 0.25), "pupil": (0.03, 0.03, 0.03),
    "teeth": (0.95, 0.93, 0.86), "gap": (0.62, 0.58, 0.52), "gum": (0.80, 0.45, 0.45), "tongue": (0.76, 0.36, 0.37),
    "hair": (0.23, 0.16, 0.11), "brow": (0.30, 0.21, 0.15), "lash": (0.14, 0.10, 0.08),
    "socket": (0.78, 0.48, 0.46), "blush": (0.88, 0.58, 0.50), "nostril": (0.32, 0.17, 0.14),
}  # fmt: skip


def _mix(colors: np.ndarray, where: np.ndarray, name: str, amount: np.ndarray | float = 1.0) -> None:
    a = np.broadcast_to(np.asarray(amount, np.float64), where.shape)[where][:, None]
    colors[where] = colors[where] * (1 - a) + np.array(_COLORS[name]) * a


def vermilion(x: np.ndarray, y: np.ndarray, side: np.ndarray) -> np.ndarray:
    """How much a skin point ``(x, y)`` on lip side ``side`` lies on the red of the lips (0..1)."""
    u = np.clip(np.abs(x) / MOUTH_HALF_WIDTH, 0.0, 1.2)
    env = np.clip(1.0 - u * u, 0.0, 1.0)
    h_up = 0.0068 * env**0.5 + 0.0011 * np.exp(-(((np.abs(x) - 0.0055) / 0.003) ** 2)) * env
    h_up -= 0.0007 * np.exp(-((x / 0.0022) ** 2))
    h_low = 0.0092 * env**0.45
    dy = y - Y_MOUTH
    inside = np.where(side > 0, h_up - dy, np.where(side < 0, h_low + dy, -1.0))
    return _smoothstep(-0.0012, 0.0012, inside) * (1 - _smoothstep(0.9, 1.05, u))


def _paint(m: HeadMesh) -> None:
    """Fill ``m.colors`` and ``m.material``."""
    v = m.vertices
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    col = np.tile(np.array(_COLORS["skin"]), (len(v), 1))
    mat = np.full(len(v), SKIN, np.uint8)
    skin = m.part == PART_SKIN
    ax = np.abs(x)
    # cheeks, nose tip and ears slightly rosier
    _mix(col, skin, "blush", 0.45 * np.exp(-(((ax - 0.045) / 0.018) ** 2 + ((y + 0.02) / 0.02) ** 2)) * (z > 0))
    _mix(col, skin, "blush", 0.3 * np.exp(-((x / 0.01) ** 2 + ((y + 0.02) / 0.01) ** 2 + ((z - 0.12) / 0.01) ** 2)))
    _mix(col, skin, "blush", 0.35 * np.exp(-(((ax - 0.078) / 0.01) ** 2)) * (np.abs(y) < 0.035))
    # nostrils: dark ovals on the underside of the nose
    nos = np.exp(-(((ax - 0.0075) / 0.0032) ** 2 + ((y + 0.0305) / 0.0022) ** 2 + ((z - 0.1035) / 0.005) ** 2))
    _mix(col, skin, "nostril", np.clip(1.6 * nos, 0, 1))
    # hair: a hairline low at the back, receding at the temples, sideburns in front of the ears
    az = np.degrees(np.abs(np.arctan2(x, z)))
    hairline = np.interp(
        az,
        [0, 30, 50, 66, 78, 86, 96, 108, 125, 180],
        [0.088, 0.084, 0.075, 0.062, 0.03, 0.01, 0.032, 0.034, -0.01, -0.05],
    )
    soft = np.interp(az, [0, 50, 90, 180], [0.005, 0.007, 0.011, 0.014])  # wider where the mesh is coarser
    hair = _smoothstep(-1.0, 1.0, (y - hairline) / soft)
    _mix(col, skin, "hair", hair)
    mat[skin & (hair > 0.5)] = HAIR
    # eyebrows
    u = (ax - 0.009) / 0.05
    y_brow = 0.0335 + 0.0065 * np.sin(np.pi * np.clip(u, 0, 1) ** 0.8) - 0.004 * np.clip(u - 0.7, 0, None)
    half = 0.0033 * (1.25 - 0.6 * np.clip(u, 0, 1))
    brow = (1 - _smoothstep(half * 0.45, half * 1.45, np.abs(y - y_brow))) * _smoothstep(-0.1, 0.1, u)
    brow *= 1 - _smoothstep(0.85, 1.1, u)
    brow *= z > 0.05
    _mix(col, skin, "brow", 0.92 * brow)
    mat[skin & (brow > 0.5)] = HAIR
    # lips
    red = vermilion(x, y, m.mouth_side) * skin * (z > 0.07)
    _mix(col, skin, "lips", red)
    mat[skin & (red > 0.5)] = LIPS
    # lash lines: the upper lid margin dark, the lower slightly darker
    lid = m.lid_eye >= 0
    prof = np.where(np.abs(m.lid_s) < 1.05, 1.0, 0.0)
    lash_up = lid & skin & (m.lid_side > 0) & (m.lid_d < 0.0012)
    lash_low = lid & skin & (m.lid_side < 0) & (m.lid_d < 0.0012)
    _mix(col, lash_up, "lash", 0.9 * prof)
    _mix(col, lash_low, "lash", 0.35 * prof)

    # interiors
    mouth = m.part == PART_MOUTH
    _mix(col, mouth & (m.ring <= 2), "lips_inner")
    _mix(col, mouth & (m.ring >= 3), "mouth")
    _mix(col, mouth & (m.ring >= 5), "throat")
    mat[mouth & (m.ring <= 2)] = LIPS
    mat[mouth & (m.ring >= 3)] = MOUTH
    sock = m.part == PART_SOCKET
    _mix(col, sock, "socket")
    _mix(col, sock & (m.ring == 1) & (m.lid_side > 0), "lash", 0.7)
    mat[sock] = MOUTH
    for idx, emat in zip(m.extra["eyeballs"], m.extra["eyeball_materials"], strict=True):
        mat[idx] = emat
        col[idx] = np.array([_COLORS["sclera"], _COLORS["iris"], _COLORS["pupil"]])[
            np.select([emat == EYE_WHITE, emat == IRIS], [0, 1], 2)
        ]
        rim = idx[np.flatnonzero(emat == IRIS)[-_EYE_SEG:]]
        col[rim] = _COLORS["iris_rim"]
        inner = idx[np.flatnonzero(emat == IRIS)[:_EYE_SEG]]
        col[inner] = np.array(_COLORS["iris"]) * 0.75
    for part, (idx, gap) in m.extra["teeth_gap"].items():
        mat[idx] = TEETH
        col[idx] = _COLORS["teeth"]
        _mix(col, np.isin(np.arange(len(v)), idx[gap > 0.5]), "gap")
        root = idx[np.abs(v[idx, 1] - Y_MOUTH) > 0.008]
        _mix(col, np.isin(np.arange(len(v)), root), "gum", 0.8)
        del part
    tongue = m.part == PART_TONGUE
    mat[tongue] = TONGUE
    col[tongue] = _COLORS["tongue"]
    m.colors = np.clip(col, 0, 1).astype(np.float32)
    m.material = mat
