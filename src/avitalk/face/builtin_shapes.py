"""The 52 ARKit blendshapes of the built-in face as smooth vertex-offset fields.

Every shape is an offset field ``(V, 3)`` (metres) on :class:`~avitalk.face.builtin_mesh.HeadMesh`,
built from a few ingredients:

- **jaw**: a rotation about an X-parallel axis (``JAW_HINGE``) weighted by a smooth jaw field
  (1 on the lower lip, chin, lower teeth, tongue and mouth floor; 0 on the upper lip, the upper
  face and the neck; 1/2 at the mouth corners). ``jawOpen`` is that rotation (20 degrees, ~35 mm
  at the lower incisors) as a linear offset; ``jawLeft``/``jawRight`` turn the jaw about a vertical
  axis (~8 mm at the chin), ``jawForward`` slides it 7 mm. ``mouthClose`` moves both lips half-way
  back along the jaw rotation, so ``jawOpen + mouthClose`` gives an open jaw with closed lips (as in
  ARKit, it is meant with ``mouthClose <= jawOpen``; alone it pushes the lips into each other);
- **lids**: rotations of lid vertices about the eyeball centre (the same field that opened the
  eyes when the mesh was built): blinks bring the upper lid down to meet the slightly raised lower
  lid exactly; squint/wide/gaze-follow use the same field with other angles;
- **eyeballs**: ``eyeLook*`` rotate the eyeball meshes about their centres (26 degrees);
- **skin**: Gaussian/smoothstep masks around landmarks (mouth corners, lips, cheeks, brows, nose)
  times a displacement; the inner lip rolls of the mouth cavity follow the lip margin they hang
  from, fading with depth;
- ``tongueOut`` slides the tongue's front forwards and up over the lower teeth, out of the mouth
  (meant together with ``jawOpen``; with the jaw closed the tongue passes through the teeth).

Sides follow ARKit: "Left" is the subject's left, +X.
"""

from __future__ import annotations

import numpy as np

from avitalk.face.builtin_mesh import (
    JAW_HINGE,
    LOWER_LID_OPEN,
    MOUTH_HALF_WIDTH,
    PART_MOUTH,
    PART_SKIN,
    PART_TEETH_LOW,
    PART_TONGUE,
    UPPER_LID_OPEN,
    Y_MOUTH,
    HeadMesh,
    _smoothstep,
    lid_falloff,
    lid_profile,
    rot_x,
)
from avitalk.spaces import ARKIT_BLENDSHAPES

JAW_OPEN_ANGLE = np.radians(20.0)  #: jaw rotation at ``jawOpen = 1``
JAW_SIDE_ANGLE = np.radians(4.5)  #: jaw turn at ``jawLeft = 1`` (about 8 mm at the chin)
GAZE_ANGLE = np.radians(26.0)  #: eyeball rotation at ``eyeLook* = 1``
_MOUTH_RING_DECAY = np.array([1.0, 1.0, 0.85, 0.45, 0.15, 0.0, 0.0, 0.0])  # by ring depth 0..7
_SOCKET_RING_DECAY = np.array([1.0, 1.0, 0.7, 0.0])


def _gauss(v: np.ndarray, centre: tuple, sigma: tuple | float) -> np.ndarray:
    """Anisotropic Gaussian bump ``exp(-|(v - c) / sigma|^2 / 2)`` over ``(V, 3)`` points."""
    q = (v - np.asarray(centre)) / np.asarray(sigma)
    return np.exp(-0.5 * np.einsum("ij,ij->i", q, q))


class _Fields:
    """Per-vertex masks shared by the shapes (all ``(V,)`` unless noted)."""

    def __init__(self, m: HeadMesh) -> None:
        self.m = m
        v = m.vertices
        self.v = v
        self.x, self.y, self.z = v[:, 0], v[:, 1], v[:, 2]
        self.skin = m.part == PART_SKIN
        self.dy = self.y - Y_MOUTH
        self.side = m.mouth_side.astype(np.float64)  # +1 upper lip side, -1 lower
        self.front = _smoothstep(0.05, 0.075, self.z) * self.skin
        u = np.abs(self.x) / MOUTH_HALF_WIDTH
        self.env = np.clip(1.0 - u * u, 0.0, 1.0)  # 1 mid-mouth, 0 at/after the corners
        # lips area (both lips and the skin around them)
        self.corners = m.mouth_corners  # (2, 3) left (+X), right
        self.zc = float(self.corners[:, 2].mean())
        # smooth "below the lips" field: 1/0 on the lower/upper lip, 1/2 at the corners, by height elsewhere
        h_lip = self.side * np.maximum(np.abs(self.dy), 0.004 * self.env)
        zone = (1 - _smoothstep(0.8 * MOUTH_HALF_WIDTH, 1.15 * MOUTH_HALF_WIDTH, np.abs(self.x))) * _smoothstep(
            self.zc - 0.02, self.zc, self.z
        )
        self.lowness = 1.0 - _smoothstep(-0.004, 0.004, zone * h_lip + (1 - zone) * self.dy)
        self.lips = np.exp(-((self.x / 0.03) ** 4)) * np.exp(-((self.dy / 0.016) ** 2)) * self.front
        self.upper = self.lips * (1 - self.lowness)
        self.lower = self.lips * self.lowness
        self.mouth_area = np.exp(-((self.x / 0.032) ** 2 + (self.dy / 0.02) ** 2)) * self.front
        self.jaw = self._jaw_weight()
        self.jaw_full = rot_x(np.full(len(v), JAW_OPEN_ANGLE), v, JAW_HINGE) - v  # rigid jaw offset everywhere

    def _jaw_weight(self) -> np.ndarray:
        m, x, y, z = self.m, self.x, self.y, self.z
        zc = self.zc
        t = np.clip((zc - z) / (zc - JAW_HINGE[2]), 0.0, 1.0)
        y_bound = Y_MOUTH + (JAW_HINGE[1] - 0.008 - Y_MOUTH) * t
        h = y - y_bound
        h_lip = self.side * np.maximum(np.abs(self.dy), 0.011 * self.env)
        lam = (1 - _smoothstep(0.8 * MOUTH_HALF_WIDTH, 1.15 * MOUTH_HALF_WIDTH, np.abs(x))) * _smoothstep(
            zc - 0.02, zc, z
        )
        h = lam * h_lip + (1 - lam) * h
        w = 1.0 - _smoothstep(-0.011, 0.011, h)
        y_low = np.interp(z, [-0.01, 0.03, 0.09], [-0.09, -0.105, -0.105])
        w *= _smoothstep(y_low - 0.035, y_low, y)  # neck stays
        w *= _smoothstep(-0.035, -0.005, z)  # back of the head stays
        w = np.where(self.skin, w, 0.0)
        mouth = m.part == PART_MOUTH
        env_r = np.sqrt(np.clip(1.0 - m.mouth_s**2, 0.0, 1.0))
        w = np.where(mouth, 0.5 - 0.5 * self.side * _smoothstep(0.0, 0.35, env_r), w)
        w = np.where((m.part == PART_TEETH_LOW) | (m.part == PART_TONGUE), 1.0, w)
        return w

    # --- helpers producing (V, 3) offsets
    def surface(self, off: np.ndarray) -> np.ndarray:
        """Keep skin offsets, make cavity/socket rings follow the slit vertex they hang from."""
        m = self.m
        out = np.where(self.skin[:, None], off, 0.0)
        ring = m.attach >= 0
        decay = np.where(
            m.part == PART_MOUTH,
            _MOUTH_RING_DECAY[np.minimum(m.ring, 7)],
            _SOCKET_RING_DECAY[np.minimum(m.ring, 3)],
        )
        out[ring] = out[m.attach[ring]] * decay[ring, None]
        return out

    def lids(self, eye: int, upper: float | np.ndarray, lower: float | np.ndarray) -> np.ndarray:
        """Rotate the lids of ``eye`` (0 left, 1 right): margins by ``upper`` up / ``lower`` down (radians).

        ``upper`` and ``lower`` may be per-vertex arrays (already including the lid profile).
        """
        m = self.m
        sel = np.flatnonzero(m.lid_eye == eye)
        side, s, d = m.lid_side[sel], m.lid_s[sel], m.lid_d[sel]
        up = upper[sel] if isinstance(upper, np.ndarray) else upper * lid_profile(s, side)
        low = lower[sel] if isinstance(lower, np.ndarray) else lower * lid_profile(s, side)
        angle = np.where(side > 0, up, -low) * lid_falloff(side, d)
        out = np.zeros_like(self.v)
        out[sel] = rot_x(-angle, self.v[sel], m.eye_centers[eye]) - self.v[sel]
        return out

    def blink(self, eye: int) -> np.ndarray:
        """Upper lid down to meet the lower lid, which rises by 30 % of its opening."""
        m = self.m
        s, n = m.lid_s, len(self.v)
        p_up, p_low = lid_profile(s, np.ones(n)), lid_profile(s, -np.ones(n))
        meet = 0.7 * LOWER_LID_OPEN * p_low  # final margin angle below the slit line
        return self.lids(eye, -(UPPER_LID_OPEN * p_up + meet), -0.3 * LOWER_LID_OPEN * p_low)

    def gaze(self, eye: int, pitch: float, yaw: float) -> np.ndarray:
        """Rotate eyeball ``eye``: ``pitch`` > 0 looks down, ``yaw`` > 0 looks towards +X."""
        m = self.m
        idx = m.extra["eyeballs"][eye]
        c = m.eye_centers[eye]
        q = self.v[idx] - c
        cp, sp, cy, sy = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
        rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        out = np.zeros_like(self.v)
        out[idx] = q @ (ry @ rx).T - q
        return out


def build_basis(m: HeadMesh) -> np.ndarray:
    """All 52 ARKit blendshapes of ``m`` in :data:`~avitalk.spaces.ARKIT_BLENDSHAPES` order.

    Returns:
        ``(52, V, 3)`` float32 offsets in metres.
    """
    f = _Fields(m)
    v, x, y, z, dy = f.v, f.x, f.y, f.z, f.dy
    n = len(v)
    shapes: dict[str, np.ndarray] = {}

    def vec(*parts: tuple[np.ndarray, tuple]) -> np.ndarray:
        out = np.zeros((n, 3))
        for mask, d in parts:
            out += mask[:, None] * np.asarray(d, np.float64)
        return out

    # ----- eyes (k = 0 left/+X, 1 right)
    for k, side in enumerate(("Left", "Right")):
        sx = 1.0 if k == 0 else -1.0
        ec = m.eye_centers[k]
        shapes[f"eyeBlink{side}"] = f.blink(k)
        shapes[f"eyeLookDown{side}"] = f.gaze(k, GAZE_ANGLE, 0.0) + f.lids(k, -np.radians(12), -np.radians(4))
        shapes[f"eyeLookUp{side}"] = f.gaze(k, -GAZE_ANGLE, 0.0) + f.lids(k, np.radians(9), -np.radians(5))
        shapes[f"eyeLookIn{side}"] = f.gaze(k, 0.0, -sx * GAZE_ANGLE)
        shapes[f"eyeLookOut{side}"] = f.gaze(k, 0.0, sx * GAZE_ANGLE)
        crow = _gauss(v, (ec[0] + sx * 0.02, ec[1], ec[2] - 0.004), (0.01, 0.012, 0.015)) * f.skin
        cheek = _gauss(v, (ec[0] + sx * 0.006, ec[1] - 0.02, ec[2] + 0.004), (0.013, 0.009, 0.02)) * f.skin
        shapes[f"eyeSquint{side}"] = f.lids(k, -np.radians(5), -np.radians(11)) + f.surface(
            vec((crow, (-sx * 0.0015, 0.0005, 0.0)), (cheek, (0.0, 0.0015, 0.0005)))
        )
        shapes[f"eyeWide{side}"] = f.lids(k, np.radians(13), np.radians(4))

    # ----- jaw
    jaw = f.jaw
    shapes["jawOpen"] = jaw[:, None] * f.jaw_full
    shapes["jawForward"] = vec((jaw, (0.0, 0.0, 0.007)))
    for side, a in (("Left", JAW_SIDE_ANGLE), ("Right", -JAW_SIDE_ANGLE)):  # turn about a vertical axis
        q = v - JAW_HINGE
        turned = np.stack(
            [q[:, 0] * np.cos(a) + q[:, 2] * np.sin(a), q[:, 1], -q[:, 0] * np.sin(a) + q[:, 2] * np.cos(a)], 1
        )
        shapes[f"jaw{side}"] = jaw[:, None] * (turned - q)
    close = np.exp(-((dy / 0.012) ** 2)) * np.exp(-((x / 0.03) ** 4)) * f.front
    close = np.where(m.part == PART_MOUTH, np.interp(m.ring, [0, 1, 2, 3], [1.0, 1.0, 0.8, 0.0]), close)
    shapes["mouthClose"] = ((0.5 - jaw) * close)[:, None] * f.jaw_full

    # ----- lips
    lf = f.mouth_area
    margin = np.exp(-((dy / 0.005) ** 2))
    near = np.exp(-((dy / 0.01) ** 2))
    shapes["mouthFunnel"] = f.surface(
        vec((lf, (0.0, 0.0, 0.006)), (lf * margin, (0.0, 0.0, 0.003)))
        + (lf * near * f.side * 0.0045 * np.sqrt(f.env))[:, None] * [0.0, 1.0, 0.0]
        + (lf * -0.22 * x)[:, None] * [1.0, 0.0, 0.0]
    )
    shapes["mouthPucker"] = f.surface(
        vec((lf, (0.0, 0.0, 0.008)), (lf * margin, (0.0, 0.0, 0.002)))
        + (lf * -0.38 * x)[:, None] * [1.0, 0.0, 0.0]
        + (lf * -0.22 * dy)[:, None] * [0.0, 1.0, 0.0]
    )
    wide = np.exp(-((x / 0.04) ** 2 + (dy / 0.025) ** 2)) * f.front
    shapes["mouthLeft"] = f.surface(vec((wide, (0.008, 0.0, -0.001))))
    shapes["mouthRight"] = f.surface(vec((wide, (-0.008, 0.0, -0.001))))
    for k, side in enumerate(("Left", "Right")):
        sx = 1.0 if k == 0 else -1.0
        c = m.mouth_corners[k]
        corner = _gauss(v, c, (0.012, 0.011, 0.014)) * f.skin
        corner_w = _gauss(v, c, (0.016, 0.014, 0.018)) * f.skin
        cheek = _gauss(v, (c[0] + sx * 0.008, c[1] + 0.022, c[2] - 0.008), (0.014, 0.012, 0.014)) * f.skin
        half = _smoothstep(-0.006, 0.008, sx * x)  # this side of the mouth
        lat = _gauss(v, (sx * 0.011, Y_MOUTH, 0.0), (0.011, 1.0, 1.0))
        shapes[f"mouthSmile{side}"] = f.surface(
            vec((corner_w, (sx * 0.006, 0.0075, -0.004)), (cheek, (sx * 0.0015, 0.0035, 0.0025)))
        )
        shapes[f"mouthFrown{side}"] = f.surface(
            vec((corner, (sx * 0.0015, -0.0065, 0.0)), (corner_w * f.lowness, (0.0, -0.002, 0.0005)))
        )
        shapes[f"mouthDimple{side}"] = f.surface(vec((corner, (sx * 0.003, 0.0005, -0.005))))
        shapes[f"mouthStretch{side}"] = f.surface(
            vec((corner_w, (sx * 0.007, -0.0025, -0.002)), (f.lower * half, (sx * 0.002, -0.002, -0.001)))
        )
        press = f.lips * half * near
        shapes[f"mouthPress{side}"] = f.surface(
            (press * -0.35 * dy)[:, None] * [0.0, 1.0, 0.0] + vec((press, (0.0, 0.0, -0.0015)))
        )
        low = f.lowness * lat * np.exp(-((dy / 0.014) ** 2)) * f.front
        shapes[f"mouthLowerDown{side}"] = f.surface(vec((low, (sx * 0.0008, -0.006, 0.001))))
        up = (1 - f.lowness) * lat * np.exp(-((dy / 0.016) ** 2)) * f.front
        shapes[f"mouthUpperUp{side}"] = f.surface(vec((up, (0.0, 0.005, 0.001))))
    roll = np.exp(-((dy / 0.008) ** 2))
    shapes["mouthRollLower"] = f.surface(vec((f.lower * roll, (0.0, 0.0035, -0.0055))))
    shapes["mouthRollUpper"] = f.surface(vec((f.upper * roll, (0.0, -0.003, -0.005))))
    chin = np.exp(-((x / 0.03) ** 2) - ((dy + 0.02) / 0.024) ** 2) * f.front * f.lowness
    shapes["mouthShrugLower"] = f.surface(vec((chin, (0.0, 0.004, 0.003))))
    shapes["mouthShrugUpper"] = f.surface(vec((f.upper, (0.0, 0.003, 0.0015))))

    # ----- brows
    brow_y = 0.034
    vert = np.where(y > brow_y, np.exp(-(((y - brow_y) / 0.026) ** 2)), np.exp(-(((y - brow_y) / 0.011) ** 2)))
    face_front = _smoothstep(0.03, 0.06, z) * f.skin * vert
    inner = np.exp(-(((np.abs(x) - 0.015) / 0.012) ** 2)) * face_front
    shapes["browInnerUp"] = f.surface(
        vec((inner, (0.0, 0.0065, 0.0))) + (inner * -np.sign(x) * 0.001)[:, None] * [1, 0, 0]
    )
    for k, side in enumerate(("Left", "Right")):
        sx = 1.0 if k == 0 else -1.0
        mid = np.exp(-(((x - sx * 0.022) / 0.017) ** 2)) * face_front
        outer = np.exp(-(((x - sx * 0.043) / 0.013) ** 2)) * face_front
        shapes[f"browDown{side}"] = f.surface(vec((mid, (-sx * 0.002, -0.0055, 0.001))))
        shapes[f"browOuterUp{side}"] = f.surface(vec((outer, (0.0, 0.006, 0.0))))

    # ----- cheeks and nose
    puff = np.zeros(n)
    out_dir = np.zeros((n, 3))
    for sx in (1.0, -1.0):
        g = _gauss(v, (sx * 0.042, Y_MOUTH + 0.006, 0.058), (0.014, 0.016, 0.018)) * f.skin
        puff += g
        d = np.stack([x - sx * 0.01, np.zeros(n), z - 0.03], 1)
        out_dir += g[:, None] * d / np.linalg.norm(d, axis=1, keepdims=True)
    shapes["cheekPuff"] = f.surface(0.012 * out_dir + vec((lf, (0.0, 0.0, 0.0015))))
    for k, side in enumerate(("Left", "Right")):
        sx = 1.0 if k == 0 else -1.0
        ec = m.eye_centers[k]
        cheek = _gauss(v, (ec[0] + sx * 0.006, ec[1] - 0.024, ec[2] + 0.006), (0.016, 0.012, 0.02)) * f.skin
        shapes[f"cheekSquint{side}"] = f.surface(vec((cheek, (0.0, 0.004, 0.001)))) + f.lids(k, 0.0, -np.radians(6))
        ala = _gauss(v, (sx * 0.013, -0.024, 0.099), (0.008, 0.008, 0.01)) * f.skin
        side_nose = _gauss(v, (sx * 0.014, 0.0, 0.09), (0.008, 0.012, 0.012)) * f.skin
        lip = f.upper * _gauss(v, (sx * 0.011, Y_MOUTH, 0.0), (0.01, 1.0, 1.0))
        shapes[f"noseSneer{side}"] = f.surface(
            vec((ala, (sx * 0.0008, 0.0042, -0.0005)), (side_nose, (0.0, 0.0025, 0.0)), (lip, (0.0, 0.002, 0.0)))
        )

    # ----- tongue
    tongue = (m.part == PART_TONGUE) * _smoothstep(0.03, 0.085, z)
    shapes["tongueOut"] = vec((tongue, (0.0, 0.013, 0.028)))  # over the lower teeth, out of the mouth

    missing = set(ARKIT_BLENDSHAPES) - set(shapes)
    if missing:
        raise RuntimeError(f"built-in face lacks shapes {sorted(missing)}")
    return np.stack([shapes[name] for name in ARKIT_BLENDSHAPES]).astype(np.float32)
