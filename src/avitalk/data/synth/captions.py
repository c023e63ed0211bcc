"""MeadText-style visual instructions from a clip style, their paraphrases, augmentation and parsing.

A caption names who speaks, the emotion with an intensity adverb, and 2-4 facial actions with their
own intensity words, chosen from the clip's strongest *realised* actions (:class:`.style.ClipStyle`)::

    A woman feels fairly angry and speaks with noticeably lowered brows and tightly pressed lips.

:func:`augment` is the paper's text augmentation (synonym replacement over a small hand-written
table, reused by the training stages); :func:`parse_caption` recovers (emotion, intensity) from any
caption or paraphrase produced here, and is lenient enough for generated text.
"""

from __future__ import annotations

import re

import numpy as np

from avitalk.data.synth.style import BEHAVIOURS, ClipStyle

# ------------------------------------------------------------------------------------------ vocabulary

EMOTION_WORDS: dict[str, tuple[str, ...]] = {
    # emotion -> adjectives (the first is canonical); synonyms keep the intensity neutral
    "neutral": ("neutral", "calm", "composed"),
    "happy": ("happy", "joyful", "cheerful", "glad"),
    "sad": ("sad", "sorrowful", "unhappy", "gloomy"),
    "angry": ("angry", "mad", "irate", "cross"),
    "surprised": ("surprised", "astonished", "amazed", "startled"),
    "fear": ("fearful", "scared", "afraid", "frightened"),
    "disgust": ("disgusted", "repulsed", "revolted", "sickened"),
    "contempt": ("contemptuous", "scornful", "disdainful"),
}
EMOTION_NOUNS: dict[str, str] = {
    # accepted by parse_caption only (generated text)
    "neutrality": "neutral", "happiness": "happy", "joy": "happy", "sadness": "sad", "sorrow": "sad",
    "anger": "angry", "rage": "angry", "surprise": "surprised", "astonishment": "surprised", "fear": "fear",
    "terror": "fear", "disgust": "disgust", "contempt": "contempt", "scorn": "contempt", "disdain": "contempt",
}  # fmt: skip
INTENSITY_WORDS: dict[int, tuple[str, ...]] = {
    1: ("slightly", "mildly", "somewhat"),
    2: ("fairly", "moderately", "quite", "rather"),
    3: ("extremely", "very", "intensely", "incredibly"),
}
EXTRA_INTENSITY: dict[str, int] = {"a little": 1, "a bit": 1, "a little bit": 1, "pretty": 2, "really": 3,
                                   "highly": 3, "deeply": 3, "truly": 3, "so": 3}  # fmt: skip
"""More adverbs accepted by :func:`parse_caption` (not produced)."""
DEFAULT_INTENSITY = 2
"""Intensity :func:`parse_caption` assumes when an emotion has no adverb."""

ACTION_PHRASES: dict[str, tuple[str, tuple[str, str, str]]] = {
    # action -> (phrase template, its intensity words for weak / medium / strong realised weights)
    "smile": ("a {} smile", ("faint", "clear", "broad")),
    "cheek_raise": ("{} raised cheeks", ("subtly", "noticeably", "strongly")),
    "eye_squint": ("{} narrowed eyes", ("subtly", "noticeably", "strongly")),
    "brow_lower": ("{} lowered brows", ("subtly", "noticeably", "deeply")),
    "brow_inner_raise": ("{} raised inner brows", ("subtly", "noticeably", "strongly")),
    "brow_outer_raise": ("{} arched brows", ("subtly", "noticeably", "sharply")),
    "nose_wrinkle": ("a {} wrinkled nose", ("subtly", "noticeably", "deeply")),
    "lip_press": ("{} pressed lips", ("lightly", "firmly", "tightly")),
    "frown": ("{} downturned mouth corners", ("subtly", "noticeably", "strongly")),
    "chin_raise": ("a {} tensed chin", ("subtly", "noticeably", "strongly")),
    "eye_widen": ("{} widened eyes", ("subtly", "noticeably", "strongly")),
    "lip_stretch": ("{} stretched lips", ("subtly", "noticeably", "strongly")),
    "upper_lip_raise": ("a {} raised upper lip", ("subtly", "noticeably", "strongly")),
    "jaw_drop": ("a {} dropped jaw", ("subtly", "noticeably", "strongly")),
    "eye_lower": ("{} drooping eyelids", ("subtly", "noticeably", "heavily")),
    "smirk": ("a {} one-sided smirk", ("faint", "clear", "pronounced")),
    "head_tilt": ("a {} tilted head", ("subtly", "noticeably", "strongly")),
    "head_down": ("a {} bowed head", ("subtly", "noticeably", "deeply")),
    "mouth_open": ("{} mouth movements", ("small", "moderate", "wide")),
    "brow_accent": ("{} lifting brows", ("rarely", "occasionally", "frequently")),
    "head_motion": ("{} head movements", ("minimal", "gentle", "lively")),
}
LEVELS = (0.3, 0.55)
"""Expression action weight thresholds between weak / medium / strong phrases."""
BEHAVIOUR_LEVELS = (0.35, 0.65)
MIN_WEIGHT = 0.1
"""Expression actions weaker than this are not mentioned."""

WHO: dict[str, tuple[str, str, str]] = {"male": ("a man", "he", "his"), "female": ("a woman", "she", "her")}

FRAMES: tuple[str, ...] = (
    "{Who} feels {emo} and speaks with {acts}.",  # canonical
    "{Who} speaks with {acts}, looking {emo}.",
    "Looking {emo}, {who} speaks with {acts}.",
    "{Who} is {emo} and speaks with {acts}.",
    "{Who} speaks in a {emo} manner, with {acts}.",
    "With {acts}, {who} appears {emo} while speaking.",
    "Feeling {emo}, {who} speaks with {acts}.",
    "{Who} feels {emo}; {subj} speaks with {acts}.",
)

SYNONYMS: tuple[tuple[str, ...], ...] = (
    *EMOTION_WORDS.values(),
    *INTENSITY_WORDS.values(),
    ("subtly", "faintly", "lightly"),
    ("noticeably", "clearly", "visibly"),
    ("strongly", "markedly", "sharply"),
    ("deeply", "heavily"),
    ("faint", "slight"),
    ("clear", "visible"),
    ("broad", "wide", "big"),
    ("pronounced", "marked"),
    ("rarely", "seldom"),
    ("occasionally", "sometimes"),
    ("frequently", "often"),
    ("a man", "a male speaker", "a gentleman"),
    ("a woman", "a female speaker", "a lady"),
    ("speaks", "talks"),
    ("speaking", "talking"),
    ("smile", "grin"),
    ("raised cheeks", "lifted cheeks"),
    ("narrowed eyes", "squinting eyes"),
    ("lowered brows", "furrowed brows", "knitted brows", "lowered eyebrows"),
    ("raised inner brows", "lifted inner brows", "raised inner eyebrows"),
    ("arched brows", "arched eyebrows", "raised outer brows"),
    ("wrinkled nose", "crinkled nose", "scrunched nose"),
    ("pressed lips", "compressed lips", "pressed-together lips"),
    ("downturned mouth corners", "drooping mouth corners", "downturned lip corners"),
    ("tensed chin", "tightened chin"),
    ("widened eyes", "wide-open eyes"),
    ("stretched lips", "drawn-back lips"),
    ("raised upper lip", "lifted upper lip", "curled upper lip"),
    ("dropped jaw", "lowered jaw"),
    ("drooping eyelids", "heavy eyelids", "lowered eyelids"),
    ("one-sided smirk", "lopsided smirk", "crooked smirk"),
    ("tilted head", "cocked head"),
    ("bowed head", "lowered head"),
    ("small mouth movements", "little mouth movement", "restrained lip movements"),
    ("moderate mouth movements", "normal mouth movements", "ordinary lip movements"),
    ("wide mouth movements", "large mouth movements", "exaggerated lip movements"),
    ("lifting brows", "lifting eyebrows", "rising brows"),
    ("minimal head movements", "a nearly still head", "hardly any head motion"),
    ("gentle head movements", "gentle nods", "mild head motion"),
    ("lively head movements", "animated head movements", "lots of head motion"),
)
"""Interchangeable words and phrases (a phrase belongs to one group only)."""

_GROUP: dict[str, tuple[str, ...]] = {w: g for g in SYNONYMS for w in g}
_WORD = r"(?<![\w-])({})(?![\w-])"
_SYN_RE = re.compile(_WORD.format("|".join(map(re.escape, sorted(_GROUP, key=len, reverse=True)))), re.IGNORECASE)
_EMO_LEX = {w: e for e, ws in EMOTION_WORDS.items() for w in ws} | EMOTION_NOUNS
_INT_LEX = {w: i for i, ws in INTENSITY_WORDS.items() for w in ws} | EXTRA_INTENSITY
_ARTICLE_RE = re.compile(r"(?<![\w-])([Aa])n? (?=([\w-]+))")
_CONSONANT_SOUND = ("one", "uni", "use", "usu", "eu")


# ------------------------------------------------------------------------------------------ captions


def _level(w: float, thresholds: tuple[float, float]) -> int:
    return int(w >= thresholds[0]) + int(w >= thresholds[1])


def caption_actions(style: ClipStyle) -> list[tuple[str, int]]:
    """The 2-4 ``(action, level)`` a caption of ``style`` mentions, strongest first.

    Expression actions with weight >= :data:`MIN_WEIGHT` come first (at most 4); behaviours fill up
    to 2, the most distinctive (farthest from typical) first.
    """
    expr = [(a, w) for a, w in style.expression().items() if w >= MIN_WEIGHT]
    chosen = [(a, _level(w, LEVELS)) for a, w in sorted(expr, key=lambda kv: -kv[1])[:4]]
    behaviours = sorted(BEHAVIOURS, key=lambda b: -abs(style.actions.get(b, 0.5) - 0.5))
    for b in behaviours[: max(0, 2 - len(chosen))]:
        chosen.append((b, _level(style.actions.get(b, 0.5), BEHAVIOUR_LEVELS)))
    return chosen


def action_phrase(action: str, level: int) -> str:
    """E.g. ``("lip_press", 2)`` -> ``"tightly pressed lips"``."""
    template, words = ACTION_PHRASES[action]
    return template.format(words[level])


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _emotion_phrase(emotion: str, intensity: int) -> str:
    adjective = EMOTION_WORDS[emotion][0]
    return adjective if emotion == "neutral" else f"{INTENSITY_WORDS[intensity][0]} {adjective}"


def _gender(gender: str) -> str:
    g = gender.strip().lower()
    if g in ("male", "man", "m"):
        return "male"
    if g in ("female", "woman", "f"):
        return "female"
    raise ValueError(f"unknown gender {gender!r}; expected 'male' or 'female'")


def fix_articles(text: str) -> str:
    """Make every ``a``/``an`` agree with the next word (``an extremely``, ``a one-sided``)."""

    def repl(m: re.Match) -> str:
        nxt = m.group(2).lower()
        an = nxt[0] in "aeiou" and not nxt.startswith(_CONSONANT_SOUND)
        return m.group(1) + ("n " if an else " ")

    return _ARTICLE_RE.sub(repl, text)


def render(frame: str, style: ClipStyle, gender: str, actions: list[tuple[str, int]]) -> str:
    """Fill one of :data:`FRAMES` for ``style`` with the given ``(action, level)`` list."""
    return _render(frame, style.emotion, style.intensity, gender, actions)


def _render(frame: str, emotion: str, intensity: int, gender: str, actions: list[tuple[str, int]]) -> str:
    who, subj, poss = WHO[_gender(gender)]
    text = frame.format(
        Who=who.capitalize(),
        who=who,
        subj=subj,
        poss=poss,
        emo=_emotion_phrase(emotion, intensity),
        acts=_join([action_phrase(a, lvl) for a, lvl in actions]),
    )
    return fix_articles(text[0].upper() + text[1:])


def make_captions(style: ClipStyle, gender: str, rng: np.random.Generator, n: int = 4) -> list[str]:
    """The canonical caption of ``style`` followed by ``n - 1`` distinct paraphrases.

    Paraphrases use other sentence frames, a shuffled action order and :func:`augment`; all of them
    :func:`parse_caption` back to ``(style.emotion, style.intensity)``.
    """
    actions = caption_actions(style)
    out = [render(FRAMES[0], style, gender, actions)]
    frames = [FRAMES[i] for i in rng.permutation(np.arange(1, len(FRAMES)))]
    for k in range(20 * n):
        if len(out) >= n:
            break
        order = [actions[i] for i in rng.permutation(len(actions))]
        text = augment(render(frames[k % len(frames)], style, gender, order), rng)
        if text not in out:
            out.append(text)
    return out


def sample_captions(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` captions of random emotions, intensities, speakers, frames and 2-4 actions, half augmented.

    Not tied to any clip: the vocabulary and sentence shapes of the corpus' instructions, e.g. for the
    n-gram draft of speculative decoding (:func:`avitalk.train.load_instruct.load_stage1`).
    """
    emotions, actions = sorted(EMOTION_WORDS), sorted(ACTION_PHRASES)
    out = []
    for _ in range(n):
        emotion = emotions[rng.integers(len(emotions))]
        intensity = 1 if emotion == "neutral" else int(rng.integers(1, 4))
        chosen = rng.choice(len(actions), size=int(rng.integers(2, 5)), replace=False)
        acts = [(actions[i], int(rng.integers(3))) for i in chosen]
        gender = ("male", "female")[int(rng.integers(2))]
        text = _render(FRAMES[rng.integers(len(FRAMES))], emotion, intensity, gender, acts)
        out.append(augment(text, rng) if rng.random() < 0.5 else text)
    return out


# ------------------------------------------------------------------------------ augmentation, parsing


def augment(text: str, rng: np.random.Generator, p: float = 0.5) -> str:
    """Synonym replacement: each phrase of :data:`SYNONYMS` in ``text`` is swapped for another of its
    group with probability ``p`` (at least one is swapped if any occurs); case of the first letter and
    article agreement are kept. Emotion words and intensity adverbs stay within their class, so
    :func:`parse_caption` gives the same result."""
    matches = list(_SYN_RE.finditer(text))
    if not matches:
        return text
    swap = rng.random(len(matches)) < p
    swap[rng.integers(len(matches))] = True
    parts, last = [], 0
    for m, s in zip(matches, swap, strict=True):
        word = m.group(1)
        new = word
        if s:
            group = _GROUP[word.lower()]
            others = [w for w in group if w != word.lower()]
            new = others[rng.integers(len(others))]
            if word[0].isupper():
                new = new[0].upper() + new[1:]
        parts += [text[last : m.start(1)], new]
        last = m.end(1)
    return fix_articles("".join(parts) + text[last:])


def parse_caption(text: str) -> tuple[str, int]:
    """Recover ``(emotion, intensity)`` from a caption.

    The emotion is the first emotion word (adjective or noun) in ``text``; the intensity is given by
    the adverb right before it (1..3), :data:`DEFAULT_INTENSITY` if there is none, and always 1 for
    neutral. Text without an emotion word is ``("neutral", 1)``.
    """
    words = re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())
    for i, w in enumerate(words):
        emotion = _EMO_LEX.get(w)
        if emotion is None:
            continue
        if emotion == "neutral":
            return "neutral", 1
        for k in (3, 2, 1):
            if i >= k and " ".join(words[i - k : i]) in _INT_LEX:
                return emotion, _INT_LEX[" ".join(words[i - k : i])]
        return emotion, DEFAULT_INTENSITY
    return "neutral", 1
