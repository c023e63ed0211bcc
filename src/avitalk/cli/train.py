"""``avitalk train``: training recipes (docs/training.md).

    avitalk train motion --data CORPUS --out RUN [--preset tiny|default] [--config YAML]
                         [--set KEY=VALUE ...] [--steps N] [KEY=VALUE ...] [--devices N] [--no-resume] ...
    avitalk train align --data CORPUS --motion MOTION_RUN --out RUN [--preset ...] [--config ...] [--set ...]
    avitalk train instruct --data CORPUS [--data CORPUS2 ...] --out RUN [--phase align|project|all] [--preset ...]
    avitalk train all --out RUNS [--preset tiny|default] [--hours H | --data CORPUS ...] [--ravdess PATH]
                      [--export DIR] [--set motion.KEY=V|align.KEY=V|instruct.KEY=V|train.KEY=V ...] [--export-only]

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

    m = sub.add_parser(
        "motion",
        help="train the stage-2 motion prior (style encoder + talking generator)",
        description="Train the stage-2 motion prior on a corpus (train split; val split for validation).",
    )
    _add_recipe_arguments(m)
    m.set_defaults(func=_motion)

    a = sub.add_parser(
        "align",
        help="train the stage-2 instruction aligner and diffusion prior (motion prior frozen)",
        description="Train the instruction aligner and the style prior against a trained motion prior (--motion).",
    )
    a.add_argument("--motion", type=Path, required=True, help="run directory of avitalk train motion (frozen)")
    _add_recipe_arguments(a)
    a.set_defaults(func=_align)

    from avitalk.train import instruct_recipe

    i = sub.add_parser(
        "instruct",
        help="train the stage-1 instruction generator (Q-Former alignment, then projection into the LLM)",
        description="Train stage 1 on one or more corpora (--data repeatable): --phase align, project or all.",
    )
    instruct_recipe.add_arguments(i)
    i.set_defaults(func=instruct_recipe.run)

    from avitalk.train import all_recipe

    al = sub.add_parser(
        "all",
        help="the whole training of the default models: corpus, motion, align, instruct, export (resumable)",
        description="Synthesise (or reuse) the corpus, train motion -> align -> instruct into OUT/motion, "
        "OUT/align, OUT/stage1 and export the stripped weights (OUT/export). Running it again resumes; "
        "finished recipes are skipped. Overrides: --set motion.KEY=V / align.KEY=V / instruct.KEY=V / "
        "train.KEY=V (every recipe). See docs/training.md.",
    )
    all_recipe.add_arguments(al)
    al.set_defaults(func=all_recipe.run)


def _add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """Options every recipe shares: corpus, preset, overrides, steps, and the Trainer's flags."""
    from avitalk.train.engine import add_train_arguments

    p.add_argument("--data", type=Path, required=True, help="corpus directory (avitalk data synth / import)")
    p.add_argument("--preset", choices=("tiny", "default"), default="default", help="model size (default: default)")
    p.add_argument("--set", dest="set_", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--steps", type=int, help="optimizer steps (= train.max_steps)")
    add_train_arguments(p)


def _overrides(args: argparse.Namespace) -> list[str]:
    from avitalk.train.engine import train_overrides

    if not (args.data / "manifest.json").is_file():
        raise AvitalkError(f"{args.data}: not a corpus directory (no manifest.json)")
    if args.config is not None and not args.config.is_file():
        raise AvitalkError(f"{args.config}: no such config file")
    overrides = [*args.set_, *train_overrides(args)]
    if args.steps is not None:
        overrides.append(f"train.max_steps={args.steps}")
    return overrides


def _motion(args: argparse.Namespace) -> int:
    from avitalk.train.motion_recipe import resolve_config, train_motion

    cfg = resolve_config(args.preset, args.config, _overrides(args))
    return train_motion(cfg, args.data, args.out, args.argv)


def _align(args: argparse.Namespace) -> int:
    from avitalk.train.align_recipe import motion_checkpoint, resolve_config, train_align

    overrides = _overrides(args)
    cfg = resolve_config(args.preset, args.config, overrides, motion_checkpoint(args.motion))
    return train_align(cfg, args.data, args.out, args.argv)
