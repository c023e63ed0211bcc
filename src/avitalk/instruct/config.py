"""Typed, frozen configuration of the stage-1 instruction generator (paper §3.3), ``tiny``/``default`` presets.

One :class:`Stage1Config` names the frozen backbones (speech encoder, causal LM, text encoder) and holds
the trainable parts' sizes and the ablation switches of the paper's Table 3::

    cfg = Stage1Config.default()                         # Q-Former + projection into SmolLM2
    cfg = Stage1Config.default(decoder="qformer")        # "without LLM": BLIP-2-style text decoder
    cfg = Stage1Config.default(use_qformer=False)        # "without Q-Former": pooled features projected
    cfg2 = Stage1Config.from_dict(cfg.to_dict())         # round trip; unknown keys are errors

(The "without augmentation" ablation is a training switch: ``augment=false`` of the recipe.)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from avitalk.errors import AvitalkError
from avitalk.instruct.qformer import QFormerConfig

__all__ = ["CONFIG_VERSION", "PRESETS", "Stage1Config", "TextDecoderConfig", "preset"]

CONFIG_VERSION = 1

DecoderKind = Literal["llm", "qformer"]


@dataclass(frozen=True)
class TextDecoderConfig:
    """BLIP-2-style causal transformer text decoder cross-attending to the Q-Former outputs ("without LLM").

    Attributes:
        layers, heads, hidden, ffn_mult, dropout: transformer size (pre-norm decoder blocks).
        max_len: longest token sequence (BOS + text + EOS) it can read or write.
    """

    layers: int = 3
    heads: int = 4
    hidden: int = 256
    ffn_mult: int = 4
    dropout: float = 0.1
    max_len: int = 96


@dataclass(frozen=True)
class Stage1Config:
    """Everything needed to rebuild the stage-1 networks.

    Attributes:
        encoder: frozen speech encoder spec (:func:`avitalk.audio.encoder.load_speech_encoder`).
        llm: frozen causal LM spec (:func:`avitalk.instruct.causal_lm.load_causal_lm`): ``smollm2``,
            ``hf:PATH`` or ``tiny-random``. With ``decoder="qformer"`` only its tokenizer is used.
        text_encoder: frozen text encoder of the contrastive phase (:func:`avitalk.text.load_text_encoder`).
        text_dim: width of the text encoder's pooled embedding (all-MiniLM-L6-v2: 384).
        qformer: Q-Former sizes (paper: 32 queries); ``qformer.audio_dim`` is the width of the speech
            features (Whisper tiny.en: 384), also without a Q-Former (see :attr:`audio_dim`).
        decoder: ``"llm"`` (the paper: projection into the frozen LLM) or ``"qformer"`` (ablation).
        use_qformer: ``False`` = ablation "without Q-Former": the mean-pooled speech features are projected
            directly into ``direct_tokens`` prompt tokens (no alignment phase).
        tune_qformer: also train the Q-Former (and its alignment head stays fixed) in the projection phase.
        lora_rank: rank of a LoRA adapter trained on the LLM with the projection (0 = the paper's
            frozen LLM; see :mod:`avitalk.instruct.adapter` for why the default preset uses 8). Unused
            with ``decoder="qformer"`` (no LLM runs).
        lora_alpha: LoRA scale numerator (the update is scaled by ``lora_alpha / lora_rank``).
        lora_targets: comma-separated names of the LLM's linear layers that get LoRA (LLaMA-family
            attention queries and values by default).
        prompt_tokens: audio prompt tokens given to the LLM: the ``num_queries`` query outputs are
            averaged in consecutive groups down to this many (must divide ``num_queries``; equal to it =
            the paper's setting). Fewer tokens make CPU training and decoding cheaper.
        direct_tokens: prompt tokens of the "without Q-Former" ablation.
        init_temperature: initial softmax temperature of the contrastive loss (learned).
        max_logit_scale: ``log`` of the largest inverse temperature.
        max_crop_s: training crops of at most this many seconds of speech.
        max_new_tokens: default cap on generated tokens.
        max_target_tokens: training instructions are truncated to this many tokens.
        text_decoder: sizes of the ``decoder="qformer"`` text decoder.
        version: :data:`CONFIG_VERSION`.
    """

    encoder: str = "whisper-tiny.en"
    llm: str = "smollm2"
    text_encoder: str = "minilm"
    text_dim: int = 384
    qformer: QFormerConfig = field(default_factory=QFormerConfig.default)
    decoder: DecoderKind = "llm"
    use_qformer: bool = True
    tune_qformer: bool = False
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: str = "q_proj,v_proj"
    prompt_tokens: int = 8
    direct_tokens: int = 4
    init_temperature: float = 0.07
    max_logit_scale: float = math.log(100.0)
    max_crop_s: float = 10.0
    max_new_tokens: int = 64
    max_target_tokens: int = 64
    text_decoder: TextDecoderConfig = field(default_factory=TextDecoderConfig)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        _check(self.version == CONFIG_VERSION, f"stage-1 config version {self.version} is not {CONFIG_VERSION}")
        _check(self.decoder in ("llm", "qformer"), f"unknown decoder {self.decoder!r}; expected llm or qformer")
        _check(self.use_qformer or self.decoder == "llm", "decoder=qformer needs use_qformer=true")
        _check(self.qformer.hidden % self.qformer.heads == 0, "qformer.hidden must divide by qformer.heads")
        for name in ("text_dim", "prompt_tokens", "direct_tokens", "max_new_tokens", "max_target_tokens"):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _check(
            self.qformer.num_queries % self.prompt_tokens == 0,
            f"prompt_tokens ({self.prompt_tokens}) must divide qformer.num_queries ({self.qformer.num_queries})",
        )
        _check(self.lora_rank >= 0, f"lora_rank must be >= 0, got {self.lora_rank}")
        _check(self.lora_rank == 0 or bool(self.targets), "lora_targets names no layer")
        _check(self.max_crop_s > 0, f"max_crop_s must be positive, got {self.max_crop_s}")
        _check(self.init_temperature > 0, "init_temperature must be positive")
        d = self.text_decoder
        _check(d.layers >= 1 and d.hidden % d.heads == 0, "text_decoder: layers >= 1 and hidden divisible by heads")
        _check(d.max_len > self.max_target_tokens + 1, "text_decoder.max_len must exceed max_target_tokens + 1")

    @property
    def uses_lora(self) -> bool:
        """Whether the model has a LoRA adapter on its LLM (``lora_rank > 0`` and ``decoder="llm"``)."""
        return self.lora_rank > 0 and self.decoder == "llm"

    @property
    def targets(self) -> tuple[str, ...]:
        """The LoRA target layer names of :attr:`lora_targets`."""
        return tuple(t.strip() for t in self.lora_targets.split(",") if t.strip())

    @property
    def audio_dim(self) -> int:
        """Width D_a of the speech features (= ``qformer.audio_dim``)."""
        return self.qformer.audio_dim

    # ------------------------------------------------------------------------------------------ presets

    @classmethod
    def tiny(cls, **overrides: Any) -> Stage1Config:
        """Tiny Q-Former, a random 2-layer LLM (``tiny-random``): whole-stage CI runs in seconds."""
        base = cls(
            llm="tiny-random",
            qformer=QFormerConfig.tiny(),
            prompt_tokens=4,
            direct_tokens=2,
            max_new_tokens=16,
            max_target_tokens=32,
            text_decoder=TextDecoderConfig(layers=1, heads=2, hidden=32, ffn_mult=2, dropout=0.0, max_len=40),
        )
        return base.replace(**overrides)

    @classmethod
    def default(cls, **overrides: Any) -> Stage1Config:
        """Q-Former 32 queries x 4 layers x 256 over Whisper tiny.en's blocks 1, 2 and 4 (1152-d features:
        the early blocks carry more of the speaker's emotion than the last, which is trained for
        transcription), SmolLM2-135M with a rank-8 LoRA, 8 audio prompt tokens."""
        return cls(
            encoder="whisper-tiny.en@layers=1,2,4", qformer=QFormerConfig.default(audio_dim=1152), lora_rank=8
        ).replace(**overrides)

    def replace(self, **overrides: Any) -> Stage1Config:
        """A copy with fields replaced; nested sub-configs may be given as dicts of their own fields."""
        return Stage1Config.from_dict(_merge(self.to_dict(), overrides))

    # ------------------------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON friendly) that :meth:`from_dict` reads back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stage1Config:
        """Build from a nested dict; missing keys take defaults, unknown keys raise :class:`AvitalkError`."""
        return _from_dict(cls, d, "stage1")


PRESETS = {"tiny": Stage1Config.tiny, "default": Stage1Config.default}


def preset(name: str, **overrides: Any) -> Stage1Config:
    """The named preset (``"tiny"`` or ``"default"``) with overrides."""
    if name not in PRESETS:
        raise AvitalkError(f"unknown stage-1 preset {name!r}; known: {', '.join(PRESETS)}")
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


def _from_dict(cls: type, d: Any, where: str) -> Any:
    if not isinstance(d, dict):
        raise AvitalkError(f"{where}: expected a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise AvitalkError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in d.items():
        sub = {"qformer": QFormerConfig, "text_decoder": TextDecoderConfig}.get(name) if cls is Stage1Config else None
        if sub is not None and isinstance(value, dict):
            value = _from_dict(sub, value, f"{where}.{name}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise AvitalkError(f"{where}: {e}") from None
