"""(speech features, instruction) pairs for stage-1 training (paper §3.3, docs/stage1.md).

:class:`InstructClips` reads the clips of one split of one or more corpora (concatenated; audio-only
corpora such as an imported RAVDESS work, motion is never read), computes each clip's speech features
once through a (cached) frozen speech encoder and keeps them in RAM as float16. An item is a random
crop of at most ``max_frames`` feature frames and one of the clip's instructions, chosen (and, with
``augment``, reworded by :func:`avitalk.data.synth.captions.augment`, one of ``variants`` seeded
rewordings) from ``(seed, epoch, index)``, so runs are reproducible and resumable::

    ds = InstructClips([synth, ravdess], "train", encoder, max_frames=500)
    ds.bind_epoch(loader.sampler)
    batch = collate_instruct([ds[0], ds[1]])
    # audio (B, T, D) float32 zero-padded, mask (B, T) bool, text list[str], emotion list[str]

Clips without instructions or with empty audio are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from avitalk.audio.encoder import SpeechEncoder
from avitalk.data.format import Manifest, iter_clips
from avitalk.data.synth.captions import augment as augment_text
from avitalk.errors import AvitalkError
from avitalk.types import Audio

__all__ = ["InstructClips", "collate_instruct"]


class InstructClips(Dataset):
    """Map-style dataset of (feature crop, instruction) items over one split of several corpora.

    Args:
        roots: corpus directories; split: ``"train"``, ``"val"`` or ``"test"``.
        encoder: frozen speech encoder (wrap it in :class:`avitalk.audio.cache.CachedSpeechEncoder`).
        max_frames: longest crop, in feature frames; crop: draw random crops (False: the first
            ``max_frames`` frames, for validation).
        augment, variants: instruction rewording (0 variants = a fresh rewording every time);
            augment_rate: the probability that each synonym phrase of a reworded variant is swapped
            (:func:`avitalk.data.synth.captions.augment`'s ``p``, which swaps at least one); 0 = no
            rewording. May be changed between phases.
        repeats: passes over the clips per epoch; seed: base seed; progress: bar while encoding.

    Attributes:
        features: per clip ``(T_a, D)`` float16; instructions: per clip its texts; emotions,
        intensities, clip_ids, corpus_of: per-clip labels and origin (index into ``roots``).
    """

    def __init__(
        self,
        roots: Sequence[str | os.PathLike[str]],
        split: str,
        encoder: SpeechEncoder,
        *,
        max_frames: int,
        crop: bool = True,
        augment: bool = True,
        variants: int = 8,
        augment_rate: float = 0.5,
        repeats: int = 1,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        if not 0.0 <= augment_rate <= 1.0:
            raise ValueError(f"augment_rate must be in [0, 1], got {augment_rate}")
        self.max_frames, self.crop, self.augment, self.variants = max_frames, crop, augment, variants
        self.augment_rate = augment_rate
        self.repeats, self.seed, self.epoch = max(1, repeats), seed, 0
        self._epoch_source: Any = None
        self.features: list[np.ndarray] = []
        self.instructions: list[list[str]] = []
        self.emotions: list[str] = []
        self.intensities: list[int] = []
        self.clip_ids: list[str] = []
        self.corpus_of: list[int] = []
        for c, root in enumerate(roots):
            manifest = Manifest.load(root)
            total = sum(s.clips for s in manifest.shards if s.split == split)
            bar = tqdm(total=total, desc=f"speech features ({split})", disable=not progress, leave=False)
            for clip in iter_clips(root, split):
                bar.update(1)
                texts = [t for t in clip.instructions if t.strip()]
                if not texts or clip.audio is None or len(clip.audio) == 0:
                    continue
                feats = encoder.encode(Audio(np.asarray(clip.audio, dtype=np.float32), clip.sample_rate)).values
                if feats.shape[0] == 0:
                    continue
                self.features.append(np.ascontiguousarray(feats, dtype=np.float16))
                self.instructions.append(texts)
                self.emotions.append(clip.emotion)
                self.intensities.append(int(clip.intensity))
                self.clip_ids.append(clip.clip_id)
                self.corpus_of.append(c)
            bar.close()
        if not self.features:
            raise AvitalkError(
                f"{', '.join(map(str, roots))}: split {split!r} has no clips with audio and instructions"
            )

    @property
    def clips(self) -> int:
        return len(self.features)

    @property
    def n_texts(self) -> int:
        """Distinct instruction texts the items can hold (0 = unbounded: fresh augmentation)."""
        n = sum(len(t) for t in self.instructions)
        return n * max(1, self.variants) if self.augment else n

    def bind_epoch(self, source: Any) -> None:
        """Read the epoch from ``source.epoch`` (e.g. the loader's sampler) when drawing crops and texts."""
        self._epoch_source = source

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.clips * self.repeats

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = index % self.clips
        epoch = int(getattr(self._epoch_source, "epoch", self.epoch))
        rng = np.random.default_rng([self.seed, epoch, index])
        feats = self.features[i]
        n = feats.shape[0]
        start = int(rng.integers(n - self.max_frames + 1)) if self.crop and n > self.max_frames else 0
        crop = feats[start : start + self.max_frames].astype(np.float32)
        k = int(rng.integers(len(self.instructions[i])))
        text = self.instructions[i][k]
        reword = self.augment and self.augment_rate > 0
        if reword and self.variants <= 0:
            text = augment_text(text, rng, self.augment_rate)
        elif reword and (v := int(rng.integers(self.variants))) > 0:  # variant 0: the original
            text = augment_text(text, np.random.default_rng([self.seed, i, k, v]), self.augment_rate)
        return {"features": torch.from_numpy(crop), "text": text, "emotion": self.emotions[i]}


def collate_instruct(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Zero-pad the crops: ``audio`` (B, T, D) float32, ``mask`` (B, T) bool (True on real frames),
    ``text`` and ``emotion`` lists."""
    longest = max(int(it["features"].shape[0]) for it in items)
    dim = int(items[0]["features"].shape[1])
    audio = torch.zeros(len(items), longest, dim)
    mask = torch.zeros(len(items), longest, dtype=torch.bool)
    for b, it in enumerate(items):
        n = int(it["features"].shape[0])
        audio[b, :n] = it["features"]
        mask[b, :n] = True
    return {
        "audio": audio,
        "mask": mask,
        "text": [it["text"] for it in items],
        "emotion": [it["emotion"] for it in items],
    }
