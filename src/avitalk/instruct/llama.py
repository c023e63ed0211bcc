"""A LLaMA decoder in plain PyTorch for stage-1 *inference*, with a KV cache and our own decoding loop.

Why our own: ``avitalk animate`` must finish a 10 s clip in 15 s in a fresh process (issue #7), and
importing ``transformers``' LLaMA (with ``torch._dynamo``, which its masking code imports) costs about
3.5 s of that on 2 CPU cores; ``generate`` also spends a noticeable share of each step of a 135M model
in Python bookkeeping. The architecture is small and fixed: RMSNorm, rotary positions (default
scaling), grouped-query attention, SwiGLU. :class:`LlamaLM` keeps ``LlamaForCausalLM``'s parameter
names (``model.layers.N.self_attn.q_proj`` ...), so the same ``model.safetensors`` and the same LoRA
target names apply, and tests/test_native_backends.py checks its logits and decoded texts against
``transformers``. Training keeps the ``transformers`` model (``peft`` LoRA, its cache classes); any
config this module does not reproduce exactly (``rope_scaling``, biases, other architectures) loads
through ``transformers`` too (:func:`native_llama_supported`).

Decoding (:func:`generate_ids`) follows ``transformers``' semantics: greedy is the arg-max;
``sample`` applies temperature, then nucleus (top-p) filtering, and draws with ``torch.multinomial``
from the global RNG (seed it); ``beam`` scores finished hypotheses by summed log-probability over
generated length (length penalty 1) and stops once ``num_beams`` hypotheses are done (early stopping).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avitalk.errors import AvitalkError
from avitalk.instruct.draft import NgramDraft
from avitalk.torchinit import skip_init

__all__ = ["LlamaConfig", "LlamaLM", "generate_ids", "load_native_llama", "native_llama_supported"]

KV = list[tuple[Tensor, Tensor]]
"""Per-layer ``(keys, values)``, each ``(B, kv_heads, T, head_dim)``."""


@dataclass(frozen=True)
class LlamaConfig:
    """The ``config.json`` fields of a LLaMA forward pass."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LlamaConfig:
        heads = int(d["num_attention_heads"])
        rope = d.get("rope_parameters") or {}
        return cls(
            vocab_size=int(d["vocab_size"]),
            hidden_size=int(d["hidden_size"]),
            intermediate_size=int(d["intermediate_size"]),
            num_hidden_layers=int(d["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(d.get("num_key_value_heads") or heads),
            head_dim=int(d.get("head_dim") or int(d["hidden_size"]) // heads),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope.get("rope_theta", d.get("rope_theta", 10000.0))),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
        )


def native_llama_supported(config: dict[str, Any]) -> bool:
    """True when :class:`LlamaLM` computes exactly what ``LlamaForCausalLM`` computes for ``config``."""
    rope = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    return (
        config.get("model_type") == "llama"
        and config.get("hidden_act", "silu") == "silu"
        and not config.get("attention_bias", False)
        and not config.get("mlp_bias", False)
        and rope.get("rope_type", "default") == "default"
        and scaling.get("rope_type", scaling.get("type", "default")) == "default"
        and int(config.get("pretraining_tp", 1)) == 1
    )


class RMSNorm(nn.Module):
    """``weight * x / rms(x)``, computed in float32 and cast back (as LLaMA does)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _Attention(nn.Module):
    def __init__(self, c: LlamaConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.num_attention_heads * c.head_dim, c.hidden_size, bias=False)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, keep: Tensor, past: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, h, n, d)
        k = self.k_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, h_kv, n, d)
        v = self.v_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, n, d)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        group = self.heads // self.kv_heads
        kk = k.repeat_interleave(group, dim=1) if group > 1 else k  # (B, h, T, d)
        vv = v.repeat_interleave(group, dim=1) if group > 1 else v
        a = F.scaled_dot_product_attention(q, kk, vv, attn_mask=keep)  # (B, h, n, d)
        return self.o_proj(a.transpose(1, 2).reshape(b, n, -1)), (k, v)


class _Layer(nn.Module):
    def __init__(self, c: LlamaConfig) -> None:
        super().__init__()
        self.self_attn = _Attention(c)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.mlp.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.mlp.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, keep: Tensor, past: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        a, kv = self.self_attn(self.input_layernorm(x), cos, sin, keep, past)
        x = x + a
        h = self.post_attention_layernorm(x)
        m = self.mlp
        return x + m.down_proj(F.silu(m.gate_proj(h)) * m.up_proj(h)), kv


class LlamaLM(nn.Module):
    """LLaMA causal LM with ``LlamaForCausalLM``'s parameter names, driven by input embeddings.

    ``forward(inputs_embeds (B, n, H), key_mask (B, T) bool, positions (B, n), past)`` returns logits
    ``(B, n, V)`` (``(B, 1, V)`` of the last position with ``last_only``) and the new cache;
    ``T = past length + n``; ``key_mask`` marks real (non-padding) positions of the whole sequence so far.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.model.layers = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))
        self.model.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        d = config.head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float) / d))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens  # type: ignore[return-value]

    def forward(
        self,
        inputs_embeds: Tensor,
        key_mask: Tensor,
        positions: Tensor,
        past: KV | None = None,
        last_only: bool = False,
    ) -> tuple[Tensor, KV]:
        x = inputs_embeds
        n = x.shape[1]
        total = key_mask.shape[1]
        freqs = positions[..., None].float() * self.inv_freq.to(x.device)  # (B, n, d/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)  # (B, n, d)
        q_pos = torch.arange(total - n, total, device=x.device)[:, None]  # (n, 1)
        causal = torch.arange(total, device=x.device)[None, :] <= q_pos  # (n, T)
        keep = causal[None] & key_mask[:, None, :].bool()  # (B, n, T)
        # a padding query sees nothing: let it see itself so its (ignored) output stays finite
        keep = keep | (torch.arange(total, device=x.device)[None, None, :] == q_pos[None])
        keep = keep[:, None]  # (B, 1, n, T)
        new: KV = []
        layers: Any = self.model.layers
        for i, layer in enumerate(layers):
            x, kv = layer(x, cos, sin, keep, past[i] if past is not None else None)
            new.append(kv)
        norm: Any = self.model.norm
        if last_only:  # decoding needs the next-token logits only (a prompt's full logits are L x vocab)
            x = x[:, -1:]
        return self.lm_head(norm(x)), new


def load_native_llama(path: str | Path, dtype: torch.dtype = torch.float32) -> LlamaLM:
    """A :class:`LlamaLM` with the weights of a Hugging Face LLaMA directory (strictly loaded).

    Raises:
        AvitalkError: not a LLaMA this module reproduces, or weights that do not match its config.
    """
    from safetensors.torch import load_file

    p = Path(path)
    raw = json.loads((p / "config.json").read_text())
    if not native_llama_supported(raw):
        raise AvitalkError(f"{p}: not a plain LLaMA model (model_type {raw.get('model_type')!r})")
    with skip_init():  # every weight comes from the checkpoint below
        net = LlamaLM(LlamaConfig.from_dict(raw))
    files = sorted(p.glob("model*.safetensors"))
    if not files:
        raise AvitalkError(f"{p}: no model*.safetensors")
    state: dict[str, Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    if net.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    expected = {k for k in net.state_dict() if not (net.config.tie_word_embeddings and k == "lm_head.weight")}
    missing, extra = expected - set(state), set(state) - expected
    if missing or extra:
        what = "missing" if missing else "unexpected"
        raise AvitalkError(f"{p}: weights do not match the LLaMA config ({what}: {sorted(missing or extra)[:3]})")
    net.load_state_dict(state, strict=False)  # lm_head is tied to embed_tokens when the config says so
    return net.to(dtype).requires_grad_(False).eval()


# ------------------------------------------------------------------------------------------- decoding


@torch.no_grad()
def generate_ids(
    model: LlamaLM,
    inputs_embeds: Tensor,
    attention_mask: Tensor,
    *,
    eos_token_id: int,
    max_new_tokens: int,
    mode: str = "greedy",
    num_beams: int = 4,
    temperature: float = 0.7,
    top_p: float = 0.9,
    draft: NgramDraft | None = None,
    draft_tokens: int = 8,
) -> list[list[int]]:
    """Generated token ids per prompt (EOS not included).

    Args:
        inputs_embeds: (B, L, H) left-padded prompt embeddings; attention_mask: (B, L) 1 on real positions.
        mode: ``"greedy"``, ``"beam"`` or ``"sample"`` (the RNG is the global one: seed it first).
        draft: with ``mode="greedy"`` and one prompt, decode speculatively: each pass scores up to
            ``draft_tokens`` tokens the draft guesses and keeps those equal to the arg-max (the greedy
            text, in fewer passes; :mod:`avitalk.instruct.draft`). Ignored otherwise.
    """
    mask = attention_mask.bool()
    embeds = inputs_embeds.to(model.lm_head.weight.dtype)
    if mode == "greedy" and draft is not None and embeds.shape[0] == 1 and draft_tokens > 0:
        return [_speculative_greedy(model, embeds, mask, eos_token_id, max_new_tokens, draft, draft_tokens)]
    if mode == "beam" and num_beams > 1:
        return [_beam(model, embeds[i : i + 1], mask[i : i + 1], eos_token_id, max_new_tokens, num_beams)
                for i in range(embeds.shape[0])]  # fmt: skip
    if mode not in ("greedy", "sample", "beam"):
        raise ValueError(f"unknown generation mode {mode!r}")
    b = embeds.shape[0]
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    logits, past = model(embeds, mask, positions, last_only=True)
    out: list[list[int]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool, device=embeds.device)
    embed = model.get_input_embeddings()
    for _ in range(max_new_tokens):
        scores = logits[:, -1].float()  # (B, V)
        if mode == "sample":
            nxt = torch.multinomial(_nucleus(scores / temperature, top_p).softmax(-1), 1)[:, 0]
        else:
            nxt = scores.argmax(-1)
        for i in range(b):
            if not done[i] and int(nxt[i]) != eos_token_id:
                out[i].append(int(nxt[i]))
        done |= nxt == eos_token_id
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones(b, 1, dtype=torch.bool, device=mask.device)], dim=1)
        positions = positions[:, -1:] + 1
        logits, past = model(embed(nxt[:, None]), mask, positions, past)
    return out


def _speculative_greedy(
    model: LlamaLM, embeds: Tensor, mask: Tensor, eos: int, max_new: int, draft: NgramDraft, k: int
) -> list[int]:
    """Greedy decoding of one prompt, (1, L, H) and (1, L), verifying draft tokens in batches.

    Each pass feeds the last committed token plus up to ``k`` drafted ones; ``logits[j]`` is the
    model's choice after input ``j``, so drafted tokens are committed while they equal those choices,
    then the model's own choice at the first mismatch. The cache and mask are cut back to the
    committed tokens (rejected positions never influence later ones: attention is causal).
    """
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    logits, past = model(embeds, mask, positions, last_only=True)
    nxt = int(logits[0, -1].float().argmax())
    last = int(positions[0, -1])
    out: list[int] = []
    embed = model.get_input_embeddings()
    while nxt != eos and len(out) < max_new:
        out.append(nxt)
        if len(out) >= max_new:
            break
        guess = draft.propose(out, min(k, max_new - len(out)))
        feed = torch.tensor([[nxt, *guess]], device=embeds.device)  # (1, n)
        n = feed.shape[1]
        mask = torch.cat([mask, torch.ones(1, n, dtype=torch.bool, device=mask.device)], dim=1)
        step_pos = torch.arange(last + 1, last + 1 + n, device=embeds.device)[None]
        logits, past = model(embed(feed), mask, step_pos, past)
        choice = logits[0].float().argmax(-1).tolist()  # (n,): the model's token after each fed one
        taken = 0
        while taken < len(guess) and guess[taken] == choice[taken] and guess[taken] != eos:
            out.append(guess[taken])
            taken += 1
        nxt = choice[taken]
        if taken < len(guess) and guess[taken] == choice[taken]:  # a drafted EOS the model agrees with
            break
        keep = mask.shape[1] - (len(guess) - taken)
        mask = mask[:, :keep]
        past = [(key[:, :, :keep], val[:, :, :keep]) for key, val in past]
        last += 1 + taken
    return out


def _nucleus(logits: Tensor, top_p: float) -> Tensor:
    """Logits with the tokens outside the top-``top_p`` probability mass set to -inf (at least one kept)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=False)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    remove = cum <= 1 - top_p
    remove[..., -1:] = False
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def _beam(model: LlamaLM, embeds: Tensor, mask: Tensor, eos: int, max_new: int, k: int) -> list[int]:
    """Beam search for one prompt: (1, L, H), (1, L) → best hypothesis' ids."""
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    logits, past = model(embeds, mask, positions, last_only=True)
    last = int(positions[0, -1])
    logp = logits[:, -1].float().log_softmax(-1)  # (1, V)
    vocab = logp.shape[-1]
    beams: list[list[int]] = [[]]
    scores = torch.zeros(1, device=embeds.device)
    finished: list[tuple[float, list[int]]] = []
    embed = model.get_input_embeddings()
    for step in range(max_new):
        total = (scores[:, None] + logp).reshape(-1)  # (n_beams * V)
        top, idx = total.topk(min(2 * k, total.numel()))
        keep_rows: list[int] = []
        keep_tok: list[int] = []
        keep_score: list[float] = []
        for rank, (s, j) in enumerate(zip(top.tolist(), idx.tolist(), strict=True)):
            row, tok = divmod(j, vocab)
            if tok == eos:
                if rank < k:  # an EOS counts only among the k best candidates
                    finished.append((s / (step + 1), beams[row]))
                continue
            keep_rows.append(row)
            keep_tok.append(tok)
            keep_score.append(s)
            if len(keep_rows) == k:
                break
        if len(finished) >= k or not keep_rows:
            break
        beams = [beams[r] + [t] for r, t in zip(keep_rows, keep_tok, strict=True)]
        scores = torch.tensor(keep_score, device=embeds.device)
        rows = torch.tensor(keep_rows, device=embeds.device)
        past = [(key[rows], val[rows]) for key, val in past]
        ones = torch.ones(len(rows), 1, dtype=torch.bool, device=mask.device)
        mask = torch.cat([mask[:1].expand(len(rows), -1), ones], dim=1)
        positions = torch.full((len(rows), 1), last + step + 1, device=embeds.device)
        logits, past = model(embed(torch.tensor(keep_tok, device=embeds.device)[:, None]), mask, positions, past)
        logp = logits[:, -1].float().log_softmax(-1)
    if len(finished) < k:  # ran out of tokens: the open beams compete too
        finished += [(s / max(len(b), 1), b) for s, b in zip(scores.tolist(), beams, strict=True)]
    return max(finished, key=lambda f: f[0])[1]
