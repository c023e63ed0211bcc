"""The stage-2 networks built together from one :class:`Stage2Config`.

:class:`Stage2Model` is only a container (one ``state_dict`` for a checkpoint, one place that passes
the shared dimensions); training recipes call its parts directly. Which parts exist follows the
ablation flags: ``prior="diffusion"`` builds :attr:`denoiser`, ``prior="direct"`` builds :attr:`direct`.
"""

from __future__ import annotations

from torch import nn

from avitalk.motion.align import DirectMapping, InstructionAligner
from avitalk.motion.config import Stage2Config
from avitalk.motion.denoiser import PriorDenoiser
from avitalk.motion.generator import TalkingGenerator
from avitalk.motion.style_encoder import StyleEncoder


class Stage2Model(nn.Module):
    """Style encoder, talking generator, instruction aligner and the prior (denoiser or direct mapping).

    Attributes:
        config: the :class:`Stage2Config` it was built from (store it with every checkpoint).
        style_encoder: ``(B, S, D)`` -> ``(B, style_dim)``.
        generator: ``(B, T, content_dim)`` + ``(B, style_dim)`` -> ``(B, T, D)``.
        aligner: ``(B, text_dim)`` -> ``(B, style_dim)``.
        denoiser: :class:`PriorDenoiser` or None; direct: :class:`DirectMapping` or None.
    """

    def __init__(self, config: Stage2Config) -> None:
        super().__init__()
        self.config = config
        d, dz = config.motion_dim, config.style_dim
        self.style_encoder = StyleEncoder(config.style_encoder, d, dz)
        self.generator = TalkingGenerator(config.generator, config.content_dim, dz, d)
        self.aligner = InstructionAligner(config.align, config.text_dim, dz)
        self.denoiser = PriorDenoiser(config.denoiser, dz) if config.prior == "diffusion" else None
        self.direct = DirectMapping(config.align, dz) if config.prior == "direct" else None

    def param_counts(self) -> dict[str, int]:
        """Trainable parameters per part and ``"total"``."""
        parts = {name: sum(p.numel() for p in m.parameters()) for name, m in self.named_children()}
        parts["total"] = sum(parts.values())
        return parts


def build_stage2(config: Stage2Config) -> Stage2Model:
    """``Stage2Model(config)``: the one way to build the stage-2 networks from a config."""
    return Stage2Model(config)
