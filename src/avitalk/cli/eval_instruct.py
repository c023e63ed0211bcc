"""``avitalk eval instruct``: score a stage-1 run's generated instructions (docs/evaluation-stage1.md).

    avitalk eval instruct --model RUN --data CORPUS [--data CORPUS2] [--split test] [--limit N]
                          [--decoding greedy|beam|sample] [--ablation NAME=RUN ...]
                          [--out results.json] [--plot tsne.png]

Prints one table (text metrics ×100, emotion / intensity accuracy in %, per source) with the full model,
each ablation and the paper's Table 3 as a reference row, then the issue #6 targets; writes the same
numbers and every generated text as JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path
from typing import Any

from avitalk.cli import add_llm_dtype_argument
from avitalk.errors import AvitalkError

FULL = "full"
PAPER_LABEL = "paper (MeadText, different data)"
TARGETS = {  # issue #6: (source, quantity, minimum)
    "ravdess emotion accuracy": ("ravdess", "emotion_accuracy", 0.55),
    "ravdess intensity accuracy (normal/strong)": ("ravdess", "intensity_accuracy", 0.65),
    "synth emotion accuracy": ("synth", "emotion_accuracy", 0.80),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval instruct``."""
    p = subparsers.add_parser(
        "instruct",
        help="score a stage-1 run: BLEU/METEOR/ROUGE-L/CIDEr and emotion/intensity accuracy",
        description="Generate an instruction for every clip of a split and score it against the clip's "
        "instructions and labels; optionally next to ablation runs and with a t-SNE plot of the embeddings.",
    )
    p.add_argument("--model", type=Path, required=True, metavar="RUN", help="stage-1 run directory")
    p.add_argument("--data", type=Path, action="append", required=True, metavar="CORPUS",
                   help="corpus directory (repeat for several, e.g. synthetic + RAVDESS)")  # fmt: skip
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N clips per corpus, evenly spaced")
    p.add_argument("--decoding", choices=("greedy", "beam", "sample"), default="greedy", help="default: greedy")
    p.add_argument("--num-beams", type=int, default=3, help="beams for --decoding beam (default 3)")
    p.add_argument("--max-new-tokens", type=int, help="cap on generated tokens (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="seed for --decoding sample (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per describe_batch call (default 8)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_llm_dtype_argument(p, default="float32")
    p.add_argument("--no-speculative", action="store_true",
                   help="with --batch-size 1: greedy token by token instead of with the n-gram draft")  # fmt: skip
    p.add_argument("--ablation", action="append", default=[], metavar="NAME=RUN",
                   help="an ablation run evaluated on the same clips (repeatable), e.g. no-llm=runs/nollm")  # fmt: skip
    p.add_argument("--metrics", default="all", metavar="LIST",
                   help="text metrics to compute: all (default), none (accuracies only) or a comma list "
                   "of BLEU-1,BLEU-4,METEOR,ROUGE-L,CIDEr,SPICE (METEOR takes ~15 s to start)")  # fmt: skip
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("--plot", type=Path, help="write a t-SNE PNG of the full model's audio embeddings here")
    p.set_defaults(func=_run)


def _parse_ablations(items: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items:
        name, sep, run = item.partition("=")
        name = name.strip()
        if not sep or not name or not run.strip():
            raise AvitalkError(f"--ablation {item!r}: expected NAME=RUN")
        if name in (FULL, "paper") or name in out:
            raise AvitalkError(f"--ablation name {name!r} is reserved or used twice")
        out[name] = Path(run.strip())
    return out


def _parse_metrics(text: str) -> tuple[str, ...] | None:
    from avitalk.eval.text_metrics import METRICS

    value = text.strip()
    if value.lower() == "all":
        return METRICS
    if value.lower() == "none":
        return None
    names = [m.strip() for m in value.split(",") if m.strip()]
    by_lower = {m.lower(): m for m in METRICS}
    unknown = [m for m in names if m.lower() not in by_lower]
    if unknown or not names:
        raise AvitalkError(f"--metrics {text!r}: expected all, none or a comma list of {', '.join(METRICS)}")
    return tuple(by_lower[m.lower()] for m in names)


def _check_args(args: argparse.Namespace, ablations: dict[str, Path]) -> None:
    for name, run in {FULL: args.model, **ablations}.items():
        if not run.exists():
            raise AvitalkError(f"{run}: no such run directory ({'--model' if name == FULL else '--ablation ' + name})")
    for corpus in args.data:
        if not (corpus / "manifest.json").is_file():
            raise AvitalkError(f"{corpus}: not a corpus directory (no manifest.json)")
    for flag, value in (("--batch-size", args.batch_size), ("--num-beams", args.num_beams),
                        ("--max-new-tokens", args.max_new_tokens)):  # fmt: skip
        if value is not None and value < 1:
            raise AvitalkError(f"{flag} must be >= 1, got {value}")
    if args.plot is not None:
        if args.plot.suffix.lower() != ".png":
            raise AvitalkError(f"--plot {args.plot}: the plot is a PNG (use a .png name)")
        try:
            import sklearn.manifold  # noqa: F401  (fail before the long evaluation)
        except ImportError:
            raise AvitalkError("--plot needs scikit-learn: pip install scikit-learn (or avitalk[dev])") from None


def _run(args: argparse.Namespace) -> int:
    from avitalk.eval.instruct_eval import evaluate_instruct, plot_tsne, select_clips
    from avitalk.eval.text_metrics import CaptionScorer

    ablations = _parse_ablations(args.ablation)
    metrics = _parse_metrics(args.metrics)
    _check_args(args, ablations)
    clips = [c for corpus in args.data for c in select_clips(corpus, args.split, args.limit)]
    if args.plot is not None and len(clips) < 3:
        raise AvitalkError(f"--plot needs at least 3 clips, the selection has {len(clips)}")
    options = {
        "decoding": args.decoding,
        "num_beams": args.num_beams,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
        "batch_size": args.batch_size,
    }
    progress = sys.stderr.isatty()
    results, speculative = {}, {}
    with CaptionScorer(metrics or ()) as scorer:
        for name, run in {FULL: args.model, **ablations}.items():
            print(f"evaluating {name} ({run}) on {len(clips)} clips ...", file=sys.stderr)
            describer = _load(run, args.device, args.llm_dtype, args.llm_backend, not args.no_speculative)
            # the draft exists only on the native backend; generate_ids uses it for batch-1 greedy only
            speculative[name] = (
                getattr(describer, "draft", None) is not None and args.batch_size == 1 and args.decoding == "greedy"
            )
            results[name] = evaluate_instruct(
                describer,
                clips,
                **options,
                embed=args.plot is not None and name == FULL,
                metrics=metrics,
                scorer=scorer if metrics else None,
                progress=progress,
            )
            del describer
            gc.collect()
    runs = {FULL: args.model, **ablations}
    report = build_report(results, runs, args, speculative)
    print(format_report(report))
    if args.out is not None:
        from avitalk.fsutil import atomic_write_text

        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    if args.plot is not None:
        full = results[FULL]
        assert full.embeddings is not None
        plot_tsne(full.embeddings, [t.emotion for t in full.texts], args.plot, sources=[t.source for t in full.texts])
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _load(
    run: Path, device: str, llm_dtype: str = "float32", llm_backend: str = "auto", speculative: bool = True
) -> Any:
    from avitalk.train.load_instruct import load_stage1

    return load_stage1(run, device, llm_dtype=llm_dtype, llm_backend=llm_backend, speculative=speculative)


# ------------------------------------------------------------------------------------------- report


def build_report(
    results: dict[str, Any], runs: dict[str, Path], args: argparse.Namespace, speculative: dict[str, bool] | None = None
) -> dict:
    """The JSON document: settings, every model's :meth:`InstructResult.to_json`, comparisons, targets.

    ``speculative``: per model, whether its greedy decoding ran with the n-gram draft (absent: False).
    """
    speculative = speculative or {}
    from avitalk.eval.instruct_eval import PAPER_TABLE3, compare_runs

    full = results[FULL]
    comparison = {}
    for name, res in results.items():
        if name == FULL:
            continue
        comparison[name] = {"all": compare_runs(full, res)}
        for source, group in full.per_source.items():
            if source in res.per_source:
                comparison[name][source] = compare_runs(group, res.per_source[source])
    targets = {}
    for label, (source, key, minimum) in TARGETS.items():
        group = full.per_source.get(source)
        value = getattr(group, key) if group is not None else None
        targets[label] = {"value": value, "minimum": minimum, "met": None if value is None else value >= minimum}
    for name, comp in comparison.items():
        group = "synth" if "synth" in comp else "all"
        targets[f"full beats {name} ({group}: >= 4 text metrics and emotion accuracy)"] = {
            "value": f"{len(comp[group]['text_wins'])}/{len(comp[group]['text_compared'])}",
            "minimum": None,
            "met": comp[group]["beats"],
        }
    return {
        "split": args.split,
        "corpora": [str(c) for c in args.data],
        "limit_per_corpus": args.limit,
        "llm_dtype": getattr(args, "llm_dtype", "float32"),
        "llm_backend": getattr(args, "llm_backend", "auto"),
        "speculative": {name: bool(speculative.get(name, False)) for name in results},
        "runs": {k: str(v) for k, v in runs.items()},
        "scale": "text metrics as pycocoevalcap returns them: BLEU/METEOR/ROUGE-L/SPICE in [0,1], CIDEr-D in [0,10]",
        "models": {k: v.to_json() for k, v in results.items()},
        "paper_table3": {"label": PAPER_LABEL, "metrics": dict(PAPER_TABLE3)},
        "comparison": comparison,
        "targets": targets,
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def format_report(report: dict) -> str:
    """The printed table: one row per model and source (text metrics ×100, accuracies in %)."""
    from avitalk.eval.text_metrics import METRICS

    models = report["models"]
    full = models[FULL]
    sources = ", ".join(f"{s} {g['n']}" for s, g in full["per_source"].items())
    lines = [
        f"stage-1 evaluation: {full['n']} clips of split {report['split']!r} ({sources}); "
        f"decoding {full['decoding']['decoding']}",
        "text metrics ×100 (coco-caption: PTB tokens; CIDEr = CIDEr-D), accuracies in %",
        "",
    ]
    head = ["model", "source", "clips", *METRICS, "emotion", "intensity", "unparsed", "s/clip"]
    rows = []
    for name, res in models.items():
        groups = [("all", res)] + ([(s, g) for s, g in res["per_source"].items()] if len(res["per_source"]) > 1 else [])
        for k, (source, g) in enumerate(groups):
            rows.append(
                [
                    name if k == 0 else "",
                    source,
                    str(g["n"]),
                    *(_pct(g["metrics"].get(m)) for m in METRICS),
                    _pct(g["emotion_accuracy"]),
                    _pct(g["intensity_accuracy"]),
                    str(g["unparsed"]),
                    f"{res['seconds_per_clip']:.2f}" if k == 0 else "",
                ]
            )
    paper = report["paper_table3"]
    rows.append([paper["label"], "MeadText", "", *(_pct(paper["metrics"].get(m)) for m in METRICS), "", "", "", ""])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = [f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths)]
    lines.append("  ".join(f.format(h) for f, h in zip(fmt, head, strict=True)))
    lines += ["  ".join(f.format(c) for f, c in zip(fmt, r, strict=True)) for r in rows]

    reasons: dict[str, str] = {}
    for res in models.values():
        for m, why in res["metrics_unavailable"].items():
            reasons.setdefault(m, why)
    lines.append("")
    lines += [f"{m}: n/a — {why}" for m, why in reasons.items()]
    schemes = {s: g["intensity_schemes"] for s, g in full["per_source"].items()}
    lines.append(
        "intensity: over clips with a non-neutral label; "
        + "; ".join(f"{s}: {', '.join(v) or 'no eligible clip'}" for s, v in schemes.items())
        + " (normal/strong: generated level 3 = strong, 1-2 = normal)"
    )
    lines.append("paper row: AVI-Talking Table 3 on MeadText — different data, vocabulary and language model.")
    for name, comp in report["comparison"].items():
        for group, c in comp.items():
            emo = {True: "higher", False: "not higher", None: "n/a"}[c["emotion_win"]]
            wins = ", ".join(c["text_wins"]) or "none"
            verdict = "beats" if c["beats"] else "does not beat"
            lines.append(
                f"full vs {name} [{group}]: higher on {len(c['text_wins'])}/{len(c['text_compared'])} text metrics "
                f"({wins}), emotion accuracy {emo} -> {verdict}"
            )
    lines.append("")
    lines.append("targets (issue #6):")
    for label, t in report["targets"].items():
        status = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        value = t["value"] if isinstance(t["value"], str) else _pct(t["value"])
        minimum = "" if t["minimum"] is None else f" (>= {_pct(t['minimum'])})"
        lines.append(f"  {label}: {value}{minimum} — {status}")
    return "\n".join(lines)
