"""Style encoder: a transformer over ``S`` reference frames of one clip -> style embedding ``z``.

The reference frames come from the same clip as the predicted window but outside it
(:func:`avitalk.motion.sampling.reference_indices`), so ``z`` can carry the talking style (emotion,
intensity, idiosyncrasies) but not the lip shapes of the frames to predict (paper §3.4).

Shapes: motion ``(B, S, D)`` in any motion space -> ``z`` ``(B, style_dim)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avitalk.motion.config import StyleEncoderConfig
from avitalk.motion.transformer import Block, combine_masks, padding_mask, sinusoidal


class StyleEncoder(nn.Module):
    """``(B, S, D)`` reference frames (+ optional validity mask) -> ``z`` ``(B, style_dim)``.

    A learned summary token is prepended; its final state, projected to ``style_dim`` (and
    standardised per sample when ``cfg.normalize``), is ``z``.
    """

    def __init__(self, cfg: StyleEncoderConfig, motion_dim: int, style_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.motion_dim = motion_dim
        self.style_dim = style_dim
        e = cfg.n_embd
        self.in_proj = nn.Linear(motion_dim, e)
        self.summary = nn.Parameter(torch.zeros(1, 1, e))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(e, cfg.n_head, cfg.dropout) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(e)
        self.head = nn.Linear(e, style_dim)
        nn.init.normal_(self.summary, std=0.02)

    def forward(self, frames: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Encode reference frames.

        Args:
            frames: ``(B, S, D)`` motion values, time-sorted.
            valid: ``(B, S)`` bool, True at real frames (for padded batches); None = all real.

        Returns:
            ``(B, style_dim)`` style embedding ``z``.
        """
        b, s, d = frames.shape
        if d != self.motion_dim:
            raise ValueError(f"style encoder expects {self.motion_dim} motion channels, got {d}")
        x = self.in_proj(frames)  # (B, S, E)
        if self.cfg.positional:
            x = x + sinusoidal(torch.arange(s, device=frames.device), x.shape[-1]).to(x.dtype)  # (B, S, E)
        x = torch.cat([self.summary.expand(b, 1, -1), x], dim=1)  # (B, 1+S, E)
        x = self.drop(x)
        mask = None
        if valid is not None:
            valid = torch.cat([valid.new_ones(b, 1), valid], dim=1)  # (B, 1+S)
            mask = combine_masks(s + 1, padding_mask(valid))  # (B, 1, 1+S, 1+S)
        for block in self.blocks:
            x = block(x, mask)  # (B, 1+S, E)
        z = self.head(self.ln_f(x[:, 0]))  # (B, style_dim)
        if self.cfg.normalize:
            z = F.layer_norm(z, (self.style_dim,))
        return z
