"""Video import figures (issue 3): speed, face coverage and jaw/loudness agreement on real GRID clips.

Prints, for ``avitalk data import video`` on the ten GRID samples (3 s, 25 fps, real talking faces):
  (a) import speed in video frames per second, end to end (probe, audio, decoding, landmarking,
      writing; process start-up included) with ``--workers 2`` against two baselines measured in
      the same run: ``--workers 1``, and ffmpeg decoding alone (the floor no importer can beat);
  (b) the percentage of frames with a face;
  (c) per clip and on average, the Pearson r between the estimated ``jawOpen`` and the audio
      loudness envelope (RMS in dB over the 640 samples of each 25 fps frame) at the best lag within
      +-5 frames, and that lag (positive: the jaw follows the sound).

Usage:
    python bench/bench_import_video.py [--assets ../shared/assets] [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from avitalk.data.check import check_corpus
from avitalk.data.format import iter_clips
from avitalk.data.importers.video import add_arguments, run
from avitalk.data.importers.video_decode import iter_frames, probe_video
from avitalk.spaces import ARKIT52

SPF = 640  # audio samples per motion frame (16 kHz / 25 fps)
MAX_LAG = 5


def loudness_db(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """``(n_frames,)`` RMS level in dB of each 640-sample frame (zero-padded at the end)."""
    x = np.zeros(n_frames * SPF, dtype=np.float64)
    x[: min(audio.size, x.size)] = audio[: x.size]
    rms = np.sqrt((x.reshape(n_frames, SPF) ** 2).mean(1))
    return 20 * np.log10(rms + 1e-5)


def best_lag_r(jaw: np.ndarray, loud: np.ndarray, valid: np.ndarray, max_lag: int = MAX_LAG) -> tuple[float, int]:
    """Highest Pearson r of ``jaw[t + lag]`` against ``loud[t]`` over valid frames, for |lag| <= max_lag."""
    best = (-2.0, 0)
    n = jaw.size
    for lag in range(-max_lag, max_lag + 1):
        t = np.arange(max(0, -lag), min(n, n - lag))
        ok = valid[t + lag]
        a, b = jaw[t + lag][ok], loud[t][ok]
        if a.size > 10 and a.std() > 0 and b.std() > 0:
            r = float(np.corrcoef(a, b)[0, 1])
            if r > best[0]:
                best = (r, lag)
    return best


def import_once(src: Path, model: Path, workers: int, tmp: Path) -> tuple[float, int, Path]:
    out = tmp / f"workers-{workers}"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", str(model), "--workers", str(workers)])
    t0 = time.perf_counter()
    summary = run(src, out / "corpus", args)
    wall = time.perf_counter() - t0
    frames = sum(c.extra["video_frames"] for c in iter_clips(out / "corpus"))
    assert summary.imported == len(list(src.glob("*.mpg"))), summary.format()
    return wall, frames, out / "corpus"


def main() -> None:
    default_assets = Path(__file__).resolve().parents[2] / "shared" / "assets"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=Path, default=Path(os.environ.get("AVITALK_SHARED_ASSETS", default_assets)))
    ap.add_argument("--model", type=Path, default=None)
    a = ap.parse_args()
    src = a.assets / "GRID-samples"
    model = a.model or a.assets / "mediapipe" / "face_landmarker_v2_with_blendshapes.task"
    videos = sorted(src.glob("*.mpg"))
    print(f"{len(videos)} GRID clips from {src}; model {model.name}; {os.cpu_count()} CPU cores; "
          f"load average before {os.getloadavg()[0]:.2f}")  # fmt: skip

    # (a) speed ---------------------------------------------------------------------------------
    t0 = time.perf_counter()
    n_dec = sum(sum(1 for _ in iter_frames(v, probe_video(v))) for v in videos)
    dec_fps = n_dec / (time.perf_counter() - t0)
    tmp = tempfile.TemporaryDirectory(prefix="bench-video-")
    wall1, frames1, _ = import_once(src, model, 1, Path(tmp.name))
    wall2, frames2, corpus = import_once(src, model, 2, Path(tmp.name))
    print("\n(a) import speed (video frames / s, end to end incl. process start-up)")
    print(f"    decoding alone (ffmpeg, 1 stream)  {dec_fps:7.0f} fps   [{n_dec} frames]")
    print(f"    import --workers 1 (baseline)      {frames1 / wall1:7.0f} fps   [{frames1} frames in {wall1:.1f} s]")
    print(f"    import --workers 2                 {frames2 / wall2:7.0f} fps   [{frames2} frames in {wall2:.1f} s]")
    print(f"    speed-up over 1 worker x{wall1 / wall2:.2f}; real time at 25 fps x{frames2 / wall2 / 25:.1f} "
          f"(target >= 25 fps: {'met' if frames2 / wall2 >= 25 else 'NOT met'})")  # fmt: skip

    report = check_corpus(corpus)
    print(f"    data check: {'ok' if report.ok else 'FAILED'} ({report.clips} clips)")

    # (b) faces and (c) jaw vs loudness ---------------------------------------------------------
    clips = list(iter_clips(corpus))
    n_frames = sum(c.motion.shape[0] for c in clips)
    n_face = sum(c.extra["face_frames"] for c in clips)
    v_frames = sum(c.extra["video_frames"] for c in clips)
    v_face = sum(c.extra["video_face_frames"] for c in clips)
    print("\n(b) frames with a face")
    print(f"    {100 * v_face / v_frames:.2f} % of video frames ({v_face}/{v_frames}); "
          f"{100 * n_face / n_frames:.2f} % of 25 fps corpus frames (target >= 99 %)")  # fmt: skip

    print(f"\n(c) Pearson r, jawOpen vs loudness (RMS dB, 25 fps), best lag in +-{MAX_LAG} frames")
    jaw_i = ARKIT52.index("jawOpen")
    rs, lags = [], []
    for c in clips:
        valid = np.ones(c.motion.shape[0], bool) if c.motion_mask is None else c.motion_mask
        r, lag = best_lag_r(c.motion[:, jaw_i], loudness_db(c.audio, c.motion.shape[0]), valid)
        r0, _ = best_lag_r(c.motion[:, jaw_i], loudness_db(c.audio, c.motion.shape[0]), valid, max_lag=0)
        rs.append(r)
        lags.append(lag)
        print(f"    {c.clip_id:10s} r = {r:5.2f} at lag {lag:+d} frame(s)   (lag 0: r = {r0:5.2f})")
    lag_ms = 1000 * np.mean(lags) / 25
    print(f"    mean r = {np.mean(rs):.2f} (median {np.median(rs):.2f}, min {min(rs):.2f}); "
          f"mean lag {np.mean(lags):+.1f} frames = {lag_ms:+.0f} ms (target mean r >= 0.25)")  # fmt: skip
    print(f"\nload average after {os.getloadavg()[0]:.2f}")
    tmp.cleanup()


if __name__ == "__main__":  # the spawn start method of the import workers re-imports this module
    main()
