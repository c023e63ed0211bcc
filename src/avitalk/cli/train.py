"""``avitalk train``: training recipes (docs/training.md).

    avitalk train motion --data CORPUS --out RUN [--preset tiny|default] [--config YAML]
                         [--set KEY=VALUE ...] [--steps N] [KEY=VALUE ...] [--devices N] [--no-resume] ...

Running the same command again with the same ``--out`` resumes from its latest checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avitalk.errors import AvitalkError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` command group."""
    t = subparsers.add_parser("train", help="train the avitalk networks", description="Training recipes.")
    sub = t.add_subparsers(dest="recipe", metavar="RECIPE")
    sub.required = True
    from avitalk.train.engine import add_train_arguments

    m = sub.add_parser(
        "motion",
        help="train the stage-2 motion prior (style encoder + talking generator)",
        description="Train the stage-2 motion prior on a corpus (train split; val split for validation).",
    )
    m.add_argument("--data", type=Path, required=True, help="corpus directory (avitalk data synth / import)")
    m.add_argument("--preset", choices=("tiny", "default"), default="default", help="model size (default: default)")
    m.add_argument("--set", dest="set_", action="append", default=[], metavar="KEY=VALUE", help="config override")
    m.add_argument("--steps", type=int, help="optimizer steps (= train.max_steps)")
    add_train_arguments(m)
    m.set_defaults(func=_motion)


def _motion(args: argparse.Namespace) -> int:
    from avitalk.train.engine import train_overrides
    from avitalk.train.motion_recipe import resolve_config, train_motion

    if not (args.data / "manifest.json").is_file():
        raise AvitalkError(f"{args.data}: not a corpus directory (no manifest.json)")
    if args.config is not None and not args.config.is_file():
        raise AvitalkError(f"{args.config}: no such config file")
    overrides = [*args.set_, *train_overrides(args)]
    if args.steps is not None:
        overrides.append(f"train.max_steps={args.steps}")
    cfg = resolve_config(args.preset, args.config, overrides)
    return train_motion(cfg, args.data, args.out, args.argv)
