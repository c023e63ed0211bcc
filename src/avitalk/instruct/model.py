"""Stage-1 networks (paper §3.3): alignment head, audio prompt, "without LLM" text decoder, and their losses.

Trainable parts, built by :func:`build_stage1` from a :class:`~avitalk.instruct.config.Stage1Config`
and checkpointed under these names:

- ``qformer`` (:class:`~avitalk.instruct.qformer.QFormer`): speech features (B, T_a, D_a) → (B, q_a, H_q).
- ``align_head`` (:class:`AlignHead`): mean query (B, H_q) → (B, text_dim) in the frozen text encoder's
  space + the learnable temperature, for the contrastive phase (eq. 6).
- ``prompt``: :class:`QueryPrompt` (query outputs → ``prompt_tokens`` soft tokens of the LLM, the
  paper's linear projection) or :class:`PooledPrompt` ("without Q-Former": mean-pooled speech features
  projected directly into ``direct_tokens`` soft tokens).
- ``text_decoder`` (:class:`TextDecoder`, ``decoder="qformer"``): a small causal transformer with cross-
  attention to the query outputs over the LLM's tokenizer ("without LLM").
- ``llm_adapter`` (:class:`~avitalk.instruct.adapter.LLMAdapter`, ``lora_rank > 0``): LoRA on the LLM,
  attached once the LLM is loaded (:meth:`Stage1Parts.attach_llm`).

:class:`PrefixCache` keeps the frozen LLM's keys/values of ``BOS + template`` for each of the ten
templates (the LLM never changes, so they are computed once); :func:`llm_prompt_loss` then runs the LLM
only over ``audio prompt + instruction`` — the next-token loss of the projection phase at a fraction of
the cost of the full sequence. With a LoRA adapter the prefix depends on trained weights, so it is
recomputed (with gradients) on every call instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avitalk.errors import AvitalkError
from avitalk.instruct.adapter import LLMAdapter, LoRAWeights
from avitalk.instruct.causal_lm import CausalLM, GenerateMode, NativeCausalLM
from avitalk.instruct.config import Stage1Config, TextDecoderConfig
from avitalk.instruct.projection import AudioProjection
from avitalk.instruct.prompts import IGNORE_INDEX, PROMPT_TEMPLATES
from avitalk.instruct.qformer import QFormer

__all__ = [
    "AlignHead",
    "PooledPrompt",
    "PrefixCache",
    "QueryPrompt",
    "Stage1Parts",
    "TextDecoder",
    "build_stage1",
    "contrastive_loss",
    "llm_prompt_loss",
    "masked_mean",
    "match_embedding_scale",
    "tokenize_targets",
]


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over time of valid frames: (B, T, D), (B, T) bool → (B, D)."""
    if mask is None:
        return x.mean(dim=1)
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class AlignHead(nn.Module):
    """Contrastive head (paper eq. 6): pooled queries (B, H_q) → (B, text_dim), plus ``logit_scale``."""

    def __init__(self, qformer_dim: int, text_dim: int, init_temperature: float = 0.07) -> None:
        super().__init__()
        self.proj = nn.Linear(qformer_dim, text_dim)
        self.logit_scale = nn.Parameter(torch.tensor(-float(torch.log(torch.tensor(init_temperature)))))

    def forward(self, pooled: Tensor) -> Tensor:
        """(B, H_q) → L2-normalised (B, text_dim)."""
        return F.normalize(self.proj(pooled), dim=-1)


class QueryPrompt(nn.Module):
    """Query outputs (B, q_a, H_q) → (B, k, H_llm): average consecutive groups of q_a/k queries, project."""

    def __init__(self, qformer_dim: int, llm_dim: int, num_queries: int, tokens: int) -> None:
        super().__init__()
        if num_queries % tokens:
            raise ValueError(f"tokens ({tokens}) must divide num_queries ({num_queries})")
        self.tokens = tokens
        self.proj = AudioProjection(qformer_dim, llm_dim)

    @property
    def projection(self) -> nn.Linear:
        """The linear map that makes the soft tokens (see :func:`match_embedding_scale`)."""
        return self.proj.proj

    def forward(self, queries: Tensor) -> Tensor:
        b, q, h = queries.shape
        grouped = queries.reshape(b, self.tokens, q // self.tokens, h).mean(dim=2)  # (B, k, H_q)
        return self.proj(grouped)


@torch.no_grad()
def match_embedding_scale(linear: nn.Linear, soft: Tensor, embed_weight: Tensor) -> float:
    """Rescale ``linear`` (weight and bias) so the soft tokens it made have the LLM's embedding scale.

    With PyTorch's default init, a projection of layer-normed Q-Former outputs gives soft tokens about
    5x the norm of SmolLM2's token embeddings: out of the distribution the frozen LLM reads, which it
    answers with generic text and which the projection then needs many steps to unlearn. Called once
    before the projection phase (a data-dependent init; a resumed run loads its weights over it).

    Args:
        linear: the projection producing the soft tokens.
        soft: (B, k, H_llm) soft tokens ``linear`` produced for one batch.
        embed_weight: (V, H_llm) the LLM's input-embedding matrix.

    Returns:
        The factor applied.
    """
    scale = float(embed_weight.float().std()) / max(float(soft.float().std()), 1e-8)  # any two devices
    linear.weight.mul_(scale)
    if linear.bias is not None:
        linear.bias.mul_(scale)
    return scale


class PooledPrompt(nn.Module):
    """Ablation "without Q-Former": mean-pooled features (B, T_a, D_a) → (B, k, H_llm) by one linear map."""

    def __init__(self, audio_dim: int, llm_dim: int, tokens: int) -> None:
        super().__init__()
        self.tokens, self.llm_dim = tokens, llm_dim
        self.norm = nn.LayerNorm(audio_dim)
        self.proj = nn.Linear(audio_dim, tokens * llm_dim)

    @property
    def projection(self) -> nn.Linear:
        """The linear map that makes the soft tokens (see :func:`match_embedding_scale`)."""
        return self.proj

    def forward(self, audio: Tensor, mask: Tensor | None = None) -> Tensor:
        pooled = self.norm(masked_mean(audio, mask))  # (B, D_a)
        return self.proj(pooled).reshape(audio.shape[0], self.tokens, self.llm_dim)


class TextDecoder(nn.Module):
    """BLIP-2-style causal text decoder conditioned on Q-Former outputs by cross-attention ("without LLM").

    Token embeddings (tied with the output layer) + learned positions → pre-norm decoder blocks
    [causal self-attention, cross-attention to the projected queries, FFN] → logits over the LLM's vocabulary.
    """

    def __init__(self, cfg: TextDecoderConfig, vocab_size: int, memory_dim: int) -> None:
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        h = cfg.hidden
        self.tok = nn.Embedding(vocab_size, h)
        self.pos = nn.Parameter(torch.randn(cfg.max_len, h) * 0.02)
        self.mem = nn.Linear(memory_dim, h)
        layer = nn.TransformerDecoderLayer(
            h, cfg.heads, cfg.ffn_mult * h, cfg.dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.blocks = nn.TransformerDecoder(layer, cfg.layers)
        self.norm = nn.LayerNorm(h)
        nn.init.normal_(self.tok.weight, std=0.02)

    def forward(self, ids: Tensor, memory: Tensor, pad: Tensor | None = None) -> Tensor:
        """Logits of the next token.

        Args:
            ids: (B, L) token ids (L <= ``max_len``).
            memory: (B, q_a, H_q) Q-Former outputs.
            pad: (B, L) bool, True on padding tokens, or None.

        Returns:
            (B, L, V) logits; position t predicts token t + 1.
        """
        length = ids.shape[1]
        if length > self.cfg.max_len:
            raise ValueError(f"sequence of {length} tokens exceeds text_decoder.max_len={self.cfg.max_len}")
        x = self.tok(ids) + self.pos[:length]
        # bool like ``pad`` (True = may not attend): mixed float/bool masks are deprecated in torch
        causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).triu(1)
        x = self.blocks(x, self.mem(memory), tgt_mask=causal, tgt_key_padding_mask=pad, tgt_is_causal=True)
        return self.norm(x) @ self.tok.weight.T

    def loss(self, memory: Tensor, ids: Tensor, lengths: Tensor) -> Tensor:
        """Mean next-token cross-entropy of right-padded ``BOS + text + EOS`` sequences (B, L) of ``lengths``."""
        length = ids.shape[1]
        valid = torch.arange(length, device=ids.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, L)
        logits = self(ids, memory, ~valid)[:, :-1]
        target = ids[:, 1:].masked_fill(~valid[:, 1:], IGNORE_INDEX)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX)

    @torch.no_grad()
    def generate(
        self,
        memory: Tensor,
        bos: int,
        eos: int,
        *,
        max_new_tokens: int = 64,
        mode: GenerateMode = "greedy",
        num_beams: int = 3,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int | None = None,
    ) -> list[list[int]]:
        """Token ids (without BOS/EOS) for each of the B memories (B, q_a, H_q); deterministic for a seed."""
        max_new = min(max_new_tokens, self.cfg.max_len - 1)
        if mode == "beam":
            return [self._beam(memory[i : i + 1], bos, eos, max_new, num_beams) for i in range(memory.shape[0])]
        gen = torch.Generator(device=memory.device)
        if seed is not None:
            gen.manual_seed(seed)
        else:
            gen.seed()
        b = memory.shape[0]
        ids = torch.full((b, 1), bos, dtype=torch.long, device=memory.device)
        done = torch.zeros(b, dtype=torch.bool, device=memory.device)
        for _ in range(max_new):
            logits = self(ids, memory)[:, -1]  # (B, V)
            if mode == "greedy":
                nxt = logits.argmax(-1)
            elif mode == "sample":
                probs = _top_p(torch.softmax(logits / max(temperature, 1e-5), dim=-1), top_p)
                nxt = torch.multinomial(probs, 1, generator=gen).squeeze(1)
            else:
                raise ValueError(f"unknown generation mode {mode!r}")
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            ids = torch.cat([ids, nxt.unsqueeze(1)], dim=1)
            done |= nxt == eos
            if bool(done.all()):
                break
        out = []
        for row in ids[:, 1:].tolist():
            out.append(row[: row.index(eos)] if eos in row else row)
        return out

    def _beam(self, memory: Tensor, bos: int, eos: int, max_new: int, beams: int) -> list[int]:
        """Beam search for one memory (1, q_a, H_q); scores are length-normalised log-probabilities."""
        alive: list[tuple[list[int], float]] = [([bos], 0.0)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(max_new):
            ids = torch.tensor([seq for seq, _ in alive], device=memory.device)
            logp = torch.log_softmax(self(ids, memory.expand(len(alive), -1, -1))[:, -1], dim=-1)  # (A, V)
            top = torch.topk(logp, beams, dim=-1)
            cands = [
                (alive[a][0] + [int(t)], alive[a][1] + float(v))
                for a in range(len(alive))
                for v, t in zip(top.values[a], top.indices[a], strict=True)
            ]
            cands.sort(key=lambda c: c[1], reverse=True)
            alive = []
            for seq, score in cands:
                if seq[-1] == eos:
                    finished.append((seq[1:-1], score / (len(seq) - 1)))
                else:
                    alive.append((seq, score))
                if len(alive) == beams:
                    break
            if not alive or len(finished) >= beams:
                break
        finished += [(seq[1:], score / max(len(seq) - 1, 1)) for seq, score in alive]
        return max(finished, key=lambda c: c[1])[0]


def _top_p(probs: Tensor, top_p: float) -> Tensor:
    """Zero the tail of each row beyond cumulative probability ``top_p`` (nucleus sampling): (B, V) → (B, V)."""
    if top_p >= 1.0:
        return probs
    sorted_p, idx = probs.sort(dim=-1, descending=True)
    keep = sorted_p.cumsum(-1) - sorted_p < top_p
    sorted_p = sorted_p * keep
    return torch.zeros_like(probs).scatter(-1, idx, sorted_p)


@dataclass
class Stage1Parts:
    """The trainable stage-1 networks of one config (``None`` where the config has none)."""

    config: Stage1Config
    qformer: QFormer | None
    align_head: AlignHead | None
    prompt: QueryPrompt | PooledPrompt | None
    text_decoder: TextDecoder | None
    llm_adapter: LLMAdapter | LoRAWeights | None = None

    def modules(self) -> dict[str, nn.Module]:
        """Checkpoint name → module, for the parts that exist."""
        names = ("qformer", "align_head", "prompt", "text_decoder", "llm_adapter")
        return {n: m for n in names if (m := getattr(self, n)) is not None}

    def attach_llm(self, llm: CausalLM) -> None:
        """Give the loaded LLM its LoRA adapter when the config has one (``lora_rank > 0``; else nothing)."""
        c = self.config
        if c.uses_lora and self.llm_adapter is None:
            kind = LoRAWeights if isinstance(llm, NativeCausalLM) else LLMAdapter  # native: inference only
            self.llm_adapter = kind(llm, c.lora_rank, c.lora_alpha, c.targets)

    def memory(self, audio: Tensor, mask: Tensor | None = None) -> Tensor:
        """Q-Former outputs: (B, T_a, D_a), (B, T_a) → (B, q_a, H_q)."""
        if self.qformer is None:
            raise AvitalkError("this stage-1 model has no Q-Former (use_qformer=false)")
        return self.qformer(audio, mask)

    def audio_prompt(self, audio: Tensor, mask: Tensor | None = None, memory: Tensor | None = None) -> Tensor:
        """Soft prompt of the LLM: (B, T_a, D_a) → (B, k, H_llm)."""
        if isinstance(self.prompt, PooledPrompt):
            return self.prompt(audio, mask)
        if self.prompt is None:
            raise AvitalkError("this stage-1 model has no LLM prompt (decoder=qformer)")
        return self.prompt(self.memory(audio, mask) if memory is None else memory)

    def embed(self, audio: Tensor, mask: Tensor | None = None) -> Tensor:
        """L2-normalised audio embedding (B, D): the contrastive space (``align_head`` of the mean query),
        or, without a Q-Former, the mean-pooled speech features."""
        if self.qformer is None or self.align_head is None:
            return F.normalize(masked_mean(audio, mask), dim=-1)
        return self.align_head(QFormer.pooled(self.qformer(audio, mask)))


def build_stage1(cfg: Stage1Config, *, llm_dim: int | None = None, vocab_size: int | None = None) -> Stage1Parts:
    """Build the trainable parts of ``cfg`` (``llm_dim`` for ``decoder="llm"``, ``vocab_size`` for ``"qformer"``)."""
    qformer = QFormer(cfg.qformer) if cfg.use_qformer else None
    head = AlignHead(cfg.qformer.hidden, cfg.text_dim, cfg.init_temperature) if cfg.use_qformer else None
    prompt: QueryPrompt | PooledPrompt | None = None
    decoder = None
    if cfg.decoder == "llm":
        if llm_dim is None:
            raise ValueError("decoder=llm needs llm_dim")
        if cfg.use_qformer:
            prompt = QueryPrompt(cfg.qformer.hidden, llm_dim, cfg.qformer.num_queries, cfg.prompt_tokens)
        else:
            prompt = PooledPrompt(cfg.audio_dim, llm_dim, cfg.direct_tokens)
    else:
        if vocab_size is None:
            raise ValueError("decoder=qformer needs vocab_size")
        decoder = TextDecoder(cfg.text_decoder, vocab_size, cfg.qformer.hidden)
    return Stage1Parts(cfg, qformer, head, prompt, decoder)


def contrastive_loss(audio: Tensor, text: Tensor, logit_scale: Tensor, max_logit_scale: float) -> tuple[Tensor, Tensor]:
    """Symmetric InfoNCE over in-batch negatives (paper eq. 6) and the audio→text retrieval accuracy.

    Args:
        audio: (B, D) L2-normalised audio embeddings; text: (B, D) L2-normalised instruction embeddings.
        logit_scale: scalar log inverse temperature (clamped to ``max_logit_scale``).

    Returns:
        ``(loss, r1)``: scalar loss and the fraction of clips whose own instruction is the nearest.
    """
    logits = logit_scale.clamp(max=max_logit_scale).exp() * audio @ text.T  # (B, B)
    target = torch.arange(len(audio), device=audio.device)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    return loss, (logits.argmax(1) == target).float().mean()


def tokenize_targets(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Token ids of each instruction (no special tokens), truncated to ``max_tokens``, + EOS."""
    eos = int(tokenizer.eos_token_id)
    return [[*list(tokenizer(t, add_special_tokens=False)["input_ids"])[:max_tokens], eos] for t in texts]


class PrefixCache:
    """Frozen-LLM keys/values of ``BOS + PROMPT_TEMPLATES[i]`` (computed on first use, then reused).

    With ``adapter`` (LoRA on the LLM) nothing is cached: the keys/values are recomputed through the
    adapter on every :meth:`get`, with gradients when they are enabled.
    """

    def __init__(self, llm: CausalLM, adapter: nn.Module | None = None) -> None:
        self.llm, self.adapter = llm, adapter
        self._kv: dict[int, list[tuple[Tensor, Tensor]]] = {}
        self._len: dict[int, int] = {}

    def prefix_ids(self, template_id: int) -> list[int]:
        bos = self.llm.bos_token_id
        return ([bos] if bos is not None else []) + self.llm.tokenize(PROMPT_TEMPLATES[template_id])

    def get(self, template_id: int) -> tuple[list[tuple[Tensor, Tensor]], int]:
        """Per-layer ``(keys, values)`` of shape (1, heads, P, head_dim) and the prefix length P."""
        if self.adapter is not None:
            return self._compute(template_id, self.adapter)
        if template_id not in self._kv:
            with torch.no_grad():
                self._kv[template_id], self._len[template_id] = self._compute(template_id, self.llm.model)
        return self._kv[template_id], self._len[template_id]

    def _compute(self, template_id: int, run: Any) -> tuple[list[tuple[Tensor, Tensor]], int]:
        ids = torch.tensor([self.prefix_ids(template_id)], device=self.llm.device)
        out = run(inputs_embeds=self.llm.embed(ids), use_cache=True)
        return [(layer.keys, layer.values) for layer in out.cache.layers], ids.shape[1]


def llm_prompt_loss(
    llm: CausalLM, prefix: PrefixCache, template_id: int, audio_prompt: Tensor, targets: Sequence[Sequence[int]]
) -> Tensor:
    """Next-token loss of the instructions given ``BOS + template + audio prompt`` (projection phase).

    The cached prefix keys/values are reused (one template per batch), so the LLM only runs over the
    audio prompt and the right-padded targets; the result equals the loss of the full sequence. With
    a LoRA adapter (``prefix.adapter``) the LLM runs through it and gradients reach it too.

    Args:
        llm: the frozen LLM; prefix: its :class:`PrefixCache`; template_id: the batch's template.
        audio_prompt: (B, k, H_llm) soft prompt (gradients flow back through it).
        targets: B token-id lists (each ending with EOS), see :func:`tokenize_targets`.

    Returns:
        Scalar mean cross-entropy over the target tokens.
    """
    from transformers import DynamicCache

    b, k, _ = audio_prompt.shape
    device = audio_prompt.device
    kv, plen = prefix.get(template_id)
    cache = DynamicCache(
        ddp_cache_data=[(key.expand(b, -1, -1, -1), val.expand(b, -1, -1, -1)) for key, val in kv],
        config=llm.model.config,
    )
    longest = max(len(t) for t in targets)
    pad = llm.tokenizer.pad_token_id
    ids = torch.full((b, longest), pad, dtype=torch.long, device=device)
    labels = torch.full((b, k + longest), IGNORE_INDEX, dtype=torch.long, device=device)
    mask = torch.zeros(b, plen + k + longest, dtype=torch.long, device=device)
    mask[:, : plen + k] = 1
    for i, t in enumerate(targets):
        ids[i, : len(t)] = torch.tensor(t, device=device)
        labels[i, k : k + len(t)] = ids[i, : len(t)]
        mask[i, plen + k : plen + k + len(t)] = 1
    embeds = torch.cat([audio_prompt.to(llm.dtype), llm.embed(ids)], dim=1)  # (B, k + L, H)
    run = prefix.adapter if prefix.adapter is not None else llm.model
    out = run(inputs_embeds=embeds, attention_mask=mask, cache=cache, use_cache=True)
    logits = out.logits[:, :-1].float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
