"""Typed, frozen configuration of the stage-2 networks (paper §3.4), with ``tiny`` and ``default`` presets.

One :class:`Stage2Config` holds the dimensions shared between the components (motion space, content,
text and style widths, window length, reference frames, fps) and one sub-config per network. The
networks take their sub-config plus the shared dimensions, so every width is written exactly once::

    cfg = Stage2Config.default(space="flame")
    models = build_stage2(cfg)                       # avitalk.motion.model
    cfg2 = Stage2Config.from_dict(cfg.to_dict())     # round trip; unknown keys are errors

Defaults live here and nowhere else (DESIGN.md principle 7).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from avitalk.errors import AvitalkError
from avitalk.spaces import get_space

CONFIG_VERSION = 1
"""Bumped whenever a field changes meaning; stored with every checkpoint."""

PriorKind = Literal["diffusion", "direct"]
RefSampling = Literal["random", "contiguous"]
LossKind = Literal["mse", "l1"]


@dataclass(frozen=True)
class StyleEncoderConfig:
    """Transformer over ``S`` reference frames -> style embedding ``z`` (:mod:`avitalk.motion.style_encoder`).

    Attributes:
        n_layer, n_head, n_embd: transformer depth, heads, width.
        dropout: dropout in attention, MLP and after the input projection.
        positional: add sinusoidal positions over the reference-frame order (frames are passed sorted
            by time, so this lets the encoder see dynamics such as blink rate).
        normalize: standardise ``z`` per sample (layer norm without affine: zero mean, unit variance
            over the ``style_dim`` channels), which keeps ``z`` at the scale of the diffusion prior's
            ``N(0, I)`` noise.
    """

    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 192
    dropout: float = 0.1
    positional: bool = True
    normalize: bool = True


@dataclass(frozen=True)
class GeneratorConfig:
    """Non-autoregressive talking generator: content ``(B, T, C)`` + ``z`` -> motion ``(B, T, D)``.

    Attributes:
        n_layer, n_head, n_embd: transformer depth, heads, width.
        dropout: dropout in attention, MLP and on the input.
        attn_window: if > 0, each frame attends only to frames within ``attn_window`` frames of itself
            (a band mask); 0 means full attention. Positions are sinusoidal, so any ``T`` works.
        film: modulate every block's layer norms with ``z`` (adaptive layer norm, zero-initialised) in
            addition to adding a projection of ``z`` to every frame.
    """

    n_layer: int = 6
    n_head: int = 4
    n_embd: int = 192
    dropout: float = 0.1
    attn_window: int = 0
    film: bool = True


@dataclass(frozen=True)
class AlignConfig:
    """Instruction -> style alignment MLP on frozen text features (:mod:`avitalk.motion.align`).

    Attributes:
        hidden: width of the hidden layers.
        n_hidden: number of hidden layers (>= 1).
        dropout: dropout after each hidden layer.
        init_temperature: initial softmax temperature of InfoNCE (CLIP: 0.07).
        max_logit_scale: ``log`` of the largest inverse temperature (CLIP clamps at 100).
        normalize: standardise ``c`` like ``z`` (see :attr:`StyleEncoderConfig.normalize`).
    """

    hidden: int = 512
    n_hidden: int = 2
    dropout: float = 0.1
    init_temperature: float = 0.07
    max_logit_scale: float = math.log(100.0)
    normalize: bool = True


@dataclass(frozen=True)
class DenoiserConfig:
    """Decoder-only transformer prior: ``(z_t, t, c)`` -> clean ``z`` (paper eq. 7).

    The network itself only predicts; the schedule fields tell the training recipe and the sampler
    which :class:`avitalk.diffusion.NoiseSchedule` the network was trained with.

    Attributes:
        n_layer, n_head, n_embd: transformer depth, heads, width.
        dropout: dropout in attention and MLP.
        cond_drop: probability of replacing the condition by the learned null embedding during
            training (classifier-free guidance).
        schedule, num_steps: the training noise schedule (``"cosine"`` or ``"linear"``) and its length.
        sample_steps: default DDIM steps at inference.
        guidance: default classifier-free guidance scale at inference (1 = conditional only).
    """

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 192
    dropout: float = 0.0
    cond_drop: float = 0.1
    schedule: str = "cosine"
    num_steps: int = 1000
    sample_steps: int = 20
    guidance: float = 2.0


@dataclass(frozen=True)
class LossConfig:
    """Weights of the stage-2 losses (:mod:`avitalk.motion.losses`).

    Attributes:
        kind: reconstruction/velocity error, ``"mse"`` or ``"l1"``.
        reconstruction, velocity, lip: weights of the motion-prior terms (the lip term is in mm² of
            lip-vertex displacement, see :func:`avitalk.motion.losses.lip_vertex_loss`).
        lambda_diff: weight of the prior loss in ``L = L_cont + lambda * L_diff`` (paper eq. 8: 30).
    """

    kind: LossKind = "mse"
    reconstruction: float = 1.0
    velocity: float = 1.0
    lip: float = 0.1
    lambda_diff: float = 30.0


@dataclass(frozen=True)
class Stage2Config:
    """Everything needed to rebuild the stage-2 networks.

    Attributes:
        space: motion-space name (``"arkit52"``, ``"flame"``, ``"flame_neck"``); fixes :attr:`motion_dim`.
        fps: motion frame rate; content features are resampled to it.
        content_dim: width ``C`` of the speech-content features (Whisper tiny.en: 384).
        text_dim: width of the frozen text encoder's pooled embedding (all-MiniLM-L6-v2: 384).
        style_dim: width of the style embedding ``z`` and of the aligned instruction feature ``c``.
        window: frames ``T`` of a training window of the generator.
        n_ref: number ``S`` of reference frames fed to the style encoder.
        ref_sampling: ``"random"`` frames or one ``"contiguous"`` run, outside the window.
        prior: ``"diffusion"`` (the paper) or ``"direct"`` (ablation: an MLP from ``c`` to ``z``).
        contrastive: train the alignment with InfoNCE (ablation: ``False``).
        style: condition the generator on a style embedding. ``False`` is the deterministic regression
            baseline (FaceFormer-like, no style): the motion recipe builds no style encoder and feeds
            ``z = 0``, so the same generator learns audio -> motion alone; such a run needs no align run.
        version: :data:`CONFIG_VERSION`.
    """

    space: str = "arkit52"
    fps: float = 25.0
    content_dim: int = 384
    text_dim: int = 384
    style_dim: int = 128
    window: int = 100
    n_ref: int = 32
    ref_sampling: RefSampling = "random"
    prior: PriorKind = "diffusion"
    contrastive: bool = True
    style: bool = True
    style_encoder: StyleEncoderConfig = field(default_factory=StyleEncoderConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        get_space(self.space)  # unknown spaces are a user error
        _check(self.version == CONFIG_VERSION, f"stage-2 config version {self.version} is not {CONFIG_VERSION}")
        _check(self.fps > 0, f"fps must be positive, got {self.fps}")
        for name in ("content_dim", "text_dim", "style_dim", "window", "n_ref"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _check(self.ref_sampling in ("random", "contiguous"), f"unknown ref_sampling {self.ref_sampling!r}")
        _check(self.prior in ("diffusion", "direct"), f"unknown prior {self.prior!r}; expected diffusion or direct")
        _check(self.loss.kind in ("mse", "l1"), f"unknown loss kind {self.loss.kind!r}")
        _check(self.denoiser.schedule in ("cosine", "linear"), f"unknown schedule {self.denoiser.schedule!r}")
        _check(0.0 <= self.denoiser.cond_drop < 1.0, f"cond_drop must be in [0, 1), got {self.denoiser.cond_drop}")
        _check(self.align.n_hidden >= 1, "align.n_hidden must be >= 1")
        for name in ("style_encoder", "generator", "denoiser"):
            sub = getattr(self, name)
            _check(sub.n_layer >= 1, f"{name}.n_layer must be >= 1")
            _check(sub.n_embd % sub.n_head == 0, f"{name}.n_embd ({sub.n_embd}) must divide by n_head ({sub.n_head})")

    @property
    def motion_dim(self) -> int:
        """Channels ``D`` of :attr:`space` (arkit52: 55, flame: 53)."""
        return get_space(self.space).dim

    # ------------------------------------------------------------------------------------------ presets

    @classmethod
    def tiny(cls, **overrides: Any) -> Stage2Config:
        """About 90 k parameters: a forward + backward of every network on CPU in well under 1 s."""
        base = cls(
            style_dim=16,
            window=32,
            n_ref=8,
            style_encoder=StyleEncoderConfig(n_layer=1, n_head=2, n_embd=32, dropout=0.0),
            generator=GeneratorConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0),
            align=AlignConfig(hidden=32, n_hidden=1, dropout=0.0),
            denoiser=DenoiserConfig(n_layer=1, n_head=2, n_embd=32, num_steps=100, sample_steps=5),
        )
        return base.replace(**overrides)

    @classmethod
    def default(cls, **overrides: Any) -> Stage2Config:
        """About 7.2 M parameters (generator 3.4 M): CPU training of a few hours on the synthetic corpus."""
        return cls().replace(**overrides)

    def replace(self, **overrides: Any) -> Stage2Config:
        """A copy with fields replaced; nested sub-configs may be given as dicts of their own fields."""
        return Stage2Config.from_dict(_merge(self.to_dict(), overrides))

    # ------------------------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON friendly) that :meth:`from_dict` reads back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stage2Config:
        """Build from a nested dict; missing keys take defaults, unknown keys raise :class:`AvitalkError`."""
        return _from_dict(cls, d, "stage2")


PRESETS = {"tiny": Stage2Config.tiny, "default": Stage2Config.default}


def preset(name: str, **overrides: Any) -> Stage2Config:
    """The named preset (``"tiny"`` or ``"default"``) with overrides."""
    if name not in PRESETS:
        raise AvitalkError(f"unknown stage-2 preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name](**overrides)


# ---------------------------------------------------------------------------------------------- helpers


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise AvitalkError(message)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            v = dataclasses.asdict(v)
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _from_dict(cls: type, d: Any, path: str) -> Any:
    if dataclasses.is_dataclass(d) and isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise AvitalkError(f"{path} must be a mapping, got {type(d).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise AvitalkError(f"unknown key(s) in {path}: {', '.join(unknown)}; known: {', '.join(known)}")
    kwargs = {}
    for k, v in d.items():
        sub = _SUBCONFIGS.get(k) if cls is Stage2Config else None
        kwargs[k] = _from_dict(sub, v, f"{path}.{k}") if sub is not None else v
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise AvitalkError(f"bad {path}: {e}") from None


_SUBCONFIGS: dict[str, type] = {
    "style_encoder": StyleEncoderConfig,
    "generator": GeneratorConfig,
    "align": AlignConfig,
    "denoiser": DenoiserConfig,
    "loss": LossConfig,
}
