"""Synthetic-corpus figures (issue: foundation).

Prints, for one run of ``avitalk data synth``:
  1. wall time and peak memory (sum of PSS over the whole process tree) against real time;
  2. teacher checks on the first 200 clips: bilabial closure, mouth opening in silence, blink rate;
  3. emotional prosody separability: logistic regression on eGeMAPS-like prosodic statistics,
     trained on the training speakers and tested on held-out (val + test) speakers, with the
     confusion matrix, against chance and a majority-class baseline measured on the same split.

Usage:
    python bench/bench_synth.py --hours 1 --workers 2 [--out DIR] [--reuse]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from avitalk.data.check import check_corpus
from avitalk.data.format import iter_clips
from avitalk.data.labels import EMOTIONS
from avitalk.data.synth.checks import bilabial_closure_rate, blink_rate, silence_opening_ratio

SR = 16_000


# ------------------------------------------------------------------------------------- resources


def _tree_pss_bytes(root_pid: int) -> int:
    """Memory of ``root_pid`` and all its descendants: the sum of their PSS (Linux /proc).

    PSS (proportional set size) divides each shared page among the processes that map it, so
    copy-on-write children and shared libraries are not counted twice, as a sum of RSS would.
    """
    children: dict[int, list[int]] = defaultdict(list)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children[ppid].append(int(d))
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
        stack.extend(children.get(pid, []))
    return total


def run_synth(out: Path, hours: float, workers: int, seed: int) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "avitalk", "data", "synth", "--out", str(out), "--hours", str(hours)]
    cmd += ["--workers", str(workers), "--seed", str(seed)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_pss_bytes(proc.pid))
            time.sleep(0.25)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, _ = proc.communicate()
    done.set()
    th.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"synth failed with status {proc.returncode}")
    print(stdout.strip())
    return wall, peak


# ------------------------------------------------------------------------------------- prosody


def f0_track(x: np.ndarray, hop: int = 160, win: int = 640, fmin: float = 60.0, fmax: float = 450.0):
    """Autocorrelation F0 (Hz, 0 where unvoiced) and frame energy (dB) at 100 frames/s."""
    n = 1 + max(0, (len(x) - win) // hop)
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    frames = x[np.minimum(idx, len(x) - 1)] * np.hanning(win)[None]
    energy = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    spec = np.fft.rfft(frames, 2 * win, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :win]
    ac = ac / (ac[:, :1] + 1e-10)
    lo, hi = int(SR / fmax), int(SR / fmin)
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    peak = ac[np.arange(n), lag]
    voiced = (peak > 0.45) & (energy > energy.max() - 35)
    f0 = np.where(voiced, SR / lag, 0.0)
    return f0, energy, frames


def prosodic_features(x: np.ndarray) -> np.ndarray:
    """eGeMAPS-like statistics of one clip: pitch level/range/dynamics, loudness, rate, tilt, pauses."""
    f0, energy, frames = f0_track(x)
    voiced = f0 > 0
    st = 12 * np.log2(np.maximum(f0[voiced], 1.0) / 100.0) if voiced.any() else np.zeros(1)
    speech = energy > energy.max() - 35
    first, last = np.flatnonzero(speech)[[0, -1]] if speech.any() else (0, len(energy) - 1)
    span = slice(first, last + 1)
    pause_ratio = 1.0 - speech[span].mean()
    onsets = np.count_nonzero(np.diff(voiced[span].astype(int)) == 1)
    rate = onsets / max((last - first + 1) / 100.0, 0.1)
    spec = np.abs(np.fft.rfft(frames[speech], axis=1)) ** 2 if speech.any() else np.ones((1, 321))
    freqs = np.fft.rfftfreq(frames.shape[1], 1 / SR)
    low = spec[:, (freqs > 50) & (freqs < 1000)].sum(1) + 1e-10
    high = spec[:, (freqs >= 1000) & (freqs < 4000)].sum(1) + 1e-10
    tilt = 10 * np.log10(high / low)
    centroid = (spec * freqs).sum(1) / (spec.sum(1) + 1e-10)
    dst = np.abs(np.diff(st)) if st.size > 1 else np.zeros(1)
    e = energy[speech] if speech.any() else energy
    return np.array(
        [st.mean(), st.std(), np.percentile(st, 90) - np.percentile(st, 10), np.median(dst),
         e.mean(), e.std(), np.percentile(e, 95) - np.percentile(e, 20),
         rate, tilt.mean(), tilt.std(), centroid.mean() / 1000, pause_ratio, voiced[span].mean()]
    )  # fmt: skip


def prosody_separability(corpus: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.preprocessing import StandardScaler

    feats, labels, speakers, splits = [], [], [], []
    for clip in iter_clips(corpus):
        feats.append(prosodic_features(clip.audio))
        labels.append(EMOTIONS.index(clip.emotion))
        speakers.append(clip.speaker)
        splits.append(clip.split)
    X, y = np.array(feats), np.array(labels)
    spk, split = np.array(speakers), np.array(splits)
    for s in np.unique(spk):  # per-speaker normalisation: uses no labels
        m = spk == s
        X[m] = (X[m] - X[m].mean(0)) / (X[m].std(0) + 1e-6)
    train, test = split == "train", split != "train"
    scaler = StandardScaler().fit(X[train])
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(X[train]), y[train])
    pred = clf.predict(scaler.transform(X[test]))
    acc = float((pred == y[test]).mean())
    majority = float((y[test] == np.bincount(y[train]).argmax()).mean())
    print(f"\nprosody: 8-way emotion accuracy on held-out speakers {sorted(map(str, set(spk[test])))}: {acc:.1%}")
    print(f"  train clips {train.sum()}, test clips {test.sum()}; chance 12.5%, majority baseline {majority:.1%}")
    print(f"  ratio to chance: {acc / 0.125:.1f}x (target: >= 70%)")
    cm = confusion_matrix(y[test], pred, labels=range(len(EMOTIONS)))
    print("  confusion matrix (rows = true, cols = predicted):")
    print("  " + " " * 10 + "".join(f"{e[:5]:>7}" for e in EMOTIONS))
    for i, e in enumerate(EMOTIONS):
        print(f"  {e:<10}" + "".join(f"{v:>7d}" for v in cm[i]))


def teacher_checks(corpus: Path, n: int = 200) -> None:
    closure, silence, blinks, minutes = [], [], 0.0, 0.0
    for k, clip in enumerate(iter_clips(corpus)):
        if k >= n:
            break
        closure.append(bilabial_closure_rate(clip.phones, clip.motion, clip.fps))
        silence.append(silence_opening_ratio(clip.phones, clip.motion, clip.fps))
        dur_min = clip.motion.shape[0] / clip.fps / 60
        blinks += blink_rate(clip.motion, clip.fps) * dur_min
        minutes += dur_min
    closure_a = np.array([c for c in closure if not np.isnan(c)])
    silence_a = np.array([s for s in silence if not np.isnan(s)])
    print(f"\nteacher checks on {len(closure)} clips:")
    print(f"  bilabial closure: {closure_a.mean():.2%} of bilabial phones reach closure (target >= 99%)")
    print(f"  mouth opening in silence: {silence_a.mean():.2%} of the speech mean (target < 5%)")
    print(f"  blink rate: {blinks / minutes:.1f} per minute over {minutes:.1f} min (target 8-30)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="corpus dir (default: a temp dir, removed after)")
    ap.add_argument("--reuse", action="store_true", help="measure an existing corpus at --out; skip generation")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="avitalk-bench-")) / "corpus"
    try:
        if not args.reuse:
            wall, peak = run_synth(out, args.hours, args.workers, args.seed)
            audio_s = sum(c.duration for c in iter_clips(out))
            print(f"\nsynth: {args.hours} h requested, {audio_s / 3600:.3f} h of audio in {wall / 60:.1f} min wall")
            print(f"  with {args.workers} workers on {os.cpu_count()} cores (target < 20 min for 1 h)")
            print(f"  speed {audio_s / wall:.2f}x real time (baseline: real time = 1.00x)")
            print(f"  peak memory (PSS) of the process tree: {peak / 2**30:.2f} GB (target < 2 GB)")
        report = check_corpus(out)
        print(f"\ndata check: {report.clips} clips, {report.bad_clips} bad, {len(report.problems)} problem(s)")
        for problem in report.problems[:10]:
            print(f"  {problem}")
        teacher_checks(out)
        prosody_separability(out)
    finally:
        if args.out is None:
            shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
