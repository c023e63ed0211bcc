"""The evaluation report: Markdown tables and PNG plots from the JSON the evaluations wrote.

``avitalk eval report`` (:mod:`avitalk.cli.eval_report`) reads

- the stage-1 report of ``avitalk eval instruct --out`` (text metrics, emotion / intensity accuracy,
  confusion matrix, ablations, the paper's Table 3 row),
- the stage-2 report of ``avitalk eval motion --out`` (or ``bench/bench_stage2.py --out``, which holds
  it under ``eval`` next to its figures),
- speed reports: ``avitalk bench --out`` (seconds and real-time factor per stage, load times) and the
  ``--out`` of ``bench/bench_animate.py``, ``bench/bench_streaming.py``, ``bench/bench_stage2.py``
  (figures with targets),

and writes ``report.md`` with paper-style tables plus PNG plots drawn with Pillow. Every number in the
report is copied from those files; nothing is measured or estimated here, and a section whose input is
missing says "not measured". All files are written atomically.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avitalk.errors import AvitalkError
from avitalk.fsutil import atomic_path, atomic_write_text

__all__ = [
    "NOT_MEASURED",
    "ReportFiles",
    "bench_markdown",
    "load_json_report",
    "plot_bars",
    "plot_confusion",
    "plot_hbars",
    "stage1_markdown",
    "stage2_markdown",
    "write_report",
]

NOT_MEASURED = "not measured"
TEXT_METRICS = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")
"""Stage-1 text metrics in the order of the paper's Table 3."""
DASH = "—"

# stage-2 columns: (key, header, kind, better); kind: "f3" float, "pct" fraction -> %, "spct" signed %,
# "abs3" |x| float, "f4"
STAGE2_COLUMNS = (
    ("lve", "LVE (mm²) ↓", "f3"),
    ("fdd", "FDD (mm²)", "sf3"),
    ("mve", "MVE (mm) ↓", "f3"),
    ("lip_closure", "lip closure ↑", "pct"),
    ("emotion_own", "emotion, own ↑", "pct"),
    ("emotion_swap", "emotion, swapped ↑", "pct"),
    ("lve_rise", "LVE rise (swap) ↓", "spct"),
    ("lve_rise_exact", "LVE rise vs swapped GT ↓", "spct"),
    ("diversity_z", "diversity z ↑", "f3"),
    ("diversity_vertex", "diversity (mm) ↑", "f3"),
    ("jitter", "jitter (mm/frame²)", "f4"),
    ("head_error", "head error (°) ↓", "f3"),
)


def _pose_note(ev: dict) -> str:
    """How the vertex metrics of a stage-2 report treat the head rotation (reports before 2026-12-03 posed it)."""
    if ev.get("posed", True):
        return "head rotation applied"
    return "face alone, head rotation removed; head motion scored as head error"


BASELINES = ("mean face", "regression")
FULL = "full"
UPPER_BOUNDS = ("oracle style",)


# ------------------------------------------------------------------------------------------- input


def load_json_report(path: str | os.PathLike[str], kind: str) -> dict:
    """Read and check one input report.

    Args:
        kind: ``stage1`` (``eval instruct --out``), ``stage2`` (``eval motion --out`` or a
            ``bench_stage2.py --out`` document with ``eval``) or ``bench`` (``avitalk bench --out`` or a
            bench script's ``--out`` with ``figures``).

    Raises:
        AvitalkError: a missing, unreadable or non-JSON file, or one of another kind (one line).
    """
    p = Path(path)
    flag = {"stage1": "--stage1", "stage2": "--stage2", "bench": "--bench"}[kind]
    if not p.is_file():
        raise AvitalkError(f"{flag} {p}: no such file")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise AvitalkError(f"{flag} {p}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise AvitalkError(f"{flag} {p}: not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(doc, dict):
        raise AvitalkError(f"{flag} {p}: expected a JSON object")
    if kind == "stage1":
        models = doc.get("models")
        if not isinstance(models, dict) or not models or not all(isinstance(m, dict) for m in models.values()):
            raise AvitalkError(f"{flag} {p}: not an `avitalk eval instruct --out` report (no models)")
    elif kind == "stage2":
        ev = doc.get("eval") if "rows" not in doc else doc
        if not isinstance(ev, dict) or not isinstance(ev.get("rows"), list):
            raise AvitalkError(f"{flag} {p}: not an `avitalk eval motion --out` report (no rows)")
    elif not isinstance(doc.get("stages"), list) and not isinstance(doc.get("figures"), list):
        raise AvitalkError(f"{flag} {p}: not an `avitalk bench --out` or bench/*.py --out report")
    return doc


# ------------------------------------------------------------------------------------------- format


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def _fmt(v: Any, kind: str) -> str:
    x = _num(v)
    if x is None:
        return DASH
    if kind == "pct":
        return f"{100 * x:.1f}%"
    if kind == "spct":
        return f"{100 * x:+.1f}%"
    if kind == "sf3":
        return f"{x:+.3f}"
    if kind == "x100":
        return f"{100 * x:.1f}"
    if kind == "f4":
        return f"{x:.4f}"
    if kind == "f2":
        return f"{x:.2f}"
    return f"{x:.3f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(head: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one ``l``/``r`` per column (default: first left, rest right)."""
    align = align or ("l" + "r" * (len(head) - 1))
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(_cell(h) for h in head) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- stage 1


def _stage1_group_row(name: str, source: str, g: dict, seconds: Any) -> list[str]:
    metrics = g.get("metrics") or {}
    return [
        name,
        source,
        str(g.get("n", DASH)),
        *(_fmt(metrics.get(m), "x100") if m in metrics else "n/a" for m in TEXT_METRICS),
        _fmt(g.get("emotion_accuracy"), "pct"),
        _fmt(g.get("intensity_accuracy"), "pct"),
        str(g.get("unparsed", DASH)),
        _fmt(seconds, "f2") if seconds is not None else "",
    ]


def stage1_markdown(doc: dict | None, *, plots: dict[str, str] | None = None, tsne: str | None = None) -> str:
    """The stage-1 section: text metrics ×100 and accuracies per model and source (paper Table 3), the
    paper's row marked as different data, ablation comparisons, targets, the confusion matrix."""
    plots = plots or {}
    out = ["## Stage 1: speech → visual instruction (paper §4.3, Table 3)", ""]
    if doc is None:
        out += [f"Stage 1: {NOT_MEASURED} (no `--stage1` report; run `avitalk eval instruct --out`).", ""]
        out += [f"t-SNE of the audio embeddings (Figure 8): {NOT_MEASURED}.", ""]
        return "\n".join(out)
    models: dict[str, dict] = doc["models"]
    full_name = FULL if FULL in models else next(iter(models))
    full = models[full_name]
    per_source = full.get("per_source") or {}
    sources = ", ".join(f"{s} {g.get('n', '?')}" for s, g in per_source.items())
    dec = (full.get("decoding") or {}).get("decoding", "?")
    out.append(
        f"Split `{doc.get('split', '?')}` of {', '.join(f'`{c}`' for c in doc.get('corpora', [])) or '?'}: "
        f"{full.get('n', '?')} clips ({sources or 'one source'}); decoding {dec}. Text metrics ×100 "
        "(coco-caption: PTB tokens; CIDEr = CIDEr-D), accuracies in %. Each model is evaluated on the same clips."
    )
    out.append("")
    head = ["model", "source", "clips", *TEXT_METRICS, "emotion acc.", "intensity acc.", "unparsed", "s/clip"]
    rows = []
    for name, res in models.items():
        rows.append(_stage1_group_row(name, "all", res, res.get("seconds_per_clip")))
        src = res.get("per_source") or {}
        if len(src) > 1:
            rows += [_stage1_group_row("", s, g, None) for s, g in src.items()]
    paper = doc.get("paper_table3")
    if isinstance(paper, dict) and isinstance(paper.get("metrics"), dict):
        pm = paper["metrics"]
        label = paper.get("label", "paper")
        rows.append(
            [
                f"*{label}*",
                "MeadText",
                DASH,
                *(_fmt(pm.get(m), "x100") if m in pm else DASH for m in TEXT_METRICS),
                *(DASH, DASH, DASH, ""),
            ]
        )
    out += [md_table(head, rows, "ll" + "r" * (len(head) - 2)), ""]
    if isinstance(paper, dict):
        out.append(
            "The *paper* row is AVI-Talking's Table 3 on MeadText: **different data** (MEAD video captions vs. "
            "these corpora), vocabulary and language model (LLaMA-7b) — a point of reference, not a "
            "like-for-like comparison."
        )
        out.append("")
    reasons: dict[str, str] = {}
    for res in models.values():
        for m, why in (res.get("metrics_unavailable") or {}).items():
            reasons.setdefault(m, str(why))
    if reasons:
        out += [f"- n/a {m}: {why}" for m, why in reasons.items()] + [""]
    if "metrics" in plots:
        out += [f"![stage-1 text metrics]({plots['metrics']})", ""]

    out += ["### Ablations", ""]
    comparison = doc.get("comparison") or {}
    if not comparison:
        out += [f"Ablations: {NOT_MEASURED} (no `--ablation` runs in the report).", ""]
    else:
        rows = []
        for name, comp in comparison.items():
            for group, c in comp.items():
                emo = {True: "higher", False: "not higher", None: "n/a"}[c.get("emotion_win")]
                wins = c.get("text_wins") or []
                rows.append(
                    [
                        f"full vs {name}",
                        group,
                        f"{len(wins)}/{len(c.get('text_compared') or [])} ({', '.join(wins) or 'none'})",
                        emo,
                        "beats" if c.get("beats") else "does not beat",
                    ]
                )
        out += [md_table(["comparison", "clips", "text metrics higher", "emotion accuracy", "verdict"], rows,
                         "lllll"), ""]  # fmt: skip

    targets = doc.get("targets") or {}
    out += ["### Targets (issue #6)", ""]
    if not targets:
        out += [f"Targets: {NOT_MEASURED}.", ""]
    else:
        rows = []
        for label, t in targets.items():
            v = t.get("value")
            value = v if isinstance(v, str) else _fmt(v, "pct")
            minimum = "" if t.get("minimum") is None else f"≥ {_fmt(t['minimum'], 'pct')}"
            status = {True: "met", False: "**not met**", None: NOT_MEASURED}[t.get("met")]
            rows.append([label, value, minimum, status])
        out += [md_table(["target", "measured", "required", "status"], rows, "lrrl"), ""]

    out += [f"### Emotion confusion ({full_name} model; rows: labelled emotion, columns: emotion named)", ""]
    conf = full.get("confusion") or {}
    if not conf:
        out += [f"Confusion matrix: {NOT_MEASURED}.", ""]
    else:
        cols = list(dict.fromkeys(c for row in conf.values() for c in row))
        rows = [[lab, *(str(conf[lab].get(c, 0)) for c in cols), str(sum(conf[lab].values()))] for lab in conf]
        out += [md_table(["labelled \\ named", *cols, "clips"], rows), ""]
        if "confusion" in plots:
            out += [f"![stage-1 confusion matrix]({plots['confusion']})", ""]
    out += ["### Audio embeddings (t-SNE, paper Figure 8)", ""]
    if tsne:
        out += [f"![t-SNE of the pooled Q-Former embeddings]({tsne})", ""]
    else:
        out += [f"t-SNE plot: {NOT_MEASURED} (`avitalk eval instruct --plot tsne.png`, then `--tsne`).", ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- stage 2


def stage2_rows_ordered(rows: list[dict]) -> list[tuple[str, dict]]:
    """``(group, row)`` in the Table 4 layout: baselines, ablations, the full model, then upper bounds."""
    base = [("baseline", r) for b in BASELINES for r in rows if r.get("name") == b]
    abl = [("ablation", r) for r in rows if r.get("name") not in (*BASELINES, FULL, *UPPER_BOUNDS)]
    full = [("ours", r) for r in rows if r.get("name") == FULL]
    upper = [("upper bound", r) for r in rows if r.get("name") in UPPER_BOUNDS]
    return base + abl + full + upper


def stage2_markdown(doc: dict | None, *, plots: dict[str, str] | None = None) -> str:
    """The stage-2 section: one row per model (baselines, ablations, full) and the teacher reference."""
    plots = plots or {}
    out = ["## Stage 2: speech + instruction → motion (paper Table 4 layout)", ""]
    if doc is None:
        out += [f"Stage 2: {NOT_MEASURED} (no `--stage2` report; run `avitalk eval motion --out`).", ""]
        return "\n".join(out)
    ev = doc if "rows" in doc else doc["eval"]
    out.append(
        f"Split `{ev.get('split', '?')}` of `{ev.get('corpus', '?')}`: {ev.get('clips', '?')} clips, "
        f"{ev.get('samples', '?')} style samples per clip and instruction, vertex metrics on face "
        f"`{ev.get('face', '?')}` ({_pose_note(ev)}). Per clip the mean over samples, then the mean over clips. "
        "FDD is signed (> 0: upper face less dynamic than the teacher); rows are compared on |FDD|. "
        f"{DASH} = not measurable for that row."
    )
    out.append("")
    head = ["group", "model", *(h for _, h, _ in STAGE2_COLUMNS)]
    rows = [[g, r.get("name", "?"), *(_fmt(r.get(k), kind) for k, _, kind in STAGE2_COLUMNS)]
            for g, r in stage2_rows_ordered(ev["rows"])]  # fmt: skip
    teacher = ev.get("teacher") or {}
    if teacher:
        t_vals = {"lip_closure": teacher.get("lip_closure"), "emotion_own": teacher.get("classifier_accuracy"),
                  "jitter": teacher.get("jitter")}  # fmt: skip
        rows.append(["reference", "*teacher motion*", *(_fmt(t_vals.get(k), kind) if k in t_vals else DASH
                                                         for k, _, kind in STAGE2_COLUMNS)])  # fmt: skip
    out += [md_table(head, rows, "ll" + "r" * (len(head) - 2)), ""]
    notes = []
    clf = ev.get("classifier") or {}
    if _num(clf.get("test_accuracy")) is not None:
        notes.append(
            f"emotion classifier accuracy on held-out teacher motion: {_fmt(clf['test_accuracy'], 'pct')} "
            f"({clf.get('test_clips', '?')} clips); the teacher row's 'emotion, own' is the same classifier on "
            "the evaluated clips"
        )
    full = next((r for r in ev["rows"] if r.get("name") == FULL), None) or {}
    if _num(full.get("teacher_lve_swap")) is not None:
        notes.append(
            f"swapped instruction: a perfect instruction follower (the teacher re-run on the same phones with the "
            f"swap clip's style) has LVE {full['teacher_lve_swap']:.3f} mm² against the original teacher, so "
            "'LVE rise (swap)' measures the new expression as well as lip sync; 'LVE rise vs swapped GT' compares "
            "with that exact ground truth instead"
        )
    closure = teacher.get("closure") or {}
    if _num(closure.get("threshold")) is not None:
        notes.append(f"lip closed when the mid-lip gap ≤ {closure['threshold']:.2f} mm (calibrated on the teacher)")
    if _num(ev.get("load_seconds")) is not None:
        notes.append(f"model load {ev['load_seconds']:.2f} s")
    secs = [(r.get("name"), _num(r.get("seconds"))) for r in ev["rows"]]
    if any(s is not None for _, s in secs):
        notes.append("evaluation wall time: " + ", ".join(f"{n} {s:.1f} s" for n, s in secs if s is not None))
    out += [f"- {n}" for n in notes] + ([""] if notes else [])
    if "metrics" in plots:
        out += [f"![stage-2 metrics per model]({plots['metrics']})", ""]
    if isinstance(doc.get("figures"), list):
        out += ["### Stage-2 figures (bench/bench_stage2.py)", "", figures_table(doc["figures"]), ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- speed


def figures_table(figures: list[dict]) -> str:
    rows = []
    for f in figures:
        ok = f.get("pass")
        status = "n/a" if ok is None else ("PASS" if ok else "**FAIL**")
        rows.append([f.get("figure", "?"), f.get("measured", DASH), f.get("target", ""), status])
    return md_table(["figure", "measured", "target", "status"], rows, "lrll")


def bench_markdown(docs: Sequence[tuple[str, dict]], *, plots: dict[str, str] | None = None) -> str:
    """The speed section: per-stage seconds and real-time factors, load times, bench figures."""
    plots = plots or {}
    out = ["## Speed", ""]
    if not docs:
        out += [f"Speed: {NOT_MEASURED} (no `--bench` report; run `avitalk bench --out bench.json`).", ""]
        return "\n".join(out)
    for name, doc in docs:
        if isinstance(doc.get("stages"), list):
            out += _speed_doc(name, doc, plots.get(name))
        if isinstance(doc.get("figures"), list):
            title = doc.get("title") or name
            out += [f"### Figures: {title}", "", figures_table(doc["figures"]), ""]
    return "\n".join(out)


def _speed_doc(name: str, doc: dict, plot: str | None) -> list[str]:
    m = doc.get("machine") or {}
    a = doc.get("audio") or {}
    seconds = _num(a.get("seconds"))
    out = [f"### Per stage (`avitalk bench`, {name})", ""]
    out.append(
        f"{_fmt(seconds, 'f2') if seconds is not None else '?'} s clip ({a.get('source', '?')}); models "
        f"`{doc.get('models', '?')}`; {m.get('threads', '?')} torch threads on {m.get('cpus', '?')} CPUs; "
        f"median of {doc.get('repeats', '?')} run(s) after a warm-up. Real-time factor = seconds / clip length "
        "(< 1: faster than real time)."
    )
    out.append("")
    rows = []
    for s in doc["stages"]:
        sec = _num(s.get("seconds"))
        rows.append([s.get("label", s.get("key", "?")), DASH if sec is None else f"{sec:.3f}",
                     _fmt(s.get("rtf"), "f4") if sec is not None else s.get("note", NOT_MEASURED)])  # fmt: skip
    out += [md_table(["stage", "seconds", "real-time factor"], rows), ""]
    an = doc.get("animate") or {}
    if _num(an.get("seconds")) is not None:
        out.append(
            f"`Pipeline.animate`, all formats, models loaded: {an['seconds']:.2f} s (RTF {_fmt(an.get('rtf'), 'f4')}); "
            f"first call after loading {_fmt(an.get('first_call_seconds'), 'f2')} s"
            + ("; stage 1 described the speech." if an.get("described") else "; instruction given (no stage 1).")
        )
        out.append("")
    loads = doc.get("load") or []
    if loads:
        rows = [[x.get("label", "?"), _fmt(x.get("first"), "f2") if x.get("first") is not None else
                 x.get("note", NOT_MEASURED), _fmt(x.get("again"), "f2")] for x in loads]  # fmt: skip
        out += [md_table(["model load", "first in process (s)", "again (s)"], rows), ""]
    if plot:
        out += [f"![real-time factor per stage]({plot})", ""]
    return out


# ------------------------------------------------------------------------------------------- plots

_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]  # fmt: skip


def _fonts() -> tuple[Any, Any]:
    from PIL import ImageFont

    return ImageFont.load_default(size=16), ImageFont.load_default(size=12)


def _save(img: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


_GLYPHS = {"↓": "(lower better)", "↑": "(higher better)", "²": "^2", "→": "->", "×": "x", "…": "..."}


def _plain(text: str) -> str:
    """``text`` with the characters Pillow's default font lacks spelled out."""
    for a, b in _GLYPHS.items():
        text = text.replace(a, b)
    return text


def _short(text: str, n: int) -> str:
    text = _plain(text)
    return text if len(text) <= n else text[: n - 3] + "..."


def plot_bars(
    panels: Sequence[tuple[str, Sequence[str], Sequence[float | None]]],
    path: str | os.PathLike[str],
    *,
    title: str,
    columns: int = 3,
) -> Path:
    """Small multiples of vertical bar charts, one panel per ``(title, labels, values)``; None = n/a.

    Bars are coloured by label (the same label has the same colour in every panel); negative values
    go below a zero line. Written atomically as a PNG.
    """
    from PIL import Image, ImageDraw

    labels_all = list(dict.fromkeys(lab for _, labs, _ in panels for lab in labs))
    color = {lab: _COLORS[i % len(_COLORS)] for i, lab in enumerate(labels_all)}
    font, small = _fonts()
    pw, ph, top = 380, 260, 44
    n_rows = max(1, math.ceil(len(panels) / columns))
    legend_h = 24 * math.ceil(len(labels_all) / 4) + 10
    img = Image.new("RGB", (pw * columns, top + ph * n_rows + legend_h), "white")
    d = ImageDraw.Draw(img)
    d.text((12, 10), _plain(title), fill="black", font=font)
    for k, (ptitle, labs, vals) in enumerate(panels):
        ox, oy = (k % columns) * pw, top + (k // columns) * ph
        d.text((ox + 12, oy + 4), _plain(ptitle), fill="black", font=small)
        x0, x1, y0, y1 = ox + 56, ox + pw - 16, oy + 26, oy + ph - 34
        d.rectangle([x0, y0, x1, y1], outline=(200, 200, 200))
        nums = [_num(v) for v in vals]
        finite = [v for v in nums if v is not None]
        lo, hi = min([0.0, *finite]), max([0.0, *finite])
        if hi - lo <= 0:
            hi = lo + 1.0
        pad = 0.08 * (hi - lo)
        lo, hi = (lo - pad if lo < 0 else lo), hi + pad

        def ypix(v: float, lo: float = lo, hi: float = hi, y0: int = y0, y1: int = y1) -> float:
            return y1 - (v - lo) / (hi - lo) * (y1 - y0)

        for v in (lo, 0.0, hi):
            yy = ypix(v)
            d.line([x0 - 4, yy, x0, yy], fill=(120, 120, 120))
            d.text((ox + 4, yy - 7), f"{v:.3g}", fill=(90, 90, 90), font=small)
        d.line([x0, ypix(0.0), x1, ypix(0.0)], fill=(120, 120, 120))
        n = max(1, len(labs))
        slot = (x1 - x0) / n
        for i, (lab, v) in enumerate(zip(labs, nums, strict=True)):
            bx0, bx1 = x0 + i * slot + slot * 0.15, x0 + (i + 1) * slot - slot * 0.15
            if v is None:
                d.text((bx0, ypix(0.0) - 16), "n/a", fill=(150, 150, 150), font=small)
            else:
                ya, yb = sorted((ypix(0.0), ypix(v)))
                d.rectangle([bx0, ya, bx1, max(yb, ya + 1)], fill=color[lab], outline=(60, 60, 60))
                d.text((bx0, (ya - 14) if v >= 0 else yb + 2), f"{v:.3g}", fill="black", font=small)
            d.text((bx0, y1 + 4), _short(lab, max(4, int(slot / 7))), fill=(60, 60, 60), font=small)
    ly = top + ph * n_rows
    for i, lab in enumerate(labels_all):
        lx = 12 + (i % 4) * (pw * columns - 24) / 4
        yy = ly + 24 * (i // 4)
        d.rectangle([lx, yy + 3, lx + 12, yy + 15], fill=color[lab], outline=(60, 60, 60))
        d.text((lx + 18, yy + 2), _short(lab, 40), fill="black", font=small)
    return _save(img, Path(path))


def plot_hbars(
    labels: Sequence[str], values: Sequence[float | None], path: str | os.PathLike[str], *, title: str,
    reference: float | None = None, unit: str = "",
) -> Path:  # fmt: skip
    """Horizontal bars (e.g. real-time factor per stage), a dashed line at ``reference``; PNG, atomic."""
    from PIL import Image, ImageDraw

    font, small = _fonts()
    left, w, bar, top = 260, 900, 26, 44
    h = top + bar * len(labels) + 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.text((12, 10), _plain(title), fill="black", font=font)
    nums = [_num(v) for v in values]
    hi = max([x for x in nums if x is not None] + ([reference] if reference else []) + [1e-9]) * 1.15
    x0, x1 = left, w - 90
    for i, (lab, v) in enumerate(zip(labels, nums, strict=True)):
        y = top + i * bar
        d.text((12, y + 6), _short(lab, 36), fill="black", font=small)
        if v is None:
            d.text((x0 + 4, y + 6), NOT_MEASURED, fill=(150, 150, 150), font=small)
            continue
        xe = x0 + (x1 - x0) * max(v, 0.0) / hi
        d.rectangle([x0, y + 4, max(xe, x0 + 1), y + bar - 4], fill=_COLORS[0], outline=(60, 60, 60))
        d.text((xe + 6, y + 6), f"{v:.3g}{unit}", fill="black", font=small)
    yb = top + bar * len(labels)
    d.line([x0, top, x0, yb], fill=(120, 120, 120))
    if reference:
        xr = x0 + (x1 - x0) * reference / hi
        for yy in range(top, yb, 8):
            d.line([xr, yy, xr, yy + 4], fill=(214, 39, 40))
        d.text((xr - 20, yb + 6), f"{reference:g}{unit}", fill=(214, 39, 40), font=small)
    return _save(img, Path(path))


def plot_confusion(conf: dict[str, dict[str, int]], path: str | os.PathLike[str], *, title: str) -> Path:
    """Heat map of a confusion matrix (rows: label, columns: prediction), shaded by row fraction; PNG, atomic."""
    from PIL import Image, ImageDraw

    font, small = _fonts()
    rows = list(conf)
    cols = list(dict.fromkeys(c for r in conf.values() for c in r))
    cell, left, top = 64, 110, 90
    img = Image.new("RGB", (left + cell * len(cols) + 20, top + cell * len(rows) + 40), "white")
    d = ImageDraw.Draw(img)
    d.text((12, 10), _plain(title), fill="black", font=font)
    d.text((left, 38), "named in the generated text ->", fill=(90, 90, 90), font=small)
    for j, c in enumerate(cols):
        d.text((left + j * cell + 4, top - 22), _short(c, 9), fill="black", font=small)
    for i, r in enumerate(rows):
        total = sum(conf[r].values())
        d.text((8, top + i * cell + cell / 2 - 7), _short(r, 13), fill="black", font=small)
        for j, c in enumerate(cols):
            n = int(conf[r].get(c, 0))
            f = n / total if total else 0.0
            shade = (int(255 - f * 224), int(255 - f * 136), int(255 - f * 75))  # white -> blue
            x, y = left + j * cell, top + i * cell
            d.rectangle([x, y, x + cell, y + cell], fill=shade, outline=(210, 210, 210))
            d.text((x + cell / 2 - 8, y + cell / 2 - 7), str(n), fill="white" if f > 0.55 else "black", font=small)
    d.text((8, top + cell * len(rows) + 12), "rows: labelled emotion; shade: fraction of the row",
           fill=(90, 90, 90), font=small)  # fmt: skip
    return _save(img, Path(path))


# ------------------------------------------------------------------------------------------- report


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote: ``report`` (report.md) and ``images`` (PNG paths)."""

    report: Path
    images: list[Path] = field(default_factory=list)


def _stage1_plots(doc: dict, out: Path) -> dict[str, str]:
    plots: dict[str, str] = {}
    models = doc["models"]
    panels = []
    labels = list(models)
    paper = doc.get("paper_table3") or {}
    pm = paper.get("metrics") if isinstance(paper.get("metrics"), dict) else {}
    for m in TEXT_METRICS:
        vals = [None if _num((r.get("metrics") or {}).get(m)) is None else 100 * r["metrics"][m]
                for r in models.values()]  # fmt: skip
        labs = list(labels)
        if _num(pm.get(m)) is not None:
            labs.append("paper (different data)")
            vals.append(100 * pm[m])
        if any(v is not None for v in vals):
            panels.append((f"{m} ×100 ↑", labs, vals))
    for key, lab in (("emotion_accuracy", "emotion accuracy % ↑"), ("intensity_accuracy", "intensity accuracy % ↑")):
        vals = [None if _num(r.get(key)) is None else 100 * r[key] for r in models.values()]
        if any(v is not None for v in vals):
            panels.append((lab, labels, vals))
    if panels:
        plot_bars(panels, out / "stage1_metrics.png", title="Stage 1: text metrics and accuracies per model")
        plots["metrics"] = "stage1_metrics.png"
    full = models.get(FULL) or next(iter(models.values()))
    if full.get("confusion"):
        plot_confusion(full["confusion"], out / "stage1_confusion.png", title="Stage 1: emotion confusion")
        plots["confusion"] = "stage1_confusion.png"
    return plots


def _stage2_plots(doc: dict, out: Path) -> dict[str, str]:
    ev = doc if "rows" in doc else doc["eval"]
    ordered = [r for _, r in stage2_rows_ordered(ev["rows"])]
    labels = [str(r.get("name", "?")) for r in ordered]
    panels = []
    for key, head, kind in STAGE2_COLUMNS:
        scale = 100.0 if kind in ("pct", "spct") else 1.0
        vals = [None if _num(r.get(key)) is None else scale * r[key] for r in ordered]
        if any(v is not None for v in vals):
            panels.append((head + (" (%)" if scale == 100 and "%" not in head else ""), labels, vals))
    if not panels:
        return {}
    plot_bars(panels, out / "stage2_metrics.png", title="Stage 2: metrics per model (held-out split)")
    return {"metrics": "stage2_metrics.png"}


def _bench_plot(name: str, doc: dict, out: Path, index: int) -> str | None:
    stages = [s for s in doc.get("stages") or [] if _num(s.get("rtf")) is not None]
    if not stages:
        return None
    fname = "speed.png" if index == 0 else f"speed_{index + 1}.png"
    plot_hbars([s.get("label", s.get("key", "?")) for s in stages], [s["rtf"] for s in stages], out / fname,
               title=f"Real-time factor per stage ({name}); dashed: real time", reference=1.0)  # fmt: skip
    return fname


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    stage1: dict | None = None,
    stage2: dict | None = None,
    benches: Sequence[tuple[str, dict]] = (),
    tsne: str | os.PathLike[str] | None = None,
    inputs: Sequence[tuple[str, str]] = (),
) -> ReportFiles:
    """Write ``out_dir/report.md`` and its PNG plots (each file atomically).

    Args:
        stage1, stage2: the parsed reports (:func:`load_json_report`), or None ("not measured").
        benches: ``(name, report)`` speed reports, e.g. ``("bench.json", {...})``.
        tsne: a t-SNE PNG (``avitalk eval instruct --plot``); copied into ``out_dir`` as ``tsne.png``.
        inputs: ``(what, path)`` listed at the top of the report.

    Raises:
        AvitalkError: ``out_dir`` cannot be created, or ``tsne`` is not a PNG file.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise AvitalkError(f"--out {out}: is a file, expected a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AvitalkError(f"--out {out}: cannot create: {e.strerror or e}") from None
    files = ReportFiles(out / "report.md")
    tsne_name = None
    if tsne is not None:
        src = Path(tsne)
        if not src.is_file() or src.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
            raise AvitalkError(f"--tsne {src}: not a PNG file")
        dst = out / "tsne.png"
        if src.resolve() != dst.resolve():
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        files.images.append(dst)
        tsne_name = "tsne.png"
    p1 = _stage1_plots(stage1, out) if stage1 is not None else {}
    p2 = _stage2_plots(stage2, out) if stage2 is not None else {}
    pb: dict[str, str] = {}
    for i, (name, doc) in enumerate(benches):
        f = _bench_plot(name, doc, out, i)
        if f is not None:
            pb[name] = f
    files.images += [out / f for f in [*p1.values(), *p2.values(), *pb.values()]]
    parts = [
        "# avitalk evaluation report",
        "",
        "Written by `avitalk eval report`. Every number below is copied from these inputs; sections "
        f"without an input say “{NOT_MEASURED}”.",
        "",
        *(f"- {what}: `{path}`" for what, path in inputs),
        "",
        stage1_markdown(stage1, plots=p1, tsne=tsne_name),
        stage2_markdown(stage2, plots=p2),
        bench_markdown(list(benches), plots=pb),
    ]
    atomic_write_text(files.report, "\n".join(parts).rstrip() + "\n")
    return files
