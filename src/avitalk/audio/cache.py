"""Speech-feature cache keyed by audio content and encoder identity.

Frozen-encoder features of a training clip never change, so they are computed once. The key is
the sha256 of the clip's float32 samples, its sample rate, and the encoder's ``name`` and
``version`` (weights fingerprint + algorithm + windowing settings), so a different clip, model or
setting never hits a stale entry. Entries are plain ``.npy`` files (loaded with
``allow_pickle=False``), written atomically; a damaged entry is recomputed.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from avitalk.audio.encoder import SpeechEncoder, encode_batch
from avitalk.fsutil import atomic_path
from avitalk.types import Audio, SpeechFeatures


def audio_key(audio: Audio, encoder_name: str, encoder_version: str) -> str:
    """Hex sha256 of the float32 samples, the sample rate and the encoder's name and version."""
    h = hashlib.sha256()
    h.update(f"{encoder_name}\0{encoder_version}\0{int(audio.sample_rate)}\0".encode())
    h.update(np.ascontiguousarray(audio.samples, dtype=np.float32).tobytes())
    return h.hexdigest()


class CachedSpeechEncoder:
    """Wrap a :class:`SpeechEncoder`; store and reuse its features on disk.

    Layout: ``cache_dir/<encoder name>/<key[:2]>/<key>.npy`` holding ``(T_a, dim)`` float32.
    Same ``name``, ``dim``, ``frame_rate`` and ``version`` as the wrapped encoder.

    Attributes:
        hits, misses: counters since construction.
    """

    def __init__(self, encoder: SpeechEncoder, cache_dir: str | os.PathLike[str]) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self.dim = encoder.dim
        self.frame_rate = encoder.frame_rate
        self.version = str(getattr(encoder, "version", "0"))
        self.root = Path(cache_dir) / re.sub(r"[^A-Za-z0-9._-]+", "_", self.name)
        self.hits = 0
        self.misses = 0

    def path_for(self, audio: Audio) -> Path:
        """Cache file of ``audio``'s features."""
        key = audio_key(audio, self.name, self.version)
        return self.root / key[:2] / f"{key}.npy"

    def _load(self, path: Path) -> np.ndarray | None:
        if not path.is_file():
            return None
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if values.ndim != 2 or values.shape[1] != self.dim or values.dtype != np.float32:
            return None
        return values

    def _store(self, path: Path, values: np.ndarray) -> None:
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            np.save(f, np.ascontiguousarray(values, dtype=np.float32), allow_pickle=False)

    def encode(self, audio: Audio) -> SpeechFeatures:
        """Cached features ``(T_a, dim)`` float32 (computed and stored on a miss)."""
        path = self.path_for(audio)
        values = self._load(path)
        if values is not None:
            self.hits += 1
            return SpeechFeatures(values, self.frame_rate)
        self.misses += 1
        feats = self.encoder.encode(audio)
        self._store(path, feats.values)
        return SpeechFeatures(np.ascontiguousarray(feats.values, dtype=np.float32), self.frame_rate)

    def encode_batch(self, audios: Sequence[Audio]) -> list[SpeechFeatures]:
        """Cached features of several clips; the misses are encoded together."""
        paths = [self.path_for(a) for a in audios]
        out: list[SpeechFeatures | None] = []
        todo: list[int] = []
        for i, p in enumerate(paths):
            values = self._load(p)
            out.append(None if values is None else SpeechFeatures(values, self.frame_rate))
            if values is None:
                todo.append(i)
        self.hits += len(audios) - len(todo)
        self.misses += len(todo)
        for i, feats in zip(todo, encode_batch(self.encoder, [audios[i] for i in todo]), strict=True):
            self._store(paths[i], feats.values)
            out[i] = SpeechFeatures(np.ascontiguousarray(feats.values, dtype=np.float32), self.frame_rate)
        return [o for o in out if o is not None]
