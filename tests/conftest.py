"""Shared fixtures: small in-memory clips and corpora that need no TTS."""

from __future__ import annotations

import numpy as np
import pytest

from avitalk.data.format import Clip, Manifest, ShardInfo, write_shard
from avitalk.data.synth.phones import Phone
from avitalk.rates import frames_for_samples
from avitalk.spaces import ARKIT52


def make_clip(i: int, split: str = "train", speaker: str = "spkA", sentence: str = "s0", seconds: float = 1.0) -> Clip:
    rng = np.random.default_rng(i)
    n = int(seconds * 16000)
    audio = (0.1 * np.sin(np.arange(n) * 2 * np.pi * 220 / 16000) + 0.01 * rng.standard_normal(n)).astype(np.float32)
    motion = rng.uniform(0, 1, (frames_for_samples(n), ARKIT52.dim)).astype(np.float32)
    return Clip(
        clip_id=f"{split}-{i:03d}",
        speaker=speaker,
        gender="female",
        emotion="happy",
        intensity=2,
        transcript="Bob met Pam by the map.",
        audio=audio,
        motion=motion,
        instructions=["A woman feels fairly happy and speaks with a broad smile.", "A woman is quite happy."],
        sentence_id=sentence,
        split=split,
        phones=[Phone("b", 0.10, 0.16, 0, 0), Phone("ɑ", 0.16, 0.30, 1, 0)],
        words=[("Bob", 0.10, 0.36)],
        source="test",
        extra={"k": 1},
    )


def write_corpus(root, clips_by_split: dict[str, list[Clip]]) -> Manifest:
    shards = []
    for split, clips in clips_by_split.items():
        f = f"{split}/shard-00000.parquet"
        digest = write_shard(root / f, clips)
        shards.append(ShardInfo(f, split, len(clips), sum(c.duration for c in clips), digest))
    m = Manifest(space=ARKIT52, shards=shards, source="test")
    m.save(root)
    return m


@pytest.fixture
def small_corpus(tmp_path):
    clips = {
        "train": [make_clip(i, "train", "spkA", f"s{i}") for i in range(3)],
        "test": [make_clip(10 + i, "test", "spkB", f"t{i}") for i in range(2)],
    }
    write_corpus(tmp_path, clips)
    return tmp_path
