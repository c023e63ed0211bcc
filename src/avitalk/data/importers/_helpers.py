"""Shared pieces of the real-data importers (MEAD/EMOCA, MeadText, RAVDESS, Live Link Face).

- :func:`load_any_audio`: 16 kHz mono from any audio or video container (soundfile for WAV/FLAC/
  OGG/MP3, the ffmpeg bundled with ``imageio-ffmpeg`` for AAC/M4A/MOV/MP4), one
  :class:`~avitalk.errors.AvitalkError` line naming the file on failure.
- :func:`fit_motion_to_audio`: resample a motion track to the corpus rate and make it cover the
  audio (cropping whichever of the two is longer), carrying a per-frame validity mask.
- :func:`label_captions`: MeadText-style instructions from (emotion, intensity, gender) through the
  synthetic corpus's caption grammar, seeded per source so reruns give the same text.
- :func:`progress`: the tqdm bar every importer shows over its sources.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from avitalk.audio.io import SILENCE_PEAK, load_audio
from avitalk.data.synth.captions import make_captions
from avitalk.data.synth.style import ClipStyle, sample_clip_style, speaker_style
from avitalk.errors import AvitalkError
from avitalk.rates import AUDIO_SAMPLE_RATE, MOTION_FPS, frames_for_samples, resample_features

T = TypeVar("T")

#: Extensions soundfile (libsndfile) decodes; everything else goes through ffmpeg.
SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3")
#: Audio or video files an importer accepts as a clip's sound.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".mov", ".mp4", ".m4v", ".mkv", ".webm")
#: Frame rates a fitted track's rate is snapped to when it is inferred from the audio duration.
STANDARD_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0)


def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable bundled with ``imageio-ffmpeg``."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def load_any_audio(path: str | os.PathLike[str]) -> np.ndarray:
    """``(N,)`` float32 16 kHz mono samples of an audio or video file.

    WAV/FLAC/OGG/MP3 are read with soundfile and resampled with soxr (:func:`avitalk.audio.io.load_audio`);
    AAC/M4A/MOV/MP4 and anything soundfile cannot open are decoded by the bundled ffmpeg (called
    with an argument list, ``check=True``).

    Raises:
        AvitalkError: missing, undecodable, empty or silent file (the message names the file).
    """
    p = Path(path)
    if not p.is_file():
        raise AvitalkError(f"{p}: no such audio file")
    if p.suffix.lower() in SOUNDFILE_EXTENSIONS:
        return load_audio(p).samples
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(p), "-vn", "-ac", "1"]
    cmd += ["-ar", str(AUDIO_SAMPLE_RATE), "-f", "f32le", "pipe:1"]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, timeout=600).stdout
    except subprocess.CalledProcessError as e:
        lines = e.stderr.decode("utf-8", "replace").strip().splitlines()
        msg = lines[-1] if lines else f"ffmpeg exited with status {e.returncode}"
        raise AvitalkError(f"{p}: cannot decode audio: {msg}") from None
    except subprocess.TimeoutExpired:
        raise AvitalkError(f"{p}: decoding the audio took longer than 10 minutes") from None
    samples = np.frombuffer(out, dtype="<f4").astype(np.float32)
    if samples.size == 0:
        raise AvitalkError(f"{p}: the file holds no audio stream (or it is empty)")
    if not np.isfinite(samples).all():
        raise AvitalkError(f"{p}: audio contains NaN or infinite samples")
    if float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise AvitalkError(f"{p}: audio is silent (peak below {SILENCE_PEAK:g})")
    return samples


def find_audio(stem_path: Path, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> Path | None:
    """The first existing ``stem_path`` + extension (either case), in the order of ``extensions``."""
    for ext in extensions:
        for e in (ext, ext.upper()):
            cand = stem_path.with_name(stem_path.name + e)
            if cand.is_file():
                return cand
    return None


def snap_rate(n_frames: int, seconds: float, tolerance: float = 0.08) -> float | None:
    """The standard frame rate that makes ``n_frames`` last ``seconds`` (within ``tolerance``), or None."""
    if seconds <= 0 or n_frames <= 0:
        return None
    rate = n_frames / seconds
    best = min(STANDARD_RATES, key=lambda r: abs(r - rate))
    return best if abs(best - rate) <= tolerance * best else None


@dataclass
class FittedMotion:
    """A motion track resampled to the corpus rate and cut to cover the (possibly cropped) audio."""

    audio: np.ndarray  # (N,) float32 16 kHz
    motion: np.ndarray  # (T, D) float32 at the corpus fps, zeros where not valid
    mask: np.ndarray | None  # (T,) bool, None when every frame is valid
    cropped_seconds: float  # audio or motion time dropped at the end to make them agree


def fit_motion_to_audio(
    values: np.ndarray,
    src_fps: float,
    audio: np.ndarray,
    valid: np.ndarray | None = None,
    fps: float = float(MOTION_FPS),
    max_mismatch: float = 1.0,
) -> FittedMotion:
    """Resample ``values`` (``(T, D)`` at ``src_fps``) to ``fps`` and make audio and motion equally long.

    Both start together (as a recording's audio and video do); the longer one is cropped at the end.
    ``valid`` (``(T,)`` bool) marks source frames that hold a fit; an output frame is valid only if
    the source frames it interpolates are; invalid output frames are zeros.

    Raises:
        AvitalkError: the two lengths differ by more than ``max_mismatch`` seconds (a sign of a
            wrong frame rate or of a fit of another clip), or no frame is valid.
    """
    motion_s = values.shape[0] / src_fps
    audio_s = audio.shape[0] / AUDIO_SAMPLE_RATE
    if abs(motion_s - audio_s) > max_mismatch:
        raise AvitalkError(
            f"motion lasts {motion_s:.2f} s ({values.shape[0]} frames at {src_fps:g} fps) but the audio "
            f"{audio_s:.2f} s; wrong frame rate or mismatched files"
        )
    keep_s = min(motion_s, audio_s)
    n_samples = min(audio.shape[0], math.floor(keep_s * AUDIO_SAMPLE_RATE + 0.5))
    audio = np.ascontiguousarray(audio[:n_samples], dtype=np.float32)
    n_out = frames_for_samples(n_samples, fps)
    vals = np.asarray(values, dtype=np.float32)
    if valid is not None and not valid.all():
        vals = np.where(valid[:, None], vals, 0.0).astype(np.float32)
    motion = resample_features(vals, src_fps, fps, n_out=n_out)
    mask = None
    if valid is not None and not valid.all():
        w = resample_features(valid.astype(np.float32)[:, None], src_fps, fps, n_out=n_out)[:, 0]
        mask = w > 1.0 - 1e-4
        if not mask.any():
            raise AvitalkError("no frame of the motion track is valid (no face fitted)")
        motion[~mask] = 0.0
    return FittedMotion(audio, motion, mask, round(abs(motion_s - audio_s), 4))


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from strings/numbers, equal across processes and runs."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def label_captions(
    emotion: str, intensity: int, gender: str, speaker: str, key: str, seed: int = 0, n: int = 4
) -> tuple[list[str], ClipStyle]:
    """MeadText-style instructions for a clip known only by its labels.

    The clip's style is sampled from the synthetic corpus's emotion x intensity templates
    (:func:`~avitalk.data.synth.style.sample_clip_style`, the speaker's habits from
    :func:`~avitalk.data.synth.style.speaker_style`), with a generator seeded by ``(seed, key)``,
    and described by :func:`~avitalk.data.synth.captions.make_captions`: the canonical caption
    followed by ``n - 1`` paraphrases. The facial actions named are typical of the label, not
    measured on the clip.
    """
    rng = np.random.default_rng([seed, stable_seed(key)])
    style = sample_clip_style(emotion, intensity, speaker_style(speaker, seed), rng)
    return make_captions(style, gender, rng, n=n), style


def parse_list(text: str | None) -> list[str]:
    """``"07, 08,W009"`` -> ``["07", "08", "W009"]`` (empty for None or blank)."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``items`` under a tqdm bar (shown only on a terminal)."""
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, unit="file", dynamic_ncols=True, disable=None, leave=False)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (with its type when the message is empty)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
