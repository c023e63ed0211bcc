"""Planning of the synthetic corpus (pure: no TTS)."""

from collections import Counter

from avitalk.data.labels import EMOTIONS
from avitalk.data.synth.corpus import CLIPS_PER_SHARD, PLAN_SECONDS_FIXED, PLAN_SECONDS_PER_WORD, plan_corpus

SPEAKERS = [(f"m{i}", "male") for i in range(7)] + [(f"f{i}", "female") for i in range(7)]
SENTENCES = tuple(f"sentence number {i} has a few words" for i in range(500))


def _clips(jobs):
    return [c for j in jobs for c in j.clips]


def test_splits_are_disjoint_by_speaker_and_sentence_and_cover_both_genders():
    clips = _clips(plan_corpus(0.5, 3, SPEAKERS, SENTENCES))
    by_split = {s: [c for c in clips if c.split == s] for s in ("train", "val", "test")}
    for a in by_split:
        for b in by_split:
            if a < b:
                assert not {c.speaker for c in by_split[a]} & {c.speaker for c in by_split[b]}
                assert not {c.sentence for c in by_split[a]} & {c.sentence for c in by_split[b]}
    for split in ("val", "test"):
        assert {c.speaker[0] for c in by_split[split]} == {"m", "f"}


def test_plan_is_deterministic_balanced_and_sized():
    a = plan_corpus(1.0, 7, SPEAKERS, SENTENCES)
    assert a == plan_corpus(1.0, 7, SPEAKERS, SENTENCES)
    assert a != plan_corpus(1.0, 8, SPEAKERS, SENTENCES)
    clips = _clips(a)
    counts = Counter(c.emotion for c in clips if c.split == "train")
    assert set(counts) == set(EMOTIONS) and max(counts.values()) - min(counts.values()) <= 1
    assert all(c.intensity == 1 for c in clips if c.emotion == "neutral")
    assert {c.intensity for c in clips if c.emotion == "angry"} == {1, 2, 3}
    assert len({c.clip_id for c in clips}) == len(clips)
    assert all(len(j.clips) <= CLIPS_PER_SHARD for j in a)
    est_hours = sum(PLAN_SECONDS_FIXED + PLAN_SECONDS_PER_WORD * len(SENTENCES[c.sentence].split()) for c in clips)
    est_hours /= 3600
    assert 1.0 <= est_hours < 1.01


def test_tiny_plan_still_has_every_emotion_in_every_split():
    clips = _clips(plan_corpus(0.001, 0, SPEAKERS, SENTENCES))
    for split in ("train", "val", "test"):
        assert {c.emotion for c in clips if c.split == split} == set(EMOTIONS)
