"""Stage 2 (paper §3.4): disentangled motion prior, instruction–style alignment and diffusion prior.

Networks take tensors only (frozen speech/text encoders are the caller's); losses are pure functions
in :mod:`avitalk.motion.losses`; the noise schedule and sampler are :mod:`avitalk.diffusion`'s.

- :class:`StyleEncoder`: ``(B, S, D)`` reference frames -> style embedding ``z`` ``(B, Dz)``
- :class:`TalkingGenerator`: content ``(B, T, C)`` + ``z`` -> motion ``(B, T, D)``
- :class:`InstructionAligner`: text features ``(B, 384)`` -> ``c`` ``(B, Dz)``; :func:`info_nce`
- :class:`PriorDenoiser`: ``(z_t, t, c | null)`` -> ``z0_hat``; :func:`sample_style`
- :class:`DirectMapping`: ablation "without diffusion"
"""

from avitalk.motion.align import DirectMapping, InstructionAligner, info_nce
from avitalk.motion.config import (
    CONFIG_VERSION,
    PRESETS,
    AlignConfig,
    DenoiserConfig,
    GeneratorConfig,
    LossConfig,
    Stage2Config,
    StyleEncoderConfig,
    preset,
)
from avitalk.motion.denoiser import PriorDenoiser, sample_style
from avitalk.motion.generator import TalkingGenerator
from avitalk.motion.losses import (
    AlignLoss,
    LipBasis,
    MotionLoss,
    diffusion_x0_loss,
    direct_mapping_loss,
    lip_vertex_loss,
    motion_prior_loss,
    reconstruction_loss,
    stage2_align_loss,
    velocity_loss,
)
from avitalk.motion.model import Stage2Model, build_stage2
from avitalk.motion.sampling import (
    content_at_motion_rate,
    crop_window,
    random_window,
    reference_frames,
    reference_indices,
    window_length,
)
from avitalk.motion.style_encoder import StyleEncoder

__all__ = [
    "CONFIG_VERSION",
    "PRESETS",
    "AlignConfig",
    "AlignLoss",
    "DenoiserConfig",
    "DirectMapping",
    "GeneratorConfig",
    "InstructionAligner",
    "LipBasis",
    "LossConfig",
    "MotionLoss",
    "PriorDenoiser",
    "Stage2Config",
    "Stage2Model",
    "StyleEncoder",
    "StyleEncoderConfig",
    "TalkingGenerator",
    "build_stage2",
    "content_at_motion_rate",
    "crop_window",
    "diffusion_x0_loss",
    "direct_mapping_loss",
    "info_nce",
    "lip_vertex_loss",
    "motion_prior_loss",
    "preset",
    "random_window",
    "reconstruction_loss",
    "reference_frames",
    "reference_indices",
    "sample_style",
    "stage2_align_loss",
    "velocity_loss",
    "window_length",
]
