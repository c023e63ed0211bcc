"""``avitalk serve``: the local web app (docs/web-app.md).

avitalk serve [--host 127.0.0.1] [--port 8000] [--models DIR] [--face SPEC] [--max-upload-mb MB]
              [--max-seconds S]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avitalk.cli import add_llm_dtype_argument
from avitalk.errors import AvitalkError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` command."""
    p = subparsers.add_parser(
        "serve",
        help="run the web app (upload or record speech, edit the instruction, watch and download the face)",
        description="Serve the avitalk web app on this machine (local only by default).",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--models", type=Path, help="models directory (default: the shipped default models)")
    p.add_argument("--face", default="builtin", help="face for the MP4 and GLB exports (default builtin)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_llm_dtype_argument(p)
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload (default 20 MB)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="longest speech accepted (default 60 s)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise AvitalkError("the web app needs starlette and uvicorn: pip install starlette uvicorn") from None
    from avitalk.app.server import ServerConfig, serve
    from avitalk.pipeline import Pipeline

    if not 0 < args.port < 65536:
        raise AvitalkError(f"--port must be between 1 and 65535, got {args.port}")
    pipe = Pipeline.load(
        args.models, face=args.face, device=args.device, llm_dtype=args.llm_dtype, llm_backend=args.llm_backend
    )
    _ = pipe.face  # load and check the face now, not on the first request
    config = ServerConfig(max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"avitalk: note: listening on {args.host}: other machines can reach this server", file=sys.stderr)
    serve(pipe, args.host, args.port, config, on_ready=lambda url: print(f"avitalk: serving on {url}", file=sys.stderr))
    return 0
