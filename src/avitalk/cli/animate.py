"""``avitalk animate``: speech in, talking face out (docs/animate.md).

    avitalk animate (SPEECH | --example) -o OUTDIR [--instruction TEXT|@file.json|@file.yaml|@file.txt] [--samples N]
                    [--seed N] [--guidance G] [--face builtin|ict:PATH|flame:PATH] [--formats mp4,glb,csv,npz]
                    [--models DIR]

Cheap checks (audio, instruction, formats, output directory) run before the models load, so mistakes
fail in a fraction of a second with one line. Progress per stage goes to stderr; the instruction used
and the files written go to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from avitalk.cli import add_llm_dtype_argument
from avitalk.errors import AvitalkError

_STAGES = {
    "load": "load models",
    "audio": "read audio",
    "describe": "stage 1: describe",
    "synthesize": "stage 2: motion",
    "npz": "write motion.npz",
    "csv": "write arkit.csv",
    "glb": "write face.glb",
    "mp4": "render video",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``animate`` command."""
    p = subparsers.add_parser(
        "animate",
        help="animate a face from speech (instruction, motion, video, GLB, CSV)",
        description="Speech -> visual instruction (stage 1) -> face motion (stage 2) -> MP4, GLB, CSV, NPZ.",
    )
    p.add_argument("speech", type=Path, nargs="?", help="speech file (wav, flac, ogg, mp3)")
    p.add_argument("--example", action="store_true", help="animate the bundled ~6 s example clip instead of SPEECH")
    p.add_argument("-o", "--out", type=Path, required=True, help="output directory (created)")
    p.add_argument(
        "--instruction",
        help="the instruction instead of stage 1: text, a timed string '0-3s: calm; 3s-: angry', "
        "or @FILE (.json/.yaml list of {start, end, text}, or .txt)",
    )
    p.add_argument("--samples", type=int, default=1, help="style samples, each with its own files (default 1)")
    p.add_argument("--seed", type=int, help="random seed (same seed, same result)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance of the style prior (default: the model's)")
    p.add_argument("--face", default="builtin", help="builtin | ict:PATH | flame:PATH (default builtin)")
    p.add_argument(
        "--formats",
        default="mp4,glb,csv,npz",
        help="comma-separated outputs among mp4, glb, csv, npz (instruction.txt is always written)",
    )
    p.add_argument("--models", type=Path, help="models directory (default: the shipped default models)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_llm_dtype_argument(p)
    p.set_defaults(func=cmd_animate)


def parse_instruction_arg(value: str | None):
    """None, or a validated :class:`~avitalk.motion.timeline.Timeline` from text or ``@FILE``."""
    from avitalk.motion.timeline import load_instruction_file, parse_instruction

    if value is None:
        return None
    if value.startswith("@"):
        return parse_instruction(load_instruction_file(value[1:]), where=value[1:])
    return parse_instruction(value)


def parse_formats(value: str) -> tuple[str, ...]:
    from avitalk.pipeline import FORMATS

    items = [f.strip().lower() for f in value.split(",") if f.strip()]
    unknown = [f for f in items if f not in FORMATS or f == "instruction"]
    if unknown or not items:
        raise AvitalkError(
            f"unknown output format {', '.join(unknown) or '(none)'}; expected some of mp4, glb, csv, npz"
        )
    return ("instruction", *items)


class StageProgress:
    """One stderr line per stage: ``[stage] name ... 1.23 s`` (the video's frame count while it renders)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.t0: dict[str, float] = {}
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        name = _STAGES.get(stage, stage)
        now = time.perf_counter()
        if done == 0:
            self.t0[stage] = now
            if self.tty:
                print(f"  {name} ...", end="\r", file=self.stream, flush=True)
            return
        if done < total:
            if self.tty and now - self.last > 0.1:
                print(f"  {name} {done}/{total} frames", end="\r", file=self.stream, flush=True)
                self.last = now
            return
        took = now - self.t0.get(stage, now)
        print(f"  {name:<20} {took:6.2f} s" + (" " * 10 if self.tty else ""), file=self.stream, flush=True)


def speech_path(args: argparse.Namespace) -> Path:
    """SPEECH, or the bundled example with ``--example``; exactly one of them must be given."""
    if (args.speech is None) == (not args.example):
        raise AvitalkError("give exactly one of SPEECH (an audio file) or --example (the bundled clip)")
    if args.example:
        from avitalk.examples import example_path

        return example_path()
    return args.speech


def cmd_animate(args: argparse.Namespace) -> int:
    from avitalk.audio.io import load_audio
    from avitalk.pipeline import Pipeline

    if args.samples < 1:
        raise AvitalkError(f"--samples must be >= 1, got {args.samples}")
    formats = parse_formats(args.formats)
    timeline = parse_instruction_arg(args.instruction)
    audio = load_audio(speech_path(args))
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise AvitalkError(f"cannot write to output directory {out}: it is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AvitalkError(f"cannot write to output directory {out}: {e.strerror or e}") from None
    progress = StageProgress()
    progress("load", 0, 1)
    pipe = Pipeline.load(
        args.models, face=args.face, device=args.device, llm_dtype=args.llm_dtype, llm_backend=args.llm_backend
    )
    if "glb" in formats or "mp4" in formats:
        _ = pipe.face  # load (and check) the face before spending time on the motion
    progress("load", 1, 1)
    result = pipe.animate(
        audio,
        instruction=timeline,
        samples=args.samples,
        seed=args.seed,
        guidance=args.guidance,
        out_dir=out,
        formats=formats,
        progress=progress,
    )
    print(("instruction (stage 1): " if result.described else "instruction: ") + result.instruction)
    for path in result.paths:
        print(path)
    return 0
