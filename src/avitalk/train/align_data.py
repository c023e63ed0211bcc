"""(instruction text, style embedding ``z``) pairs for the stage-2 alignment + diffusion prior (paper §3.4).

:class:`AlignPairs` reads the clips of one split once and embeds each clip ``draws`` times with the
frozen style encoder of a trained motion prior (``embed(refs, ref_valid) -> z``), each time over a
different draw of ``n_ref`` reference frames (drawn as in motion training: outside a random window),
on motion standardised by the caller. Only the ``z`` rows and the clips' instruction texts stay in
RAM. An item pairs one ``z`` with one instruction of its clip, chosen (and, with ``augment``, reworded
by :func:`avitalk.data.synth.captions.augment`, one of ``variants`` seeded rewordings) from
``(seed, epoch, index)``::

    ds = AlignPairs(root, "train", embed, window=100, n_ref=32, fps=25.0, draws=4)
    ds.bind_epoch(loader.sampler)
    item = ds[0]  # {"z": (Dz,) float32, "text": str}; batches collate text to a list of strings

Text features are not computed here: the recipe runs the frozen text encoder (LRU-cached) in the step.
Clips without motion or without instructions are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from avitalk.data.format import Manifest, iter_clips
from avitalk.data.synth.captions import augment as augment_text
from avitalk.errors import AvitalkError
from avitalk.motion.sampling import random_window, reference_indices, window_length

Embed = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(refs (N, S, D) float32 raw motion, ref_valid (N, S) bool) -> z (N, Dz)``."""


class AlignPairs(Dataset):
    """Map-style dataset of (instruction, z) pairs over one corpus split.

    Args:
        root: corpus directory; split: ``"train"``, ``"val"`` or ``"test"``.
        embed: the frozen style encoder on raw motion (standardise inside), see :data:`Embed`.
        window, n_ref, fps, ref_sampling: as in motion training (references lie outside a window).
        draws: reference draws (``z`` rows) per clip; repeats: passes over the pairs per epoch.
        augment: reword instructions by synonym replacement; variants: rewordings per instruction (a fixed,
            seeded bank, so the text encoder's cache hits after the first pass; the original counts as
            one); 0 = a fresh rewording every time; seed: base seed.

    Attributes:
        z: ``(P, Dz)`` float32 style embeddings, ``P = clips * draws``; clip_of: ``(P,)`` clip index;
        instructions: per clip, its instruction texts; clip_ids: the clips kept.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        embed: Embed,
        *,
        window: int,
        n_ref: int,
        fps: float,
        ref_sampling: Literal["random", "contiguous"] = "random",
        draws: int = 4,
        repeats: int = 1,
        augment: bool = True,
        variants: int = 8,
        seed: int = 0,
    ) -> None:
        manifest = Manifest.load(root)
        if abs(manifest.fps - fps) > 1e-6:
            raise AvitalkError(f"{root}: corpus motion is at {manifest.fps} fps, the model expects {fps}")
        self.space, self.draws, self.repeats = manifest.space, max(1, draws), max(1, repeats)
        self.augment, self.variants, self.seed, self.epoch = augment, variants, seed, 0
        self._epoch_source: Any = None
        self.clip_ids: list[str] = []
        self.instructions: list[list[str]] = []
        zs: list[torch.Tensor] = []
        for clip in iter_clips(root, split):
            texts = [t for t in clip.instructions if t.strip()]
            if clip.motion is None or clip.motion.shape[0] < 2 or not texts:
                continue
            motion = np.asarray(clip.motion, dtype=np.float32)  # (T, D)
            n = motion.shape[0]
            mask = np.ones(n, dtype=bool) if clip.motion_mask is None else np.asarray(clip.motion_mask, dtype=bool)
            rng = np.random.default_rng([seed, len(self.clip_ids)])
            length = window_length(n, window, min(n_ref, n // 2))
            idx = [
                reference_indices(n, (random_window(n, length, rng), length), n_ref, rng, ref_sampling)
                for _ in range(self.draws)
            ]
            refs = torch.from_numpy(np.stack([motion[i] for i in idx]))  # (draws, S, D)
            valid = np.stack([mask[i] if mask[i].any() else np.ones(len(i), dtype=bool) for i in idx])
            with torch.no_grad():
                zs.append(embed(refs, torch.from_numpy(valid)).float().cpu())  # (draws, Dz)
            self.clip_ids.append(clip.clip_id)
            self.instructions.append(texts)
        if not zs:
            raise AvitalkError(f"{root}: split {split!r} has no clips with motion and instructions")
        self.z = torch.cat(zs)  # (P, Dz)
        self.clip_of = torch.arange(len(self.clip_ids)).repeat_interleave(self.draws)  # (P,)

    def bind_epoch(self, source: Any) -> None:
        """Read the epoch from ``source.epoch`` (e.g. the loader's sampler) when choosing instructions."""
        self._epoch_source = source

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def pairs(self) -> int:
        """Distinct ``z`` rows ``P``."""
        return int(self.z.shape[0])

    @property
    def n_texts(self) -> int:
        """Distinct instruction texts the items can hold (0 = unbounded: fresh augmentation)."""
        n = sum(len(t) for t in self.instructions)
        return n if not self.augment else n * self.variants

    def __len__(self) -> int:
        return self.pairs * self.repeats

    def __getitem__(self, index: int) -> dict[str, Any]:
        p = index % self.pairs
        epoch = int(getattr(self._epoch_source, "epoch", self.epoch))
        rng = np.random.default_rng([self.seed, epoch, index])
        clip = int(self.clip_of[p])
        k = int(rng.integers(len(self.instructions[clip])))
        text = self.instructions[clip][k]
        if self.augment and self.variants <= 0:
            text = augment_text(text, rng)
        elif self.augment and (v := int(rng.integers(self.variants))) > 0:  # variant 0: the original
            text = augment_text(text, np.random.default_rng([self.seed, clip, k, v]))
        return {"z": self.z[p], "text": text}
