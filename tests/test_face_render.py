"""CPU renderer: reference images with a tolerance, geometry checks, panels and captions.

Regenerate the reference PNGs after an intended look change with
``AVITALK_REGEN_REFERENCE=1 pytest tests/test_face_render.py`` and inspect them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avitalk.errors import AvitalkError
from avitalk.face.render import Camera, MeshRenderer, Panel, RenderConfig, render_motion, render_panels, wrap_text
from avitalk.spaces import ARKIT52
from avitalk.types import Motion
from face_util import SphereFace, talking_motion

DATA = Path(__file__).parent / "data"
REGEN = os.environ.get("AVITALK_REGEN_REFERENCE") == "1"
#: Mean absolute difference (0..255 levels) allowed against a reference image.
MAX_MEAN_DIFF = 1.5


def _pose() -> np.ndarray:
    v = np.zeros((1, ARKIT52.dim), np.float32)
    v[0, ARKIT52.index("jawOpen")] = 0.8
    v[0, ARKIT52.index("mouthSmileLeft")] = 1.0
    v[0, ARKIT52.index("headYaw")] = 0.25
    v[0, ARKIT52.index("headPitch")] = -0.1
    return v


def _check_reference(img: np.ndarray, name: str) -> None:
    path = DATA / name
    if REGEN or not path.exists():
        if not REGEN:
            pytest.fail(f"missing reference image {path}; run with AVITALK_REGEN_REFERENCE=1")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
    ref = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    assert ref.shape == img.shape
    diff = float(np.abs(ref - img.astype(np.int16)).mean())
    assert diff < MAX_MEAN_DIFF, f"{name}: mean abs diff {diff:.2f} >= {MAX_MEAN_DIFF}"


@pytest.mark.parametrize(("colors", "name"), [(False, "render_sphere.png"), (True, "render_sphere_colors.png")])
def test_reference_images(colors, name):
    face = SphereFace(colors=colors)
    r = MeshRenderer(face.faces, face.neutral, getattr(face, "vertex_colors", None), RenderConfig(size=128))
    img = r.render(face.vertices(_pose())[0])
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    _check_reference(img, name)


def test_reference_image_builtin_face_default_framing():
    from avitalk.face.builtin import BuiltinFace

    face = BuiltinFace.create()
    img = next(render_motion(face, Motion(_pose(), ARKIT52, 25.0), RenderConfig(size=128, workers=1)))
    _check_reference(img, "render_builtin.png")


def test_camera_frames_the_mesh_and_silhouette_area():
    face = SphereFace()
    cfg = RenderConfig(size=200, margin=1.0, workers=1)
    r = MeshRenderer(face.faces, face.neutral, None, cfg)
    img = r.render(face.neutral)
    fg = np.any(img != r._background, axis=2)
    ys, xs = np.nonzero(fg)
    # the sphere is centred and its silhouette nearly touches the border (margin 1.0)
    assert abs((xs.min() + xs.max()) / 2 - 99.5) < 2 and abs((ys.min() + ys.max()) / 2 - 99.5) < 2
    assert 5 <= xs.min() <= 20 and 179 <= xs.max() <= 194
    # silhouette of a sphere seen in perspective: a disc of radius f * r / sqrt(d^2 - r^2)
    cam = r.camera
    d = float(np.linalg.norm(cam.position))
    radius_px = cam.focal * 0.1 / np.sqrt(d**2 - 0.1**2)
    assert fg.sum() == pytest.approx(np.pi * radius_px**2, rel=0.03)


def test_lighting_direction():
    face = SphereFace()
    r = MeshRenderer(face.faces, face.neutral, None, RenderConfig(size=96))
    img = r.render(face.neutral).astype(float).mean(axis=2)
    # key light from the upper left: upper-left quadrant of the sphere brighter than lower right
    assert img[30:45, 30:45].mean() > img[55:70, 55:70].mean() + 20


def test_back_faces_are_dark_and_depth_order():
    # two parallel squares: the nearer (red) hides the farther (green)
    sq = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32) * 0.05
    verts = np.concatenate([sq + np.array([0, 0, 0.02], np.float32), sq])
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]], np.int32)
    colors = np.array([[1, 0, 0]] * 4 + [[0, 1, 0]] * 4, np.float32)
    r = MeshRenderer(faces, verts, colors, RenderConfig(size=64, margin=1.5))
    img = r.render(verts)
    centre = img[32, 32]
    assert centre[0] > 100 and centre[1] < 40
    flipped = MeshRenderer(faces[:, ::-1].copy(), verts, colors, RenderConfig(size=64, margin=1.5)).render(verts)
    assert flipped[32, 32].sum() < centre.sum() * 0.6  # seen from behind: darker


def test_threads_match_single_thread_and_stream():
    face = SphereFace(subdivisions=2)
    m = talking_motion(9)
    one = list(render_motion(face, m, RenderConfig(size=64, workers=1, chunk=4)))
    two = render_motion(face, m, RenderConfig(size=64, workers=2, chunk=4))
    assert not isinstance(two, list)  # a generator: frames are produced on demand
    two = list(two)
    assert len(one) == len(two) == 9
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(one[0], one[5])  # the face moves


def test_supersampling_softens_edges():
    face = SphereFace(subdivisions=2)
    hard = MeshRenderer(face.faces, face.neutral, None, RenderConfig(size=64)).render(face.neutral)
    soft = MeshRenderer(face.faces, face.neutral, None, RenderConfig(size=64, supersample=2)).render(face.neutral)
    assert soft.shape == hard.shape
    assert len(np.unique(soft.reshape(-1, 3), axis=0)) > len(np.unique(hard.reshape(-1, 3), axis=0))


def test_panels_with_labels_and_caption():
    face = SphereFace(subdivisions=2)
    a, b = talking_motion(4, seed=1), talking_motion(6, seed=2)
    caption = "A woman feels fairly happy and speaks with a broad smile and slightly raised brows. " * 3
    frames = list(render_panels([Panel(face, a, "ground truth"), Panel(face, b, "prediction")], caption,
                                RenderConfig(size=96)))  # fmt: skip
    assert len(frames) == 4  # the shortest motion
    h, w, _ = frames[0].shape
    assert w == 192 and h > 96 and h % 2 == 0
    header, footer = frames[0][:8], frames[0][-8:]
    assert header.std() > 0 or frames[0][:20].std() > 0  # label text drawn
    assert frames[0][96 + 20 :].std() > 0  # caption text drawn
    assert footer.shape[1] == 192


def test_wrap_text():
    lines = wrap_text("one two three four five", len, 9)
    assert lines == ["one two", "three", "four five"]


def test_render_errors():
    face = SphereFace(subdivisions=1)
    with pytest.raises(AvitalkError, match="render size"):
        RenderConfig(size=4)
    r = MeshRenderer(face.faces, face.neutral, None, RenderConfig(size=32))
    with pytest.raises(AvitalkError, match=r"expected \(42, 3\)"):
        r.render(np.zeros((5, 3), np.float32))
    with pytest.raises(AvitalkError, match="different frame rates"):
        list(render_panels([Panel(face, talking_motion(3, fps=25)), Panel(face, talking_motion(3, fps=30))]))
    from avitalk.spaces import FLAME

    flame = Motion(np.zeros((2, FLAME.dim), np.float32), FLAME, 25)
    with pytest.raises(AvitalkError, match="flame@v1"):
        list(render_motion(face, flame))


def test_camera_project_behind_is_culled():
    cam = Camera.framing(np.array([[-1, -1, 0], [1, 1, 0]], np.float32), 10)
    _, _, invz = cam.project(np.array([[0, 0, 0], [0, 0, 100]], np.float32))
    assert invz[0] > 0 and invz[1] == 0


def test_face_framing_is_fixed_from_the_neutral_and_falls_back_to_the_mesh():
    from avitalk.face.render import face_box, renderer_for
    from face_util import JawFace

    face = SphereFace(subdivisions=2)
    box = face_box(face)
    assert np.all(box[0] >= face.neutral.min(axis=0)) and np.all(box[1] <= face.neutral.max(axis=0))
    r = renderer_for(face, RenderConfig(size=64))
    cam = r.camera
    list(r.render_sequence(face.vertices(talking_motion(5).values)))
    assert r.camera is cam  # one camera for the whole sequence
    head = renderer_for(face, RenderConfig(size=64, framing="head")).camera
    np.testing.assert_allclose(head.position, Camera.framing(face.neutral, 64).position)
    jaw = JawFace()  # no eyes region: the whole mesh is framed
    np.testing.assert_allclose(face_box(jaw), np.stack([jaw.neutral.min(axis=0), jaw.neutral.max(axis=0)]))
    with pytest.raises(AvitalkError, match="framing"):
        RenderConfig(framing="body")
