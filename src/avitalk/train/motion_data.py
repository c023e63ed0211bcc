"""Training windows of the stage-2 motion prior over a corpus split (paper §3.4, docs/stage2.md).

:class:`MotionWindows` reads the clips of one split once, computes their speech-content features
through a (cached) frozen speech encoder, resamples them to the motion frame rate (``n_out`` = motion
frames, so content and motion align frame by frame) and keeps everything in RAM (content as float16).
An item is a random window of one clip plus ``n_ref`` reference frames of the same clip from outside
the window (:mod:`avitalk.motion.sampling`), seeded by ``(seed, epoch, index)`` so a run is reproducible
and resumable::

    ds = MotionWindows(root, "train", encoder, window=100, n_ref=32, fps=25.0)
    ds.bind_epoch(loader.sampler)            # the epoch of the sampler seeds the windows
    item = ds[0]  # content (W, C), motion (W, D), valid (W,), refs (S, D), ref_valid (S,)

Clips shorter than ``window + n_ref`` frames get a shorter window (leaving room for references),
zero-padded to ``window`` with ``valid`` False on the padding; frames whose ``motion_mask`` is False
are invalid too. Clips without motion (audio only) are skipped.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from avitalk.audio.encoder import SpeechEncoder
from avitalk.data.format import Manifest, iter_clips
from avitalk.errors import AvitalkError
from avitalk.motion.sampling import crop_window, random_window, reference_indices, window_length
from avitalk.rates import resample_features
from avitalk.types import Audio


class MotionWindows(Dataset):
    """Map-style dataset of motion-prior training windows over one corpus split.

    Args:
        root: corpus directory (``manifest.json`` + shards).
        split: ``"train"``, ``"val"`` or ``"test"``.
        encoder: frozen speech encoder (wrap it in :class:`avitalk.audio.cache.CachedSpeechEncoder`).
        window: frames ``W`` of a window; n_ref: reference frames ``S``; fps: motion frame rate.
        ref_sampling: ``"random"`` or ``"contiguous"`` reference frames.
        repeats: windows drawn per clip and epoch (the dataset length is ``clips * repeats``).
        seed: base seed of the windows; progress: show a progress bar while encoding.

    Attributes:
        space: the corpus motion space; clip_ids: the clips kept.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        encoder: SpeechEncoder,
        *,
        window: int,
        n_ref: int,
        fps: float,
        ref_sampling: Literal["random", "contiguous"] = "random",
        repeats: int = 1,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        manifest = Manifest.load(root)
        if abs(manifest.fps - fps) > 1e-6:
            raise AvitalkError(f"{root}: corpus motion is at {manifest.fps} fps, the model expects {fps}")
        self.space, self.window, self.n_ref, self.fps = manifest.space, window, n_ref, fps
        self.ref_sampling, self.repeats, self.seed, self.epoch = ref_sampling, max(1, repeats), seed, 0
        self._epoch_source: Any = None
        self.clip_ids: list[str] = []
        self.content: list[np.ndarray] = []  # (T, C) float16
        self.motion: list[np.ndarray] = []  # (T, D) float32
        self.mask: list[np.ndarray] = []  # (T,) bool
        total = sum(s.clips for s in manifest.shards if s.split == split)
        bar = tqdm(total=total, desc=f"content features ({split})", disable=not progress, leave=False)
        for clip in iter_clips(root, split):
            bar.update(1)
            if clip.motion is None or clip.motion.shape[0] < 2:
                continue
            t = clip.motion.shape[0]
            feats = encoder.encode(Audio(np.asarray(clip.audio, dtype=np.float32), clip.sample_rate))
            content = resample_features(feats.values, feats.frame_rate, fps, n_out=t)  # (T, C)
            self.clip_ids.append(clip.clip_id)
            self.content.append(np.ascontiguousarray(content, dtype=np.float16))
            self.motion.append(np.ascontiguousarray(clip.motion, dtype=np.float32))
            mask = np.ones(t, dtype=bool) if clip.motion_mask is None else np.asarray(clip.motion_mask, dtype=bool)
            self.mask.append(mask)
        bar.close()
        if not self.motion:
            raise AvitalkError(f"{root}: split {split!r} has no clips with motion")

    def bind_epoch(self, source: Any) -> None:
        """Read the epoch from ``source.epoch`` (e.g. the loader's sampler) when drawing windows."""
        self._epoch_source = source

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.motion) * self.repeats

    def motion_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std ``(D,)`` over the valid frames of all clips (float64)."""
        frames = np.concatenate([m[k] for m, k in zip(self.motion, self.mask, strict=True)]).astype(np.float64)
        if frames.shape[0] == 0:
            raise AvitalkError("no valid motion frames to compute normalisation statistics")
        return frames.mean(0), frames.std(0)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        i = index % len(self.motion)
        epoch = int(getattr(self._epoch_source, "epoch", self.epoch))
        rng = np.random.default_rng([self.seed, epoch, index])
        motion, content, mask = self.motion[i], self.content[i], self.mask[i]
        n = motion.shape[0]
        length = window_length(n, self.window, min(self.n_ref, n // 2))
        start = random_window(n, length, rng)
        ref = reference_indices(n, (start, length), self.n_ref, rng, self.ref_sampling)  # (S,)
        pad = self.window - length
        win_motion = np.pad(crop_window(motion, start, length), ((0, pad), (0, 0)))  # (W, D)
        win_content = np.pad(crop_window(content, start, length).astype(np.float32), ((0, pad), (0, 0)))  # (W, C)
        valid = np.pad(crop_window(mask, start, length), (0, pad))  # (W,), False on padding
        ref_valid = mask[ref]  # (S,); all-invalid references would leave the style encoder nothing to attend to
        ref_valid = ref_valid if ref_valid.any() else np.ones_like(ref_valid)
        return {
            "content": torch.from_numpy(win_content),
            "motion": torch.from_numpy(win_motion),
            "valid": torch.from_numpy(valid),
            "refs": torch.from_numpy(motion[ref]),
            "ref_valid": torch.from_numpy(ref_valid),
        }
