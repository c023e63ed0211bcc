"""The corpus sentence list: size, uniqueness, length, variety and phoneme coverage."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from avitalk.data.synth.sentences import load_sentences

# phoneme -> a spelling pattern that (roughly) produces it
GRAPHEMES = {
    "p": r"p", "b": r"b", "m": r"m", "f": r"f|ph", "v": r"v", "θ": r"th", "ð": r"\bth", "t": r"t", "d": r"d",
    "n": r"n", "s": r"s", "z": r"z|s\b", "ʃ": r"sh|tion", "ʒ": r"sion|sure|ge\b|sual", "tʃ": r"ch", "dʒ": r"j|dge|ge",
    "k": r"k|c", "ɡ": r"g", "ŋ": r"ng", "h": r"\bh", "l": r"l", "ɹ": r"r", "w": r"\bw", "j": r"\by", "i": r"ee|ea",
    "u": r"oo|ue|ew", "ʊ": r"ook|ould|ush", "oʊ": r"oa|ow|o\b", "ɔɪ": r"oy|oi", "aʊ": r"ou|ow", "aɪ": r"i.e|igh|y\b",
    "ɜ": r"ir|ur|ear", "æ": r"a", "ɑ": r"a|o",
}  # fmt: skip


def test_at_least_500_distinct_sentences_of_5_to_16_words():
    s = load_sentences()
    assert len(s) >= 520
    assert len({x.lower() for x in s}) == len(s)
    for x in s:
        assert 5 <= len(x.split()) <= 16, x
        assert x[0].isupper() and x[-1] in '.?!"', x


def test_sentence_types_and_lip_phonemes_are_frequent():
    s = load_sentences()
    assert sum(x.endswith("?") for x in s) >= 30
    assert sum(x.endswith("!") for x in s) >= 20
    assert sum("," in x for x in s) >= 50
    text = " ".join(s).lower()
    assert len(re.findall(r"[pbm]", text)) > 1200
    assert len(re.findall(r"[fv]", text)) > 500


@pytest.mark.parametrize("phoneme", sorted(GRAPHEMES))
def test_rough_grapheme_coverage(phoneme):
    hits = sum(bool(re.search(GRAPHEMES[phoneme], x.lower())) for x in load_sentences())
    assert hits >= 10, phoneme


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_every_inventory_phone_occurs_in_espeak_transcriptions():
    from avitalk.data.synth.phones_ipa import PHONE_INVENTORY, split_phoneme

    out = subprocess.run(
        ["espeak-ng", "-q", "--ipa", "--sep=_", "-v", "en-us"],
        input="\n".join(load_sentences()),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    seen = set()
    for ph in re.split(r"[\s_]+", out):
        seen.update(sym for sym, _ in split_phoneme(ph))
    assert PHONE_INVENTORY <= seen, sorted(PHONE_INVENTORY - seen)
