"""MeadText-style captions: grammar, paraphrases, augmentation and the parse_caption round trip."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from avitalk.data.synth.captions import (
    ACTION_PHRASES,
    EMOTION_WORDS,
    FRAMES,
    INTENSITY_WORDS,
    SYNONYMS,
    action_phrase,
    augment,
    caption_actions,
    fix_articles,
    make_captions,
    parse_caption,
    render,
)
from avitalk.data.synth.style import ACTIONS, BEHAVIOURS, EMOTIONS, ClipStyle, sample_clip_style, speaker_style


def all_styles(seeds=range(6)) -> list[ClipStyle]:
    out = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for emotion in EMOTIONS:
            for intensity in (1,) if emotion == "neutral" else (1, 2, 3):
                out.append(sample_clip_style(emotion, intensity, speaker_style(f"spk{seed}", seed), rng))
    return out


CANONICAL = re.compile(
    r"^(A man|A woman) feels (?:(slightly|fairly|extremely) )?(\w+) and speaks with (.+)\.$"  # who, adverb, emotion
)


def test_canonical_caption_grammar():
    for k, st in enumerate(all_styles()):
        gender = ("male", "female")[k % 2]
        text = make_captions(st, gender, np.random.default_rng(k), n=1)[0]
        m = CANONICAL.match(text)
        assert m, text
        assert m.group(1) == ("A man" if gender == "male" else "A woman")
        assert m.group(3) == EMOTION_WORDS[st.emotion][0]
        assert (m.group(2) is None) == (st.emotion == "neutral")
        if m.group(2):
            assert m.group(2) == INTENSITY_WORDS[st.intensity][0]
        actions = caption_actions(st)
        assert 2 <= len(actions) <= 4
        assert m.group(4) == ", ".join(action_phrase(a, lv) for a, lv in actions[:-1]) + " and " + action_phrase(
            *actions[-1]
        )


def test_captions_describe_the_strongest_realised_actions():
    for st in all_styles():
        actions = [a for a, _ in caption_actions(st)]
        expr = st.expression()
        mentioned = [a for a in actions if a in ACTIONS]
        assert mentioned == sorted(mentioned, key=lambda a: -expr[a])
        strongest = sorted((a for a, w in expr.items() if w >= 0.1), key=lambda a: -expr[a])[:4]
        assert mentioned == strongest
        assert all(a in ACTIONS or a in BEHAVIOURS for a in actions)


def test_example_from_the_brief():
    st = sample_clip_style("angry", 2, speaker_style("x", 0), np.random.default_rng(0))
    st = ClipStyle(**{**st.__dict__, "actions": {"brow_lower": 0.4, "lip_press": 0.6, "mouth_open": 0.5}})
    text = render(FRAMES[0], st, "female", caption_actions(st))
    assert text == "A woman feels fairly angry and speaks with tightly pressed lips and noticeably lowered brows."


def test_paraphrases_are_distinct_and_parse_back():
    for k, st in enumerate(all_styles(range(3))):
        caps = make_captions(st, ("male", "female")[k % 2], np.random.default_rng(k), n=6)
        assert len(caps) == 6 and len(set(caps)) == 6
        for c in caps:
            assert parse_caption(c) == (st.emotion, st.intensity), c
            assert c[0].isupper() and c.endswith(".")
            assert not re.search(r"\ba [aeio]", c.lower()), c  # articles agree
    st = all_styles(range(1))[5]
    assert make_captions(st, "male", np.random.default_rng(1)) == make_captions(st, "male", np.random.default_rng(1))


def test_parse_round_trips_every_frame_emotion_synonym_and_adverb():
    base = sample_clip_style("happy", 1, speaker_style("x", 0), np.random.default_rng(0))
    for frame, emotion, gender in itertools.product(FRAMES, EMOTIONS, ("male", "female")):
        for intensity in (1,) if emotion == "neutral" else (1, 2, 3):
            st = ClipStyle(**{**base.__dict__, "emotion": emotion, "intensity": intensity})
            text = render(frame, st, gender, caption_actions(st))
            canonical_adj, canonical_adv = EMOTION_WORDS[emotion][0], INTENSITY_WORDS[intensity][0]
            for adj in EMOTION_WORDS[emotion]:
                for adv in INTENSITY_WORDS[intensity] if emotion != "neutral" else ("",):
                    t = text.replace(canonical_adj, adj)
                    t = fix_articles(t.replace(canonical_adv + " ", adv + " ", 1) if adv else t)
                    assert parse_caption(t) == (emotion, intensity), t


def test_parse_is_lenient_on_generated_text():
    assert parse_caption("The speaker is a little bit sad, with a frown.") == ("sad", 1)
    assert parse_caption("She shows great anger.") == ("angry", 2)
    assert parse_caption("A man looks really scared and opens his eyes wide.") == ("fear", 3)
    assert parse_caption("A woman talks with raised brows.") == ("neutral", 1)
    assert parse_caption("A man feels happy.") == ("happy", 2)
    assert parse_caption("A CALM man speaks.") == ("neutral", 1)


def test_augment_changes_words_but_keeps_the_parse():
    rng = np.random.default_rng(0)
    for k, st in enumerate(all_styles(range(2))):
        text = make_captions(st, ("male", "female")[k % 2], rng, n=1)[0]
        for _ in range(5):
            out = augment(text, rng)
            assert out != text
            assert parse_caption(out) == parse_caption(text) == (st.emotion, st.intensity)
    assert augment("Nothing to replace here.", rng) == "Nothing to replace here."
    assert augment("A man feels fairly sad.", np.random.default_rng(3)) == augment(
        "A man feels fairly sad.", np.random.default_rng(3)
    )


def test_synonym_table_is_consistent():
    words = [w for g in SYNONYMS for w in g]
    assert len(words) == len(set(words)), "a phrase belongs to two synonym groups"
    emotion_words = {w for ws in EMOTION_WORDS.values() for w in ws}
    for action, (template, levels) in ACTION_PHRASES.items():
        assert action in ACTIONS or action in BEHAVIOURS
        for level in levels:
            phrase_words = set(re.findall(r"[a-z-]+", template.format(level)))
            assert not phrase_words & emotion_words, (action, level)
            assert parse_caption(template.format(level)) == ("neutral", 1)
    assert set(ACTION_PHRASES) == set(ACTIONS) | set(BEHAVIOURS)


def test_articles_and_gender():
    assert fix_articles("speaks in a extremely sad manner with an one-sided smirk") == (
        "speaks in an extremely sad manner with a one-sided smirk"
    )
    st = all_styles(range(1))[3]
    with pytest.raises(ValueError):
        make_captions(st, "robot", np.random.default_rng(0))
