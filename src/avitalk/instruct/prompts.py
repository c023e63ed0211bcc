"""Instruction prompt templates and LLM input assembly for stage 1 (paper §3.3).

The language model sees ``BOS + template + audio prompt`` and, in training, ``+ target + EOS``. The
ten templates below all ask the same thing in different words (the paper samples one per example so
the model does not overfit a single phrasing).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from avitalk.instruct.causal_lm import CausalLM

__all__ = ["IGNORE_INDEX", "PROMPT_TEMPLATES", "build_inputs"]

IGNORE_INDEX = -100

PROMPT_TEMPLATES: tuple[str, ...] = (
    "Analyze the emotion conveyed in this audio snippet, elaborating on the facial expressions and "
    "talking style a speaker would show:",
    "Listen to the following speech and describe the emotion it carries, including how the speaker's "
    "face and mouth would move:",
    "Describe the speaker's emotional state in this recording and the facial expressions that would accompany it:",
    "From the voice in this clip, infer the speaker's feelings and explain which facial movements and "
    "speaking manner express them:",
    "What emotion does this speech express? Describe the matching facial expression and the way the speaker talks:",
    "Based on the tone of this audio, write an instruction describing the speaker's facial expression, "
    "emotion and speaking style:",
    "Identify the mood of the speaker in this audio and detail the expressions of the eyes, brows and "
    "mouth that go with it:",
    "Interpret the emotional tone of this voice recording and describe how it would show on the "
    "speaker's face while talking:",
    "Given this speech segment, characterise the emotion and intensity, and describe the corresponding "
    "facial expression:",
    "Explain how the speaker in this audio feels and describe the facial expressions and lip movements "
    "they would make while speaking:",
)


def build_inputs(
    llm: CausalLM,
    audio_prompt: Tensor,
    template_ids: int | Sequence[int] | Tensor,
    target_texts: Sequence[str] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Assemble right-padded LLM inputs ``BOS + template + audio prompt (+ target + EOS)``.

    Args:
        llm: the frozen language model (its tokenizer and input embeddings are used).
        audio_prompt: (B, q_a, H) projected audio queries; gradients flow through them.
        template_ids: one index into :data:`PROMPT_TEMPLATES` for the whole batch, or B indices.
        target_texts: B instruction texts for training, or ``None`` for generation.

    Returns:
        ``inputs_embeds`` (B, L, H), ``attention_mask`` (B, L) int64 (1 on real positions, 0 on right
        padding) and ``labels`` (B, L) int64: the target and EOS token ids at their positions, -100
        everywhere else (BOS, template, audio prompt, padding; all -100 without targets).
    """
    b, q_a, h = audio_prompt.shape
    if h != llm.hidden_size:
        raise ValueError(f"audio prompt width {h} != LLM hidden size {llm.hidden_size}")
    if isinstance(template_ids, Tensor):
        template_ids = [int(t) for t in template_ids.reshape(-1).tolist()]
    if isinstance(template_ids, int):
        template_ids = [template_ids] * b
    if len(template_ids) != b:
        raise ValueError(f"{len(template_ids)} template ids for a batch of {b}")
    if target_texts is not None and len(target_texts) != b:
        raise ValueError(f"{len(target_texts)} targets for a batch of {b}")

    bos = [] if llm.bos_token_id is None else [int(llm.bos_token_id)]
    prefixes = [bos + llm.tokenize(PROMPT_TEMPLATES[t]) for t in template_ids]
    targets = (
        [[*llm.tokenize(s), llm.eos_token_id] for s in target_texts]
        if target_texts is not None
        else [[] for _ in range(b)]
    )
    lengths = [len(p) + q_a + len(t) for p, t in zip(prefixes, targets, strict=True)]
    total = max(lengths)

    device = audio_prompt.device
    pad_id = int(llm.tokenizer.pad_token_id)
    # token ids of every text position (audio positions hold a pad id and are overwritten below)
    ids = torch.full((b, total), pad_id, dtype=torch.long)
    labels = torch.full((b, total), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((b, total), dtype=torch.long)
    is_audio = torch.zeros((b, total), dtype=torch.bool)
    for i, (p, t) in enumerate(zip(prefixes, targets, strict=True)):
        n_p = len(p)
        ids[i, :n_p] = torch.tensor(p, dtype=torch.long)
        is_audio[i, n_p : n_p + q_a] = True
        if t:
            start = n_p + q_a
            ids[i, start : start + len(t)] = torch.tensor(t, dtype=torch.long)
            labels[i, start : start + len(t)] = torch.tensor(t, dtype=torch.long)
        mask[i, : lengths[i]] = 1
    text_embeds = llm.embed(ids.to(device)).to(audio_prompt.dtype)  # (B, L, H)
    embeds = text_embeds.masked_scatter(is_audio.to(device).unsqueeze(-1), audio_prompt)
    return embeds, mask.to(device), labels.to(device)
