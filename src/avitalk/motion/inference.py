"""Stage-2 inference: speech + instruction -> motion (paper §3.4, docs/stage2.md "Inference").

:class:`Stage2Synthesizer` takes already built, already loaded modules and frozen encoders (reading
run directories is :func:`avitalk.train.load.load_stage2`'s job). One call encodes the speech once,
resamples it to the motion fps, maps the instruction to ``c``, samples style embeddings ``z`` with the
diffusion prior (or the direct mapping), and runs the generator over windows of the training window
length with at least 25 % overlap, linearly cross-faded over the shared frames, so any audio length works
with memory linear in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from avitalk.audio.encoder import SpeechEncoder
from avitalk.diffusion import NoiseSchedule
from avitalk.errors import AvitalkError
from avitalk.motion.align import DirectMapping, InstructionAligner
from avitalk.motion.config import Stage2Config
from avitalk.motion.denoiser import PriorDenoiser, sample_style
from avitalk.motion.generator import TalkingGenerator
from avitalk.rates import frames_for_samples, resample_features
from avitalk.text.base import TextEncoder
from avitalk.types import Audio, Motion, MotionSpace


def window_starts(n_frames: int, window: int, overlap: int) -> list[int]:
    """Start frames of the generator windows covering ``n_frames`` frames.

    The fewest windows of ``window`` frames with at least ``overlap`` frames shared by neighbours, spread
    evenly from frame 0 to the last frame. ``n_frames <= window`` gives one (shorter) window at 0.
    """
    if n_frames <= window:
        return [0]
    hop = max(window - overlap, 1)
    k = math.ceil((n_frames - window) / hop) + 1
    return [round(i * (n_frames - window) / (k - 1)) for i in range(k)]


def _fade_weights(length: int, ramp_in: int, ramp_out: int) -> torch.Tensor:
    """``(length,)`` positive weights: linear ramps over the first ``ramp_in`` / last ``ramp_out`` frames."""
    w = torch.ones(length)
    if ramp_in > 0:
        w[:ramp_in] = torch.arange(1, ramp_in + 1) / (ramp_in + 1)
    if ramp_out > 0:
        w[length - ramp_out :] = torch.minimum(w[length - ramp_out :], torch.arange(ramp_out, 0, -1) / (ramp_out + 1))
    return w


@dataclass
class Stage2Synthesizer:
    """Trained stage-2 networks + frozen encoders; :meth:`synthesize` makes motion.

    Attributes:
        config: the model config (window, fps, space, denoiser schedule).
        space: the motion space of the outputs.
        generator, aligner: the trained :class:`TalkingGenerator` / :class:`InstructionAligner`.
        prior: :class:`PriorDenoiser` (``config.prior == "diffusion"``) or :class:`DirectMapping`.
        mean, std: ``(D,)`` motion standardisation of the generator's training data.
        speech_encoder, text_encoder: the frozen encoders the runs were trained with.
        overlap: frames shared by neighbouring windows (default: a quarter of ``config.window``).
        max_batch: at most this many windows per generator call (bounds peak memory).
        device: where the networks run.
    """

    config: Stage2Config
    space: MotionSpace
    generator: TalkingGenerator
    aligner: InstructionAligner
    prior: PriorDenoiser | DirectMapping
    mean: torch.Tensor
    std: torch.Tensor
    speech_encoder: SpeechEncoder
    text_encoder: TextEncoder
    overlap: int | None = None
    max_batch: int = 64
    device: str | torch.device = "cpu"

    def __post_init__(self) -> None:
        if self.space.dim != self.config.motion_dim:
            raise AvitalkError(
                f"space {self.space.key} has {self.space.dim} channels, the model {self.config.motion_dim}"
            )
        self.mods: list[nn.Module] = [self.generator, self.aligner, self.prior]
        for m in self.mods:
            m.to(self.device).eval().requires_grad_(False)
        self.mean = self.mean.to(self.device).float()
        self.std = self.std.to(self.device).float()
        self.schedule = NoiseSchedule.from_name(self.config.denoiser.schedule, self.config.denoiser.num_steps)
        if self.overlap is None:
            self.overlap = self.config.window // 4
        if not 0 <= self.overlap < self.config.window:
            raise AvitalkError(f"overlap must be in [0, {self.config.window}), got {self.overlap}")

    @torch.no_grad()
    def content(self, audio: Audio) -> torch.Tensor:
        """``(T, content_dim)`` speech content at the motion fps, ``T = frames_for_samples(len(audio))``."""
        n = frames_for_samples(len(audio.samples), self.config.fps, audio.sample_rate)
        feats = self.speech_encoder.encode(audio)
        values = resample_features(np.asarray(feats.values, dtype=np.float32), feats.frame_rate, self.config.fps, n)
        return torch.from_numpy(values).to(self.device)

    @torch.no_grad()
    def style(
        self,
        instruction: str,
        n_samples: int = 1,
        seed: int | None = None,
        guidance: float = 2.0,
        steps: int | None = None,
    ) -> torch.Tensor:
        """``(n_samples, style_dim)`` style embeddings for ``instruction`` (identical rows for a direct prior)."""
        text = self.text_encoder.encode([instruction]).to(self.device)  # (1, text_dim)
        c = self.aligner(text).expand(n_samples, -1)  # (N, Dz)
        if isinstance(self.prior, DirectMapping):
            return self.prior(c)
        gen = torch.Generator(self.device).manual_seed(seed) if seed is not None else None
        return sample_style(self.prior, c.contiguous(), self.schedule, steps=steps, guidance=guidance, generator=gen)

    @torch.no_grad()
    def generate(self, content: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Standardised motion ``(N, T, D)`` for content ``(T, C)`` and styles ``z`` ``(N, Dz)``, windowed."""
        t, w, n = content.shape[0], self.config.window, z.shape[0]
        out = torch.zeros(n, t, self.config.motion_dim, device=self.device)
        if t == 0:
            return out
        starts = window_starts(t, w, self.overlap or 0)
        length = min(w, t)
        windows = torch.stack([content[s : s + length] for s in starts])  # (K, W, C)
        k = len(starts)
        rows = [(i, j) for i in range(n) for j in range(k)]  # (sample, window)
        preds = []
        for b in range(0, len(rows), self.max_batch):
            chunk = rows[b : b + self.max_batch]
            cont = windows[[j for _, j in chunk]]  # (B, W, C)
            zz = z[[i for i, _ in chunk]]  # (B, Dz)
            preds.append(self.generator(cont, zz))  # (B, W, D)
        pred = torch.cat(preds).view(n, k, length, -1)  # (N, K, W, D)
        total = torch.zeros(t, 1, device=self.device)
        for j, s in enumerate(starts):
            ramp_in = (starts[j - 1] + length - s) if j > 0 else 0  # overlap with the previous window
            ramp_out = (s + length - starts[j + 1]) if j + 1 < k else 0
            wt = _fade_weights(length, ramp_in, ramp_out)  # cross-fade over the whole shared span
            wt = wt.to(self.device)[:, None]  # (W, 1)
            out[:, s : s + length] += pred[:, j] * wt
            total[s : s + length] += wt
        return out / total

    def synthesize(
        self,
        audio: Audio,
        instruction: str,
        n_samples: int = 1,
        seed: int | None = None,
        guidance: float = 2.0,
        steps: int | None = None,
    ) -> list[Motion]:
        """Motion for ``audio`` in the style ``instruction`` describes.

        Args:
            audio: mono speech at any length and sample rate the speech encoder accepts.
            instruction: the talking-style instruction (free text).
            n_samples: style samples drawn from the prior (a direct prior gives identical ones).
            seed: seeds the prior's noise (same seed -> same motions); None: fresh randomness.
            guidance: classifier-free guidance scale of the diffusion prior (0: unconditional, 1: conditional).
            steps: DDIM steps (default ``config.denoiser.sample_steps``).

        Returns:
            Always a list of ``n_samples`` :class:`Motion`, each ``(frames_for_samples(len(audio)), D)`` at
            ``config.fps`` in :attr:`space`.
        """
        if n_samples < 1:
            raise AvitalkError(f"n_samples must be >= 1, got {n_samples}")
        content = self.content(audio)  # (T, C)
        z = self.style(instruction, n_samples, seed, guidance, steps)  # (N, Dz)
        with torch.no_grad():
            motion = self.generate(content, z) * self.std + self.mean  # (N, T, D)
        values = motion.float().cpu().numpy()
        return [Motion(np.ascontiguousarray(v), self.space, self.config.fps) for v in values]
