"""Headless CPU renderer for face meshes: no OpenGL context, no GPU, pip-installable everywhere.

A fixed perspective camera frames the face model's neutral mesh once (by default the face from
above the brows to below the chin, :func:`face_box`; ``RenderConfig(framing="head")`` frames the
whole mesh), so the view does not move over a sequence; a fixed key + fill light
and a hemisphere ambient light it; per-pixel (Phong) shading interpolates vertex normals and
per-vertex colours (the model's ``vertex_colors`` if it has them, else a skin tone). Frames come
out of generators as ``(H, W, 3)`` uint8 arrays, posing the face a chunk of frames at a time, so
rendering a 10-minute motion keeps memory flat.

Speed: the kernels in :mod:`avitalk.face.raster` are numba-compiled and release the GIL, so
frames render in parallel threads (``RenderConfig.workers``); see ``bench/bench_render.py``.

Side-by-side panels (e.g. ground truth | prediction) share one frame with an optional label strip
above and a caption strip (e.g. the instruction text, word-wrapped) below, drawn once with Pillow.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from avitalk.errors import AvitalkError
from avitalk.face import raster
from avitalk.face.base import FaceModel
from avitalk.types import Motion

T = TypeVar("T")
R = TypeVar("R")

#: sRGB albedo used when a face model has no per-vertex colours.
SKIN_TONE: tuple[float, float, float] = (0.80, 0.62, 0.53)
#: Values of :attr:`RenderConfig.framing`.
FRAMINGS = ("face", "head")
#: Face-box proportions in units of the eye-to-mouth height ``d`` (see :func:`face_box`): the top is
#: this far above the eye centres (brows ~0.4 d), the bottom this far below the mouth centre (the
#: chin's lowest point ~0.6 d), the half-width this many times the eyes region's half-width.
FACE_BOX_ABOVE_EYES = 0.6
FACE_BOX_BELOW_MOUTH = 0.9
FACE_BOX_WIDTH = 1.6


@dataclass(frozen=True)
class RenderConfig:
    """Everything that decides how a frame looks.

    Attributes:
        size: panel width and height in pixels.
        fov_deg: vertical field of view of the perspective camera (a portrait lens).
        framing: what the camera frames on the neutral mesh: ``"face"`` (default) the face from above
            the brows to below the chin (:func:`face_box`), ``"head"`` the whole mesh (neck included).
        margin: framing slack around the framed box (1 = touching the border).
        supersample: render at ``size * supersample`` and box-filter down (anti-aliasing).
        skin: sRGB albedo used when the face has no vertex colours.
        background_top, background_bottom: sRGB colours of the vertical background gradient.
        key_light, fill_light: ``(dx, dy, dz, r, g, b)``: direction towards the light (normalised
            here) in camera space (+Y up, +Z towards the viewer) and linear intensity.
        ambient, sky: hemisphere ambient ``ambient + sky * n_y``.
        specular, shininess: Blinn-Phong highlight of the key light.
        backface_gain: brightness of surfaces seen from behind (the inside of an open mouth).
        workers: render threads; 0 = ``min(2, os.cpu_count())``.
        chunk: frames posed per call of ``FaceModel.vertices``.
    """

    size: int = 512
    fov_deg: float = 20.0
    framing: str = "face"
    margin: float = 1.12
    supersample: int = 1
    skin: tuple[float, float, float] = SKIN_TONE
    background_top: tuple[float, float, float] = (0.22, 0.23, 0.26)
    background_bottom: tuple[float, float, float] = (0.08, 0.08, 0.09)
    key_light: tuple[float, ...] = (-0.45, 0.50, 0.74, 0.95, 0.92, 0.88)
    fill_light: tuple[float, ...] = (0.70, 0.05, 0.72, 0.26, 0.28, 0.32)
    ambient: float = 0.15
    sky: float = 0.05
    specular: float = 0.08
    shininess: float = 24.0
    backface_gain: float = 0.2
    workers: int = 0
    chunk: int = 64

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 8192:
            raise AvitalkError(f"render size must be between 16 and 8192 pixels, got {self.size}")
        if self.supersample not in (1, 2, 3, 4):
            raise AvitalkError(f"supersample must be 1, 2, 3 or 4, got {self.supersample}")
        if self.framing not in FRAMINGS:
            raise AvitalkError(f"framing must be one of {', '.join(FRAMINGS)}, got {self.framing!r}")

    def n_workers(self) -> int:
        """Resolved number of render threads (>= 1)."""
        return self.workers if self.workers > 0 else max(1, min(2, os.cpu_count() or 1))


@dataclass(frozen=True)
class Camera:
    """Pinhole camera looking down -Z from ``position``; axes aligned with the world.

    Attributes:
        position: ``(3,)`` camera centre in metres.
        focal: focal length in pixels.
        width, height: image size in pixels.
    """

    position: np.ndarray
    focal: float
    width: int
    height: int

    @classmethod
    def framing(cls, vertices: np.ndarray, size: int, fov_deg: float = 20.0, margin: float = 1.12) -> Camera:
        """A camera that frames ``vertices`` ``(V, 3)`` (centred, the larger side filling the view)."""
        lo, hi = vertices.min(axis=0).astype(np.float64), vertices.max(axis=0).astype(np.float64)
        centre = (lo + hi) / 2
        half = max(hi[0] - lo[0], hi[1] - lo[1]) / 2 * margin
        tan = math.tan(math.radians(fov_deg) / 2)
        distance = half / tan if half > 0 else 1.0
        position = np.array([centre[0], centre[1], hi[2] + distance], dtype=np.float64)
        focal = (size / 2) / tan
        return cls(position=position, focal=focal, width=size, height=size)

    def project(self, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pixel coordinates and reciprocal depth of ``vertices`` ``(V, 3)``.

        Returns:
            ``sx, sy`` ``(V,)`` float32 pixels (x right, y down) and ``invz`` ``(V,)`` float32
            ``1 / depth`` (0 for vertices behind a near plane 1 mm in front of the camera).
        """
        rel = vertices.astype(np.float64) - self.position  # (V, 3)
        depth = -rel[:, 2]
        ok = depth > 1e-3
        invz = np.where(ok, 1.0 / np.where(ok, depth, 1.0), 0.0)
        sx = self.width / 2 + self.focal * rel[:, 0] * invz
        sy = self.height / 2 - self.focal * rel[:, 1] * invz
        return sx.astype(np.float32), sy.astype(np.float32), invz.astype(np.float32)


def face_colors(face: Any) -> np.ndarray | None:
    """Per-vertex sRGB colours ``(V, 3)`` float32 in [0, 1] of a face model, if it provides them.

    Looks for a ``vertex_colors`` attribute, else a ``colors`` attribute (array or zero-argument
    method; ``(V, 3)`` float in [0, 1] or uint8) — optional, not part of the :class:`FaceModel`
    protocol. Anything else (missing, wrong shape) means "no colours".
    """
    n_v = face.neutral.shape[0]
    for attr in ("vertex_colors", "colors"):
        colors = getattr(face, attr, None)
        if callable(colors):
            colors = colors()
        if isinstance(colors, np.ndarray) and colors.ndim == 2 and colors.shape[0] == n_v and colors.shape[1] >= 3:
            break
    else:
        return None
    c = np.asarray(colors)
    if c.dtype == np.uint8:
        c = c.astype(np.float32) / 255.0
    return np.asarray(c[:, :3], dtype=np.float32)


def face_box(face: FaceModel) -> np.ndarray:
    """The box the default camera frames: the neutral face from above the brows to below the chin.

    Works for every face model from the protocol's ``eyes`` and ``lips`` regions alone: with ``E``
    the centroid of the eyes region, ``M`` that of the lips region and ``d = E_y - M_y`` (the
    eye-to-mouth height, ~7 cm on an adult), the box spans ``y`` from ``M_y - 0.9 d`` (below the
    chin) to ``E_y + 0.6 d`` (above the brows), ``x`` over ``E_x ± 1.6 ×`` the eyes region's
    half-width (cheek to cheek), and ``z`` over the neutral vertices inside that ``x, y`` window
    (the nose tip in front). It is clipped to the mesh's bounding box. A face whose regions do not
    give a plausible box (missing or empty, mouth not below the eyes) gets the whole-mesh box.

    Returns:
        ``(2, 3)`` float64 ``[lo, hi]`` corners, metres.
    """
    v = np.asarray(face.neutral, dtype=np.float64)
    whole = np.stack([v.min(axis=0), v.max(axis=0)])
    regions = getattr(face, "regions", None) or {}
    eyes = np.asarray(regions.get("eyes", ()), dtype=np.int64)
    lips = np.asarray(regions.get("lips", ()), dtype=np.int64)
    if eyes.size == 0 or lips.size == 0:
        return whole
    e, m = v[eyes].mean(axis=0), v[lips].mean(axis=0)
    d = e[1] - m[1]
    if not d > 0.05 * (whole[1, 1] - whole[0, 1]):
        return whole
    half_w = FACE_BOX_WIDTH * max(float(np.abs(v[eyes, 0] - e[0]).max()), 0.5 * d)
    lo = np.array([e[0] - half_w, m[1] - FACE_BOX_BELOW_MOUTH * d, 0.0])
    hi = np.array([e[0] + half_w, e[1] + FACE_BOX_ABOVE_EYES * d, 0.0])
    inside = np.all((v[:, :2] >= lo[:2]) & (v[:, :2] <= hi[:2]), axis=1)
    zs = v[inside, 2] if inside.any() else v[:, 2]
    lo[2], hi[2] = zs.min(), zs.max()
    return np.stack([np.maximum(lo, whole[0]), np.minimum(hi, whole[1])])


class MeshRenderer:
    """Renders one mesh topology with a fixed camera, lights and colours.

    Args:
        faces: ``(F, 3)`` int triangles.
        reference: ``(V, 3)`` vertices of the rest pose (usually the neutral face).
        colors: ``(V, 3)`` sRGB albedo in [0, 1], or None for ``config.skin``.
        config: look and speed settings.
        frame: ``(N, 3)`` points whose bounding box the camera frames (e.g. :func:`face_box`);
            default ``reference``.
        cull_back: skip triangles seen from behind; only for meshes of closed, consistently
            oriented surfaces (face models say so with ``closed = True``).
    """

    def __init__(
        self,
        faces: np.ndarray,
        reference: np.ndarray,
        colors: np.ndarray | None = None,
        config: RenderConfig | None = None,
        frame: np.ndarray | None = None,
        cull_back: bool = False,
    ) -> None:
        self.config = config or RenderConfig()
        self.cull_back = cull_back
        cfg = self.config
        self.faces = np.ascontiguousarray(faces, dtype=np.int32)
        ref = np.asarray(reference, dtype=np.float32)
        n_vertices = ref.shape[0]
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= n_vertices):
            raise AvitalkError(f"mesh faces index vertices outside 0..{n_vertices - 1}")
        self.n_vertices = n_vertices
        self.size = cfg.size
        self._inner = cfg.size * cfg.supersample
        target = ref if frame is None else np.asarray(frame, dtype=np.float32)
        self.camera = Camera.framing(target, self._inner, cfg.fov_deg, cfg.margin)
        if colors is None:
            albedo = np.broadcast_to(raster.srgb_to_linear(np.array(cfg.skin)), (n_vertices, 3))
        else:
            if colors.shape != (n_vertices, 3):
                raise AvitalkError(f"vertex colours have shape {colors.shape}, expected ({n_vertices}, 3)")
            albedo = raster.srgb_to_linear(colors)
        self._albedo = np.ascontiguousarray(albedo, dtype=np.float32)
        lights = np.array([cfg.key_light, cfg.fill_light], dtype=np.float64)
        lights[:, :3] /= np.linalg.norm(lights[:, :3], axis=1, keepdims=True)
        self._lights = lights.astype(np.float32)
        self._params = np.array(
            [cfg.ambient, cfg.sky, cfg.specular, cfg.shininess, cfg.backface_gain], dtype=np.float32
        )
        self._lut = raster.srgb_lut()
        self._background = _gradient(self._inner, self._inner, cfg.background_top, cfg.background_bottom)
        self._local = threading.local()

    def _buffers(self) -> tuple[np.ndarray, ...]:
        """Per-thread scratch buffers (reused across frames)."""
        buf = getattr(self._local, "buf", None)
        if buf is None:
            n = self._inner
            buf = (
                np.zeros((n, n), np.float32),  # 1/z
                np.full((n, n), -1, np.int32),  # triangle id
                np.zeros((n, n, 2), np.float32),  # barycentrics
                np.zeros(len(self.faces), np.int8),  # facing
                np.zeros((self.n_vertices, 3), np.float32),  # normals
                np.zeros((n, n, 3), np.uint8),  # supersampled image
            )
            self._local.buf = buf
        return buf

    def render(self, vertices: np.ndarray) -> np.ndarray:
        """Render one pose.

        Args:
            vertices: ``(V, 3)`` float32 metres.

        Returns:
            ``(size, size, 3)`` uint8 RGB image.
        """
        if vertices.shape != (self.n_vertices, 3):
            raise AvitalkError(f"vertices have shape {vertices.shape}, expected ({self.n_vertices}, 3)")
        zbuf, tri, bary, facing, normals, big = self._buffers()
        verts = np.ascontiguousarray(vertices, dtype=np.float32)
        sx, sy, invz = self.camera.project(verts)
        zbuf.fill(0.0)
        tri.fill(-1)
        raster.vertex_normals(verts, self.faces, normals)
        raster.rasterize(sx, sy, invz, self.faces, zbuf, tri, bary, facing, self.cull_back)
        s = self.config.supersample
        out = self._background.copy() if s == 1 else big
        if s > 1:
            out[:] = self._background
        raster.shade(
            tri, bary, facing, self.faces, invz, normals, self._albedo, self._lights, self._params, self._lut, out
        )
        if s == 1:
            return out
        small = np.empty((self.size, self.size, 3), np.uint8)
        raster.downsample(out, s, small)
        return small

    def render_sequence(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Render ``(V, 3)`` poses in order, ``config.workers`` frames at a time."""
        return parallel_map(self.render, frames, self.config.n_workers())


def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """Ordered ``map`` over threads with at most ``2 * workers`` items in flight (flat memory)."""
    if workers <= 1:
        for item in items:
            yield fn(item)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="avitalk-render") as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def pose_frames(face: FaceModel, motion: Motion, chunk: int = 64) -> Iterator[np.ndarray]:
    """Yield ``(V, 3)`` float32 vertices per frame, posing ``chunk`` frames per call."""
    face.space.require_same(motion.space, "motion")
    for start in range(0, motion.n_frames, chunk):
        block = face.vertices(np.ascontiguousarray(motion.values[start : start + chunk], dtype=np.float32))
        yield from block


def renderer_for(face: FaceModel, config: RenderConfig | None = None) -> MeshRenderer:
    """A :class:`MeshRenderer` for ``face`` with its vertex colours if any, its camera fixed on the
    neutral mesh: the face (:func:`face_box`) or, with ``config.framing == "head"``, the whole mesh."""
    cfg = config or RenderConfig()
    frame = face_box(face) if cfg.framing == "face" else None
    cull = bool(getattr(face, "closed", False))
    return MeshRenderer(face.faces, face.neutral, face_colors(face), cfg, frame=frame, cull_back=cull)


def render_motion(face: FaceModel, motion: Motion, config: RenderConfig | None = None) -> Iterator[np.ndarray]:
    """Render every frame of ``motion`` on ``face``.

    Yields:
        ``(size, size, 3)`` uint8 frames, ``motion.n_frames`` of them.
    """
    renderer = renderer_for(face, config)
    return renderer.render_sequence(pose_frames(face, motion, renderer.config.chunk))


@dataclass(frozen=True)
class Panel:
    """One view in a side-by-side video: a face, its motion and an optional label."""

    face: FaceModel
    motion: Motion
    label: str | None = None


@dataclass
class _Layout:
    header: np.ndarray | None
    footer: np.ndarray | None
    width: int
    height: int


def render_panels(
    panels: Sequence[Panel], caption: str | None = None, config: RenderConfig | None = None
) -> Iterator[np.ndarray]:
    """Render panels side by side with labels above and a wrapped caption below.

    All motions must have the same fps; the video is as long as the shortest one.

    Yields:
        ``(H, n * size, 3)`` uint8 frames, with ``H = size`` plus the label and caption strips
        (heights rounded up to even numbers for H.264).
    """
    if not panels:
        raise ValueError("render_panels needs at least one panel")
    cfg = config or RenderConfig()
    fps = {p.motion.fps for p in panels}
    if len(fps) > 1:
        raise AvitalkError(f"panels have different frame rates {sorted(fps)}; resample them to one fps first")
    renderers = [renderer_for(p.face, cfg) for p in panels]
    layout = panel_layout(len(panels), [p.label for p in panels], caption, cfg.size)
    streams = [pose_frames(p.face, p.motion, cfg.chunk) for p in panels]

    def compose(poses: tuple[np.ndarray, ...]) -> np.ndarray:
        row = np.concatenate([r.render(v) for r, v in zip(renderers, poses, strict=True)], axis=1)
        parts = [x for x in (layout.header, row, layout.footer) if x is not None]
        return np.ascontiguousarray(np.concatenate(parts, axis=0)) if len(parts) > 1 else row

    poses = zip(*streams, strict=False)  # stops with the shortest motion
    return parallel_map(compose, poses, cfg.n_workers())


def panel_layout(n_panels: int, labels: Sequence[str | None], caption: str | None, size: int) -> _Layout:
    """Pre-render the static label strip and caption strip of a panel frame (Pillow)."""
    width = n_panels * size
    font_px = max(10, round(size / 24))
    header = None
    if any(labels):
        header = _text_strip(width, [(i * size, lab or "") for i, lab in enumerate(labels)], font_px, size)
    footer = _caption_strip(width, caption, font_px) if caption else None
    height = size + (0 if header is None else header.shape[0]) + (0 if footer is None else footer.shape[0])
    return _Layout(header=header, footer=footer, width=width, height=height)


_BG_STRIP = (24, 24, 27)
_FG_TEXT = (235, 235, 235)


def _font(px: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1 without a scalable default font
        return ImageFont.load_default()


def _text_strip(width: int, items: list[tuple[int, str]], font_px: int, cell: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    font = _font(font_px)
    height = _even(int(font_px * 1.8))
    img = Image.new("RGB", (width, height), _BG_STRIP)
    draw = ImageDraw.Draw(img)
    for x0, text in items:
        if text:
            w = draw.textlength(text, font=font)
            draw.text((x0 + max(4, (cell - w) / 2), (height - font_px) / 2 - 1), text, fill=_FG_TEXT, font=font)
    return np.asarray(img, dtype=np.uint8)


def _caption_strip(width: int, text: str, font_px: int, max_lines: int = 4) -> np.ndarray:
    from PIL import Image, ImageDraw

    font = _font(font_px)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = wrap_text(text, lambda s: probe.textlength(s, font=font), width - 2 * font_px)
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], lines[max_lines - 1] + " …"]
    line_h = int(font_px * 1.35)
    height = _even(line_h * len(lines) + font_px)
    img = Image.new("RGB", (width, height), _BG_STRIP)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        w = draw.textlength(line, font=font)
        draw.text(((width - w) / 2, font_px / 2 + i * line_h), line, fill=_FG_TEXT, font=font)
    return np.asarray(img, dtype=np.uint8)


def wrap_text(text: str, measure: Callable[[str], float], max_width: float) -> list[str]:
    """Greedy word wrap of ``text`` so every line's ``measure`` fits ``max_width`` (long words stay whole)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            trial = f"{line} {word}" if line else word
            if line and measure(trial) > max_width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def _even(n: int) -> int:
    return n + (n % 2)


def _gradient(h: int, w: int, top: Sequence[float], bottom: Sequence[float]) -> np.ndarray:
    """``(h, w, 3)`` uint8 vertical gradient between two sRGB colours."""
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    col = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)  # (h, 3)
    row = np.clip(np.round(col * 255), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(row[:, None, :], (h, w, 3)))


__all__ = [
    "FRAMINGS",
    "Camera",
    "MeshRenderer",
    "Panel",
    "RenderConfig",
    "face_box",
    "face_colors",
    "panel_layout",
    "parallel_map",
    "pose_frames",
    "render_motion",
    "render_panels",
    "renderer_for",
    "wrap_text",
]
