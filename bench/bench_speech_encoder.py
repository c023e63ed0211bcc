"""Benchmark and validate the default speech encoder (Whisper tiny.en, PyTorch, variable length).

Run:  python bench/bench_speech_encoder.py [--quick]

Prints JSON with:
- ``load``: first load (CTranslate2 parse + safetensors cache write) vs cached load, seconds;
- ``variable_vs_padded``: features on the real length vs stock Whisper (clip padded to 30 s) on the
  valid frames (real RAVDESS speech when ``../shared/assets`` is present, else synthetic); with
  ``ctranslate2`` installed, also whether Whisper's own decoder transcribes both the same;
- ``seams``: a <= 30 s clip encoded in one pass vs in 10 s windows with 2 s cross-fades, and the
  frame-to-frame step at the cross-fades of a 75 s clip vs elsewhere;
- ``rtf``: real-time factor (compute seconds / audio seconds) on 10 s and 60 s, 1 and 2 threads,
  variable length vs padded-30 s baseline (vs ctranslate2 when installed);
- ``memory``: peak RSS growth encoding 1, 2.5 and 10 min of audio (each in a fresh process).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from avitalk.audio import load_audio
from avitalk.audio.encoder import load_ct2_whisper, load_speech_encoder, whisper_tiny_en_path
from avitalk.audio.whisper import log_mel
from avitalk.types import Audio

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets" / "RAVDESS-speech-16k"


def speech_clips(k: int) -> list[Audio]:
    files = sorted(glob.glob(str(ASSETS / "**" / "*.flac"), recursive=True))
    if files:
        return [load_audio(f) for f in files[:: max(1, len(files) // k)][:k]]
    rng = np.random.default_rng(0)
    return [synthetic(3.0 + 0.3 * i, rng) for i in range(k)]


def synthetic(seconds: float, rng: np.random.Generator) -> Audio:
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2
    x = env * sum(np.sin(2 * np.pi * h * np.cumsum(f0) / 16000) / h for h in range(1, 8))
    return Audio((0.1 * x + 0.005 * rng.standard_normal(n)).astype(np.float32), 16000)


def long_audio(seconds: float) -> Audio:
    clips = speech_clips(24)
    x = np.concatenate([c.samples for c in clips])
    reps = int(np.ceil(seconds * 16000 / x.size))
    return Audio(np.tile(x, reps)[: int(seconds * 16000)].copy(), 16000)


def bench_load() -> dict:
    src = whisper_tiny_en_path()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        load_speech_encoder(cache_dir=d)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_speech_encoder(cache_dir=d)
        cached = time.perf_counter() - t0
    return {"first_s": round(first, 3), "cached_s": round(cached, 3), "source_mb": round(src.stat().st_size / 1e6, 1)}


def bench_agreement(var, pad, n_clips: int) -> dict:
    rows, words = [], []
    dec = _ct2_decoder()
    for a in speech_clips(n_clips):
        v, p = var.encode(a).values, pad.encode(a).values
        cos = (v * p).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(p, axis=1))
        rows.append(
            [np.abs(v - p).max(), np.abs(v - p).mean(), np.linalg.norm(v - p) / np.linalg.norm(p), cos.mean(), p.std()]
        )
        if dec is not None:
            x = torch.from_numpy(np.pad(a.samples, (0, 480_000 - a.samples.size)))
            with torch.inference_mode():
                ref = pad.net(log_mel(x, pad.filters)[None])[0].numpy()  # all 1500 frames, as Whisper decodes
            words.append(_first_sentence(dec(ref)) == _first_sentence(dec(v)))
    r = np.array(rows)
    out = {
        "clips": len(rows),
        "max_abs": round(float(r[:, 0].max()), 3),
        "mean_abs": round(float(r[:, 1].mean()), 4),
        "relative_l2": round(float(r[:, 2].mean()), 4),
        "mean_cosine": round(float(r[:, 3].mean()), 4),
        "feature_std": round(float(r[:, 4].mean()), 3),
    }
    if words:
        out["same_transcript_words"] = f"{sum(words)}/{len(words)}"
    return out


def _first_sentence(text: str) -> str:
    import re

    s = re.split(r"(?<=[.!?])\s", text.strip())[0]
    return re.sub(r"[^a-z ]", "", s.lower()).strip()


def _ct2_decoder():
    try:
        import ctranslate2
        import tokenizers
    except ImportError:
        return None
    model_dir = whisper_tiny_en_path().parent
    w = ctranslate2.models.Whisper(str(model_dir), device="cpu", intra_threads=torch.get_num_threads())
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    prompt = tok.encode("<|startoftranscript|><|notimestamps|>", add_special_tokens=False).ids

    def decode(feats: np.ndarray) -> str:
        sv = ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None], dtype=np.float32))
        return tok.decode(w.generate(sv, [prompt], beam_size=1, max_length=60)[0].sequences_ids[0])

    return decode


def bench_seams(cache_dir: str) -> dict:
    short = long_audio(30.0)
    one = load_speech_encoder(cache_dir=cache_dir).encode(short).values
    win_enc = load_ct2_whisper(whisper_tiny_en_path(), name="w", cache_dir=cache_dir, window_s=10.0, overlap_s=2.0)
    win = win_enc.encode(short).values
    from avitalk.audio.windows import plan_windows

    starts = plan_windows(one.shape[0], win_enc.window, win_enc.overlap)
    seam = np.zeros(one.shape[0], bool)
    for s in starts[1:]:
        prev_end = starts[starts.index(s) - 1] + win_enc.window
        seam[s:prev_end] = True
    d = np.abs(win - one)
    step = np.linalg.norm(np.diff(win, axis=0), axis=1)
    step_ref = np.linalg.norm(np.diff(one, axis=0), axis=1)
    res = {
        "windows_10s_overlap_2s_on_30s": {
            "mean_abs_in_crossfades": round(float(d[seam].mean()), 4),
            "mean_abs_elsewhere": round(float(d[~seam].mean()), 4),
            "max_abs": round(float(d.max()), 3),
            "relative_l2": round(float(np.linalg.norm(win - one) / np.linalg.norm(one)), 4),
            "max_step_windowed": round(float(step.max()), 3),
            "max_step_single_pass": round(float(step_ref.max()), 3),
        }
    }
    enc = load_speech_encoder(cache_dir=cache_dir)
    a = long_audio(75.0)
    f = enc.encode(a).values
    starts = plan_windows(f.shape[0], enc.window, enc.overlap)
    step = np.linalg.norm(np.diff(f, axis=0), axis=1)
    mask = np.zeros(step.shape[0], bool)
    for i in range(1, len(starts)):
        mask[starts[i] : starts[i - 1] + enc.window - 1] = True
    res["default_30s_windows_on_75s"] = {
        "windows": starts,
        "median_step_in_crossfades": round(float(np.median(step[mask])), 3),
        "median_step_elsewhere": round(float(np.median(step[~mask])), 3),
        "max_step_in_crossfades": round(float(step[mask].max()), 3),
        "max_step_elsewhere": round(float(step[~mask].max()), 3),
    }
    return res


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_rtf(cache_dir: str, quick: bool) -> dict:
    var = load_speech_encoder(cache_dir=cache_dir)
    pad = load_ct2_whisper(whisper_tiny_en_path(), name="p", cache_dir=cache_dir, pad_to_30s=True)
    ct2 = None
    try:
        import ctranslate2

        ct2 = ctranslate2.models.Whisper(str(whisper_tiny_en_path().parent), device="cpu", compute_type="float32")
    except ImportError:
        pass
    out = {}
    for seconds in (10.0, 60.0):
        a = long_audio(seconds)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            reps = 1 if quick else 3
            row = {
                "variable_length": round(_time(lambda a=a: var.encode(a), reps) / seconds, 4),
                "padded_30s": round(_time(lambda a=a: pad.encode(a), reps) / seconds, 4),
            }
            if ct2 is not None:
                ct = ctranslate2.models.Whisper(
                    str(whisper_tiny_en_path().parent), device="cpu", compute_type="float32", intra_threads=threads
                )

                def run_ct2(a=a, ct=ct) -> None:
                    x = torch.from_numpy(a.samples)
                    n_seg = int(np.ceil(x.shape[0] / 480_000))
                    mel = log_mel(torch.nn.functional.pad(x, (0, n_seg * 480_000 - x.shape[0])), pad.filters)
                    mel = mel.reshape(80, n_seg, 3000).transpose(0, 1).contiguous().numpy()
                    ct.encode(ctranslate2.StorageView.from_array(mel), to_cpu=True)

                row["ctranslate2_padded_30s"] = round(_time(run_ct2, reps) / seconds, 4)
            out[f"{seconds:g}s_{threads}thread"] = row
    torch.set_num_threads(2)
    return out


def _vm(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def _child_memory(seconds: float, cache_dir: str) -> None:
    enc = load_speech_encoder(cache_dir=cache_dir)
    enc.encode(long_audio(2.0))
    a = long_audio(seconds)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _vm("VmRSS")
    t0 = time.perf_counter()
    f = enc.encode(a)
    dt = time.perf_counter() - t0
    row = {
        "seconds": seconds,
        "frames": f.values.shape[0],
        "rss_before_mb": round(before),
        "peak_growth_mb": round(_vm("VmHWM") - before, 1),
        "output_mb": round(f.values.nbytes / 1e6, 1),
        "encode_s": round(dt, 2),
    }
    print(json.dumps(row))


def bench_memory(cache_dir: str, quick: bool) -> list:
    out = []
    for seconds in (60.0, 150.0) if quick else (60.0, 150.0, 600.0):
        cmd = [sys.executable, __file__, "--child-memory", str(seconds), "--cache", cache_dir]
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child-memory", type=float)
    ap.add_argument("--cache")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(2)
    if args.child_memory:
        _child_memory(args.child_memory, args.cache)
        return
    with tempfile.TemporaryDirectory() as cache:
        report = {"torch_threads_max": 2, "load": bench_load()}
        var = load_speech_encoder(cache_dir=cache)
        pad = load_ct2_whisper(whisper_tiny_en_path(), name="p", cache_dir=cache, pad_to_30s=True)
        report["variable_vs_padded"] = bench_agreement(var, pad, 8 if args.quick else 24)
        report["seams"] = bench_seams(cache)
        report["rtf"] = bench_rtf(cache, args.quick)
        report["memory"] = bench_memory(cache, args.quick)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
