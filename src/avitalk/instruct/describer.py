"""Stage-1 inference: speech → visual instruction (paper §3.3), and the audio embedding used for plots.

A :class:`Describer` holds a trained :class:`~avitalk.instruct.model.Stage1Parts`, the frozen speech
encoder and the frozen LLM (or, for the "without LLM" ablation, the LLM's tokenizer)::

    describer = load_stage1("runs/stage1")                     # avitalk.train.load_instruct
    describer.describe(load_audio("speech.wav")).text          # "A woman feels fairly angry and ..."
    describer.embed([a, b])                                    # (2, D) L2-normalised, for t-SNE

The LLM reads ``BOS + PROMPT_TEMPLATES[template] + audio prompt`` (template 0 unless told otherwise)
and writes the instruction; greedy and beam decoding are deterministic, sampling is with a ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from avitalk.audio.encoder import SpeechEncoder
from avitalk.errors import AvitalkError
from avitalk.instruct.causal_lm import CausalLM
from avitalk.instruct.config import Stage1Config
from avitalk.instruct.draft import NgramDraft
from avitalk.instruct.model import Stage1Parts
from avitalk.instruct.prompts import PROMPT_TEMPLATES, build_inputs
from avitalk.types import Audio, Instruction

__all__ = ["DECODINGS", "Describer"]

DECODINGS = ("greedy", "beam", "sample")


class Describer:
    """Describe the speaker's face and talking style from speech.

    Args:
        config: the model's :class:`Stage1Config`; parts: its trained networks (weights loaded).
        speech_encoder: the frozen encoder named by ``config.encoder`` (same ``dim``).
        llm: the frozen causal LM (``decoder="llm"``); tokenizer: its tokenizer (``decoder="qformer"``).
        device: where the networks run.
        draft: n-gram draft for speculative greedy decoding of single clips on the native LLM backend
            (:mod:`avitalk.instruct.draft`: same text, fewer LM passes); ``None`` decodes token by token.
            The :attr:`draft` attribute may be changed later.
    """

    def __init__(
        self,
        config: Stage1Config,
        parts: Stage1Parts,
        speech_encoder: SpeechEncoder,
        *,
        llm: CausalLM | None = None,
        tokenizer: Any = None,
        device: str | torch.device = "cpu",
        draft: NgramDraft | None = None,
    ) -> None:
        self.draft = draft
        if speech_encoder.dim != config.audio_dim:
            raise AvitalkError(
                f"speech encoder gives {speech_encoder.dim} channels; the model wants {config.audio_dim}"
            )
        if config.decoder == "llm" and llm is None:
            raise AvitalkError("this stage-1 model needs its language model (decoder=llm)")
        self.config, self.parts, self.speech_encoder, self.llm = config, parts, speech_encoder, llm
        self.tokenizer = tokenizer if tokenizer is not None else (llm.tokenizer if llm is not None else None)
        if self.tokenizer is None:
            raise AvitalkError("decoder=qformer needs the LLM's tokenizer")
        self.device = torch.device(device)
        for module in parts.modules().values():
            module.to(self.device).eval().requires_grad_(False)

    # ---------------------------------------------------------------------------------------- features

    def features(self, audios: Sequence[Audio]) -> tuple[Tensor, Tensor]:
        """Speech features of several clips, zero-padded: (B, T_a, D_a) float32 and (B, T_a) bool mask."""
        if len(audios) == 0:
            raise AvitalkError("no audio given")
        values = []
        for a in audios:
            if not isinstance(a, Audio):
                raise AvitalkError(f"expected avitalk.types.Audio, got {type(a).__name__}")
            if a.samples.ndim != 1 or a.samples.shape[0] == 0:
                raise AvitalkError("audio must be a non-empty mono signal")
            v = np.asarray(self.speech_encoder.encode(a).values, dtype=np.float32)
            if v.shape[0] == 0:
                raise AvitalkError(f"audio of {a.duration:.3f} s is too short for the speech encoder")
            values.append(torch.from_numpy(v))
        longest = max(v.shape[0] for v in values)
        feats = torch.zeros(len(values), longest, self.config.audio_dim)
        mask = torch.zeros(len(values), longest, dtype=torch.bool)
        for i, v in enumerate(values):
            feats[i, : v.shape[0]] = v
            mask[i, : v.shape[0]] = True
        return feats.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def embed(self, audios: Sequence[Audio]) -> Tensor:
        """L2-normalised audio embeddings (N, D) in the contrastive space (the aligned mean query, D =
        ``text_dim``); without a Q-Former, the normalised mean speech features (D = ``audio_dim``)."""
        return self.parts.embed(*self.features(audios)).cpu()

    # -------------------------------------------------------------------------------------- generation

    @torch.no_grad()
    def describe_batch(
        self,
        audios: Sequence[Audio],
        *,
        decoding: str = "greedy",
        num_beams: int = 3,
        max_new_tokens: int | None = None,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int | None = None,
        template: int = 0,
    ) -> list[Instruction]:
        """One instruction per clip.

        Args:
            audios: mono clips (any length; the model was trained on crops of <= ``max_crop_s``).
            decoding: ``"greedy"``, ``"beam"`` (``num_beams``) or ``"sample"`` (``temperature``, ``top_p``).
            max_new_tokens: cap on generated tokens (default ``config.max_new_tokens``).
            seed: seeds sampling (same seed, same text); the global RNG is left untouched.
            template: index of the prompt template (0..9).

        Raises:
            AvitalkError: an unknown decoding, bad numbers or unusable audio.
        """
        if decoding not in DECODINGS:
            raise AvitalkError(f"unknown decoding {decoding!r}; use {', '.join(DECODINGS)}")
        cap = self.config.max_new_tokens if max_new_tokens is None else int(max_new_tokens)
        if cap < 1 or num_beams < 1 or not temperature > 0 or not 0 < top_p <= 1:
            raise AvitalkError("max_new_tokens and num_beams must be >= 1, temperature > 0 and 0 < top_p <= 1")
        if not 0 <= template < len(PROMPT_TEMPLATES):
            raise AvitalkError(f"template must be in 0..{len(PROMPT_TEMPLATES) - 1}, got {template}")
        feats, mask = self.features(audios)
        if self.config.decoder == "qformer":
            decoder = self.parts.text_decoder
            assert decoder is not None
            tok = self.tokenizer
            bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
            ids = decoder.generate(
                self.parts.memory(feats, mask), bos, int(tok.eos_token_id), max_new_tokens=cap, mode=decoding,
                num_beams=num_beams, temperature=temperature, top_p=top_p, seed=seed,
            )  # fmt: skip
            texts = [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
        else:
            assert self.llm is not None
            prompt = self.parts.audio_prompt(feats, mask)  # (B, k, H_llm)
            embeds, att, _ = build_inputs(self.llm, prompt, [template] * len(audios))
            texts = self.llm.generate(
                embeds, att, max_new_tokens=cap, mode=decoding,  # type: ignore[arg-type]
                num_beams=num_beams, temperature=temperature, top_p=top_p, seed=seed, draft=self.draft,
            )  # fmt: skip
        return [Instruction(t) for t in texts]

    def describe(
        self,
        audio: Audio,
        *,
        decoding: str = "greedy",
        num_beams: int = 3,
        max_new_tokens: int | None = None,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int | None = None,
        template: int = 0,
    ) -> Instruction:
        """The instruction for one clip (see :meth:`describe_batch`)."""
        return self.describe_batch(
            [audio], decoding=decoding, num_beams=num_beams, max_new_tokens=max_new_tokens,
            temperature=temperature, top_p=top_p, seed=seed, template=template,
        )[0]  # fmt: skip
