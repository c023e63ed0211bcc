"""A BERT encoder in plain PyTorch for the default text encoder (all-MiniLM-L6-v2), no ``transformers``.

Why our own: the text encoder is needed by every ``avitalk animate`` run, and importing
``transformers``' BERT costs about 3.5 s on 2 CPU cores (``transformers`` + ``torch._dynamo``), a
quarter of the issue #7 budget for a fresh process, while the forward pass is thirty lines.
:class:`BertEncoderNet` keeps ``transformers``' ``BertModel`` parameter names, reads the same
``model.safetensors`` and returns the same ``last_hidden_state`` (tests/test_native_backends.py compares
the two to 1e-5). Any other architecture (``hf:PATH``, ``clip:PATH``) still goes through ``transformers``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avitalk.errors import AvitalkError
from avitalk.torchinit import skip_init

__all__ = ["BertConfig", "BertEncoderNet", "load_native_bert", "native_bert_supported"]


@dataclass(frozen=True)
class BertConfig:
    """The ``config.json`` fields a BERT encoder forward needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BertConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def native_bert_supported(config: dict[str, Any]) -> bool:
    """True for a plain BERT (absolute positions, GELU) that :class:`BertEncoderNet` reproduces exactly."""
    return (
        config.get("model_type") == "bert"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and config.get("hidden_act", "gelu") == "gelu"
        and not config.get("is_decoder", False)
    )


class _Embeddings(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, ids: Tensor, types: Tensor) -> Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.token_type_embeddings(types) + self.position_embeddings(pos)
        return self.LayerNorm(x)  # (B, L, D)


class _Layer(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        d = c.hidden_size
        self.heads = c.num_attention_heads
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        self.attention.self.query = nn.Linear(d, d)
        self.attention.self.key = nn.Linear(d, d)
        self.attention.self.value = nn.Linear(d, d)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(d, d)
        self.attention.output.LayerNorm = nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(d, c.intermediate_size)
        self.output = nn.Module()
        self.output.dense = nn.Linear(c.intermediate_size, d)
        self.output.LayerNorm = nn.LayerNorm(d, eps=c.layer_norm_eps)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        b, n, d = x.shape
        att = self.attention.self

        def split(t: Tensor) -> Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # (B, h, L, d_h)

        q, k, v = split(att.query(x)), split(att.key(x)), split(att.value(x))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep).transpose(1, 2).reshape(b, n, d)
        x = self.attention.output.LayerNorm(x + self.attention.output.dense(a))
        h = self.output.dense(F.gelu(self.intermediate.dense(x)))
        return self.output.LayerNorm(x + h)


class BertEncoderNet(nn.Module):
    """BERT encoder with ``BertModel``'s parameter names (``embeddings.*``, ``encoder.layer.N.*``).

    ``forward(input_ids, attention_mask, token_type_ids)`` returns an object with ``last_hidden_state``
    ``(B, L, D)`` like ``BertModel``; ``config`` holds ``hidden_size`` and ``max_position_embeddings``.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = SimpleNamespace(**config.__dict__)
        self.embeddings = _Embeddings(config)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> SimpleNamespace:
        """``(B, L)`` ids (and mask, token types) → ``last_hidden_state`` ``(B, L, D)``."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        keep = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, L): padded keys are never attended
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.encoder.layer:
            x = layer(x, keep)
        return SimpleNamespace(last_hidden_state=x)


def load_native_bert(path: str | Path) -> BertEncoderNet:
    """A :class:`BertEncoderNet` with the weights of a Hugging Face BERT directory (strictly loaded).

    Raises:
        AvitalkError: not a supported BERT, or weights that do not match its config.
    """
    from safetensors.torch import load_file

    p = Path(path)
    config = json.loads((p / "config.json").read_text())
    if not native_bert_supported(config):
        raise AvitalkError(f"{p}: not a plain BERT encoder (model_type {config.get('model_type')!r})")
    with skip_init():  # every weight comes from the checkpoint below
        net = BertEncoderNet(BertConfig.from_dict(config))
    raw = load_file(str(p / "model.safetensors"))
    prefix = "bert." if any(k.startswith("bert.") for k in raw) else ""
    state = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}
    state = {k: v for k, v in state.items() if k in net.state_dict()}  # the pooler / heads are unused
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise AvitalkError(f"{p}: weights do not match a BERT encoder: {str(e).splitlines()[0]}") from None
    return net.requires_grad_(False).eval()
