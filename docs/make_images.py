"""Regenerate the face pictures in ``docs/images/`` (see docs/face-layer.md).

For each available face model, one labelled strip of four panels rendered with the default camera
and lights: neutral, ``jawOpen``, ``mouthSmileLeft`` + ``mouthSmileRight``, ``browInnerUp``.

Usage (from the repository root, with avitalk installed)::

    python docs/make_images.py [--ict PATH] [--size 320] [--out docs/images]

``--ict`` is a checkout of github.com/ICT-VGL/ICT-FaceKit (default ``../shared/assets/ICT-FaceKit``
relative to the repository); without it only the built-in face is drawn. The FLAME model is
licence-gated and not distributed, so the repository has no FLAME picture; with ``--flame PATH`` (your
``generic_model.pkl``) the script draws one: neutral, jaw open, and the first two expression
components at +2 (FLAME's components have no ARKit meaning, so smile/brow poses do not exist there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from avitalk.errors import AvitalkError
from avitalk.face.base import FaceModel
from avitalk.face.models import load_face
from avitalk.face.render import Panel, RenderConfig, render_panels
from avitalk.spaces import ARKIT52
from avitalk.types import Motion, MotionSpace

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ICT = REPO.parent / "shared" / "assets" / "ICT-FaceKit"
#: (label, {channel: weight}) of the four panels.
POSES: tuple[tuple[str, dict[str, float]], ...] = (
    ("neutral", {}),
    ("jawOpen 0.7", {"jawOpen": 0.7}),
    ("mouthSmile L+R 1.0", {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}),
    ("browInnerUp 1.0", {"browInnerUp": 1.0}),
)
#: PNGs must stay small enough for the repository.
MAX_BYTES = 400_000


FLAME_POSES: tuple[tuple[str, dict[str, float]], ...] = (
    ("neutral", {}),
    ("jaw open 0.35 rad", {"jawPoseX": 0.35}),
    ("expr00 +2", {"expr00": 2.0}),
    ("expr01 +2", {"expr01": 2.0}),
)


def pose_motion(weights: dict[str, float], space: MotionSpace = ARKIT52) -> Motion:
    """A one-frame motion in ``space`` with the given channel values (others zero)."""
    values = np.zeros((1, space.dim), np.float32)
    for name, w in weights.items():
        values[0, space.index(name)] = w
    return Motion(values, space, 25.0)


def strip(face: FaceModel, caption: str, size: int) -> np.ndarray:
    """``(H, 4 * size, 3)`` uint8 labelled strip of the four poses."""
    poses = POSES if face.space == ARKIT52 else FLAME_POSES
    panels = [Panel(face, pose_motion(w, face.space), label) for label, w in poses]
    return next(render_panels(panels, caption=caption, config=RenderConfig(size=size, supersample=3)))


def save_png(img: np.ndarray, path: Path) -> int:
    """Save ``img`` as an optimised PNG; fall back to a 256-colour palette if it is too large."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        Image.fromarray(img).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            path, optimize=True
        )
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ict", type=Path, default=DEFAULT_ICT, help="ICT-FaceKit checkout (default: %(default)s)")
    ap.add_argument("--flame", type=Path, default=None, help="FLAME model pickle (optional; licence-gated)")
    ap.add_argument("--size", type=int, default=320, help="panel size in pixels (default 320)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="output directory")
    args = ap.parse_args(argv)
    jobs = [("face-builtin.png", "builtin", "built-in face (procedural, no files): arkit52")]
    jobs.append(("face-ict.png", f"ict:{args.ict}", "ICT-FaceKit face area (ict:PATH): arkit52"))
    if args.flame is not None:
        jobs.append(("face-flame.png", f"flame:{args.flame}", "FLAME (flame:PATH): flame"))
    for name, spec, caption in jobs:
        try:
            face = load_face(spec)
        except AvitalkError as e:
            print(f"skipping {name}: {e}", file=sys.stderr)
            continue
        n = save_png(strip(face, caption, args.size), args.out / name)
        print(f"{args.out / name}: {n / 1000:.0f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
