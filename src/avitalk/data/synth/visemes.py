"""Phoneme -> viseme table: the articulatory target and dominance of every phone, in ARKit-52 terms.

Each phone maps to a :class:`Viseme`: a target for the *articulation channels* below (jaw opening,
lip seal, lip raise/lower, spreading, rounding, lip tuck, ...) and Cohen–Massaro dominance
parameters: how strongly the phone imposes its target (``alpha`` per channel group) and how fast
that dominance decays away from the phone (``rate``, 1/s). The teacher (:mod:`.coarticulation`)
blends the targets of neighbouring phones with these dominances.

Channel groups: ``jaw`` (jaw, tongue), ``lips`` (seal, lip raise/lower, spread, tuck, press) and
``round`` (pucker, funnel). Consonants that do not use the lips (t, k, h, ...) have a small lips/round
dominance, so they take the lip shape of their neighbours (co-articulation); rounded phones spread
their rounding further backwards (anticipatory rounding, in the teacher).

``seal`` is a virtual channel in [0, 1]: the fraction of the jaw opening cancelled by ``mouthClose``
(1 = lips together whatever the jaw does). Bilabials have ``seal = 1``.

Symbols are IPA as espeak-ng writes it (see :mod:`.phones_ipa`); stress/length marks and diacritics
are stripped by :func:`viseme`. Unknown symbols get the neutral fallback viseme (with one warning per
symbol), never an error.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------- table

ART_CHANNELS: tuple[str, ...] = (
    "jaw", "seal", "lower", "upper", "stretch", "pucker", "funnel", "roll_lo", "roll_up", "press", "shrug_up",
    "tongue",
)  # fmt: skip
"""Articulation channels of a viseme target (symmetric; the teacher maps them to ARKit channels)."""

GROUPS: tuple[str, ...] = ("jaw", "lips", "round")
CHANNEL_GROUP: tuple[int, ...] = (0, 1, 1, 1, 1, 2, 2, 1, 1, 1, 1, 0)
"""Dominance group of each articulation channel (index into :data:`GROUPS`)."""

BILABIAL: frozenset[str] = frozenset({"p", "b", "m"})
LABIODENTAL: frozenset[str] = frozenset({"f", "v"})
ROUNDED: frozenset[str] = frozenset({"u", "ʊ", "oʊ", "o", "ɔ", "w", "ɔɪ", "aʊ", "ɒ"})
VOWELS: frozenset[str] = frozenset(
    {"i", "ɪ", "ᵻ", "e", "eɪ", "ɛ", "æ", "a", "aɪ", "aʊ", "ɑ", "ɒ", "ɔ", "ɔɪ", "o", "oʊ", "ʊ", "u", "ʌ", "ə", "ɐ", "ɚ",
     "ɜ"}
)  # fmt: skip

DIPHTHONGS: dict[str, tuple[str, str, float]] = {
    "aɪ": ("a", "ɪ", 0.55),
    "aʊ": ("a", "ʊ", 0.55),
    "eɪ": ("e", "ɪ", 0.6),
    "oʊ": ("o", "ʊ", 0.6),
    "ɔɪ": ("ɔ", "ɪ", 0.55),
}
"""Diphthong -> (first target, second target, fraction of the duration spent on the first)."""

# fmt: off
#                jaw  seal lower upper strch pucker funnl rollLo rollUp press shrugU tongue | a_lip a_jaw a_rnd rate
_TABLE: dict[str, tuple[float, ...]] = {
    # vowels: jaw opening follows openness; spread for i/ɪ/e; rounding for u/ʊ/o/ɔ
    "i":  (0.10, 0,   0.10, 0.05, 0.35, 0,    0,    0,    0,    0,    0,    0,     0.6,  0.9,  0.8,  16),
    "ɪ":  (0.14, 0,   0.12, 0.05, 0.25, 0,    0,    0,    0,    0,    0,    0,     0.5,  0.8,  0.6,  16),
    "ᵻ":  (0.14, 0,   0.10, 0.03, 0.18, 0,    0,    0,    0,    0,    0,    0,     0.4,  0.7,  0.4,  18),
    "e":  (0.20, 0,   0.15, 0.05, 0.25, 0,    0,    0,    0,    0,    0,    0,     0.6,  0.9,  0.7,  16),
    "ɛ":  (0.28, 0,   0.20, 0.05, 0.15, 0,    0,    0,    0,    0,    0,    0,     0.6,  0.9,  0.5,  16),
    "æ":  (0.42, 0,   0.28, 0.10, 0.20, 0,    0,    0,    0,    0,    0,    0,     0.6,  1.0,  0.5,  15),
    "a":  (0.48, 0,   0.25, 0.08, 0.08, 0,    0,    0,    0,    0,    0,    0,     0.6,  1.0,  0.5,  15),
    "ɑ":  (0.52, 0,   0.25, 0.05, 0,    0,    0,    0,    0,    0,    0,    0,     0.6,  1.0,  0.5,  15),
    "ɒ":  (0.48, 0,   0.20, 0.05, 0,    0.15, 0.25, 0,    0,    0,    0,    0,     0.6,  1.0,  0.8,  15),
    "ɔ":  (0.42, 0,   0.15, 0.05, 0,    0.25, 0.35, 0,    0,    0,    0,    0,     0.7,  1.0,  1.0,  15),
    "o":  (0.28, 0,   0.08, 0.05, 0,    0.40, 0.40, 0,    0,    0,    0,    0,     0.7,  0.9,  1.0,  16),
    "ʊ":  (0.16, 0,   0.05, 0.03, 0,    0.40, 0.25, 0,    0,    0,    0,    0,     0.7,  0.8,  1.0,  16),
    "u":  (0.10, 0,   0,    0,    0,    0.65, 0.30, 0,    0,    0,    0,    0,     0.8,  0.8,  1.0,  16),
    "ʌ":  (0.34, 0,   0.18, 0.05, 0,    0,    0,    0,    0,    0,    0,    0,     0.5,  0.9,  0.5,  16),
    "ə":  (0.22, 0,   0.10, 0.02, 0,    0,    0,    0,    0,    0,    0,    0,     0.3,  0.5,  0.3,  20),
    "ɐ":  (0.26, 0,   0.12, 0.03, 0,    0,    0,    0,    0,    0,    0,    0,     0.35, 0.6,  0.3,  20),
    "ɚ":  (0.18, 0,   0.06, 0.05, 0,    0.22, 0.18, 0,    0,    0,    0,    0,     0.5,  0.7,  0.6,  18),
    "ɜ":  (0.22, 0,   0.08, 0.05, 0,    0.20, 0.20, 0,    0,    0,    0,    0,     0.5,  0.8,  0.6,  16),
    # diphthongs (the teacher splits them into their two targets; these rows are their averages)
    "aɪ": (0.33, 0,   0.19, 0.07, 0.15, 0,    0,    0,    0,    0,    0,    0,     0.6,  0.9,  0.6,  15),
    "aʊ": (0.33, 0,   0.15, 0.06, 0.04, 0.20, 0.12, 0,    0,    0,    0,    0,     0.6,  0.9,  0.8,  15),
    "eɪ": (0.17, 0,   0.14, 0.05, 0.25, 0,    0,    0,    0,    0,    0,    0,     0.6,  0.9,  0.7,  16),
    "oʊ": (0.22, 0,   0.07, 0.04, 0,    0.40, 0.33, 0,    0,    0,    0,    0,     0.7,  0.9,  1.0,  16),
    "ɔɪ": (0.28, 0,   0.14, 0.05, 0.12, 0.12, 0.18, 0,    0,    0,    0,    0,     0.6,  0.9,  0.8,  15),
    # bilabials: full lip seal (hard constraint in the teacher), pressed lips
    "p":  (0.05, 1.0, 0,    0,    0,    0,    0,    0.10, 0.08, 0.35, 0,    0,     2.0,  0.6,  0.2,  26),
    "b":  (0.05, 1.0, 0,    0,    0,    0,    0,    0.08, 0.06, 0.25, 0,    0,     2.0,  0.6,  0.2,  26),
    "m":  (0.05, 1.0, 0,    0,    0,    0,    0,    0.05, 0.05, 0.15, 0,    0,     2.0,  0.5,  0.2,  24),
    # labiodentals: lower lip tucked under the upper teeth
    "f":  (0.06, 0,   0,    0.18, 0,    0,    0,    0.45, 0,    0,    0.10, 0,     1.5,  0.6,  0.2,  24),
    "v":  (0.06, 0,   0,    0.15, 0,    0,    0,    0.40, 0,    0,    0.08, 0,     1.5,  0.6,  0.2,  24),
    # dentals: tongue tip between the teeth
    "θ":  (0.10, 0,   0.08, 0.03, 0,    0,    0,    0,    0,    0,    0,    0.15,  0.4,  0.7,  0.15, 24),
    "ð":  (0.10, 0,   0.06, 0.02, 0,    0,    0,    0,    0,    0,    0,    0.10,  0.35, 0.6,  0.15, 26),
    # alveolars: jaw fairly closed, lips free (take the neighbours' shape)
    "t":  (0.09, 0,   0.08, 0,    0,    0,    0,    0,    0,    0,    0,    0,     0.25, 0.6,  0.15, 26),
    "d":  (0.09, 0,   0.08, 0,    0,    0,    0,    0,    0,    0,    0,    0,     0.25, 0.6,  0.15, 26),
    "n":  (0.09, 0,   0.08, 0,    0,    0,    0,    0,    0,    0,    0,    0,     0.25, 0.5,  0.15, 26),
    "s":  (0.05, 0,   0.08, 0.05, 0.12, 0,    0,    0,    0,    0,    0,    0,     0.45, 0.85, 0.15, 26),
    "z":  (0.05, 0,   0.08, 0.05, 0.12, 0,    0,    0,    0,    0,    0,    0,     0.45, 0.85, 0.15, 26),
    "l":  (0.14, 0,   0.08, 0,    0,    0,    0,    0,    0,    0,    0,    0,     0.2,  0.5,  0.15, 26),
    "ɾ":  (0.15, 0,   0.05, 0,    0,    0,    0,    0,    0,    0,    0,    0,     0.1,  0.3,  0.1,  30),
    # postalveolars: protruded, funnelled lips
    "ʃ":  (0.07, 0,   0.10, 0.10, 0,    0.30, 0.40, 0,    0,    0,    0,    0,     0.8,  0.8,  0.8,  24),
    "ʒ":  (0.07, 0,   0.10, 0.10, 0,    0.30, 0.40, 0,    0,    0,    0,    0,     0.8,  0.8,  0.8,  24),
    "tʃ": (0.07, 0,   0.08, 0.08, 0,    0.28, 0.38, 0,    0,    0.05, 0,    0,     0.8,  0.8,  0.8,  24),
    "dʒ": (0.07, 0,   0.08, 0.08, 0,    0.28, 0.38, 0,    0,    0.05, 0,    0,     0.8,  0.8,  0.8,  24),
    # approximants
    "ɹ":  (0.12, 0,   0.03, 0.03, 0,    0.30, 0.15, 0,    0,    0,    0,    0,     0.6,  0.4,  0.7,  22),
    "w":  (0.08, 0,   0,    0,    0,    0.60, 0.25, 0,    0,    0,    0,    0,     0.9,  0.6,  1.0,  22),
    "j":  (0.08, 0,   0.05, 0,    0.25, 0,    0,    0,    0,    0,    0,    0,     0.5,  0.6,  0.7,  24),
    # velars and glottals: lips and jaw mostly follow the neighbours
    "k":  (0.14, 0,   0.05, 0,    0,    0,    0,    0,    0,    0,    0,    0,     0.15, 0.5,  0.1,  26),
    "ɡ":  (0.14, 0,   0.05, 0,    0,    0,    0,    0,    0,    0,    0,    0,     0.15, 0.5,  0.1,  26),
    "ŋ":  (0.12, 0,   0.05, 0,    0,    0,    0,    0,    0,    0,    0,    0,     0.15, 0.5,  0.1,  26),
    "h":  (0.20, 0,   0.08, 0,    0,    0,    0,    0,    0,    0,    0,    0,     0.05, 0.1,  0.05, 26),
    "ʔ":  (0.10, 0,   0,    0,    0,    0,    0,    0,    0,    0,    0,    0,     0.05, 0.1,  0.05, 30),
    # the relaxed, closed mouth of silence (a plateau over the whole pause in the teacher)
    "_":  (0,    0,   0,    0,    0,    0,    0,    0,    0,    0,    0,    0,     1.5,  1.5,  1.5,  25),
}
# fmt: on

ALIASES: dict[str, str] = {"g": "ɡ", "r": "ɹ", "ɝ": "ɚ", "ɫ": "l", "x": "k", "ʍ": "w", "ɨ": "ᵻ", "n̩": "n", "l̩": "l"}
"""Spellings outside the table that have an exact equivalent in it."""

SILENCE = "_"
FALLBACK = "ə"
"""Viseme used for unknown symbols: a neutral, weakly dominant half-open mouth."""

_MARKS = frozenset("ˈˌːˑ'-")


@dataclass(frozen=True)
class Viseme:
    """Articulatory target and dominance of one phone.

    Attributes:
        symbol: the table symbol.
        target: ``(len(ART_CHANNELS),)`` float32 target per articulation channel.
        alpha: ``(3,)`` float32 dominance magnitude per group (jaw, lips, round).
        rate: dominance decay rate in 1/s (``D(t) = alpha * exp(-rate * |t - core|)``).
        bilabial: the lips must close (hard constraint).
        labiodental: the lower lip tucks under the upper teeth.
        rounded: rounds the lips, with anticipatory spreading.
        vowel: a vowel (holds its target over the middle of its duration).
    """

    symbol: str
    target: np.ndarray
    alpha: np.ndarray
    rate: float
    bilabial: bool = False
    labiodental: bool = False
    rounded: bool = False
    vowel: bool = False


def _build(symbol: str, row: tuple[float, ...]) -> Viseme:
    n = len(ART_CHANNELS)
    return Viseme(
        symbol=symbol,
        target=np.asarray(row[:n], dtype=np.float32),
        alpha=np.asarray(row[n : n + 3], dtype=np.float32),
        rate=float(row[n + 3]),
        bilabial=symbol in BILABIAL,
        labiodental=symbol in LABIODENTAL,
        rounded=symbol in ROUNDED,
        vowel=symbol in VOWELS,
    )


VISEMES: dict[str, Viseme] = {s: _build(s, row) for s, row in _TABLE.items()}
"""Every table symbol -> its viseme (``"_"`` is silence)."""

_warned: set[str] = set()


def clean_symbol(symbol: str) -> str:
    """Strip stress/length marks and combining diacritics (e.g. ``"ˈɔː"`` -> ``"ɔ"``, ``"n̩"`` -> ``"n"``)."""
    s = unicodedata.normalize("NFD", symbol)
    return "".join(ch for ch in s if ch not in _MARKS and unicodedata.category(ch) != "Mn")


def known(symbol: str) -> bool:
    """True if ``symbol`` has its own viseme (directly, as an alias, or once marks are stripped)."""
    s = clean_symbol(symbol)
    return symbol in VISEMES or symbol in ALIASES or s in VISEMES or s in ALIASES


def viseme(symbol: str) -> Viseme:
    """The viseme of one phone symbol; unknown symbols give :data:`FALLBACK` and a warning (once each)."""
    for s in (symbol, ALIASES.get(symbol, ""), clean_symbol(symbol)):
        s = ALIASES.get(s, s)
        if s in VISEMES:
            return VISEMES[s]
    if symbol not in _warned:
        _warned.add(symbol)
        log.warning("no viseme for phone %r; using the neutral fallback %r", symbol, FALLBACK)
    return VISEMES[FALLBACK]
