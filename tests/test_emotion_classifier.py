"""The 8-way emotion classifier over motion (stage-2 evaluation)."""

from __future__ import annotations

import numpy as np
import pytest

from avitalk.data.labels import EMOTIONS
from avitalk.errors import AvitalkError
from avitalk.eval.emotion_classifier import (
    load_emotion_classifier,
    motion_features,
    teacher_motions,
    train_emotion_classifier,
)


def _clips(n_per: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """Each emotion raises its own channel pair (mean) and its own channel's variability, plus noise."""
    rng = np.random.default_rng(seed)
    motions, labels = [], []
    for k, e in enumerate(EMOTIONS):
        for _ in range(n_per):
            t = int(rng.integers(30, 90))
            x = 0.1 * rng.standard_normal((t, 55)).astype(np.float32)
            x[:, 2 * k : 2 * k + 2] += 0.4
            x[:, 30 + k] += 0.3 * np.sin(np.arange(t) * 0.5)
            motions.append(x)
            labels.append(e)
    return motions, labels


def test_features_are_per_channel_statistics():
    x = np.stack([np.arange(5.0), np.zeros(5)], axis=1)
    f = motion_features(x)
    assert f.shape == (8,)
    np.testing.assert_allclose(f, [2.0, 0.0, np.std(np.arange(5.0)), 0.0, 0.0, 0.0, 1.0, 0.0])
    assert motion_features(np.ones((1, 3))).shape == (12,)
    with pytest.raises(ValueError):
        motion_features(np.zeros((0, 3)))


def test_trains_deterministically_generalises_and_round_trips(tmp_path):
    motions, labels = _clips(6, seed=0)
    clf = train_emotion_classifier(motions, labels, space="arkit52@v1", seed=1)
    again = train_emotion_classifier(motions, labels, space="arkit52@v1", seed=1)
    np.testing.assert_array_equal(clf.weight, again.weight)
    test_m, test_l = _clips(3, seed=5)  # held out
    assert clf.accuracy(test_m, test_l) >= 0.95
    assert clf.info["train_accuracy"] == 1.0 and clf.info["clips"] == 48
    conf = clf.confusion(test_m, test_l)
    assert conf.sum() == 24 and conf.trace() == round(24 * clf.accuracy(test_m, test_l))
    clf.save(tmp_path / "clf")
    back = load_emotion_classifier(tmp_path / "clf")
    assert back.labels == EMOTIONS and back.space == "arkit52@v1"
    np.testing.assert_allclose(back.logits(test_m), clf.logits(test_m))
    assert back.predict(test_m) == clf.predict(test_m)


def test_user_errors(tmp_path):
    with pytest.raises(AvitalkError, match="outside the classifier's labels"):
        train_emotion_classifier([np.zeros((5, 3))], ["bored"])
    with pytest.raises(AvitalkError, match="need motion clips"):
        train_emotion_classifier([], [])
    with pytest.raises(AvitalkError, match="no emotion classifier"):
        load_emotion_classifier(tmp_path)
    clf = train_emotion_classifier(*_clips(2, 0), crops=0)
    with pytest.raises(AvitalkError, match="55-channel"):
        clf.predict([np.zeros((10, 52))])


def test_teacher_motions_reads_a_split(small_corpus):
    motions, emotions = teacher_motions(small_corpus, "test")
    assert len(motions) == 2 and emotions == ["happy", "happy"] and motions[0].shape == (25, 55)
    assert teacher_motions(small_corpus, "val") == ([], [])
