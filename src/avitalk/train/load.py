"""Load trained stage-2 runs for inference: ``load_stage2(motion_run, align_run) -> Stage2Synthesizer``.

The motion run (``avitalk train motion``) gives the generator and the motion statistics, the align run
(``avitalk train align``) the aligner and the prior (``denoiser`` or ``direct``); both are loaded
strictly from their latest checkpoints, and the frozen speech / text encoders named in their configs
are loaded too. The align run must have been trained on this motion checkpoint (same step).

A regression-baseline motion run (``model.style=false``: no style encoder, trained with ``z = 0``) loads
without an align run (``load_stage2(motion_run)`` / :func:`load_regression`): its synthesizer's style is
always zero, whatever the instruction.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from avitalk.audio.encoder import SpeechEncoder, load_speech_encoder
from avitalk.errors import AvitalkError
from avitalk.motion.align import DirectMapping
from avitalk.motion.config import Stage2Config
from avitalk.motion.inference import Stage2Synthesizer
from avitalk.motion.model import build_stage2
from avitalk.spaces import get_space
from avitalk.text.base import TextEncoder
from avitalk.train.align_recipe import MOTION_FIELDS, motion_checkpoint
from avitalk.train.checkpoint import load_checkpoint, read_checkpoint
from avitalk.train.motion_recipe import MotionStats


def load_stage2(
    motion_run: str | os.PathLike[str],
    align_run: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    *,
    speech_encoder: SpeechEncoder | None = None,
    text_encoder: TextEncoder | None = None,
) -> Stage2Synthesizer:
    """A :class:`Stage2Synthesizer` from the latest checkpoints of a motion run and an align run.

    Args:
        motion_run, align_run: run directories (or their ``checkpoints`` dirs / a checkpoint). Without
            ``align_run`` the motion run must be a regression baseline (``model.style=false``).
        device: where the networks (and encoders loaded here) run.
        speech_encoder, text_encoder: already loaded encoders to use instead of the configured ones.

    Raises:
        AvitalkError: a missing or wrong run, mismatched model fields or motion checkpoint step.
    """
    if align_run is None:
        return load_regression(motion_run, device, speech_encoder=speech_encoder)
    motion = motion_checkpoint(motion_run)
    path = Path(align_run)
    align = read_checkpoint(path / "checkpoints" if (path / "checkpoints").is_dir() else path)
    if not isinstance(align.config.get("model"), dict) or "aligner" not in align.modules:
        raise AvitalkError(f"{align.path} is not an align checkpoint (no aligner or model config)")
    cfg = Stage2Config.from_dict(align.config["model"])
    motion_cfg = Stage2Config.from_dict(motion.config["model"])
    changed = [k for k in MOTION_FIELDS if getattr(cfg, k) != getattr(motion_cfg, k)]
    if changed:
        raise AvitalkError(f"{align.path}: model.{', model.'.join(changed)} differ from the motion run {motion.path}")
    if align.config.get("motion_step") != motion.step:
        raise AvitalkError(
            f"{align.path} was trained on motion step {align.config.get('motion_step')}, "
            f"{motion.path} is step {motion.step}"
        )
    space = get_space(cfg.space)
    parts = build_stage2(cfg)
    stats = MotionStats(torch.zeros(cfg.motion_dim), torch.ones(cfg.motion_dim))
    load_checkpoint(motion.path, {"generator": parts.generator, "stats": stats}, expect_space=space)
    prior_name = "denoiser" if cfg.prior == "diffusion" else "direct"
    prior = parts.denoiser if cfg.prior == "diffusion" else parts.direct
    assert prior is not None
    load_checkpoint(align.path, {"aligner": parts.aligner, prior_name: prior}, expect_space=space)
    if speech_encoder is None:
        speech_encoder = load_speech_encoder(motion.config.get("encoder", "whisper-tiny.en"), device=device)
    if text_encoder is None:
        from avitalk.text import load_text_encoder

        text_encoder = load_text_encoder(align.config.get("text_encoder", "minilm"), device=device)
    if speech_encoder.dim != cfg.content_dim or text_encoder.dim != cfg.text_dim:
        raise AvitalkError(
            f"encoders give {speech_encoder.dim}/{text_encoder.dim} channels; "
            f"the model wants {cfg.content_dim}/{cfg.text_dim}"
        )
    return Stage2Synthesizer(
        config=cfg,
        space=space,
        generator=parts.generator,
        aligner=parts.aligner,
        prior=prior,
        mean=stats.mean,
        std=stats.std,
        speech_encoder=speech_encoder,
        text_encoder=text_encoder,
        device=device,
    )


def load_style_encoder(motion_run: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """The frozen style encoder of a motion run (``(B, S, D)`` standardised frames -> ``(B, style_dim)`` z).

    Raises:
        AvitalkError: not a motion run, or a regression baseline (no style encoder).
    """
    motion = motion_checkpoint(motion_run)  # checks that it has a style encoder
    cfg = Stage2Config.from_dict(motion.config["model"])
    parts = build_stage2(cfg)
    assert parts.style_encoder is not None
    load_checkpoint(motion.path, {"style_encoder": parts.style_encoder}, expect_space=get_space(cfg.space))
    return parts.style_encoder.to(device).eval().requires_grad_(False)


class ZeroStyle(DirectMapping):
    """The regression baseline's "prior": ``z = 0`` for every instruction (no parameters)."""

    def __init__(self, style_dim: int) -> None:
        nn.Module.__init__(self)  # no MLP: nothing to train or load
        self.style_dim = style_dim

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        """``(B, style_dim)`` zeros for ``c`` ``(B, style_dim)``."""
        return torch.zeros_like(c)


class NoText:
    """A text encoder that ignores its input (zeros), for runs whose style does not depend on text."""

    name, version = "none", "1"

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def encode(self, texts: list[str]) -> torch.Tensor:
        """``(N, dim)`` zeros."""
        return torch.zeros(len(texts), self.dim)


def load_regression(
    motion_run: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    speech_encoder: SpeechEncoder | None = None,
) -> Stage2Synthesizer:
    """A :class:`Stage2Synthesizer` for a regression-baseline motion run (``model.style=false``).

    The generator and statistics come from the run's latest checkpoint; the style is always ``z = 0``
    (:class:`ZeroStyle`), so ``synthesize`` ignores the instruction and every sample is identical. The
    aligner is an unused placeholder and no text encoder is loaded.

    Raises:
        AvitalkError: not a motion run, or a motion run with a style encoder (that one needs its align run).
    """
    path = Path(motion_run)
    if not path.is_dir():
        raise AvitalkError(f"{path}: no such motion run")
    ckpt = read_checkpoint(path / "checkpoints" if (path / "checkpoints").is_dir() else path)
    if not isinstance(ckpt.config.get("model"), dict) or not {"generator", "stats"} <= set(ckpt.modules):
        raise AvitalkError(f"{ckpt.path} is not a motion-prior checkpoint (no generator, stats or model config)")
    cfg = Stage2Config.from_dict(ckpt.config["model"])
    if cfg.style:
        raise AvitalkError(f"{ckpt.path} has a style encoder (model.style=true): give its align run too")
    space = get_space(cfg.space)
    parts = build_stage2(cfg)
    stats = MotionStats(torch.zeros(cfg.motion_dim), torch.ones(cfg.motion_dim))
    load_checkpoint(ckpt.path, {"generator": parts.generator, "stats": stats}, expect_space=space)
    if speech_encoder is None:
        speech_encoder = load_speech_encoder(ckpt.config.get("encoder", "whisper-tiny.en"), device=device)
    if speech_encoder.dim != cfg.content_dim:
        raise AvitalkError(f"speech encoder gives {speech_encoder.dim} channels; the model wants {cfg.content_dim}")
    return Stage2Synthesizer(
        config=cfg,
        space=space,
        generator=parts.generator,
        aligner=parts.aligner,
        prior=ZeroStyle(cfg.style_dim),
        mean=stats.mean,
        std=stats.std,
        speech_encoder=speech_encoder,
        text_encoder=NoText(cfg.text_dim),
        device=device,
    )
