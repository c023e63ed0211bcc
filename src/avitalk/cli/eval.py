"""``avitalk eval``: evaluation commands (docs/evaluation.md).

Each evaluation lives in its own module exposing ``register(subparsers)``: ``eval motion``
(:mod:`avitalk.cli.eval_motion`, stage 2), ``eval instruct`` (:mod:`avitalk.cli.eval_instruct`, stage 1)
and ``eval report`` (:mod:`avitalk.cli.eval_report`).
"""

from __future__ import annotations

import argparse
import importlib

_COMMANDS = ("avitalk.cli.eval_motion", "avitalk.cli.eval_instruct", "avitalk.cli.eval_report")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` command group."""
    e = subparsers.add_parser("eval", help="evaluate trained models", description="Evaluation commands.")
    sub = e.add_subparsers(dest="evaluation", metavar="EVALUATION")
    sub.required = True
    for name in _COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue  # evaluation not built yet
        module.register(sub)
