"""Benchmark stage-1 inference: language-model load times and describe() on a 10 s clip.

Run:  python bench/bench_stage1.py --model RUN [--audio speech.wav] [--repeats 5] [--quick] [--llm-dtype auto]
                                   [--llm-backend auto]

Prints JSON with:
- ``llm_load``: the run's causal LM (``model.llm`` of its checkpoint config, e.g. ``smollm2``) loaded in
  a fresh process with an empty temporary ``AVITALK_CACHE`` (first-ever load: GGUF dequantisation + cache
  write; this step always runs ``transformers``) and again in a fresh process from that cache, on
  ``--llm-backend`` (default ``auto`` like the product: our own LLaMA, no ``transformers``);
  ``import_s`` is the one-off import of each process (``transformers`` for that backend), not included
  in the load times;
- ``load_stage1_s``: the whole model (:func:`avitalk.train.load_instruct.load_stage1`, LLM in ``--llm-dtype``
  on ``--llm-backend``, both default ``auto`` like the product) in this process,
  LM from the cache above (the speech encoder's cache is built in the same temporary directory);
- ``describe_10s``: ``describe()`` on a 10 s clip (real RAVDESS speech concatenated when
  ``../shared/assets`` is present, else ``--audio`` or a synthetic voice), greedy and (without ``--quick``)
  beam search with 3 beams: median of ``--repeats`` runs after one warm-up, with the generated text and
  the number of LM passes; greedy also without the speculative n-gram draft (``greedy_token_by_token``,
  the baseline: ``speedup``, ``same_text``);
- ``targets``: issue #6's figure, an instruction for a 10 s clip in <= 2 s after the model is loaded
  (2 torch threads).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avitalk.audio import load_audio
from avitalk.types import Audio

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets" / "RAVDESS-speech-16k"
TARGET_DESCRIBE_10S_S = 2.0
THREADS = 2


def ten_seconds(path: str | None) -> tuple[Audio, str]:
    """A 10 s clip: ``path`` tiled/cut, else RAVDESS files concatenated, else a synthetic voice."""
    n = 10 * 16000
    if path:
        x = load_audio(path).samples
        source = path
    else:
        files = sorted(glob.glob(str(ASSETS / "**" / "*.flac"), recursive=True))
        if files:
            parts, total = [], 0
            for f in files[:: max(1, len(files) // 8)]:
                parts.append(load_audio(f).samples)
                total += parts[-1].size
                if total >= n:
                    break
            x = np.concatenate(parts)
            source = f"RAVDESS ({len(parts)} files)"
        else:
            t = np.arange(n) / 16000
            f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
            env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2
            x = 0.1 * env * sum(np.sin(2 * np.pi * h * np.cumsum(f0) / 16000) / h for h in range(1, 8))
            source = "synthetic voice"
    x = np.tile(x, int(np.ceil(n / x.size)))[:n].astype(np.float32)
    return Audio(x, 16000), source


def run_llm_spec(run: str) -> str:
    from avitalk.instruct.config import Stage1Config
    from avitalk.train.load_instruct import find_stage1_checkpoint

    return Stage1Config.from_dict(find_stage1_checkpoint(run).config["model"]).llm


def _child_llm(spec: str, backend: str) -> None:
    """Fresh process: time the imports and one ``load_causal_lm`` (cache = $AVITALK_CACHE)."""
    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    if backend == "transformers":
        import transformers  # noqa: F401
    from avitalk.instruct.causal_lm import load_causal_lm

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_causal_lm(spec, backend=backend)
    print(json.dumps({"import_s": round(import_s, 2), "load_s": round(time.perf_counter() - t0, 2)}))


def bench_llm_load(spec: str, cache: str, backend: str) -> dict:
    out: dict = {"spec": spec, "backend": backend}
    if spec == "tiny-random" or spec.startswith("hf:"):
        out["note"] = "no dequantise/cache step for this spec: both loads read the weights directly"
    env = {**os.environ, "AVITALK_CACHE": cache, "HF_HUB_OFFLINE": "1"}
    for key in ("first_ever", "cached"):
        cmd = [sys.executable, __file__, "--child-llm", spec, "--llm-backend", backend]
        res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        row = json.loads(res.stdout.strip().splitlines()[-1])
        out[f"{key}_s"] = row["load_s"]
        out[f"{key}_import_s"] = row["import_s"]
    return out


def _median_time(fn, repeats: int) -> tuple[float, list[float], object]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def bench_describe(describer, audio: Audio, repeats: int, quick: bool) -> dict:
    """``greedy`` is the product's path (speculative with the n-gram draft when the model has one);
    ``greedy_token_by_token`` the same describer without the draft, the baseline of ``speedup``."""
    out: dict = {}
    draft = describer.draft
    modes = [("greedy", {}, draft), ("greedy_token_by_token", {}, None)]
    if not quick:
        modes.append(("beam3", {"decoding": "beam", "num_beams": 3}, draft))
    passes = [0]

    def count(*_: object) -> None:
        passes[0] += 1

    hook = describer.llm.model.register_forward_hook(count) if describer.llm else None
    try:
        for name, opts, d in modes:
            describer.draft = d
            med, times, ins = _median_time(lambda opts=opts: describer.describe(audio, **opts), repeats)
            passes[0] = 0
            describer.describe(audio, **opts)
            out[name] = {
                "median_s": round(med, 3),
                "runs_s": [round(t, 3) for t in times],
                "lm_passes": passes[0] if hook else None,
                "text": ins.text,
                "words": len(ins.text.split()),
            }
    finally:
        describer.draft = draft
        if hook:
            hook.remove()
    base, fast = out["greedy_token_by_token"], out["greedy"]
    out["speedup"] = round(base["median_s"] / fast["median_s"], 2)
    out["same_text"] = base["text"] == fast["text"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="stage-1 run directory (avitalk train instruct --out RUN)")
    ap.add_argument("--audio", help="speech file to tile/cut to 10 s (default: RAVDESS assets or synthetic)")
    ap.add_argument("--repeats", type=int, default=5, help="timed describe() calls per mode (default 5)")
    ap.add_argument("--quick", action="store_true", help="greedy only, 3 repeats")
    ap.add_argument("--llm-dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                    help="LLM dtype at inference (default auto, as avitalk animate / describe / serve)")  # fmt: skip
    ap.add_argument("--llm-backend", default="auto", choices=("auto", "transformers"),
                    help="LLM implementation (default auto, as the product: our own LLaMA if it applies)")  # fmt: skip
    ap.add_argument("--child-llm", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child_llm:
        _child_llm(args.child_llm, args.llm_backend)
        return
    if not args.model:
        ap.error("--model RUN is required")
    torch.set_num_threads(THREADS)
    repeats = 3 if args.quick else args.repeats
    spec = run_llm_spec(args.model)
    with tempfile.TemporaryDirectory(prefix="avitalk-bench-cache-") as cache:
        llm_load = bench_llm_load(spec, cache, args.llm_backend)
        report: dict = {"torch_threads": THREADS, "model": args.model, "llm_load": llm_load}
        os.environ["AVITALK_CACHE"] = cache  # reuse the LM cache just built; never touch the user's cache
        from avitalk.train.load_instruct import load_stage1

        t0 = time.perf_counter()
        describer = load_stage1(args.model, llm_dtype=args.llm_dtype, llm_backend=args.llm_backend)
        report["load_stage1_s"] = round(time.perf_counter() - t0, 2)
        report["llm_backend"] = type(describer.llm).__name__ if describer.llm else None
        report["llm_dtype"] = {"asked": args.llm_dtype, "used": str(describer.llm.dtype) if describer.llm else None}
        report["max_new_tokens"] = getattr(getattr(describer, "config", None), "max_new_tokens", None)
        audio, source = ten_seconds(args.audio)
        report["audio"] = {"seconds": audio.duration, "source": source}
        report["describe_10s"] = bench_describe(describer, audio, repeats, args.quick)
    greedy = report["describe_10s"]["greedy"]["median_s"]
    report["targets"] = {
        "describe_10s_greedy_s": {
            "value": greedy,
            "max": TARGET_DESCRIBE_10S_S,
            "met": greedy <= TARGET_DESCRIBE_10S_S,
        },
        "first_ever_vs_cached_llm_load_s": [report["llm_load"]["first_ever_s"], report["llm_load"]["cached_s"]],
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
