"""Issue #7 streaming and long-audio figures: first-frame latency, sustained real-time factor, seams.

    python bench/bench_streaming.py [--models DIR] [--seconds 30] [--seam-seconds 60] [--chunk-ms 200]
                                    [--cores 2] [--quick] [--out bench-streaming.json]

Figures (``StreamingSynthesizer`` with its defaults: lookahead 4 frames, context 50 frames):

- first motion frame after the first 200 ms chunk arrives: compute time of the first ``push`` of a
  new stream (models loaded and warmed up by one earlier stream; the style is sampled when the stream
  starts, before any audio): target <= 300 ms; the very first stream of the process is printed too;
- sustained real-time factor of streaming ``--seconds`` of speech in 200 ms chunks on ``--cores``
  cores (torch threads = cores; CPU affinity restricted to that many cores when there are more):
  total compute / audio duration, target < 1 (and the slowest chunk is printed);
- seams of the windowed offline path on ``--seam-seconds`` of speech: jitter inside the cross-faded
  window overlaps / jitter inside single windows (``motion.inference.seam_jitter``), target <= 1.2;
- streamed vs offline jitter on the same speech: target <= 1.2.

Jitter = mean absolute second difference of the coefficients. ``--quick`` (smoke test): 4 s of
streaming, 12 s for the seams, 1 warm stream; targets printed for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from avitalk.bench import DEFAULT_INSTRUCTION, bench_audio
from avitalk.motion.inference import StreamingSynthesizer, seam_jitter, window_starts
from avitalk.pipeline import Pipeline, default_models_dir


def _jitter(values: np.ndarray) -> float:
    return float(np.abs(np.diff(np.asarray(values, np.float64), n=2, axis=0)).mean())


def first_frame(synth, audio, chunk: int, instruction: str, seed: int) -> dict:
    """A new stream: style sampling at start, then the compute time of the first chunk's push."""
    t0 = time.perf_counter()
    s = StreamingSynthesizer(synth, instruction, seed=seed)
    start = time.perf_counter() - t0
    t0 = time.perf_counter()
    m = s.push(audio.samples[:chunk])
    push = time.perf_counter() - t0
    return {"start_s": start, "first_push_s": push, "frames": m.n_frames, "delay_s": s.delay_seconds}


def sustained(synth, audio, chunk: int, instruction: str) -> dict:
    """Stream the whole clip chunk by chunk as fast as possible; per-chunk compute times."""
    s = StreamingSynthesizer(synth, instruction, seed=0)
    times, parts = [], []
    x = audio.samples
    for i in range(0, x.shape[0], chunk):
        t0 = time.perf_counter()
        parts.append(s.push(x[i : i + chunk]).values)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    parts.append(s.flush().values)
    times.append(time.perf_counter() - t0)
    total = float(sum(times))
    return {"compute_s": total, "rtf": total / audio.duration, "max_chunk_s": max(times),
            "p95_chunk_s": float(np.percentile(times, 95)), "chunks": len(times),
            "values": np.concatenate(parts)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, help="models directory (default: the shipped models)")
    ap.add_argument("--audio", type=Path, help="speech file (default: the bundled example or synthetic speech)")
    ap.add_argument("--seconds", type=float, default=30.0, help="streamed speech for the sustained RTF (default 30)")
    ap.add_argument("--seam-seconds", type=float, default=60.0, help="offline input for the seam figure (default 60)")
    ap.add_argument("--chunk-ms", type=int, default=200, help="chunk length (default 200 ms)")
    ap.add_argument("--cores", type=int, default=2, help="cores / torch threads (default 2)")
    ap.add_argument("--warm", type=int, default=3, help="warm streams for the first-frame latency (median)")
    ap.add_argument("--instruction", default=DEFAULT_INSTRUCTION)
    ap.add_argument("--quick", action="store_true", help="smoke test: 4 s streamed, 12 s seams, 1 warm stream")
    ap.add_argument("--out", type=Path, help="write the figures as JSON (input of avitalk eval report --bench)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.quick:
        args.seconds, args.seam_seconds, args.warm = 4.0, 12.0, 1
    models = args.models if args.models is not None else default_models_dir()
    if not (models / "motion" / "meta.json").is_file():
        raise SystemExit(f"{models}: not a models directory (no motion/meta.json); pass --models DIR")
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > args.cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    torch.set_num_threads(args.cores)
    synth = Pipeline.load(models).synthesizer
    audio, source = bench_audio(args.audio, max(args.seconds, args.seam_seconds))
    chunk = round(audio.sample_rate * args.chunk_ms / 1000)
    streamed = type(audio)(audio.samples[: round(args.seconds * audio.sample_rate)], audio.sample_rate)
    print(f"{source}; models {models}; {args.cores} cores; {args.chunk_ms} ms chunks", file=sys.stderr)

    cold = first_frame(synth, audio, chunk, args.instruction, 0)
    warm = [first_frame(synth, audio, chunk, args.instruction, k + 1) for k in range(args.warm)]
    warm_push = statistics.median(w["first_push_s"] for w in warm)
    frames_out = min(w["frames"] for w in warm)
    run = sustained(synth, streamed, chunk, args.instruction)
    (offline,) = synth.synthesize(streamed, args.instruction, seed=0)
    stream_ratio = _jitter(run.pop("values")) / _jitter(offline.values)

    long = type(audio)(audio.samples[: round(args.seam_seconds * audio.sample_rate)], audio.sample_rate)
    (m,) = synth.synthesize(long, args.instruction, seed=0)
    starts = window_starts(m.n_frames, synth.config.window, synth.overlap or 0)
    seam, within = seam_jitter(m.values, starts, synth.config.window)
    seam_ratio = seam / within if within > 0 else float("nan")

    ok_first = frames_out > 0 and warm_push <= 0.3
    figures = [
        (f"first motion frame after the first {args.chunk_ms} ms chunk (ms)", 1000 * warm_push, "<= 300",
         ok_first),
        (f"sustained real-time factor, streaming, {args.cores} cores", run["rtf"], "< 1", run["rtf"] < 1),
        (f"offline seam jitter / within-window jitter ({len(starts)} windows)", seam_ratio, "<= 1.2",
         seam_ratio <= 1.2),
        ("streamed jitter / offline jitter", stream_ratio, "<= 1.2", stream_ratio <= 1.2),
    ]  # fmt: skip
    print()
    if args.quick:
        print("QUICK MODE: sizes reduced; figures for reference")
    width = max(len(f[0]) for f in figures)
    for name, value, target, ok in figures:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<{width}}  {value:>9.3f}  target {target}")
    warm_style = statistics.median(w["start_s"] for w in warm)
    print(
        f"\nfirst stream of the process: style sampling {1000 * cold['start_s']:.0f} ms, first push "
        f"{1000 * cold['first_push_s']:.0f} ms; warm: style {1000 * warm_style:.0f} ms; "
        f"{frames_out} frame(s) out of the first chunk; algorithmic delay {1000 * cold['delay_s']:.0f} ms of audio"
    )
    print(
        f"streaming {streamed.duration:.1f} s: {run['compute_s']:.2f} s compute, slowest chunk "
        f"{1000 * run['max_chunk_s']:.0f} ms, p95 {1000 * run['p95_chunk_s']:.0f} ms ({run['chunks']} chunks)"
    )
    print(f"seams on {long.duration:.0f} s: {seam:.5f} vs within-window {within:.5f}")
    doc = {
        "title": "bench/bench_streaming.py" + (" (quick)" if args.quick else ""),
        "quick": args.quick,
        "models": str(models),
        "cores": args.cores,
        "audio": {"source": source, "streamed_seconds": streamed.duration, "seam_seconds": long.duration},
        "figures": [{"figure": n, "measured": f"{v:.3f}", "target": tg, "pass": bool(ok)} for n, v, tg, ok in figures],
        "first_frame": {"cold": cold, "warm": warm},
        "sustained": run,
        "seams": {"seam": seam, "within": within, "windows": len(starts)},
    }
    if args.out is not None:
        from avitalk.fsutil import atomic_write_text

        atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
