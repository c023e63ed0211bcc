"""Load a trained stage-1 model for inference: ``load_stage1(run) -> Describer``; ship weights without
optimizer state: ``strip_stage1(run, out_dir)``.

``run`` may be a stage-1 run directory (``avitalk train instruct --out RUN``: its ``project`` phase is
used), a phase directory (``RUN/project``), a checkpoint root (``.../checkpoints``), one checkpoint
(``.../step-000250``) or a stripped checkpoint directory written by :func:`strip_stage1`. Everything is
loaded strictly from that one checkpoint (the projection-phase checkpoints hold every trained part);
the frozen speech encoder and LLM named in its config are loaded unless given.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avitalk.audio.encoder import SpeechEncoder, load_speech_encoder
from avitalk.data.synth.captions import sample_captions
from avitalk.errors import AvitalkError
from avitalk.instruct.causal_lm import BACKENDS, CausalLM, NativeCausalLM, load_causal_lm, load_tokenizer
from avitalk.instruct.config import Stage1Config
from avitalk.instruct.describer import Describer
from avitalk.instruct.draft import NgramDraft
from avitalk.instruct.model import build_stage1, tokenize_targets
from avitalk.train.checkpoint import Checkpoint, load_checkpoint, read_checkpoint
from avitalk.train.export import export_checkpoint

__all__ = [
    "LLM_DTYPES",
    "find_stage1_checkpoint",
    "instruction_draft",
    "load_stage1",
    "resolve_llm_dtype",
    "strip_stage1",
]

LLM_DTYPES = ("auto", "float32", "bfloat16")
"""Inference dtypes of the stage-1 LLM (``load_stage1(llm_dtype=...)``, ``--llm-dtype``)."""


def resolve_llm_dtype(name: str, device: str | torch.device = "cpu") -> torch.dtype:
    """The torch dtype for ``name`` in :data:`LLM_DTYPES`.

    ``"auto"`` is bfloat16 on CUDA devices that support it and on CPUs with native bf16 matrix units
    (oneDNN's AVX512-BF16 / AMX check), else float32. Why bf16 at all: greedy decoding reads every LLM
    weight once per token, so on CPUs it is memory-bound and half-size weights decode faster (with the
    LoRA merged: 2.43 -> 1.58 s for a 10 s clip's 24-word instruction on 2 cores; docs/evaluation-stage1.md
    has the benchmark and the quality check).

    Raises:
        AvitalkError: an unknown name.
    """
    if name not in LLM_DTYPES:
        raise AvitalkError(f"unknown LLM dtype {name!r}; use {', '.join(LLM_DTYPES)}")
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if dev.type == "cpu":
        try:
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a torch build without oneDNN
            native = False
        return torch.bfloat16 if native else torch.float32
    return torch.float32


def find_stage1_checkpoint(run: str | os.PathLike[str]) -> Checkpoint:
    """The stage-1 checkpoint ``run`` points to (see the module docstring), checked to be complete.

    Raises:
        AvitalkError: nothing there, only an alignment phase, or not a stage-1 checkpoint.
    """
    path = Path(run)
    if not path.exists():
        raise AvitalkError(f"{path}: no such stage-1 model")
    for candidate in (path / "project" / "checkpoints", path / "checkpoints"):
        if candidate.is_dir():
            path = candidate
            break
    else:
        if (path / "align" / "checkpoints").is_dir():
            raise AvitalkError(f"{path} has only the alignment phase: run `avitalk train instruct --phase project`")
    ckpt = read_checkpoint(path)
    model = ckpt.config.get("model")
    if not isinstance(model, dict) or "qformer" not in model or "prompt_tokens" not in model:
        raise AvitalkError(f"{ckpt.path} is not a stage-1 checkpoint (no stage-1 model config)")
    cfg = Stage1Config.from_dict(model)
    need = {"prompt"} if cfg.decoder == "llm" else {"text_decoder"}
    if cfg.use_qformer:
        need |= {"qformer", "align_head"}
    if cfg.uses_lora:
        need |= {"llm_adapter"}
    if not need <= set(ckpt.modules):
        raise AvitalkError(
            f"{ckpt.path} is not a stage-1 model checkpoint (needs {', '.join(sorted(need))}; "
            f"holds {', '.join(ckpt.modules)}): use the projection phase (RUN/project)"
        )
    return ckpt


def load_stage1(
    run: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    *,
    speech_encoder: SpeechEncoder | None = None,
    causal_lm: CausalLM | None = None,
    llm_dtype: str = "float32",
    llm_backend: str = "auto",
    speculative: bool = True,
) -> Describer:
    """A :class:`Describer` from a stage-1 run, phase directory, checkpoint or stripped checkpoint.

    Args:
        run: see the module docstring.
        device: where the networks (and the backbones loaded here) run.
        speech_encoder, causal_lm: already loaded backbones to use instead of the configured ones (a
            model with a LoRA adapter injects it into ``causal_lm``: give each such model its own LM).
        llm_dtype: one of :data:`LLM_DTYPES` for the LLM (and its adapter) at inference; the default
            float32 gives the numbers the evaluations report; ``"auto"`` see :func:`resolve_llm_dtype`.
        llm_backend: how a configured LLM is loaded (:data:`~avitalk.instruct.causal_lm.BACKENDS`):
            ``"auto"`` runs a plain LLaMA on our own implementation (same texts, no ``transformers``
            import) and anything else on ``transformers``; ``"native"`` insists on ours (an error where
            it does not apply); ``"transformers"`` always uses ``transformers``.
        speculative: give the describer an n-gram draft of instruction wording
            (:func:`instruction_draft`) so greedy decoding of one clip on the native backend commits
            several tokens per LM pass: the same text in float32; in bfloat16 a multi-token pass rounds
            differently and near-tied synonyms can swap (docs/evaluation-stage1.md).

    Raises:
        AvitalkError: a missing or wrong checkpoint, weights that do not match the config, or backbones
            of the wrong width.
    """
    if llm_backend not in BACKENDS:
        raise AvitalkError(f"unknown LLM backend {llm_backend!r}; use {', '.join(BACKENDS)}")
    ckpt = find_stage1_checkpoint(run)
    cfg = Stage1Config.from_dict(ckpt.config["model"])
    llm, tokenizer = None, None
    if cfg.decoder == "llm":
        llm = causal_lm if causal_lm is not None else load_causal_lm(cfg.llm, device=device, backend=llm_backend)
        tokenizer = llm.tokenizer
    else:
        tokenizer = causal_lm.tokenizer if causal_lm is not None else load_tokenizer(cfg.llm)
    parts = build_stage1(cfg, llm_dim=llm.hidden_size if llm is not None else None, vocab_size=len(tokenizer))
    if llm is not None:
        parts.attach_llm(llm)  # LoRA (lora_rank > 0): the LLM given or loaded here carries it from now on
    load_checkpoint(ckpt.path, parts.modules())
    for module in parts.modules().values():
        module.requires_grad_(False).eval()
    if llm is not None:
        dtype = resolve_llm_dtype(llm_dtype, device)
        # the fast path: LoRA folded into the weights in float32 (then cast); the native LM has no LoRA forward
        fold = dtype != llm.dtype or isinstance(llm, NativeCausalLM)
        if fold and parts.llm_adapter is not None and not parts.llm_adapter.merged:
            parts.llm_adapter.merge_into_llm()
        if dtype != llm.dtype:
            llm.model.to(dtype)
    if speech_encoder is None:
        speech_encoder = load_speech_encoder(cfg.encoder, device=device)
    native = isinstance(llm, NativeCausalLM)  # the transformers backend decodes token by token
    draft = instruction_draft(tokenizer, cfg.max_target_tokens) if speculative and native else None
    return Describer(cfg, parts, speech_encoder, llm=llm, tokenizer=tokenizer, device=device, draft=draft)


DRAFT_CAPTIONS = 300
"""Captions :func:`instruction_draft` counts n-grams over (as few LM passes as with 2000; built in ~0.1 s)."""


@functools.cache
def instruction_draft(tokenizer: Any, max_tokens: int = 64) -> NgramDraft:
    """The n-gram draft of speculative decoding, from sampled captions of the corpus grammar.

    Tokenised as the training targets are (+ EOS, so a finished sentence can be guessed as well). The
    captions are the wording of avitalk's synthetic and RAVDESS instructions; a model trained on other
    wording still writes its own texts, the draft just guesses right less often. Built once per tokenizer.
    """
    texts = sample_captions(np.random.default_rng(0), DRAFT_CAPTIONS)
    return NgramDraft.from_sequences(tokenize_targets(tokenizer, texts, max_tokens), order=3)


def strip_stage1(
    run: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32
) -> Path:
    """Copy the model of a stage-1 run (weights + metadata, no optimizer or RNG state) to ``out_dir``.

    :func:`avitalk.train.export.export_checkpoint` of the checkpoint :func:`find_stage1_checkpoint`
    picks (``dtype=torch.float16`` halves it). The result loads with :func:`load_stage1` (``out_dir`` is a
    checkpoint directory). Returns ``out_dir``.
    """
    return export_checkpoint(find_stage1_checkpoint(run).path, out_dir, dtype=dtype)
