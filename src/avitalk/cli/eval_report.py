"""``avitalk eval report``: one Markdown report with PNG plots from the evaluations' JSON (docs/evaluation.md).

    avitalk eval report [--stage1 EVAL1.json] [--stage2 EVAL2.json] [--bench BENCH.json ...]
                        [--tsne tsne.png] --out REPORT_DIR

Reads the ``--out`` files of ``avitalk eval instruct``, ``avitalk eval motion`` (or
``bench/bench_stage2.py``) and ``avitalk bench`` (or ``bench/bench_animate.py`` /
``bench/bench_streaming.py``) and writes ``REPORT_DIR/report.md`` plus its PNG plots. Nothing is
measured here; a section without an input says "not measured".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avitalk.errors import AvitalkError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval report``."""
    p = subparsers.add_parser(
        "report",
        help="write a Markdown report with PNG plots from eval instruct / eval motion / bench JSON",
        description="Paper-style tables (stage 1 Table 3, stage 2 Table 4 layout), speed per stage and plots "
        "from the JSON reports the evaluations wrote with --out.",
    )
    p.add_argument("--stage1", type=Path, metavar="EVAL1.json", help="`avitalk eval instruct --out` report")
    p.add_argument("--stage2", type=Path, metavar="EVAL2.json",
                   help="`avitalk eval motion --out` report (or bench/bench_stage2.py --out)")  # fmt: skip
    p.add_argument("--bench", type=Path, action="append", default=[], metavar="BENCH.json",
                   help="`avitalk bench --out` or bench/bench_*.py --out report (repeatable)")  # fmt: skip
    p.add_argument("--tsne", type=Path, metavar="PNG",
                   help="t-SNE plot of `eval instruct --plot` (default: tsne.png beside --stage1)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, metavar="REPORT_DIR", help="directory for report.md + PNGs")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from avitalk.eval.report import load_json_report, write_report

    if args.stage1 is None and args.stage2 is None and not args.bench:
        raise AvitalkError("nothing to report: give --stage1, --stage2 and/or --bench")
    stage1 = load_json_report(args.stage1, "stage1") if args.stage1 is not None else None
    stage2 = load_json_report(args.stage2, "stage2") if args.stage2 is not None else None
    benches = [(p.name, load_json_report(p, "bench")) for p in args.bench]
    tsne = args.tsne
    if tsne is None and args.stage1 is not None and (args.stage1.parent / "tsne.png").is_file():
        tsne = args.stage1.parent / "tsne.png"
    if tsne is not None and not tsne.is_file():
        raise AvitalkError(f"--tsne {tsne}: no such file")
    inputs = [("stage 1", str(args.stage1))] if args.stage1 is not None else []
    inputs += [("stage 2", str(args.stage2))] if args.stage2 is not None else []
    inputs += [("speed", str(p)) for p in args.bench]
    inputs += [("t-SNE", str(tsne))] if tsne is not None else []
    files = write_report(args.out, stage1=stage1, stage2=stage2, benches=benches, tsne=tsne, inputs=inputs)
    print(files.report)
    for img in files.images:
        print(img)
    return 0
