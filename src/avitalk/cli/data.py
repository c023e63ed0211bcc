"""``avitalk data``: synth, check and stats of corpora."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="make, check and summarise corpora")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.required = True

    p = dsub.add_parser("synth", help="generate the synthetic corpus (speech, ground-truth motion, instructions)")
    p.add_argument("--out", required=True, help="output directory (resumed if interrupted)")
    p.add_argument("--hours", type=float, default=1.0, help="hours of audio to generate (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (same seed + hours = identical output)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: number of CPU cores)")
    p.set_defaults(func=_synth)

    p = dsub.add_parser("import", help="import real data (MEAD/EMOCA, MeadText, RAVDESS, Live Link Face, video)")
    isub = p.add_subparsers(dest="kind", metavar="KIND")
    isub.required = True
    from avitalk.data.importers import IMPORTERS, load_importer

    for kind in IMPORTERS:
        module = load_importer(kind)
        if module is None:
            continue
        k = isub.add_parser(kind, help=module.HELP)
        k.add_argument("src", help="source file or directory")
        k.add_argument("--out", required=True, help="output corpus directory (resumed if interrupted)")
        module.add_arguments(k)
        k.set_defaults(func=_import, importer=module)

    p = dsub.add_parser("check", help="validate a corpus and name each bad clip")
    p.add_argument("dir", help="corpus directory")
    p.add_argument("--max-problems", type=int, default=1000, help="stop listing after this many problems")
    p.set_defaults(func=_check)

    p = dsub.add_parser("stats", help="clip counts and durations per split, speaker and emotion")
    p.add_argument("dir", help="corpus directory")
    p.set_defaults(func=_stats)


def _synth(args: argparse.Namespace) -> int:
    import os

    from tqdm import tqdm

    from avitalk.data.synth.corpus import synthesize_corpus

    workers = args.workers or os.cpu_count() or 1
    bar = tqdm(unit="clip", desc="synth", dynamic_ncols=True, disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        manifest = synthesize_corpus(args.out, hours=args.hours, seed=args.seed, workers=workers, progress=progress)
    finally:
        bar.close()
    clips = sum(s.clips for s in manifest.shards)
    minutes = sum(s.seconds for s in manifest.shards) / 60
    print(f"wrote {clips} clips ({minutes:.1f} min of audio) in {len(manifest.shards)} shards to {args.out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from avitalk.data.check import check_corpus
    from avitalk.errors import AvitalkError

    src = Path(args.src)
    if not src.exists():
        raise AvitalkError(f"{src}: no such file or directory")
    summary = args.importer.run(src, Path(args.out), args)
    print(summary.format())
    report = check_corpus(args.out)
    if not report.ok:
        for problem in report.problems:
            print(problem, file=sys.stderr)
        raise AvitalkError(f"the imported corpus at {args.out} fails data check ({len(report.problems)} problem(s))")
    print(f"data check: ok ({report.clips} clips)")
    return 0


def _check(args: argparse.Namespace) -> int:
    from avitalk.data.check import check_corpus

    report = check_corpus(args.dir, max_problems=args.max_problems)
    for problem in report.problems:
        print(problem)
    if report.ok:
        print(f"ok: {report.clips} clips checked, no problems")
        return 0
    print(
        f"{report.bad_clips} bad clip(s) of {report.clips}; {len(report.problems)} problem(s) listed", file=sys.stderr
    )
    return 1


def _stats(args: argparse.Namespace) -> int:
    from avitalk.data.check import corpus_stats, format_stats

    print(format_stats(corpus_stats(args.dir)))
    return 0
