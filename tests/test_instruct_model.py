"""Stage-1 model: config, the tiny random LLM, cached-prefix loss, text decoder, contrastive loss, ablations."""

from __future__ import annotations

import pytest
import torch

from avitalk.errors import AvitalkError
from avitalk.instruct.causal_lm import CausalLM, load_causal_lm, load_tokenizer
from avitalk.instruct.config import Stage1Config, preset
from avitalk.instruct.model import (
    PooledPrompt,
    PrefixCache,
    QueryPrompt,
    build_stage1,
    contrastive_loss,
    llm_prompt_loss,
    tokenize_targets,
)
from avitalk.instruct.prompts import build_inputs

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lm() -> CausalLM:
    return load_causal_lm("tiny-random")


def test_config_presets_round_trip_and_errors() -> None:
    d, t = Stage1Config.default(), preset("tiny")
    assert (d.llm, d.qformer.num_queries, d.prompt_tokens, d.audio_dim) == ("smollm2", 32, 8, 1152)
    assert d.encoder == "whisper-tiny.en@layers=1,2,4" and t.encoder == "whisper-tiny.en"
    assert t.llm == "tiny-random" and t.qformer.num_queries % t.prompt_tokens == 0
    assert Stage1Config.from_dict(d.to_dict()) == d
    c = t.replace(decoder="qformer", qformer={"audio_dim": 8})
    assert c.decoder == "qformer" and c.audio_dim == 8 and c.qformer.hidden == t.qformer.hidden
    for bad in (
        {"decoder": "gpt"},
        {"prompt_tokens": 3},  # does not divide 8 queries
        {"use_qformer": False, "decoder": "qformer"},
        {"max_crop_s": 0},
        {"nonsense": 1},
    ):
        with pytest.raises(AvitalkError):
            t.replace(**bad)
    with pytest.raises(AvitalkError):
        preset("huge")


def test_tiny_random_llm_is_deterministic_and_offline(lm: CausalLM) -> None:
    other = load_causal_lm("tiny-random")
    assert all(torch.equal(a, b) for a, b in zip(lm.model.parameters(), other.model.parameters(), strict=True))
    assert lm.hidden_size == 64 and not any(p.requires_grad for p in lm.model.parameters())
    text = "A man feels very angry and speaks with lowered brows."
    assert lm.tokenizer.decode(lm.tokenize(text)) == text
    assert load_tokenizer("tiny-random")(text)["input_ids"] == lm.tokenizer(text)["input_ids"]


def test_cached_prefix_loss_equals_full_sequence_loss(lm: CausalLM) -> None:
    torch.manual_seed(0)
    soft = torch.randn(3, 4, lm.hidden_size, requires_grad=True)
    texts = ["A woman feels happy.", "A man looks very angry and frowns with lowered brows.", "calm"]
    prefix = PrefixCache(lm)
    cached = llm_prompt_loss(lm, prefix, 3, soft, tokenize_targets(lm.tokenizer, texts, 64))
    full = lm.loss(*build_inputs(lm, soft, [3, 3, 3], texts))
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)
    g_cached, g_full = (torch.autograd.grad(x, soft)[0] for x in (cached, full))
    torch.testing.assert_close(g_cached, g_full, atol=1e-6, rtol=1e-4)
    again = llm_prompt_loss(lm, prefix, 3, soft, tokenize_targets(lm.tokenizer, texts, 64))
    assert torch.equal(again, cached)  # the cached prefix is not modified by a step
    assert tokenize_targets(lm.tokenizer, texts, 2)[1] == [*lm.tokenize(texts[1])[:2], lm.eos_token_id]


def test_contrastive_loss_prefers_matching_pairs() -> None:
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(6, 16), dim=-1)
    scale = torch.tensor(3.0)
    good, r1 = contrastive_loss(x, x, scale, 4.6)
    bad, _ = contrastive_loss(x, x.roll(1, 0), scale, 4.6)
    assert good < bad and r1 == 1.0


@pytest.mark.parametrize("overrides", [{}, {"use_qformer": False}, {"decoder": "qformer"}])
def test_ablations_build_and_backprop(lm: CausalLM, overrides: dict) -> None:
    torch.manual_seed(0)
    cfg = Stage1Config.tiny(qformer={"audio_dim": 8}, **overrides)
    parts = build_stage1(cfg, llm_dim=lm.hidden_size, vocab_size=len(lm.tokenizer))
    audio, mask = torch.randn(2, 30, 8), torch.ones(2, 30, dtype=torch.bool)
    mask[1, 20:] = False
    emb = parts.embed(audio, mask)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    targets = tokenize_targets(lm.tokenizer, ["A woman smiles.", "A man frowns."], 16)
    if cfg.decoder == "qformer":
        assert parts.prompt is None and parts.text_decoder is not None
        width = 1 + max(map(len, targets))
        ids = torch.tensor([[lm.bos_token_id, *t] + [0] * (width - 1 - len(t)) for t in targets])
        loss = parts.text_decoder.loss(parts.memory(audio, mask), ids, torch.tensor([1 + len(t) for t in targets]))
        loss.backward()
        assert parts.text_decoder.tok.weight.grad is not None
        mem = parts.memory(audio, mask)
        for mode in ("greedy", "beam", "sample"):
            a = parts.text_decoder.generate(mem, 1, 2, max_new_tokens=5, mode=mode, num_beams=2, seed=4)
            assert a == parts.text_decoder.generate(mem, 1, 2, max_new_tokens=5, mode=mode, num_beams=2, seed=4)
            assert len(a) == 2 and all(len(x) <= 5 for x in a)
    else:
        kind = PooledPrompt if not cfg.use_qformer else QueryPrompt
        assert isinstance(parts.prompt, kind) and parts.text_decoder is None
        soft = parts.audio_prompt(audio, mask)
        k = cfg.prompt_tokens if cfg.use_qformer else cfg.direct_tokens
        assert soft.shape == (2, k, lm.hidden_size)
        llm_prompt_loss(lm, PrefixCache(lm), 0, soft, targets).backward()
        assert parts.prompt.proj.weight.grad.abs().sum() > 0 if kind is PooledPrompt else True
        assert (parts.qformer is None) == (not cfg.use_qformer)
    assert set(parts.modules()) >= ({"qformer", "align_head"} if cfg.use_qformer else set())
