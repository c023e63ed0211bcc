"""Talking generator: speech-content features + style embedding ``z`` -> motion, all frames at once.

Non-autoregressive: a transformer encoder over time (sinusoidal positions, so any ``T`` works; an
optional band mask keeps attention local), with ``z`` added to every frame and modulating every
block's layer norms (FiLM / adaptive layer norm). Content features must already be at the motion
frame rate (:func:`avitalk.rates.resample_features`).

Shapes: content ``(B, T, C)`` + ``z`` ``(B, style_dim)`` -> motion ``(B, T, D)`` in the config's space.
``z`` may also be per frame, ``(B, T, style_dim)`` (time-varying instructions, :mod:`avitalk.motion.timeline`):
every frame is then styled by its own ``z`` (added and FiLM-modulated per frame); with all frames equal
this gives the constant-``z`` result (to float rounding).
"""

from __future__ import annotations

import torch
from torch import nn

from avitalk.motion.config import GeneratorConfig
from avitalk.motion.transformer import Block, band_mask, combine_masks, padding_mask, sinusoidal


def _block_per_frame(block: Block, x: torch.Tensor, mask: torch.Tensor | None, cond: torch.Tensor) -> torch.Tensor:
    """:meth:`Block.forward` with a per-frame condition ``cond`` ``(B, T, cond_dim)`` (FiLM per frame).

    ``x`` ``(B, T, E)`` -> ``(B, T, E)``; the same arithmetic as ``Block.forward`` with ``(B, cond_dim)``.
    """
    h1 = block.ln_1(x)
    s1 = b1 = s2 = b2 = None
    if block.film is not None:
        s1, b1, s2, b2 = block.film(cond).chunk(4, dim=-1)  # 4 x (B, T, E)
        h1 = h1 * (1 + s1) + b1
    x = x + block.attn(h1, mask)
    h2 = block.ln_2(x)
    if block.film is not None:
        h2 = h2 * (1 + s2) + b2
    return x + block.mlp(h2)


class TalkingGenerator(nn.Module):
    """``(B, T, C)`` content + ``(B, style_dim)`` or ``(B, T, style_dim)`` style -> ``(B, T, D)`` motion."""

    def __init__(self, cfg: GeneratorConfig, content_dim: int, style_dim: int, motion_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.content_dim = content_dim
        self.style_dim = style_dim
        self.motion_dim = motion_dim
        e = cfg.n_embd
        self.in_norm = nn.LayerNorm(content_dim)  # speech features have encoder-specific scales
        self.in_proj = nn.Linear(content_dim, e)
        self.style_proj = nn.Linear(style_dim, e)
        self.drop = nn.Dropout(cfg.dropout)
        film_dim = style_dim if cfg.film else 0
        self.blocks = nn.ModuleList(Block(e, cfg.n_head, cfg.dropout, film_dim) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(e)
        self.head = nn.Linear(e, motion_dim)

    def forward(self, content: torch.Tensor, z: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Generate motion for every frame of ``content``.

        Args:
            content: ``(B, T, C)`` speech-content features at the motion fps.
            z: ``(B, style_dim)`` style embedding, or ``(B, T, style_dim)`` one per frame.
            valid: ``(B, T)`` bool, True at real frames of a padded batch; None = all real. Outputs at
                padded frames are finite but meaningless (mask them in the loss).

        Returns:
            ``(B, T, D)`` motion in the normalisation the generator was trained on.
        """
        b, t, c = content.shape
        if c != self.content_dim:
            raise ValueError(f"generator expects {self.content_dim}-d content features, got {c}")
        per_frame = z.dim() == 3
        if z.shape not in ((b, self.style_dim), (b, t, self.style_dim)):
            raise ValueError(
                f"generator expects z of shape ({b}, {self.style_dim}) or ({b}, {t}, {self.style_dim}), "
                f"got {tuple(z.shape)}"
            )
        x = self.in_proj(self.in_norm(content))  # (B, T, E)
        x = x + sinusoidal(torch.arange(t, device=content.device), x.shape[-1]).to(x.dtype)  # (B, T, E)
        style = self.style_proj(z)  # (B, E) or (B, T, E)
        x = self.drop(x + (style if per_frame else style[:, None]))  # (B, T, E)
        band = band_mask(t, self.cfg.attn_window, content.device) if self.cfg.attn_window > 0 else None  # (T, T)
        mask = combine_masks(t, band, padding_mask(valid))  # (B|1, 1|., T, T) or None
        cond = z if self.cfg.film else None
        for block in self.blocks:
            x = _block_per_frame(block, x, mask, z) if per_frame else block(x, mask, cond)  # (B, T, E)
        return self.head(self.ln_f(x))  # (B, T, D)
