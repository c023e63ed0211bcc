"""``avitalk train align``: stage-2 instruction alignment + diffusion prior (paper §3.4, eq. 7-8, docs/stage2.md).

The motion prior of ``avitalk train motion`` (``--motion RUN``) is loaded strictly and frozen; its style
encoder embeds reference frames of every clip (:class:`~avitalk.train.align_data.AlignPairs`). A step
encodes the batch's instructions with the frozen text encoder, ``c = aligner(text)``, and minimises
:func:`~avitalk.motion.losses.stage2_align_loss`: InfoNCE(c, z) (off with ``model.contrastive=false``)
+ ``lambda_diff`` x the prior loss (:func:`diffusion_x0_loss` with condition dropout, or
:func:`direct_mapping_loss` with ``model.prior=direct``). Checkpoints hold ``aligner`` and
``denoiser`` / ``direct``; the config records the motion checkpoint used (``motion_run``, ``motion_step``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from avitalk.data.format import Manifest
from avitalk.diffusion import NoiseSchedule
from avitalk.errors import AvitalkError
from avitalk.motion.config import Stage2Config, preset
from avitalk.motion.losses import diffusion_x0_loss, direct_mapping_loss, stage2_align_loss
from avitalk.motion.model import build_stage2
from avitalk.spaces import get_space
from avitalk.train.align_data import AlignPairs
from avitalk.train.checkpoint import Checkpoint, load_checkpoint, read_checkpoint, unwrap_module
from avitalk.train.config import load_config
from avitalk.train.engine import TrainConfig, Trainer, maybe_relaunch
from avitalk.train.motion_recipe import MotionStats

MOTION_FIELDS = ("space", "fps", "content_dim", "style_dim", "window", "n_ref", "ref_sampling")
MOTION_FIELDS += ("style_encoder", "generator")
"""Model fields that come from the motion run (the aligner and prior must fit its style encoder)."""


@dataclass(frozen=True)
class AlignRecipeConfig:
    """Stage-2 alignment + prior training (model from ``--preset``, motion-side fields from the motion run)."""

    model: Stage2Config = field(default_factory=Stage2Config)
    text_encoder: str = "minilm"  # frozen text encoder (avitalk.text.load_text_encoder)
    motion_run: str = ""  # the motion checkpoint used (set by the recipe)
    motion_step: int = 0
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup: int = 500  # linear LR warm-up, optimizer steps
    draws: int = 8  # style embeddings (reference draws) per clip
    repeats: int = 1  # passes over the (clip, draw) pairs per epoch
    augment: bool = True  # instruction synonym replacement (ablation: false)
    variants: int = 8  # seeded rewordings per instruction (0: fresh each time; slow, the text cache misses)
    val_batches: int = 16
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=20_000, batch_size=64, eval_every=500))


def motion_checkpoint(run: str | os.PathLike[str]) -> Checkpoint:
    """The latest checkpoint of a motion run directory (or a checkpoint root / checkpoint), checked to hold
    a style encoder and motion statistics."""
    path = Path(run)
    if not path.is_dir():
        raise AvitalkError(f"{path}: no such motion run")
    ckpt = read_checkpoint(path / "checkpoints" if (path / "checkpoints").is_dir() else path)
    missing = [n for n in ("style_encoder", "stats") if n not in ckpt.modules]
    if missing or not isinstance(ckpt.config.get("model"), dict):
        raise AvitalkError(f"{ckpt.path} is not a motion-prior checkpoint (no {', '.join(missing) or 'model config'})")
    return ckpt


def resolve_config(
    name: str, yaml_path: str | os.PathLike[str] | None, overrides: Sequence[str], motion: Checkpoint
) -> AlignRecipeConfig:
    """Preset ``name`` with the motion run's motion-side fields, then the YAML file, then overrides."""
    motion_model = Stage2Config.from_dict(motion.config["model"])
    model = preset(name).replace(**{k: getattr(motion_model, k) for k in MOTION_FIELDS})
    base = AlignRecipeConfig(model=model, motion_run=str(motion.path.resolve()), motion_step=motion.step)
    cfg = load_config(AlignRecipeConfig, yaml_path, overrides, base=base)
    changed = [k for k in MOTION_FIELDS if getattr(cfg.model, k) != getattr(motion_model, k)]
    if changed:
        raise AvitalkError(f"model.{', model.'.join(changed)} must match the motion run {motion.path}")
    return dataclasses.replace(cfg, motion_run=base.motion_run, motion_step=base.motion_step)


def train_align(cfg: AlignRecipeConfig, data: Path, out: Path, argv: Sequence[str]) -> int:
    """Train the instruction aligner and the prior on the corpus at ``data`` into ``out``; returns the status."""
    if (status := maybe_relaunch(cfg.train, argv)) is not None:
        return status
    m, space, manifest = cfg.model, get_space(cfg.model.space), Manifest.load(data)
    space.require_same(manifest.space, f"corpus {data}")  # name, version and channels
    trainer = Trainer(cfg.train, out, config=cfg, space=space)
    parts = build_stage2(m)
    stats = MotionStats(torch.zeros(m.motion_dim), torch.ones(m.motion_dim))
    style = parts.style_encoder
    load_checkpoint(cfg.motion_run, {"style_encoder": style, "stats": stats}, expect_space=space)
    style.eval().requires_grad_(False)
    trainer.say(f"style encoder from {cfg.motion_run} (step {cfg.motion_step})")

    def embed(refs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return style(stats(refs), valid)

    common: dict[str, Any] = dict(window=m.window, n_ref=m.n_ref, fps=m.fps, ref_sampling=m.ref_sampling)
    common.update(draws=cfg.draws, variants=cfg.variants, seed=cfg.train.seed)
    train_set = AlignPairs(data, "train", embed, augment=cfg.augment, **common)
    global_batch = cfg.train.batch_size * trainer.world_size * cfg.train.grad_accum
    train_set.repeats = max(cfg.repeats, math.ceil(global_batch / train_set.pairs))
    has_val = any(sh.split == "val" and sh.clips for sh in manifest.shards)
    val_set = AlignPairs(data, "val", embed, augment=False, **common) if has_val else None
    if val_set is None:
        trainer.say(f"{data} has no val split: training without validation")
    from avitalk.text import load_text_encoder

    n_texts = train_set.n_texts + (val_set.n_texts if val_set is not None else 0)
    text_encoder = load_text_encoder(cfg.text_encoder, device=trainer.device, cache_size=max(8192, 2 * n_texts))
    if text_encoder.dim != m.text_dim:
        raise AvitalkError(
            f"text encoder {cfg.text_encoder} gives {text_encoder.dim} channels; model.text_dim is {m.text_dim}"
        )
    aligner, prior = parts.aligner, parts.denoiser if m.prior == "diffusion" else parts.direct
    assert prior is not None
    params = [p for n, p in [*aligner.named_parameters(), *prior.named_parameters()] if n != "logit_scale"]
    groups = [{"params": params}, {"params": [aligner.logit_scale], "weight_decay": 0.0}]  # temperature: no decay
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup, 1)))
    prior_name = "denoiser" if m.prior == "diffusion" else "direct"
    aligner, prior, opt, sched = trainer.prepare(aligner=aligner, **{prior_name: prior}, optim=opt, sched=sched)
    schedule = NoiseSchedule.from_name(m.denoiser.schedule, m.denoiser.num_steps)  # device-free

    def losses(batch: dict[str, Any], generator: torch.Generator | None = None, cond_drop: float | None = None):
        text = text_encoder.encode(batch["text"]).to(trainer.device)  # (B, text_dim), frozen
        c, z = aligner(text), batch["z"]  # (B, Dz)
        if m.prior == "diffusion":
            drop = m.denoiser.cond_drop if cond_drop is None else cond_drop  # explicit: prior may be DDP-wrapped
            prior_loss = diffusion_x0_loss(prior, z, c, schedule, drop, generator)
        else:
            prior_loss = direct_mapping_loss(prior, c, z)
        scale = unwrap_module(aligner).logit_scale
        terms = stage2_align_loss(c, z, scale, prior_loss, m.loss.lambda_diff, m.contrastive, m.align.max_logit_scale)
        sim = torch.nn.functional.normalize(c, dim=-1) @ torch.nn.functional.normalize(z, dim=-1).T  # (B, B)
        acc = (sim.argmax(1) == torch.arange(len(c), device=c.device)).float().mean()
        return {**terms._asdict(), "r1": acc, "temperature": scale.detach().neg().exp()}

    def step(batch: dict[str, Any]):
        terms = losses(batch)
        return terms.pop("total"), terms

    loader = trainer.dataloader(train_set)
    train_set.bind_epoch(loader.sampler)
    val_bs = min(cfg.train.batch_size, len(val_set)) if val_set is not None else 1
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=val_bs) if val_set is not None else []

    def validate() -> dict[str, torch.Tensor]:
        gen = torch.Generator(trainer.device).manual_seed(cfg.train.seed)  # fixed timesteps and noise
        sums: dict[str, torch.Tensor] = {}
        n = min(len(val_loader), cfg.val_batches)
        for k, batch in enumerate(val_loader):
            if k >= n:
                break
            for name, v in losses(trainer.to_device(batch), gen, 0.0).items():
                sums[name] = sums.get(name, 0) + v
        return {name: v / n for name, v in sums.items()}

    trainer.fit(step, loader, eval_fn=validate if val_set is not None else None)
    return 0
