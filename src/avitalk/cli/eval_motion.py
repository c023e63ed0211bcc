"""``avitalk eval motion``: stage-2 evaluation on a held-out split (docs/evaluation-stage2.md).

    avitalk eval motion --data CORPUS --motion RUN --align RUN [--ablation NAME=ALIGN_RUN ...]
                        [--baseline regression=MOTION_RUN] [--mean-face] [--oracle-style] [--face builtin|ict:PATH]
                        [--split test] [--limit N] [--samples 10] [--seed 0] [--classifier DIR]
                        [--out results.json]

Rows: the full model, each ablation (an align run trained on the same motion run), the regression
baseline (a ``model.style=false`` motion run), the static mean face, the oracle-style upper bound;
columns: LVE, FDD, MVE, lip closure, emotion following (own / swapped instruction), LVE rise under the
swap (against the teacher and against the exact swapped ground truth), diversity (z, vertex), jitter.
:func:`evaluate_runs` does the work and returns the report (``bench/bench_stage2.py`` uses it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from avitalk.errors import AvitalkError

DEFAULT_FACE = "builtin"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval motion``."""
    p = subparsers.add_parser(
        "motion",
        help="evaluate stage 2 (LVE, FDD, lip closure, emotion following, diversity) on a held-out split",
        description="Evaluate trained stage-2 runs against the corpus's teacher motion and print a table.",
    )
    p.add_argument("--data", type=Path, required=True, help="corpus directory")
    p.add_argument("--motion", type=Path, required=True, help="motion run of the full model")
    p.add_argument("--align", type=Path, required=True, help="align run of the full model")
    p.add_argument("--ablation", action="append", default=[], metavar="NAME=ALIGN_RUN",
                   help="an ablation's align run (trained on --motion), e.g. no-diffusion=runs/a-direct")  # fmt: skip
    p.add_argument("--baseline", action="append", default=[], metavar="regression=MOTION_RUN",
                   help="regression baseline: a motion run trained with model.style=false")  # fmt: skip
    p.add_argument("--mean-face", action="store_true", help="add the static mean-face baseline")
    p.add_argument("--oracle-style", action="store_true",
                   help="add an upper-bound row: the full model's generator with z from its style encoder over the "
                   "clip's own teacher frames (an ideal instruction -> style mapping)")  # fmt: skip
    p.add_argument("--face", default=DEFAULT_FACE, help="face of the vertex metrics: builtin | ict:PATH (figures: ICT)")
    p.add_argument("--split", default="test", help="corpus split to evaluate (default: test)")
    p.add_argument("--limit", type=int, help="evaluate the first N clips only")
    p.add_argument("--samples", type=int, default=10, help="style samples per clip and instruction (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, help="classifier-free guidance (default: the run's config)")
    p.add_argument("--steps", type=int, help="DDIM steps (default: the run's config)")
    p.add_argument("--no-swap", action="store_true", help="skip the swapped-instruction generation")
    p.add_argument("--posed", action="store_true",
                   help="measure the vertex metrics with the head rotation applied (default: on the face alone, "
                   "head motion scored apart as head error in degrees)")  # fmt: skip
    p.add_argument("--classifier", type=Path,
                   help="emotion classifier directory; trained on the corpus's train split and saved there if "
                   "absent (default: MOTION_RUN/eval/emotion-classifier)")  # fmt: skip
    p.add_argument("--out", type=Path, help="write the full report (per-clip numbers too) as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _pairs(items: Sequence[str], flag: str) -> list[tuple[str, Path]]:
    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise AvitalkError(f"{flag} expects NAME=PATH, got {item!r}")
        out.append((name.strip(), Path(path.strip())))
    return out


def corpus_digest(data: Path) -> str:
    """sha256 of the corpus manifest (names the data an emotion classifier was trained on)."""
    return hashlib.sha256((data / "manifest.json").read_bytes()).hexdigest()


def get_classifier(data: Path, path: Path, *, say=print) -> Any:
    """Load the emotion classifier at ``path``, or train it on ``data``'s train split and save it there.

    Raises:
        AvitalkError: a classifier at ``path`` trained on another corpus, or a corpus without train motion.
    """
    from avitalk.data.format import Manifest
    from avitalk.eval.emotion_classifier import load_emotion_classifier, teacher_motions, train_emotion_classifier

    digest = corpus_digest(data)
    if path.exists():
        clf = load_emotion_classifier(path)
        if clf.info.get("corpus_sha256") not in (None, digest):
            other = clf.info.get("corpus")
            raise AvitalkError(f"{path} was trained on another corpus ({other}); pass another --classifier")
        return clf
    motions, emotions = teacher_motions(data, "train")
    if not motions:
        raise AvitalkError(f"{data}: no train clips with motion and a known emotion to train the emotion classifier")
    say(f"training the emotion classifier on {len(motions)} teacher clips of {data} (train split)")
    clf = train_emotion_classifier(motions, emotions, space=Manifest.load(data).space.key)
    clf.info.update(corpus=str(data.resolve()), corpus_sha256=digest)
    clf.save(path)
    return clf


def evaluate_runs(
    data: Path,
    motion: Path,
    align: Path,
    *,
    ablations: Sequence[tuple[str, Path]] = (),
    regression: Path | None = None,
    mean_face: bool = False,
    oracle_style: bool = False,
    face: str = DEFAULT_FACE,
    split: str = "test",
    limit: int | None = None,
    samples: int = 10,
    seed: int = 0,
    guidance: float | None = None,
    steps: int | None = None,
    swap: bool = True,
    classifier: Path | None = None,
    progress: bool = True,
    posed: bool = False,
    say=print,
) -> dict:
    """Evaluate the full model, its ablations and the baselines; returns the JSON-able report."""
    import time

    from avitalk.data.format import Manifest, iter_clips
    from avitalk.eval.emotion_classifier import teacher_motions
    from avitalk.eval.motion_eval import (
        MeanFaceSource,
        MemoSpeechEncoder,
        OracleStyleSource,
        SynthesizerSource,
        calibrate_closure,
        evaluate_motion,
        prepare_clips,
        teacher_reference,
    )
    from avitalk.face.models import load_face
    from avitalk.train.checkpoint import read_checkpoint
    from avitalk.train.load import load_regression, load_stage2, load_style_encoder

    if not (data / "manifest.json").is_file():
        raise AvitalkError(f"{data}: not a corpus directory (no manifest.json)")
    if samples < 1 or (limit is not None and limit < 1):
        raise AvitalkError("--samples and --limit must be >= 1")
    manifest = Manifest.load(data)
    if not any(sh.split == split and sh.clips for sh in manifest.shards):
        raise AvitalkError(f"{data} has no {split!r} clips")
    face_model = load_face(face)
    manifest.space.require_same(face_model.space, f"face {face}")
    clf_path = classifier if classifier is not None else motion / "eval" / "emotion-classifier"
    clf = get_classifier(data, clf_path, say=say)
    held_m, held_e = teacher_motions(data, split)
    clf_acc = clf.accuracy(held_m, held_e)
    say(f"emotion classifier: {100 * clf_acc:.1f}% on the teacher motion of {len(held_m)} {split} clips")

    t0 = time.perf_counter()
    synth = load_stage2(motion, align)
    load_s = time.perf_counter() - t0
    manifest.space.require_same(synth.space, f"motion run {motion}")
    memo = MemoSpeechEncoder(synth.speech_encoder)
    synth.speech_encoder = memo
    sources: list[Any] = [SynthesizerSource(synth, "full", guidance, steps)]
    for name, run in ablations:
        s = load_stage2(motion, run, speech_encoder=memo, text_encoder=synth.text_encoder)
        sources.append(SynthesizerSource(s, name, guidance, steps))
    if regression is not None:
        enc_full = read_checkpoint(_ckpt_root(motion)).config.get("encoder")
        enc_reg = read_checkpoint(_ckpt_root(regression)).config.get("encoder")
        reg = load_regression(regression, speech_encoder=memo if enc_full == enc_reg else None)
        sources.append(SynthesizerSource(reg, "regression", guidance, steps))
    if mean_face:
        sources.append(MeanFaceSource(synth.mean.float().cpu().numpy(), "mean face"))
    if oracle_style:
        sources.append(OracleStyleSource(synth, load_style_encoder(motion), synth.config.n_ref))

    clips = prepare_clips(iter_clips(data, split), limit=limit, seed=seed)
    if not clips:
        raise AvitalkError(f"no {split} clip of {data} has teacher motion and an instruction")
    closure = calibrate_closure(clips, face_model)
    teacher = teacher_reference(clips, face_model, clf, closure, posed=posed)
    say(
        f"{len(clips)} {split} clips, {samples} samples each; lip closed when the mid-lip gap <= "
        f"{closure.threshold:.2f} mm (teacher: {100 * closure.teacher_accuracy:.1f}% of "
        f"{closure.n_bilabials} bilabials)"
    )
    options = dict(n_samples=samples, seed=seed, swap=swap, closure=closure, progress=progress, posed=posed)
    results = [evaluate_motion(src, clips, face_model, clf, **options) for src in sources]
    return _finite(
        {
            "corpus": str(data),
            "split": split,
            "face": face,
            "posed": posed,
            "clips": len(clips),
            "samples": samples,
            "seed": seed,
            "runs": {
                "motion": str(motion),
                "align": str(align),
                "ablations": {n: str(p) for n, p in ablations},
                "regression": None if regression is None else str(regression),
            },
            "classifier": {"path": str(clf_path), "test_accuracy": clf_acc, "test_clips": len(held_m), **clf.info},
            "teacher": {**teacher.to_dict(), "held_out_clips": len(held_m)},
            "load_seconds": load_s,
            "rows": [r.to_dict() for r in results],
        }
    )


def _finite(o: Any) -> Any:
    """``o`` with NaN / infinite floats replaced by None (strict JSON)."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _ckpt_root(run: Path) -> Path:
    return run / "checkpoints" if (run / "checkpoints").is_dir() else run


COLUMNS = (  # (key, header, format)
    ("lve", "LVE mm²", "{:.3f}"),
    ("fdd", "FDD mm²", "{:+.3f}"),
    ("mve", "MVE mm", "{:.3f}"),
    ("lip_closure", "lip close", "{:.1%}"),
    ("emotion_own", "emo own", "{:.1%}"),
    ("emotion_swap", "emo swap", "{:.1%}"),
    ("lve_rise", "LVE rise", "{:+.1%}"),
    ("lve_rise_exact", "rise exact", "{:+.1%}"),
    ("diversity_z", "div z", "{:.3f}"),
    ("diversity_vertex", "div mm", "{:.3f}"),
    ("jitter", "jitter", "{:.4f}"),
    ("head_error", "head deg", "{:.2f}"),
)


def format_table(report: dict) -> str:
    """The report's rows as a fixed-width text table (``-`` where a number is not measurable)."""
    rows = report["rows"]
    width = max([len("model"), *(len(r["name"]) for r in rows)])
    head = f"{'model':<{width}}  " + "  ".join(f"{h:>9}" for _, h, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            v = r.get(key)
            cells.append(f"{'-' if v is None or not math.isfinite(v) else fmt.format(v):>9}")
        lines.append(f"{r['name']:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from avitalk.fsutil import atomic_write_text

    def say(msg: str) -> None:
        print(msg, file=sys.stderr)

    regs = _pairs(args.baseline, "--baseline")
    unknown = [n for n, _ in regs if n != "regression"]
    if unknown or len(regs) > 1:
        raise AvitalkError("--baseline takes one regression=MOTION_RUN")
    for name, path in [("motion", args.motion), ("align", args.align), *_pairs(args.ablation, "--ablation"), *regs]:
        if not path.is_dir():
            raise AvitalkError(f"{path}: no such run directory ({name})")
    report = evaluate_runs(
        args.data,
        args.motion,
        args.align,
        ablations=_pairs(args.ablation, "--ablation"),
        regression=regs[0][1] if regs else None,
        mean_face=args.mean_face,
        oracle_style=args.oracle_style,
        face=args.face,
        split=args.split,
        limit=args.limit,
        samples=args.samples,
        seed=args.seed,
        guidance=args.guidance,
        steps=args.steps,
        swap=not args.no_swap,
        classifier=args.classifier,
        progress=not args.no_progress,
        posed=args.posed,
        say=say,
    )
    print(format_table(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(report, indent=1, default=_json_default) + "\n")
        say(f"wrote {args.out}")
    return 0


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer | np.floating):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
