"""``avitalk render`` and ``avitalk export``: motion files to video and animation files.

    avitalk render MOTION [MOTION ...] --face builtin|ict:PATH|flame:PATH [--audio WAV]
                   [--size 512] [--framing face|head] [--caption TEXT] [--label TEXT ...] -o OUT.mp4
    avitalk export MOTION --format npz|obj|ply|glb|csv [--face ...] -o OUT

Several motions render side by side (e.g. ground truth and prediction), labelled with ``--label``.
MOTION is an avitalk motion ``.npz`` or an ARKit (Live Link Face) ``.csv``. Every user error is one
line (exit status 2) and no output file is left behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avitalk.errors import AvitalkError
from avitalk.face.base import FaceModel

_EXPORT_SUFFIX = {".npz": "npz", ".glb": "glb", ".csv": "csv"}


def load_face_spec(spec: str) -> FaceModel:
    """Load a face model from a ``--face`` value (``builtin``, ``ict:PATH``, ``flame:PATH``)."""
    try:
        from avitalk.face.models import load_face
    except ModuleNotFoundError as e:
        if e.name != "avitalk.face.models":
            raise
        raise AvitalkError("face models are not available in this build of avitalk") from None
    return load_face(spec)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=float, default=None, help="frame rate of CSV motions (default: from their timecodes)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``render`` and ``export`` commands."""
    r = subparsers.add_parser(
        "render",
        help="render a motion to an MP4 video (CPU only)",
        description="Render motion files side by side to an H.264 MP4 with optional audio, on the CPU.",
    )
    r.add_argument("motions", nargs="+", metavar="MOTION", help="motion .npz or ARKit .csv (several: side by side)")
    r.add_argument("--face", default="builtin", help="face model: builtin | ict:PATH | flame:PATH (default builtin)")
    r.add_argument("--audio", default=None, metavar="WAV", help="soundtrack (any rate; trimmed/padded to the motion)")
    r.add_argument("--size", type=int, default=512, help="panel size in pixels (default 512)")
    r.add_argument(
        "--framing",
        choices=("face", "head"),
        default="face",
        help="camera framing: the face from brows to chin (default) or the whole mesh with the neck",
    )
    r.add_argument("--caption", default=None, help="text shown under the video, e.g. the instruction")
    r.add_argument("--label", action="append", default=None, help="panel label (repeat once per MOTION)")
    r.add_argument("--supersample", type=int, default=1, choices=(1, 2, 3, 4), help="anti-aliasing factor")
    r.add_argument("--workers", type=int, default=0, help="render threads (default: up to 2)")
    r.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="output video")
    _add_common(r)
    r.set_defaults(func=cmd_render)

    e = subparsers.add_parser(
        "export",
        help="export a motion as NPZ, OBJ/PLY sequence, glTF (GLB) or ARKit CSV",
        description="Export a motion for Blender, three.js, Unreal or Unity.",
    )
    e.add_argument("motion", metavar="MOTION", help="motion .npz or ARKit .csv")
    e.add_argument(
        "--format",
        choices=("npz", "obj", "ply", "glb", "csv"),
        default=None,
        help="output format (default: from the output suffix .npz/.glb/.csv)",
    )
    e.add_argument("--face", default="builtin", help="face model for obj/ply/glb (default builtin)")
    e.add_argument("-o", "--output", required=True, metavar="OUT", help="output file (a new directory for obj/ply)")
    _add_common(e)
    e.set_defaults(func=cmd_export)


def cmd_render(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from avitalk.face.render import Panel, RenderConfig, render_panels
    from avitalk.face.video import write_video
    from avitalk.motionio import load_motion

    out = Path(args.output)
    if out.suffix.lower() != ".mp4":
        raise AvitalkError(f"{out}: render writes MP4 video; give an output ending in .mp4")
    labels = args.label or []
    if labels and len(labels) != len(args.motions):
        raise AvitalkError(f"got {len(labels)} --label for {len(args.motions)} motions; give one per motion or none")
    config = RenderConfig(size=args.size, framing=args.framing, supersample=args.supersample, workers=args.workers)
    motions = [load_motion(m, fps=args.fps) for m in args.motions]
    audio = None
    if args.audio:
        from avitalk.audio.io import load_audio

        audio = load_audio(args.audio)
    face = load_face_spec(args.face)
    panels = [Panel(face, m, labels[i] if labels else None) for i, m in enumerate(motions)]
    fps = motions[0].fps
    n_frames = min(m.n_frames for m in motions)
    if audio is not None and abs(audio.duration - n_frames / fps) > 0.5:
        print(
            f"avitalk: note: audio lasts {audio.duration:.2f} s, motion {n_frames / fps:.2f} s; "
            "the audio is trimmed or padded with silence",
            file=sys.stderr,
        )
    frames = render_panels(panels, caption=args.caption, config=config)
    with tqdm(total=n_frames, unit="frame", desc="render", disable=None, file=sys.stderr) as bar:
        write_video(out, frames, fps, audio=audio, n_frames=n_frames, progress=bar.update)
    print(out)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from avitalk.face.export import MESH_FORMATS, export_motion
    from avitalk.motionio import load_motion

    out = Path(args.output)
    fmt = args.format or _EXPORT_SUFFIX.get(out.suffix.lower())
    if fmt is None:
        raise AvitalkError(f"{out}: cannot tell the format from the suffix; pass --format npz|obj|ply|glb|csv")
    motion = load_motion(args.motion, fps=args.fps)
    face = load_face_spec(args.face) if fmt in MESH_FORMATS else None
    rig = export_motion(out, motion, fmt, face)
    if rig is not None and rig.bake_error is not None:
        print(
            f"avitalk: note: {face.name if face else 'face'} is not a linear blendshape model; baked to "
            f"{len(rig.names)} PCA morph targets (max error {rig.bake_error * 1000:.3f} mm)",
            file=sys.stderr,
        )
    print(out)
    return 0
