"""Load trained stage-2 runs for inference: ``load_stage2(motion_run, align_run) -> Stage2Synthesizer``.

The motion run (``avitalk train motion``) gives the generator and the motion statistics, the align run
(``avitalk train align``) the aligner and the prior (``denoiser`` or ``direct``); both are loaded
strictly from their latest checkpoints, and the frozen speech / text encoders named in their configs
are loaded too. The align run must have been trained on this motion checkpoint (same step).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from avitalk.audio.encoder import SpeechEncoder, load_speech_encoder
from avitalk.errors import AvitalkError
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
    align_run: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    speech_encoder: SpeechEncoder | None = None,
    text_encoder: TextEncoder | None = None,
) -> Stage2Synthesizer:
    """A :class:`Stage2Synthesizer` from the latest checkpoints of a motion run and an align run.

    Args:
        motion_run, align_run: run directories (or their ``checkpoints`` dirs / a checkpoint).
        device: where the networks (and encoders loaded here) run.
        speech_encoder, text_encoder: already loaded encoders to use instead of the configured ones.

    Raises:
        AvitalkError: a missing or wrong run, mismatched model fields or motion checkpoint step.
    """
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
