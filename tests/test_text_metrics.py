"""Captioning metrics (:mod:`avitalk.eval.text_metrics`): golden values by hand and from nltk.

Everything goes through pycocoevalcap's PTB tokenizer jar, so the tests need Java; METEOR loads a
paraphrase table (~10-20 s) and is marked ``integration``.
"""

from __future__ import annotations

import math
import shutil

import pytest

from avitalk.errors import AvitalkError
from avitalk.eval import text_metrics as tm
from avitalk.eval.text_metrics import (
    METRICS,
    CaptionScorer,
    MetricUnavailableError,
    bleu1,
    bleu4,
    caption_metrics,
    cider_d,
    ptb_tokenize,
    rouge_l,
    spice,
)

pytest.importorskip("pycocoevalcap.bleu.bleu")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="no java on PATH")

# Three synthetic-style items; the values below were computed by hand (BP, LCS) or with nltk 3.10.4
# ``corpus_bleu`` on the same whitespace tokens (coco-caption's BLEU adds a 1e-15/1e-9 smoothing, so
# they agree to ~1e-10).
HYPS = [
    "a woman feels fairly angry and speaks with noticeably lowered brows",
    "a man is very happy with a broad smile and raised cheeks",
    "he looks sad his mouth corners droop",
]
REFS = [
    [
        "a woman feels fairly angry and speaks with noticeably lowered brows and tightly pressed lips",
        "looking quite mad a lady talks with furrowed brows",
    ],
    ["a man feels extremely happy and speaks with a broad smile and strongly raised cheeks"],
    [
        "a man feels slightly sad and speaks with subtly downturned mouth corners",
        "a man is sad",
        "feeling somewhat sorrowful he speaks with drooping eyelids",
    ],
]
NLTK_BLEU1 = 0.7795891541930149
NLTK_BLEU4 = 0.5561740091075036


@needs_java
def test_ptb_tokenizer_lowercases_splits_and_drops_punctuation() -> None:
    out = ptb_tokenize(["Hello, World!", "", "A woman's smile -- don't\nstop.", "Very   happy ;)"])
    assert out == ["hello world", "", "a woman 's smile do n't stop", "very happy -rrb-"]


@needs_java
def test_identical_hypotheses_score_one() -> None:
    hyps = ["a woman feels fairly angry", "a man is extremely happy today"]
    refs = [[h] for h in hyps]
    assert bleu1(hyps, refs) == pytest.approx(1.0, abs=1e-9)
    assert bleu4(hyps, refs) == pytest.approx(1.0, abs=1e-9)
    assert rouge_l(hyps, refs) == pytest.approx(1.0)
    # CIDEr-D: identical texts with disjoint n-grams across the two items -> cosine 1 at every n -> x10
    assert cider_d(hyps, refs) == pytest.approx(10.0)


@needs_java
def test_bleu_brevity_penalty_by_hand() -> None:
    # every n-gram of the hypothesis is in the reference; BP = exp(1 - 6/4)
    hyps, refs = ["the cat sat on"], [["the cat sat on the mat"]]
    assert bleu1(hyps, refs) == pytest.approx(math.exp(-0.5), abs=1e-8)
    assert bleu4(hyps, refs) == pytest.approx(math.exp(-0.5), abs=1e-8)
    # 3 words have no 4-gram: coco-caption's smoothing gives p4 = 1e-15 / 1e-9, so BLEU-4 = e^-1 * 1e-6^(1/4)
    hyps = ["the cat sat"]
    assert bleu1(hyps, refs) == pytest.approx(math.exp(-1), abs=1e-8)
    assert bleu4(hyps, refs) == pytest.approx(math.exp(-1) * 1e-6**0.25, rel=1e-6)


@needs_java
def test_bleu_matches_nltk_on_fixed_pairs() -> None:
    assert bleu1(HYPS, REFS) == pytest.approx(NLTK_BLEU1, abs=1e-8)
    assert bleu4(HYPS, REFS) == pytest.approx(NLTK_BLEU4, abs=1e-8)


@needs_java
def test_rouge_l_by_hand() -> None:
    # LCS("a b c d", "a c d e f") = 3: P = 3/4, R = 3/5; F = (1 + 1.2^2) P R / (R + 1.2^2 P)
    p, r, b2 = 3 / 4, 3 / 5, 1.2**2
    assert rouge_l(["a b c d"], [["a c d e f"]]) == pytest.approx((1 + b2) * p * r / (r + b2 * p))
    # several references: best precision and best recall are taken separately
    # ref1 "a b": LCS 2, P 2/4, R 1;  ref2 "a b c d e f g h": LCS 4, P 1, R 1/2  -> P = 1, R = 1
    assert rouge_l(["a b c d"], [["a b", "a b c d e f g h"]]) == pytest.approx(1.0)


@needs_java
def test_cider_d_swapped_captions_score_zero_and_single_item_is_zero() -> None:
    hyps = ["a woman feels fairly angry", "a man is extremely happy today"]
    assert cider_d(hyps[::-1], [[h] for h in hyps]) == pytest.approx(0.0)
    # document frequencies come from the evaluated set: one item -> idf log(1/1) = 0 everywhere
    assert cider_d(hyps[:1], [[hyps[0]]]) == 0.0


@needs_java
def test_scorer_without_meteor_and_spice_reports_values_in_table_order() -> None:
    res = caption_metrics(HYPS, REFS, ("CIDEr", "BLEU-4", "BLEU-1", "ROUGE-L"))
    assert list(res.scores) == ["BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"]
    assert res.n == 3 and res.unavailable == {}
    assert res.scores["BLEU-1"] == pytest.approx(NLTK_BLEU1, abs=1e-8)
    assert 0.0 < res.scores["ROUGE-L"] < 1.0 and 0.0 < res.scores["CIDEr"] < 10.0


@needs_java
def test_empty_and_multiline_hypotheses_stay_aligned() -> None:
    hyps = ["", "a man is\nextremely happy today"]
    refs = [["a woman feels fairly angry"], ["a man is extremely happy today"]]
    res = caption_metrics(hyps, refs, ("ROUGE-L",))
    assert res.scores["ROUGE-L"] == pytest.approx(0.5)  # 0 for the empty text, 1 for the joined lines


def test_spice_absent_without_corenlp_jars_is_reported_not_faked(monkeypatch) -> None:
    monkeypatch.setattr(tm, "spice_jars_missing", lambda: ["/x/spice/lib/stanford-corenlp-3.6.0.jar"])
    monkeypatch.setattr(tm, "ptb_tokenize", lambda texts, java=None: [t.lower() for t in texts])
    res = caption_metrics(["a b"], [["a b"]], ("BLEU-1", "SPICE"))
    assert "SPICE" not in res.scores
    assert res.unavailable["SPICE"].startswith("absent:") and "stanford-corenlp-3.6.0.jar" in res.unavailable["SPICE"]
    with pytest.raises(MetricUnavailableError, match="SPICE: absent"):
        spice(["a b"], [["a b"]])


def test_without_java_every_metric_is_unavailable_with_the_reason(monkeypatch) -> None:
    monkeypatch.setattr(tm.shutil, "which", lambda name: None)
    res = caption_metrics(["a b"], [["a b"]], ("BLEU-1", "METEOR"))
    assert res.scores == {}
    assert set(res.unavailable) == {"BLEU-1", "METEOR"}
    assert "java not found" in res.unavailable["BLEU-1"]
    with pytest.raises(AvitalkError, match="java not found"):
        bleu1(["a b"], [["a b"]])


def test_failing_java_is_an_error_not_a_hang(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'Error: boom' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(MetricUnavailableError, match=r"exit 3\): Error: boom"):
        ptb_tokenize(["a b"], java=str(fake))
    with CaptionScorer(("METEOR",), java=str(fake)) as scorer:
        monkeypatch.setattr(tm, "ptb_tokenize", lambda texts, java=None: list(texts))
        res = scorer.score(["a b"], [["a b"]])
    assert "METEOR" in res.unavailable and "boom" in res.unavailable["METEOR"]


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        caption_metrics(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="references\\[0\\]"):
        caption_metrics(["a"], [[]])
    with pytest.raises(ValueError, match="no hypotheses"):
        caption_metrics([], [])
    with pytest.raises(ValueError, match="unknown metrics"):
        CaptionScorer(("BLEU-2",))
    assert METRICS == ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")


@pytest.mark.integration
@needs_java
def test_meteor_golden_values_one_process_for_several_sets() -> None:
    with CaptionScorer(("METEOR",)) as scorer:
        identical = scorer.score(["a woman feels fairly angry"], [["a woman feels fairly angry"]])
        # exact matches only, 3 chunks for 3 matches: Fmean 1, penalty 0.6 * (3/3)^... = 0.6 -> 0.4
        shuffled = scorer.score(["zorb quix flim"], [["zorb flim quix"]])
        both = scorer.score(["a woman feels fairly angry", "zorb quix flim"],
                            [["a woman feels fairly angry"], ["zorb flim quix"]])  # fmt: skip
    assert identical.scores["METEOR"] == pytest.approx(1.0)
    assert shuffled.scores["METEOR"] == pytest.approx(0.4)
    assert 0.4 < both.scores["METEOR"] < 1.0  # corpus-level: statistics pooled, not a mean of items
