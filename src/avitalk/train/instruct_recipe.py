"""``avitalk train instruct``: the stage-1 instruction generator (paper §3.3, docs/stage1.md).

Two phases, each a :class:`~avitalk.train.engine.Trainer` run in its own directory of ``--out RUN``:

- ``RUN/align`` (``--phase align``): Q-Former + alignment head trained with the symmetric InfoNCE of
  the mean query against the frozen text encoder's pooled instruction embedding (eq. 6, cosine
  similarity, in-batch negatives, learnable temperature). Checkpoints hold ``qformer``, ``align_head``.
- ``RUN/project`` (``--phase project``): the latest ``RUN/align`` checkpoint is loaded strictly and
  frozen (``model.tune_qformer=true`` trains it too, at ``qformer_lr``); the audio prompt (``prompt``) is
  trained with the frozen LLM's next-token loss on the instruction given ``BOS + template + audio
  prompt`` (one of the ten templates per batch, its keys/values cached), or the ``text_decoder`` with
  ``model.decoder=qformer``. With ``model.lora_rank > 0`` (the default preset) a LoRA adapter on the
  LLM (``llm_adapter``) trains with it at ``lora_lr``. Checkpoints hold every part, so ``RUN/project``
  alone is the model.

``--phase all`` runs both; running the same command again resumes where it stopped. Speech features
are cached under ``RUN/features`` (``$AVITALK_CACHE/features`` when that is set), so each clip is
encoded once; several ``--data`` corpora are concatenated (audio-only corpora work).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from avitalk.audio.cache import CachedSpeechEncoder
from avitalk.audio.encoder import SpeechEncoder, default_cache_dir, load_speech_encoder
from avitalk.data.format import Manifest
from avitalk.errors import AvitalkError
from avitalk.instruct.causal_lm import CausalLM, load_causal_lm, load_tokenizer
from avitalk.instruct.config import Stage1Config, preset
from avitalk.instruct.model import (
    PooledPrompt,
    PrefixCache,
    build_stage1,
    contrastive_loss,
    llm_prompt_loss,
    match_embedding_scale,
    tokenize_targets,
)
from avitalk.instruct.prompts import PROMPT_TEMPLATES
from avitalk.instruct.qformer import QFormer
from avitalk.train.checkpoint import load_checkpoint, read_checkpoint, unwrap_module
from avitalk.train.config import load_config
from avitalk.train.engine import TrainConfig, Trainer, maybe_relaunch
from avitalk.train.instruct_data import InstructClips, collate_instruct

Phase = Literal["align", "project", "all"]
PHASES = ("align", "project", "all")


@dataclass(frozen=True)
class PhaseConfig:
    """Optimiser and loop settings of one phase."""

    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 100  # linear LR warm-up, optimizer steps
    augment_rate: float = 0.5  # per-phrase synonym swap probability of a reworded caption (0: no rewording)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class InstructRecipeConfig:
    """Stage-1 training (the model defaults come from ``--preset``).

    ``align_checkpoint`` is set by the recipe: the alignment checkpoint the projection phase started from.
    """

    model: Stage1Config = field(default_factory=Stage1Config)
    augment: bool = True  # instruction synonym replacement (ablation: false)
    variants: int = 8  # seeded rewordings per instruction (0: fresh each time)
    lora_lr: float = 1e-3  # learning rate of the LLM's LoRA adapter (model.lora_rank > 0)
    qformer_lr: float = 1e-4  # learning rate of the Q-Former in the projection phase (model.tune_qformer)
    repeats: int = 1  # passes over the clips per epoch
    val_batches: int = 8
    align: PhaseConfig = field(
        default_factory=lambda: PhaseConfig(
            lr=5e-4, warmup=30, train=TrainConfig(max_steps=1000, batch_size=32, eval_every=100, ckpt_every=100)
        )
    )
    # Captions are reworded for the alignment only: the projection phase's targets are the words the LM
    # learns to write, and reworded targets made greedy decoding write synonyms the references do not use.
    project: PhaseConfig = field(
        default_factory=lambda: PhaseConfig(
            lr=1e-2,
            warmup=20,
            augment_rate=0.0,
            train=TrainConfig(max_steps=1000, batch_size=8, eval_every=100, ckpt_every=100),
        )
    )
    align_checkpoint: str = ""


def resolve_config(
    name: str, yaml_path: str | os.PathLike[str] | None, overrides: Sequence[str]
) -> InstructRecipeConfig:
    """Preset ``name`` for the model, then the YAML file, then ``key=value`` overrides."""
    return load_config(InstructRecipeConfig, yaml_path, overrides, base=InstructRecipeConfig(model=preset(name)))


def feature_cache_dir(out: Path) -> Path:
    """Where speech features are cached: ``$AVITALK_CACHE/features`` if set, else ``out/features``."""
    return (default_cache_dir() if os.environ.get("AVITALK_CACHE") else out) / "features"


def train_instruct(
    cfg: InstructRecipeConfig,
    data: Sequence[Path],
    out: Path,
    argv: Sequence[str],
    phase: Phase = "all",
    *,
    speech_encoder: SpeechEncoder | None = None,
    text_encoder: Any = None,
    causal_lm: CausalLM | None = None,
) -> int:
    """Train phase ``phase`` (``align``, ``project`` or ``all``) on the corpora ``data`` into ``out``.

    ``speech_encoder``, ``text_encoder`` and ``causal_lm`` replace the configured frozen backbones
    (tests). ``argv`` is the command line to restart under torchrun when ``devices`` > 1.
    """
    if phase not in PHASES:
        raise AvitalkError(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
    if not data:
        raise AvitalkError("no corpus given (--data)")
    for root in data:
        if not (Path(root) / "manifest.json").is_file():
            raise AvitalkError(f"{root}: not a corpus directory (no manifest.json)")
    for name, pc in (("align", cfg.align), ("project", cfg.project)):
        if not 0.0 <= pc.augment_rate <= 1.0:
            raise AvitalkError(f"{name}.augment_rate must be in [0, 1], got {pc.augment_rate}")
    m = cfg.model
    do_align = phase in ("align", "all") and m.use_qformer
    first = cfg.align.train if do_align else cfg.project.train
    if (status := maybe_relaunch(first, argv)) is not None:
        return status
    out = Path(out)
    raw = speech_encoder if speech_encoder is not None else load_speech_encoder(m.encoder)
    encoder = CachedSpeechEncoder(raw, feature_cache_dir(out))
    if encoder.dim != m.audio_dim:
        raise AvitalkError(
            f"speech encoder {encoder.name} gives {encoder.dim} channels; model.audio_dim is {m.audio_dim}"
        )
    sets = _Sets(cfg, list(data), encoder)
    if phase in ("align", "all") and not m.use_qformer:
        print("avitalk: model.use_qformer=false: nothing to align, skipping the align phase", flush=True)
    if do_align:
        _train_align(cfg, sets, out / "align", text_encoder)
    if phase in ("project", "all"):
        _train_project(cfg, sets, out, causal_lm)
    return 0


class _Sets:
    """The train / val datasets, built once (features cached) and shared by both phases."""

    def __init__(self, cfg: InstructRecipeConfig, data: list[Path], encoder: CachedSpeechEncoder) -> None:
        self.cfg, self.data, self.encoder = cfg, data, encoder
        self._train: InstructClips | None = None
        self._val: InstructClips | None = None
        self._val_done = False

    @property
    def max_frames(self) -> int:
        return max(1, int(self.cfg.model.max_crop_s * self.encoder.frame_rate))

    def train(self, progress: bool) -> InstructClips:
        if self._train is None:
            c = self.cfg
            self._train = InstructClips(
                self.data, "train", self.encoder, max_frames=self.max_frames, augment=c.augment,
                variants=c.variants, repeats=c.repeats, seed=c.align.train.seed, progress=progress,
            )  # fmt: skip
        return self._train

    def val(self, progress: bool) -> InstructClips | None:
        if not self._val_done:
            self._val_done = True
            has = any(any(s.split == "val" and s.clips for s in Manifest.load(r).shards) for r in self.data)
            if has:
                self._val = InstructClips(
                    self.data, "val", self.encoder, max_frames=self.max_frames, crop=False, augment=False,
                    progress=progress,
                )  # fmt: skip
        return self._val


def _scheduled(params: list[Any], phase: PhaseConfig) -> tuple[torch.optim.Optimizer, Any]:
    opt = torch.optim.AdamW(params, lr=phase.lr, weight_decay=phase.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(phase.warmup, 1)))
    return opt, sched


def _loader(trainer: Trainer, ds: InstructClips, batch_size: int) -> Any:
    global_batch = batch_size * trainer.world_size * trainer.cfg.grad_accum
    ds.repeats = max(ds.repeats, math.ceil(global_batch / ds.clips))
    loader = trainer.dataloader(ds, collate_fn=collate_instruct)
    ds.bind_epoch(loader.sampler)
    return loader


def _val_loader(ds: InstructClips | None, batch_size: int) -> list[Any]:
    if ds is None:
        return []
    bs = min(batch_size, ds.clips)
    return list(torch.utils.data.DataLoader(ds, batch_size=bs, collate_fn=collate_instruct))


def _train_align(cfg: InstructRecipeConfig, sets: _Sets, out: Path, text_encoder: Any) -> None:
    m, pc = cfg.model, cfg.align
    trainer = Trainer(pc.train, out, config=cfg)
    show = trainer.is_main and pc.train.progress
    train_set, val_set = sets.train(show), sets.val(show)
    train_set.augment_rate = pc.augment_rate
    if val_set is None:
        trainer.say("no val split: training the alignment without validation")
    if text_encoder is None:
        from avitalk.text import load_text_encoder

        n = train_set.n_texts + (val_set.n_texts if val_set is not None else 0)
        text_encoder = load_text_encoder(m.text_encoder, device=trainer.device, cache_size=max(8192, 2 * n))
    if text_encoder.dim != m.text_dim:
        raise AvitalkError(
            f"text encoder {m.text_encoder} gives {text_encoder.dim} channels; model.text_dim is {m.text_dim}"
        )
    parts = build_stage1(m.replace(decoder="llm"), llm_dim=1)  # only the Q-Former and the head are used
    qformer, head = parts.qformer, parts.align_head
    assert qformer is not None and head is not None
    params = [*qformer.parameters(), head.proj.weight, head.proj.bias]
    groups = [{"params": params}, {"params": [head.logit_scale], "weight_decay": 0.0}]  # temperature: no decay
    opt, sched = _scheduled(groups, pc)
    qformer, head, opt, sched = trainer.prepare(qformer=qformer, align_head=head, optim=opt, sched=sched)

    def losses(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        text = F.normalize(text_encoder.encode(batch["text"]).to(trainer.device).float(), dim=-1)  # (B, text_dim)
        audio = head(QFormer.pooled(qformer(batch["audio"], batch["mask"])))  # (B, text_dim)
        scale = unwrap_module(head).logit_scale
        loss, r1 = contrastive_loss(audio, text, scale, m.max_logit_scale)
        return {"total": loss, "r1": r1, "temperature": scale.detach().clamp(max=m.max_logit_scale).neg().exp()}

    def step(batch: dict[str, Any]):
        terms = losses(batch)
        return terms.pop("total"), terms

    val_batches = _val_loader(val_set, pc.train.batch_size)[: cfg.val_batches]

    def validate() -> dict[str, torch.Tensor]:
        sums: dict[str, torch.Tensor] = {}
        for batch in val_batches:
            for k, v in losses(trainer.to_device(batch)).items():
                sums[k] = sums.get(k, 0) + v
        return {k: v / len(val_batches) for k, v in sums.items()}

    trainer.fit(step, _loader(trainer, train_set, pc.train.batch_size), eval_fn=validate if val_batches else None)


def _train_project(cfg: InstructRecipeConfig, sets: _Sets, out: Path, causal_lm: CausalLM | None) -> None:
    m, pc = cfg.model, cfg.project
    align_ckpt = None
    if m.use_qformer:
        root = out / "align" / "checkpoints"
        if not root.is_dir():
            raise AvitalkError(f"{out / 'align'} holds no alignment checkpoint: run --phase align (or all) first")
        align_ckpt = read_checkpoint(root)
        cfg = dataclasses.replace(cfg, align_checkpoint=str(align_ckpt.path.resolve()))
    trainer = Trainer(pc.train, out / "project", config=cfg)
    show = trainer.is_main and pc.train.progress
    train_set, val_set = sets.train(show), sets.val(show)
    train_set.augment_rate = pc.augment_rate
    llm, tokenizer = None, None
    if m.decoder == "llm":
        llm = causal_lm if causal_lm is not None else load_causal_lm(m.llm, device=trainer.device)
        tokenizer = llm.tokenizer
    else:
        tokenizer = causal_lm.tokenizer if causal_lm is not None else load_tokenizer(m.llm)
    parts = build_stage1(m, llm_dim=llm.hidden_size if llm is not None else None, vocab_size=len(tokenizer))
    if llm is not None:
        parts.attach_llm(llm)  # LoRA adapter when model.lora_rank > 0
    if align_ckpt is not None:
        assert parts.qformer is not None and parts.align_head is not None
        load_checkpoint(align_ckpt.path, {"qformer": parts.qformer, "align_head": parts.align_head})
        trainer.say(f"Q-Former from {align_ckpt.path} (step {align_ckpt.step})" + (", tuned" if m.tune_qformer else ""))
    if llm is not None and parts.prompt is not None:  # soft tokens at the LLM's embedding scale
        probe = collate_instruct([train_set[i] for i in range(min(pc.train.batch_size, len(train_set)))])
        with torch.no_grad():
            if isinstance(parts.prompt, PooledPrompt):
                soft = parts.prompt(probe["audio"], probe["mask"])
            else:
                assert parts.qformer is not None
                soft = parts.prompt(parts.qformer(probe["audio"], probe["mask"]))
        scale = match_embedding_scale(parts.prompt.projection, soft, llm.model.get_input_embeddings().weight)
        trainer.say(f"projection scaled by {scale:.3f} to the LLM's embedding scale")
    # One optimizer group per learning rate: the new parts at the phase's rate, the pretrained ones
    # (LoRA on the LLM, the aligned Q-Former when tuned) at their own, smaller rates.
    own_lr = {"llm_adapter": cfg.lora_lr, "qformer": cfg.qformer_lr}
    trainable: list[torch.nn.Parameter] = []
    groups: list[dict[str, Any]] = []
    for name, module in parts.modules().items():
        learn = name in ("prompt", "text_decoder", "llm_adapter") or (name == "qformer" and m.tune_qformer)
        module.requires_grad_(learn)
        if not learn:
            module.eval()
        elif name in own_lr:
            groups.append({"params": list(module.parameters()), "lr": own_lr[name]})
        else:
            trainable.extend(module.parameters())
    groups.insert(0, {"params": trainable})
    opt, sched = _scheduled(groups, pc)
    prepared = trainer.prepare(**parts.modules(), optim=opt, sched=sched)
    mods = dict(zip(parts.modules(), prepared, strict=False))
    qformer, prompt, decoder = mods.get("qformer"), mods.get("prompt"), mods.get("text_decoder")
    prefix = PrefixCache(llm, mods.get("llm_adapter")) if llm is not None else None
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id

    def memory(batch: dict[str, Any]) -> torch.Tensor:
        assert qformer is not None
        with torch.set_grad_enabled(m.tune_qformer and torch.is_grad_enabled()):
            return qformer(batch["audio"], batch["mask"])

    def loss_of(batch: dict[str, Any], template_id: int) -> torch.Tensor:
        targets = tokenize_targets(tokenizer, batch["text"], m.max_target_tokens)
        if decoder is not None:
            ids = torch.full((len(targets), 1 + max(map(len, targets))), tokenizer.pad_token_id, dtype=torch.long)
            for i, t in enumerate(targets):
                ids[i, : 1 + len(t)] = torch.tensor([bos, *t])
            lengths = torch.tensor([1 + len(t) for t in targets], device=trainer.device)
            return unwrap_module(decoder).loss(memory(batch), ids.to(trainer.device), lengths)
        assert llm is not None and prefix is not None and prompt is not None
        if isinstance(unwrap_module(prompt), PooledPrompt):
            soft = prompt(batch["audio"], batch["mask"])
        else:
            soft = prompt(memory(batch))
        return llm_prompt_loss(llm, prefix, template_id, soft, targets)

    counter = [0]

    def step(batch: dict[str, Any]):
        rng = np.random.default_rng([pc.train.seed, trainer.step, counter[0]])
        counter[0] += 1
        return loss_of(batch, int(rng.integers(len(PROMPT_TEMPLATES))))  # one template per batch

    val_batches = _val_loader(val_set, pc.train.batch_size)[: cfg.val_batches]

    def validate() -> dict[str, torch.Tensor]:
        total = sum(loss_of(trainer.to_device(b), k % len(PROMPT_TEMPLATES)) for k, b in enumerate(val_batches))
        return {"loss": total / len(val_batches)}

    trainer.fit(step, _loader(trainer, train_set, pc.train.batch_size), eval_fn=validate if val_batches else None)


# ------------------------------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``avitalk train instruct`` (corpora, phase, preset, overrides and the Trainer's flags)."""
    from avitalk.train.engine import add_train_arguments

    p.add_argument("--data", type=Path, action="append", required=True, help="corpus directory (repeatable)")
    p.add_argument("--phase", choices=PHASES, default="all", help="align, project or both (default: all)")
    p.add_argument("--preset", choices=("tiny", "default"), default="default", help="model size (default: default)")
    p.add_argument("--set", dest="set_", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--steps", type=int, help="optimizer steps of the phase(s) run (= <phase>.train.max_steps)")
    add_train_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Handler of ``avitalk train instruct``."""
    from avitalk.train.engine import train_overrides

    for root in args.data:
        if not (root / "manifest.json").is_file():
            raise AvitalkError(f"{root}: not a corpus directory (no manifest.json)")
    if args.config is not None and not args.config.is_file():
        raise AvitalkError(f"{args.config}: no such config file")
    sections = {"align": ["align"], "project": ["project"], "all": ["align", "project"]}[args.phase]
    overrides = list(args.set_)
    for s in sections:
        overrides += train_overrides(args, section=f"{s}.train")[len(args.overrides) :]
        if args.steps is not None:
            overrides.append(f"{s}.train.max_steps={args.steps}")
    cfg = resolve_config(args.preset, args.config, [*args.overrides, *overrides])
    return train_instruct(cfg, args.data, args.out, args.argv, args.phase)
