"""Issue #7 figures of ``avitalk animate``: wall time on a 10 s clip and peak memory on a 10-minute input.

    python bench/bench_animate.py [--models DIR] [--audio FILE] [--seconds 10] [--minutes 10] [--threads 2]
                                  [--skip-memory] [--quick] [--out bench-animate.json]

Figures (all output formats: instruction.txt, motion.npz, render.mp4, face.glb, arkit.csv):

- ``avitalk animate`` on a ``--seconds`` clip in a fresh process (``python -m avitalk animate``), wall time
  including Python start-up and model loads: target <= 15 s;
- the same with the models already loaded (``Pipeline.animate`` after one warm-up call, as in the
  server): target <= 5 s;
- ``avitalk animate`` on a ``--minutes`` input in a fresh process: peak RSS (``getrusage`` maxrss) of
  the Python process, or, with psutil installed, the larger sampled peak of the whole process tree
  (Python + ffmpeg): target < 4 GB.

Stage 1 runs when the models have ``instruct/``; otherwise a fixed ``--instruction`` is given (said in
the output). ``--quick`` (smoke test) uses a 2 s clip and a 20 s "long" input: the targets are then
printed for reference only. ``--models`` defaults to the shipped models (``avitalk/weights/default``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

from avitalk.bench import DEFAULT_INSTRUCTION, bench_audio, speechlike_audio
from avitalk.pipeline import FORMATS, Pipeline, default_models_dir


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    return env


def _animate_cmd(wav: Path, out: Path, models: Path, instruction: str | None) -> list[str]:
    cmd = ["animate", str(wav), "-o", str(out), "--models", str(models)]
    return cmd + (["--instruction", instruction] if instruction is not None else [])


def fresh_animate(wav: Path, out: Path, models: Path, instruction: str | None, threads: int) -> dict:
    """Wall time of ``python -m avitalk animate`` in a new process."""
    cmd = [sys.executable, "-m", "avitalk", *_animate_cmd(wav, out, models, instruction)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, env=_env(threads))
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"avitalk animate failed ({res.returncode}): {res.stderr.strip()[-2000:]}")
    return {"wall_s": wall, "stages": [line.strip() for line in res.stderr.splitlines() if line.strip()]}


def loaded_animate(audio, models: Path, instruction: str | None, threads: int, out: Path) -> dict:
    """``Pipeline.animate`` with every format, models loaded, after one warm-up call."""
    import torch

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    pipe = Pipeline.load(models)
    _ = pipe.face
    load_s = time.perf_counter() - t0
    formats = tuple(f for f in FORMATS if f != "csv" or pipe.synthesizer.space.name == "arkit52")
    t0 = time.perf_counter()
    pipe.animate(audio, instruction=instruction, seed=0, out_dir=out / "warm", formats=formats)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = pipe.animate(audio, instruction=instruction, seed=1, out_dir=out / "run", formats=formats)
    wall = time.perf_counter() - t0
    return {"load_s": load_s, "first_call_s": first, "wall_s": wall, "timings": res.timings,
            "described": res.described, "files": [str(p.name) for p in res.paths]}  # fmt: skip


def _child_memory(argv: list[str]) -> None:
    """Run ``avitalk animate argv`` in this process; print its peak RSS (getrusage maxrss) as JSON."""
    from avitalk.cli import main

    t0 = time.perf_counter()
    status = main(argv)
    wall = time.perf_counter() - t0
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux -> MB
    print(json.dumps({"status": status, "wall_s": wall, "peak_rss_mb": me}))


def memory_animate(wav: Path, out: Path, models: Path, instruction: str | None, threads: int) -> dict:
    """Peak memory of ``avitalk animate`` on a long input in a fresh process.

    ``peak_rss_mb`` is the Python process's own ``getrusage`` maxrss. Its children's maxrss (ffmpeg) is
    not usable: a forked child counts the parent's pages until it execs. With psutil installed, the
    summed RSS of the process tree (Python + ffmpeg) is also sampled every 20 ms (``tree_peak_rss_mb``).
    """
    cmd = [sys.executable, __file__, "--child-memory", "--", *_animate_cmd(wav, out, models, instruction)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(threads))
    tree_peak = None
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        tree_peak = 0.0
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                procs = [root, *root.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in procs if p.is_running())
                tree_peak = max(tree_peak, rss / 2**20)
            except psutil.Error:
                pass
            time.sleep(0.02)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"long-input animate failed ({proc.returncode}): {stderr.strip()[-2000:]}")
    doc = json.loads(stdout.strip().splitlines()[-1])
    doc.pop("children_peak_rss_mb", None)
    doc["tree_peak_rss_mb"] = tree_peak
    return doc


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-memory":
        _child_memory(sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, help="models directory (default: the shipped models)")
    ap.add_argument("--audio", type=Path, help="speech file (default: the bundled example or synthetic speech)")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the memory-test input (default 10)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2: the target machine)")
    ap.add_argument(
        "--instruction", help=f"instruction when the models have no stage 1 (default {DEFAULT_INSTRUCTION!r})"
    )
    ap.add_argument(
        "--long-seconds", type=float, help="length of the memory-test input in seconds (overrides --minutes)"
    )
    ap.add_argument("--skip-memory", action="store_true", help="skip the long-input memory test")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 s clip, 20 s long input")
    ap.add_argument("--out", type=Path, help="write the figures as JSON (input of avitalk eval report --bench)")
    args = ap.parse_args()
    models = args.models if args.models is not None else default_models_dir()
    if not (models / "motion" / "meta.json").is_file():
        raise SystemExit(f"{models}: not a models directory (no motion/meta.json); pass --models DIR")
    seconds, long_s = (2.0, 20.0) if args.quick else (args.seconds, 60.0 * args.minutes)
    if args.long_seconds is not None:
        long_s = args.long_seconds
    has_stage1 = (models / "instruct" / "meta.json").is_file()
    instruction = None if has_stage1 else (args.instruction or DEFAULT_INSTRUCTION)
    audio, source = bench_audio(args.audio, seconds)
    with tempfile.TemporaryDirectory(prefix="bench-animate-") as tmp:
        t = Path(tmp)
        wav = t / "clip.wav"
        sf.write(str(wav), audio.samples, audio.sample_rate)
        print(f"clip: {audio.duration:.1f} s of {source}; models {models}; "
              f"{'stage 1 runs' if has_stage1 else 'no stage 1: instruction given'}", file=sys.stderr)  # fmt: skip
        fresh = fresh_animate(wav, t / "fresh", models, instruction, args.threads)
        loaded = loaded_animate(audio, models, instruction, args.threads, t / "loaded")
        memory = None
        if not args.skip_memory:
            long_wav = t / "long.wav"
            long = speechlike_audio(long_s) if args.audio is None else bench_audio(args.audio, long_s)[0]
            sf.write(str(long_wav), long.samples, long.sample_rate, subtype="PCM_16")
            del long
            print(f"long input: {long_s:.0f} s in a fresh process ...", file=sys.stderr)
            memory = memory_animate(long_wav, t / "long", models, instruction, args.threads)
    figures = [
        (f"avitalk animate, {seconds:g} s clip, fresh process (s)", fresh["wall_s"], "<= 15", fresh["wall_s"] <= 15),
        (f"animate, {seconds:g} s clip, models loaded (s)", loaded["wall_s"], "<= 5", loaded["wall_s"] <= 5),
    ]
    if memory is not None:
        tree = memory["tree_peak_rss_mb"]
        gb = max(memory["peak_rss_mb"], tree or 0.0) / 1024
        what = "python + ffmpeg, sampled" if tree is not None else "python process, getrusage"
        length = f"{long_s / 60:g}-minute" if long_s >= 60 else f"{long_s:g} s"
        figures.append((f"peak memory, {length} input, fresh process ({what}) (GB)", gb, "< 4", gb < 4))
    print()
    if args.quick:
        print("QUICK MODE: sizes reduced; the targets apply to a 10 s clip and a 10-minute input")
    width = max(len(f[0]) for f in figures)
    for name, value, target, ok in figures:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<{width}}  {value:>9.2f}  target {target}")
    print("\nfresh process stages:\n  " + "\n  ".join(fresh["stages"]))
    print("models loaded: " + ", ".join(f"{k} {v:.2f} s" for k, v in loaded["timings"].items())
          + f"; load {loaded['load_s']:.2f} s, first call {loaded['first_call_s']:.2f} s")  # fmt: skip
    if memory is not None:
        tree = memory["tree_peak_rss_mb"]
        print(
            f"long input: {memory['wall_s']:.1f} s; peak RSS of the python process {memory['peak_rss_mb']:.0f} MB "
            f"(getrusage); process tree {'n/a (no psutil)' if tree is None else f'{tree:.0f} MB (sampled)'}"
        )
    doc = {
        "title": "bench/bench_animate.py" + (" (quick)" if args.quick else ""),
        "quick": args.quick,
        "models": str(models),
        "threads": args.threads,
        "audio": {"source": source, "seconds": audio.duration, "long_seconds": long_s},
        "stage1": has_stage1,
        "figures": [{"figure": n, "measured": f"{v:.2f}", "target": tg, "pass": bool(ok)} for n, v, tg, ok in figures],
        "fresh": fresh,
        "loaded": loaded,
        "memory": memory,
    }
    if args.out is not None:
        from avitalk.fsutil import atomic_write_text

        atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
