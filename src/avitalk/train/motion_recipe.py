"""``avitalk train motion``: the stage-2 motion prior (style encoder + talking generator, docs/stage2.md).

Windows of content features + motion and reference frames from outside the window
(:class:`~avitalk.train.motion_data.MotionWindows`); ``z = style_encoder(refs)``,
``pred = generator(content, z)``, loss :func:`~avitalk.motion.losses.motion_prior_loss` on motion
standardised per channel (reconstruction + velocity + lip vertices of the built-in face for arkit52;
no lip term for other spaces). The standardisation statistics are checkpointed as the ``stats`` module.
``model.style=false`` trains the regression baseline: no style encoder, ``z = 0`` (docs/evaluation-stage2.md).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from avitalk.audio.cache import CachedSpeechEncoder
from avitalk.audio.encoder import default_cache_dir, load_speech_encoder
from avitalk.data.format import Manifest
from avitalk.errors import AvitalkError
from avitalk.motion.config import Stage2Config, preset
from avitalk.motion.losses import LipBasis, motion_prior_loss
from avitalk.motion.model import build_stage2
from avitalk.spaces import get_space
from avitalk.train.config import load_config
from avitalk.train.engine import TrainConfig, Trainer, maybe_relaunch
from avitalk.train.motion_data import MotionWindows


@dataclass(frozen=True)
class MotionRecipeConfig:
    """Stage-2 motion-prior training (the model defaults come from the ``--preset``)."""

    model: Stage2Config = field(default_factory=Stage2Config)
    encoder: str = "whisper-tiny.en"  # frozen speech encoder (avitalk.audio.encoder.load_speech_encoder)
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup: int = 500  # linear LR warm-up, optimizer steps
    repeats: int = 4  # windows per clip and epoch
    val_batches: int = 16  # validation batches (fixed windows) per evaluation
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=20_000, batch_size=32, eval_every=500))


class MotionStats(nn.Module):
    """Per-channel motion mean/std (buffers, checkpointed): the generator works on ``(x - mean) / std``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def resolve_config(name: str, yaml_path: str | os.PathLike[str] | None, overrides: Sequence[str]) -> MotionRecipeConfig:
    """Preset ``name`` for the model, then the YAML file, then ``key=value`` overrides."""
    return load_config(MotionRecipeConfig, yaml_path, overrides, base=MotionRecipeConfig(model=preset(name)))


def train_motion(cfg: MotionRecipeConfig, data: Path, out: Path, argv: Sequence[str]) -> int:
    """Train the motion prior on the corpus at ``data`` into the run directory ``out``; returns the exit status.

    ``argv`` is the command line to restart under torchrun when ``train.devices`` > 1 (see ``maybe_relaunch``).
    """
    if (status := maybe_relaunch(cfg.train, argv)) is not None:
        return status
    m, space, manifest = cfg.model, get_space(cfg.model.space), Manifest.load(data)
    space.require_same(manifest.space, f"corpus {data}")  # name, version and channels
    trainer = Trainer(cfg.train, out, config=cfg, space=space)
    env = os.environ.get("AVITALK_CACHE")
    encoder = CachedSpeechEncoder(load_speech_encoder(cfg.encoder), (default_cache_dir() if env else out) / "features")
    if encoder.dim != m.content_dim:
        raise AvitalkError(
            f"speech encoder {cfg.encoder} gives {encoder.dim} channels; model.content_dim is {m.content_dim}"
        )
    common = dict(window=m.window, n_ref=m.n_ref, fps=m.fps, ref_sampling=m.ref_sampling, seed=cfg.train.seed)
    global_batch = cfg.train.batch_size * trainer.world_size * cfg.train.grad_accum
    show = trainer.is_main and cfg.train.progress
    train_set = MotionWindows(data, "train", encoder, **common, progress=show)
    train_set.repeats = max(cfg.repeats, math.ceil(global_batch / len(train_set.motion)))
    has_val = any(sh.split == "val" and sh.clips for sh in manifest.shards)
    val_set = MotionWindows(data, "val", encoder, **common, progress=show) if has_val else None
    if val_set is None:
        trainer.say(f"{data} has no val split: training without validation")
    mean, std = (torch.as_tensor(a) for a in train_set.motion_stats())
    stats = MotionStats(mean, std.clamp(min=1e-2))
    parts = build_stage2(m)
    gen = parts.generator
    enc = parts.style_encoder if m.style else None  # model.style=false: regression baseline, z = 0
    params = [*gen.parameters(), *(enc.parameters() if enc is not None else ())]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup, 1)))
    encs = {"style_encoder": enc} if enc is not None else {}
    prepared = trainer.prepare(**encs, generator=gen, stats=stats, optim=opt, sched=sched)
    *maybe_enc, gen, stats, opt, sched = prepared
    enc = maybe_enc[0] if maybe_enc else None
    lip = None
    if space.name == "arkit52":
        from avitalk.face.builtin import BuiltinFace

        face = BuiltinFace.create()
        lip = LipBasis.from_linear(face.neutral, face.basis, face.regions["lips"], range(52)).to(trainer.device)

    def losses(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if enc is not None:
            z = enc(stats(batch["refs"]), batch["ref_valid"])  # (B, Dz)
        else:  # regression baseline: a constant (zero) style
            z = batch["content"].new_zeros(batch["content"].shape[0], m.style_dim)  # (B, Dz)
        pred = gen(batch["content"], z, batch["valid"])  # (B, W, D), standardised
        out = motion_prior_loss(pred, stats(batch["motion"]), m.loss, batch["valid"], lip, channel_scale=stats.std)
        return out._asdict()

    def step(batch: dict[str, torch.Tensor]):
        terms = losses(batch)
        return terms.pop("total"), terms

    loader = trainer.dataloader(train_set)
    train_set.bind_epoch(loader.sampler)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=cfg.train.batch_size) if val_set is not None else []

    def validate() -> dict[str, torch.Tensor]:
        sums: dict[str, torch.Tensor] = {}
        for k, batch in enumerate(val_loader):  # fixed windows (epoch 0)
            if k >= cfg.val_batches:
                break
            for name, v in losses(trainer.to_device(batch)).items():
                sums[name] = sums.get(name, 0) + v
        return {name: v / min(len(val_loader), cfg.val_batches) for name, v in sums.items()}

    trainer.fit(step, loader, eval_fn=validate if val_set is not None else None)
    return 0
