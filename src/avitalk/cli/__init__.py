"""The ``avitalk`` command line: a thin layer over the public API.

Each command group lives in its own module exposing ``register(subparsers)``; a command's
handler takes the parsed namespace and returns an exit status. User errors
(:class:`~avitalk.errors.AvitalkError`) are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from avitalk import __version__
from avitalk.errors import AvitalkError

_GROUPS = (
    "avitalk.cli.animate",
    "avitalk.cli.describe",
    "avitalk.cli.data",
    "avitalk.cli.face",
    "avitalk.cli.train",
    "avitalk.cli.eval",
    "avitalk.cli.serve",
    "avitalk.cli.bench",
)


def add_llm_dtype_argument(p: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--llm-dtype`` and ``--llm-backend`` of the commands that run stage 1 (values:
    ``avitalk.train.load_instruct.LLM_DTYPES``, ``avitalk.instruct.causal_lm.BACKENDS``)."""
    p.add_argument("--llm-dtype", choices=("auto", "float32", "bfloat16"), default=default,
                   help=f"dtype of the stage-1 LLM (default {default}; auto: bfloat16 where the hardware computes it "
                   "natively, else float32)")  # fmt: skip
    p.add_argument("--llm-backend", choices=("auto", "transformers"), default="auto",
                   help="implementation of the stage-1 LLM (default auto: avitalk's own LLaMA where it applies, the "
                   "same texts without importing transformers; else transformers)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="avitalk",
        description="Expressive speech-driven 3D talking faces steered by visual instructions.",
    )
    parser.add_argument("--version", action="version", version=f"avitalk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue  # command group not built yet
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # e.g. to relaunch under torchrun
    try:
        status = args.func(args)
    except AvitalkError as e:
        print(f"avitalk: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("avitalk: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


def run() -> None:  # console-script entry point
    sys.exit(main())
