"""Audio Q-Former (BLIP-2 / Perceiver style) summarising speech features into a fixed set of queries.

Paper §3.3: ``q_a`` learnable query vectors attend to the speech encoder's frame features and become
the audio prompt. Each layer is pre-norm [self-attention over the queries → cross-attention from the
queries to the speech frames (padding frames masked out) → feed-forward], so the output shape
(B, q_a, H_q) does not depend on the clip length. :meth:`QFormer.pooled` gives the mean query used for
the contrastive alignment with instruction text (paper eq. 6).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["QFormer", "QFormerConfig", "QFormerLayer"]


@dataclass(frozen=True)
class QFormerConfig:
    """Q-Former hyper-parameters.

    Attributes:
        audio_dim: D_a, width of the speech features.
        hidden: H_q, width of the queries.
        num_queries: q_a, number of learnable queries.
        layers: number of [self-attn, cross-attn, FFN] blocks.
        heads: attention heads (must divide ``hidden``).
        ffn_mult: FFN inner width as a multiple of ``hidden``.
        dropout: dropout inside attention and FFN.
    """

    audio_dim: int = 384
    hidden: int = 256
    num_queries: int = 32
    layers: int = 4
    heads: int = 8
    ffn_mult: int = 4
    dropout: float = 0.1

    @classmethod
    def tiny(cls, audio_dim: int = 384) -> QFormerConfig:
        """Small preset for tests and CPU smoke runs."""
        return cls(audio_dim=audio_dim, hidden=64, num_queries=8, layers=2, heads=4, ffn_mult=2, dropout=0.0)

    @classmethod
    def default(cls, audio_dim: int = 384) -> QFormerConfig:
        """Preset used for training (32 queries, 4 layers, width 256)."""
        return cls(audio_dim=audio_dim)


class QFormerLayer(nn.Module):
    """One pre-norm block: query self-attention, cross-attention to audio, FFN (all residual)."""

    def __init__(self, cfg: QFormerConfig) -> None:
        super().__init__()
        h = cfg.hidden
        self.norm_self = nn.LayerNorm(h)
        self.self_attn = nn.MultiheadAttention(h, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.norm_cross = nn.LayerNorm(h)
        self.cross_attn = nn.MultiheadAttention(h, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.norm_ffn = nn.LayerNorm(h)
        self.ffn = nn.Sequential(
            nn.Linear(h, cfg.ffn_mult * h),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.ffn_mult * h, h),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, q: Tensor, mem: Tensor, mem_pad: Tensor | None) -> Tensor:
        """Update the queries.

        Args:
            q: (B, q_a, H_q) queries.
            mem: (B, T_a, H_q) projected audio features.
            mem_pad: (B, T_a) bool, True on padding frames (ignored by cross-attention), or ``None``.

        Returns:
            (B, q_a, H_q) updated queries.
        """
        x = self.norm_self(q)
        q = q + self.drop(self.self_attn(x, x, x, need_weights=False)[0])
        x = self.norm_cross(q)
        q = q + self.drop(self.cross_attn(x, mem, mem, key_padding_mask=mem_pad, need_weights=False)[0])
        return q + self.drop(self.ffn(self.norm_ffn(q)))


class QFormer(nn.Module):
    """Learnable queries that read speech features: (B, T_a, D_a) → (B, q_a, H_q)."""

    def __init__(self, cfg: QFormerConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or QFormerConfig()
        if cfg.hidden % cfg.heads:
            raise ValueError(f"hidden ({cfg.hidden}) must be divisible by heads ({cfg.heads})")
        self.queries = nn.Parameter(torch.randn(cfg.num_queries, cfg.hidden) * 0.02)
        self.audio_in = nn.Sequential(nn.LayerNorm(cfg.audio_dim), nn.Linear(cfg.audio_dim, cfg.hidden))
        self.layers = nn.ModuleList(QFormerLayer(cfg) for _ in range(cfg.layers))
        self.norm_out = nn.LayerNorm(cfg.hidden)

    def forward(self, audio: Tensor, audio_mask: Tensor | None = None) -> Tensor:
        """Summarise a batch of speech feature sequences.

        Args:
            audio: (B, T_a, D_a) speech encoder features.
            audio_mask: (B, T_a) bool/int, True/1 on **valid** frames; ``None`` means all valid.
                Padding frames do not influence the output.

        Returns:
            (B, q_a, H_q) query outputs, independent of T_a.
        """
        b = audio.shape[0]
        mem = self.audio_in(audio)
        mem_pad = None
        if audio_mask is not None:
            mem_pad = ~audio_mask.to(torch.bool)
            if bool(mem_pad.all(dim=1).any()):
                raise ValueError("every clip needs at least one valid audio frame")
        q = self.queries.unsqueeze(0).expand(b, -1, -1)
        for layer in self.layers:
            q = layer(q, mem, mem_pad)
        return self.norm_out(q)

    @staticmethod
    def pooled(out: Tensor) -> Tensor:
        """Mean over queries for contrastive alignment (paper eq. 6): (B, q_a, H_q) → (B, H_q)."""
        return out.mean(dim=1)
