"""``avitalk bench``: seconds and real-time factors per stage on this machine (docs/evaluation.md).

    avitalk bench [--models DIR] [--seconds 10] [--audio FILE] [--instruction TEXT] [--repeats 1]
                  [--face builtin] [--threads N] [--out bench.json]

Prints a table (model loads first / again; speech encoding, stage 1, style sampling, generator, face
posing, render, each export format; the whole ``Pipeline.animate``) and writes it as JSON with
``--out`` (the input of ``avitalk eval report --bench``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avitalk.errors import AvitalkError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` command."""
    p = subparsers.add_parser(
        "bench",
        help="real-time factors per stage (speech encoding, stage 1, stage 2, posing, render, exports)",
        description="Time every stage of avitalk animate on a clip of the given length on this machine.",
    )
    p.add_argument("--models", type=Path, help="models directory (default: the shipped default models)")
    p.add_argument("--seconds", type=float,
                   help="clip length in seconds (default 10; with --audio: the file's length)")  # fmt: skip
    p.add_argument("--audio", type=Path,
                   help="speech file (default: the bundled example, else synthetic speech-like audio)")  # fmt: skip
    p.add_argument("--instruction", help="instruction for stage 2 (default: stage 1's, or a fixed one without it)")
    p.add_argument("--repeats", type=int, default=1, help="runs per stage after a warm-up; median (default 1)")
    p.add_argument("--face", default="builtin", help="builtin | ict:PATH | flame:PATH (default builtin)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's default)")
    p.add_argument("--out", type=Path, help="write the report as JSON here")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from avitalk.bench import format_bench, run_bench
    from avitalk.fsutil import atomic_write_text

    if args.models is not None:
        if not args.models.is_dir():
            raise AvitalkError(f"--models {args.models}: no such directory")
        missing = [p + "/" for p in ("motion", "align") if not (args.models / p / "meta.json").is_file()]
        if missing:
            raise AvitalkError(f"--models {args.models}: not a models directory (no {' or '.join(missing)} checkpoint)")
    if args.audio is not None and not args.audio.is_file():
        raise AvitalkError(f"--audio {args.audio}: no such file")
    if args.out is not None and args.out.is_dir():
        raise AvitalkError(f"--out {args.out}: is a directory, expected a .json file name")
    seconds = args.seconds if args.seconds is not None or args.audio is not None else 10.0
    report = run_bench(
        args.models,
        seconds=seconds,
        audio=args.audio,
        instruction=args.instruction,
        repeats=args.repeats,
        face=args.face,
        threads=args.threads,
        say=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    print(format_bench(report))
    if args.out is not None:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AvitalkError(f"--out {args.out}: cannot create its directory: {e.strerror or e}") from None
        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
