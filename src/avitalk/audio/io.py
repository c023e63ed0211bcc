"""Read any common audio file as 16 kHz mono float32; write WAV/FLAC atomically.

soundfile (libsndfile >= 1.1) decodes WAV, FLAC, OGG/Vorbis/Opus and MP3; soxr resamples with a
high-quality polyphase filter. Every failure that is the input's fault becomes one
:class:`~avitalk.errors.AvitalkError` line naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from avitalk.errors import AvitalkError
from avitalk.fsutil import atomic_path
from avitalk.rates import AUDIO_SAMPLE_RATE
from avitalk.types import Audio

#: Peak amplitude below which a file counts as silent (about -80 dBFS).
SILENCE_PEAK = 1e-4


def to_mono_16k(samples: np.ndarray, sample_rate: int, target_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """Downmix ``(T,)`` or ``(T, C)`` samples to mono and resample to ``target_rate``.

    Returns:
        ``(T',)`` float32 with ``T' = round(T * target_rate / sample_rate)``.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    elif x.ndim != 1:
        raise ValueError(f"expected (T,) or (T, C) samples, got shape {x.shape}")
    if sample_rate != target_rate and x.size:
        x = soxr.resample(x, sample_rate, target_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def load_audio(path: str | os.PathLike[str], *, allow_silent: bool = False) -> Audio:
    """Load ``path`` (wav/flac/ogg/mp3, any rate and channel count) as 16 kHz mono.

    Raises:
        AvitalkError: the file is missing, not audio, truncated, empty or (unless
            ``allow_silent``) silent.
    """
    p = Path(path)
    if not p.exists():
        raise AvitalkError(f"{p}: no such audio file")
    if p.is_dir():
        raise AvitalkError(f"{p}: is a directory, expected an audio file")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        msg = str(e).split("\n")[0]
        raise AvitalkError(f"{p}: cannot decode audio (wav/flac/ogg/mp3 expected): {msg}") from None
    if data.shape[0] == 0:
        raise AvitalkError(f"{p}: audio file has no samples")
    if not np.isfinite(data).all():
        raise AvitalkError(f"{p}: audio contains NaN or infinite samples")
    mono = to_mono_16k(data, int(sr))
    if not allow_silent and float(np.max(np.abs(mono), initial=0.0)) < SILENCE_PEAK:
        raise AvitalkError(f"{p}: audio is silent (peak below {SILENCE_PEAK:g})")
    return Audio(samples=mono, sample_rate=AUDIO_SAMPLE_RATE)


def save_audio(path: str | os.PathLike[str], audio: Audio) -> None:
    """Write ``audio`` as 16-bit PCM (format from the suffix: .wav or .flac) atomically."""
    p = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC"}.get(p.suffix.lower())
    if fmt is None:
        raise AvitalkError(f"{p}: unsupported output audio format (use .wav or .flac)")
    with atomic_path(p) as tmp:
        sf.write(str(tmp), np.clip(audio.samples, -1.0, 1.0), audio.sample_rate, subtype="PCM_16", format=fmt)
