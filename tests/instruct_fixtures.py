"""Tiny stage-1 corpora and weightless frozen backbones for the stage-1 tests."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import torch

from avitalk.data.format import Clip
from avitalk.types import SpeechFeatures

EMOTIONS = {"happy": 440.0, "sad": 150.0, "angry": 900.0, "neutral": 300.0}


class SpectralEncoder:
    """Deterministic 50 Hz features: log energy in 8 frequency bands of 20 ms frames (no weights)."""

    name, dim, frame_rate, version = "spectral-test", 8, 50.0, "1"

    def encode(self, audio):
        hop = audio.sample_rate // 50
        n = audio.samples.shape[0] // hop
        frames = audio.samples[: n * hop].reshape(n, hop)
        mag = np.abs(np.fft.rfft(frames, axis=1))[:, 1:]  # (n, hop // 2)
        bands = np.array_split(mag, self.dim, axis=1)
        return SpeechFeatures(np.log1p(np.stack([b.sum(1) for b in bands], 1)).astype(np.float32), 50.0)


class HashTextEncoder:
    """Bag of hashed words, L2-normalised: (B, 16) (stands in for MiniLM)."""

    name, dim = "hash", 16

    def encode(self, texts):
        out = torch.zeros(len(texts), self.dim)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        return torch.nn.functional.normalize(out, dim=-1)


def emotion_clip(i: int, emotion: str, split: str = "train", *, motion: bool = True, seconds: float = 1.2) -> Clip:
    rng = np.random.default_rng(i)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    audio = 0.3 * np.sin(2 * np.pi * EMOTIONS[emotion] * (1 + 0.02 * rng.standard_normal()) * t)
    audio = (audio + 0.01 * rng.standard_normal(n)).astype(np.float32)
    level = ["slightly", "fairly", "very"][i % 3]
    texts = [f"A woman feels {level} {emotion} and speaks softly.", f"The speaker is {level} {emotion}."]
    return Clip(
        clip_id=f"{split}-{emotion}-{i:03d}",
        speaker=f"spk{i % 2}",
        gender="female",
        emotion=emotion,
        intensity=1 + i % 3,
        transcript="Bob met Pam.",
        audio=audio,
        motion=np.zeros((int(seconds * 25), 55), np.float32) if motion else None,
        instructions=texts,
        sentence_id=f"s{i}",
        split=split,
        source="test",
    )
