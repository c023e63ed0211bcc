"""Speculative greedy decoding with the n-gram draft (``avitalk.instruct.draft``, ``llama.generate_ids``).

The draft may only change how many tokens one LM pass commits, never the greedy token ids (in float32),
whether its guesses are mostly right, mostly wrong, absent or run into EOS and the token cap.
"""

from __future__ import annotations

import pytest
import torch

import avitalk.instruct.llama as llama
from avitalk.data.synth.captions import parse_caption, sample_captions
from avitalk.instruct.causal_lm import load_causal_lm
from avitalk.instruct.draft import NgramDraft
from avitalk.train.load_instruct import instruction_draft

torch.set_num_threads(1)


def test_ngram_table_counts_and_chains() -> None:
    d = NgramDraft.from_sequences([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3, 5], [9, 3, 6]], order=2)
    assert d.table[(2, 3)] == 5  # 2 of 3 times after (2, 3)
    assert d.table[(3,)] == 5  # order 1: 5 twice, 4 and 6 once
    assert d.table[(9, 3)] == 6  # the longer context wins over (3,) -> 5
    assert d.propose([7, 1], k=4) == [2, 3, 5]  # chained; nothing is known after 5
    assert d.propose([9, 3], k=1) == [6]
    assert d.propose([8], k=3) == []  # unknown context: no guess
    tie = NgramDraft.from_sequences([[1, 7], [1, 4]], order=1)
    assert tie.table[(1,)] == 4  # ties go to the smaller id (deterministic)
    with pytest.raises(ValueError):
        NgramDraft({}, order=0)


@pytest.fixture(scope="module")
def native():
    return load_causal_lm("tiny-random", backend="native")


def _prompts(lm) -> list[torch.Tensor]:
    texts = ["a woman feels slightly angry and speaks", "a man looks sad", "hello"]
    return [lm.embed(torch.tensor([lm.tokenize(t)])) for t in texts]


def _plain(lm, e, cap, eos):
    m = torch.ones(1, e.shape[1], dtype=torch.long)
    return llama.generate_ids(lm.model, e, m, eos_token_id=eos, max_new_tokens=cap)[0]


def _spec(lm, e, cap, eos, draft, k=5):
    m = torch.ones(1, e.shape[1], dtype=torch.long)
    return llama.generate_ids(lm.model, e, m, eos_token_id=eos, max_new_tokens=cap, draft=draft, draft_tokens=k)[0]


def test_speculative_greedy_gives_the_greedy_ids(native) -> None:
    lm = native
    for e in _prompts(lm):
        for eos in (-1, lm.eos_token_id):  # -1: never stops, the cap binds
            want = _plain(lm, e, 20, eos)
            assert len(want) == 20 or eos >= 0
            right = NgramDraft.from_sequences([want + [eos] * (eos >= 0)], order=3)  # guesses mostly right
            wrong = NgramDraft.from_sequences([[(t + 1) % 200 for t in want]], order=3)  # mostly wrong
            for draft in (right, wrong, NgramDraft({}, 3)):
                for k in (1, 3, 8):
                    assert _spec(lm, e, 20, eos, draft, k) == want
            assert _spec(lm, e, 7, eos, right) == want[:7]  # the cap holds mid-draft


def test_speculative_greedy_stops_at_eos_and_takes_fewer_passes(native, monkeypatch) -> None:
    lm = native
    e = _prompts(lm)[0]
    free = _plain(lm, e, 20, eos=-1)
    eos = free[6]  # pretend the 7th greedy token is EOS: greedy stops after 6 tokens
    want = _plain(lm, e, 20, eos)
    assert want == free[: free.index(eos)]
    calls = []
    forward = llama.LlamaLM.forward
    monkeypatch.setattr(llama.LlamaLM, "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    draft = NgramDraft.from_sequences([free], order=3)  # knows the continuation up to and past EOS
    assert _spec(lm, e, 20, eos, draft, k=8) == want
    assert len(calls) <= 3  # prompt pass + 1-2 verifying passes, instead of 1 + 6


def test_describer_uses_the_draft_only_for_single_greedy_prompts(native, monkeypatch) -> None:
    seen = []
    real = llama._speculative_greedy
    monkeypatch.setattr(llama, "_speculative_greedy", lambda *a: seen.append(1) or real(*a))
    e = _prompts(native)[0]
    draft = instruction_draft(native.tokenizer)
    one = native.generate(e, max_new_tokens=5, draft=draft)
    assert seen and one == native.generate(e, max_new_tokens=5)
    seen.clear()
    native.generate(torch.cat([e, e]), max_new_tokens=5, draft=draft)  # batch: token by token
    native.generate(e, max_new_tokens=5, mode="sample", draft=draft)
    assert not seen


def test_instruction_draft_is_built_from_parseable_captions(native) -> None:
    import numpy as np

    texts = sample_captions(np.random.default_rng(0), 50)
    assert len(set(texts)) == 50 and all(parse_caption(t)[0] for t in texts)
    assert texts == sample_captions(np.random.default_rng(0), 50)
    d = instruction_draft(native.tokenizer)
    assert d is instruction_draft(native.tokenizer) and len(d) > 100  # built once per tokenizer
    start = native.tokenize("A woman feels fairly")
    assert d.propose(start, k=2) != []
