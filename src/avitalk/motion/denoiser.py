"""Diffusion prior denoiser (paper eq. 7): a decoder-only transformer that predicts the clean style
embedding ``z_0`` from its noised version ``z_t``, the timestep ``t`` and the aligned instruction
feature ``c``.

Tokens, in order, under a causal mask (DALL·E 2's prior layout)::

    [ cond: proj(c or learned null) | time: MLP(sinusoid(t)) | noised: proj(z_t) ]  -> out[-1] -> z0_hat

The module only predicts: the schedule, the loss (:func:`avitalk.motion.losses.diffusion_x0_loss`,
which also applies condition dropout) and the sampler (:func:`avitalk.diffusion.sample`) live elsewhere.
For classifier-free guidance the *unconditional* input is :meth:`PriorDenoiser.null_cond` — a plain
``(1, style_dim)`` tensor, so it passes through :func:`avitalk.diffusion.sample` like any condition.
"""

from __future__ import annotations

import torch
from torch import nn

from avitalk.diffusion import NoiseSchedule, sample
from avitalk.motion.config import DenoiserConfig
from avitalk.motion.transformer import Block, causal_mask, sinusoidal

N_TOKENS = 3


class PriorDenoiser(nn.Module):
    """``(z_t (B, Dz), t (B,), c (B, Dz) | None, cond_mask (B,) | None)`` -> ``z0_hat`` ``(B, Dz)``.

    Attributes:
        null: ``(style_dim,)`` learned null condition, used where there is no condition.
    """

    def __init__(self, cfg: DenoiserConfig, style_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.style_dim = style_dim
        e = cfg.n_embd
        self.null = nn.Parameter(torch.zeros(style_dim))
        self.cond_proj = nn.Sequential(nn.LayerNorm(style_dim), nn.Linear(style_dim, e))
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.x_proj = nn.Linear(style_dim, e)
        self.pos = nn.Parameter(torch.zeros(N_TOKENS, e))
        self.blocks = nn.ModuleList(Block(e, cfg.n_head, cfg.dropout) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(e)
        self.head = nn.Linear(e, style_dim)
        nn.init.normal_(self.null, std=1.0)  # on the scale of standardised c
        nn.init.normal_(self.pos, std=0.02)

    def null_cond(self, batch: int = 1) -> torch.Tensor:
        """``(batch, style_dim)`` copies of the learned null condition (the ``uncond`` for guidance)."""
        return self.null[None].expand(batch, -1)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the clean style embedding.

        Args:
            x_t: ``(B, style_dim)`` noised style embedding.
            t: ``(B,)`` integer timesteps.
            cond: ``(B, style_dim)`` aligned instruction features; None = unconditional for all rows.
            cond_mask: ``(B,)`` bool, False where the row's condition is replaced by the null one
                (condition dropout); None = keep all.

        Returns:
            ``(B, style_dim)`` predicted ``z_0``.
        """
        b, d = x_t.shape
        if d != self.style_dim:
            raise ValueError(f"denoiser expects {self.style_dim}-d inputs, got {d}")
        null = self.null_cond(b).to(x_t.dtype)  # (B, Dz)
        if cond is None:
            cond = null
        elif cond_mask is not None:
            cond = torch.where(cond_mask[:, None], cond, null)  # (B, Dz)
        tok_c = self.cond_proj(cond)  # (B, E)
        tok_t = self.time_mlp(sinusoidal(t, self.cfg.n_embd).to(x_t.dtype))  # (B, E)
        tok_x = self.x_proj(x_t)  # (B, E)
        x = torch.stack([tok_c, tok_t, tok_x], dim=1) + self.pos  # (B, 3, E)
        mask = causal_mask(N_TOKENS, x.device)  # (3, 3)
        for block in self.blocks:
            x = block(x, mask)  # (B, 3, E)
        return self.head(self.ln_f(x[:, -1]))  # (B, Dz)


def sample_style(
    denoiser: PriorDenoiser,
    cond: torch.Tensor,
    schedule: NoiseSchedule,
    steps: int | None = None,
    guidance: float | None = None,
    generator: torch.Generator | None = None,
    eta: float = 0.0,
) -> torch.Tensor:
    """Sample style embeddings for aligned instruction features with DDIM and classifier-free guidance.

    A thin wrapper of :func:`avitalk.diffusion.sample` (x0 prediction, ``uncond`` = the learned null).

    Args:
        denoiser: the trained prior (put it in ``eval()`` mode).
        cond: ``(B, style_dim)`` aligned instruction features (repeat rows for several samples each).
        schedule: the :class:`avitalk.diffusion.NoiseSchedule` it was trained with.
        steps, guidance: default ``denoiser.cfg.sample_steps`` / ``denoiser.cfg.guidance``.
        generator: seeds the initial noise (and the step noise if ``eta > 0``).
        eta: DDIM stochasticity.

    Returns:
        ``(B, style_dim)`` sampled ``z``.
    """
    return sample(
        denoiser,
        (cond.shape[0], denoiser.style_dim),
        schedule,
        steps=steps or denoiser.cfg.sample_steps,
        guidance=denoiser.cfg.guidance if guidance is None else guidance,
        cond=cond,
        uncond=denoiser.null_cond(1).detach(),
        generator=generator,
        prediction="x0",
        eta=eta,
        device=cond.device,
        dtype=cond.dtype,
    )
