"""The IPA phone inventory of the synthetic corpus and the tokeniser that maps backend output onto it.

Every backend (piper, espeak-ng, festival) reports phonemes in its own way: piper gives espeak-ng IPA one
Unicode code point at a time (``m ˈ e ɪ b i ː``), espeak-ng's phoneme events give whole espeak phonemes
(``eɪ``, ``ɔːɹ``, ``əl``), festival gives radio-phoneset names (``ey``, ``axr``). All of them are
reduced here to one compact inventory, :data:`PHONE_INVENTORY`, which the motion teacher's viseme table
must cover:

- stress marks (ˈ ˌ) are removed and become :attr:`Phone.stress` of the next vowel;
- length marks (ː ˑ), tie bars, syllabicity and other diacritics are removed;
- diphthongs and affricates stay single symbols (``aɪ eɪ oʊ aʊ ɔɪ tʃ dʒ``); r-coloured and syllabic
  espeak phonemes (``ɔːɹ``, ``ɪɹ``, ``əl``, ``aɪɚ``) become two phones;
- rare symbols map to the nearest English phone (:data:`NORMALIZE`), anything else to ``ə``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

VOWELS: frozenset[str] = frozenset(
    {"i", "ɪ", "ᵻ", "ɛ", "æ", "ɐ", "ə", "ɚ", "ɜ", "ʌ", "ɑ", "ɔ", "ʊ", "u", "eɪ", "aɪ", "ɔɪ", "oʊ", "aʊ"}
)
"""Vowel phones (carry stress)."""

CONSONANTS: frozenset[str] = frozenset(
    {
        "p", "b", "m",  # bilabial: lips close
        "f", "v",  # labiodental
        "θ", "ð",  # dental
        "t", "d", "n", "s", "z", "l", "ɾ",  # alveolar
        "ʃ", "ʒ", "tʃ", "dʒ",  # postalveolar
        "ɹ", "j", "w",  # approximants
        "k", "ɡ", "ŋ",  # velar
        "h", "ʔ",  # glottal
    }
)  # fmt: skip
"""Consonant phones."""

PHONE_INVENTORY: frozenset[str] = VOWELS | CONSONANTS
"""Every phone symbol a synthesis backend may emit (IPA as espeak-ng writes it, no stress/length)."""

BILABIALS: frozenset[str] = frozenset({"p", "b", "m"})
"""Phones with a full lip closure."""

MULTI_CHAR: tuple[str, ...] = ("aɪ", "eɪ", "oʊ", "aʊ", "ɔɪ", "tʃ", "dʒ")
"""Two-code-point symbols kept as one phone."""

NORMALIZE: dict[str, str] = {
    "g": "ɡ",
    "r": "ɹ",
    "ɻ": "ɹ",
    "ɫ": "l",
    "ɬ": "l",
    "ʍ": "w",
    "x": "k",
    "ç": "h",
    "ɣ": "ɡ",
    "β": "b",
    "ɸ": "f",
    "ɒ": "ɑ",
    "a": "æ",
    "e": "ɛ",
    "o": "oʊ",
    "ɘ": "ə",
    "ɵ": "ə",
    "ɨ": "ᵻ",
    "ʉ": "u",
    "y": "u",
    "ø": "ə",
    "œ": "ɛ",
    "ɯ": "u",
    "ɤ": "ʌ",
    "ɝ": "ɚ",
    "ɲ": "n",
    "ɳ": "n",
    "ɱ": "m",
    "c": "k",
    "q": "k",
    "ɟ": "ɡ",
    "ʎ": "l",
    "ʁ": "ɹ",
    "ʀ": "ɹ",
    "χ": "h",
    "ħ": "h",
    "ʕ": "h",
    "ɦ": "h",
    "ʂ": "ʃ",
    "ʐ": "ʒ",
    "ɕ": "ʃ",
    "ʑ": "ʒ",
    "ɖ": "d",
    "ʈ": "t",
    "ɽ": "ɾ",
    "ɺ": "ɾ",
    "ʋ": "v",
    "ɥ": "j",
    "ɰ": "w",
    "ʏ": "ʊ",
    "ɞ": "ɜ",
    "ɶ": "æ",
}
"""Rare symbols -> nearest inventory phone."""

STRESS_MARKS: dict[str, int] = {"ˈ": 1, "ˌ": 2}
_DROP = frozenset({"ː", "ˑ", "ʰ", "ʲ", "ˤ", "ʷ", "˞", "-", "'", "↓", "↑", "#", '"'})
"""Modifier letters and marks that carry no phone of their own."""

WORD_BREAK = " "
PUNCTUATION = frozenset(",.;:!?()…—–")


@dataclass(frozen=True)
class Token:
    """One phone of a code-point sequence.

    Attributes:
        symbol: phone in :data:`PHONE_INVENTORY`.
        stress: 0, 1 or 2 (vowels only).
        indices: the positions in the input sequence that belong to this phone (the phone's own code
            points plus marks such as ˈ before it and ː after it).
    """

    symbol: str
    stress: int
    indices: tuple[int, ...]


def normalize_symbol(symbol: str) -> str:
    """Map one espeak/IPA phoneme (without marks) to :data:`PHONE_INVENTORY` (unknown -> ``ə``)."""
    if symbol in PHONE_INVENTORY:
        return symbol
    return NORMALIZE.get(symbol, "ə")


def is_mark(ch: str) -> bool:
    """True for stress/length marks, modifier letters and combining diacritics (no phone of their own)."""
    return ch in STRESS_MARKS or ch in _DROP or unicodedata.category(ch) == "Mn"


def tokenize(chars: Sequence[str]) -> list[Token]:
    """Group IPA code points (piper's phoneme list, or ``list(ipa_string)``) into phones.

    Word breaks and punctuation are not phones and are skipped (the caller handles them); a stress mark
    applies to the next vowel, a length mark or diacritic is attached to the phone before it.

    Args:
        chars: ``(N,)`` single code points (NFD), e.g. ``["m", "ˈ", "e", "ɪ"]``.

    Returns:
        tokens in order; their ``indices`` are disjoint and increasing.
    """
    tokens: list[Token] = []
    pending_stress = 0
    pending_idx: list[int] = []
    i = 0
    n = len(chars)
    while i < n:
        ch = chars[i]
        if ch == WORD_BREAK or ch in PUNCTUATION:
            pending_idx = []
            i += 1
            continue
        if ch in STRESS_MARKS:
            pending_stress = STRESS_MARKS[ch]
            pending_idx.append(i)
            i += 1
            continue
        if is_mark(ch):
            if tokens and tokens[-1].indices[-1] == i - 1:  # attach to the phone just before
                last = tokens[-1]
                tokens[-1] = Token(last.symbol, last.stress, (*last.indices, i))
            i += 1
            continue
        # longest match: a two-code-point symbol, possibly with length marks between ("ɔːɪ")
        j = i + 1
        while j < n and is_mark(chars[j]) and chars[j] not in STRESS_MARKS:
            j += 1
        if j < n and (ch + chars[j]) in MULTI_CHAR:
            sym, idx = ch + chars[j], list(range(i, j + 1))
            i = j + 1
        else:
            sym, idx = ch, [i]
            i += 1
        sym = normalize_symbol(sym)
        stress = 0
        if sym in VOWELS:
            stress, pending_stress = pending_stress, 0
        tokens.append(Token(sym, stress, (*pending_idx, *idx)))
        pending_idx = []
    return tokens


def split_phoneme(name: str) -> list[tuple[str, float]]:
    """Split one espeak phoneme name (an event string such as ``"ɔːɹ"`` or ``"əl"``) into phones.

    Returns:
        ``[(symbol, fraction_of_duration), ...]`` whose fractions sum to 1; empty for a pause.
    """
    chars = list(unicodedata.normalize("NFD", name))
    toks = tokenize(chars)
    if not toks:
        return []
    if len(toks) == 1:
        return [(toks[0].symbol, 1.0)]
    # vowels take the larger share of an r-coloured / syllabic pair
    weights = [2.0 if t.symbol in VOWELS else 1.0 for t in toks]
    total = sum(weights)
    return [(t.symbol, w / total) for t, w in zip(toks, weights, strict=True)]


FESTIVAL_TO_IPA: dict[str, tuple[str, ...]] = {
    "aa": ("ɑ",),
    "ae": ("æ",),
    "ah": ("ʌ",),
    "ao": ("ɔ",),
    "aw": ("aʊ",),
    "ax": ("ə",),
    "axr": ("ɚ",),
    "ay": ("aɪ",),
    "b": ("b",),
    "ch": ("tʃ",),
    "d": ("d",),
    "dh": ("ð",),
    "dx": ("ɾ",),
    "eh": ("ɛ",),
    "el": ("ə", "l"),
    "em": ("m",),
    "en": ("n",),
    "er": ("ɜ",),
    "ey": ("eɪ",),
    "f": ("f",),
    "g": ("ɡ",),
    "hh": ("h",),
    "hv": ("h",),
    "ih": ("ɪ",),
    "iy": ("i",),
    "jh": ("dʒ",),
    "k": ("k",),
    "l": ("l",),
    "m": ("m",),
    "n": ("n",),
    "nx": ("ŋ",),
    "ng": ("ŋ",),
    "ow": ("oʊ",),
    "oy": ("ɔɪ",),
    "p": ("p",),
    "r": ("ɹ",),
    "s": ("s",),
    "sh": ("ʃ",),
    "t": ("t",),
    "th": ("θ",),
    "uh": ("ʊ",),
    "uw": ("u",),
    "v": ("v",),
    "w": ("w",),
    "y": ("j",),
    "z": ("z",),
    "zh": ("ʒ",),
}
"""Festival's US ``radio`` phone set -> inventory phones (``pau``/``h#``/``brk`` are silence)."""

FESTIVAL_SILENCE = frozenset({"pau", "h#", "brk", "sil", "#"})
