"""Which hidden layers of a speech encoder carry the speaker's emotion? Linear probes on held-out speakers.

Run:  python bench/probe_emotion_layers.py --data CORPUS [--data CORPUS2 ...]
                                           [--encoder whisper-tiny.en@layers=1,2,3,4] [--cache DIR]

For every clip of each corpus (train and test splits) the encoder's features are pooled over time
(mean and standard deviation of every channel); the ``@layers=`` blocks are split apart, and a
logistic regression (scikit-learn, standardised inputs, C = 0.01 and 0.1) is fitted on the ``train``
split and scored on the ``test`` split (unseen speakers): 8-way emotion accuracy, chance 12.5 %.
Each block alone, the last block alone and all blocks together are printed per corpus, with the
majority-class baseline of the same run.

This is why stage 1 reads ``whisper-tiny.en@layers=1,2,4`` (docs/speech-encoders.md): the last block,
trained for transcription, keeps less of how something is said than the first ones. The probe is a
simple read-out of pooled statistics, neither a bound on nor a result of a trained stage 1.

Features go through :class:`~avitalk.audio.cache.CachedSpeechEncoder` under ``--cache`` (default
``$AVITALK_CACHE/features``, the cache ``avitalk train instruct`` fills), so a spec the training
already encoded costs nothing to re-read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from avitalk.audio.cache import CachedSpeechEncoder
from avitalk.audio.encoder import default_cache_dir, load_speech_encoder
from avitalk.data.format import iter_clips
from avitalk.data.labels import EMOTIONS
from avitalk.types import Audio


def pooled_features(corpus: Path, encoder: CachedSpeechEncoder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N, 2 * dim)`` mean ‖ std of the features, labels ``(N,)``, splits ``(N,)`` of train+test clips."""
    feats, labels, splits = [], [], []
    for clip in iter_clips(corpus):
        if clip.split not in ("train", "test") or clip.emotion not in EMOTIONS:
            continue
        v = encoder.encode(Audio(clip.audio, clip.sample_rate)).values  # (T_a, dim)
        feats.append(np.concatenate([v.mean(0), v.std(0)]))
        labels.append(EMOTIONS.index(clip.emotion))
        splits.append(clip.split)
    return np.array(feats), np.array(labels), np.array(splits)


def probe(x: np.ndarray, y: np.ndarray, train: np.ndarray, c: float) -> float:
    """Held-out accuracy of a standardised logistic regression fitted on the ``train`` rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x[train])
    clf = LogisticRegression(max_iter=3000, C=c).fit(scaler.transform(x[train]), y[train])
    return float((clf.predict(scaler.transform(x[~train])) == y[~train]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, action="append", required=True, help="corpus (repeatable)")
    ap.add_argument("--encoder", default="whisper-tiny.en@layers=1,2,3,4")
    ap.add_argument("--cache", type=Path, default=None, help="feature cache (default $AVITALK_CACHE/features)")
    args = ap.parse_args()
    raw = load_speech_encoder(args.encoder)
    blocks = list(getattr(raw, "layers", None) or ["last"])  # WhisperSpeechEncoder.layers of the spec
    width = raw.dim // len(blocks)
    encoder = CachedSpeechEncoder(raw, args.cache or default_cache_dir() / "features")
    print(f"encoder {raw.name}: blocks {blocks}, {width} channels each; pooled mean+std; C = 0.01 / 0.1")
    for corpus in args.data:
        x, y, split = pooled_features(corpus, encoder)
        train = split == "train"
        majority = float((y[~train] == np.bincount(y[train]).argmax()).mean())
        print(f"\n{corpus}: {train.sum()} train clips, {(~train).sum()} test clips (unseen speakers); "
              f"majority baseline {majority:.1%}")  # fmt: skip
        d = x.shape[1] // 2
        groups = {f"block {k}": [i] for i, k in enumerate(blocks)}
        if len(blocks) > 1:
            groups["all blocks"] = list(range(len(blocks)))
        for name, idx in groups.items():
            cols = np.concatenate([np.r_[i * width : (i + 1) * width] for i in idx])
            xs = np.hstack([x[:, cols], x[:, d + cols]])  # means and stds of those channels
            accs = [probe(xs, y, train, c) for c in (0.01, 0.1)]
            print(f"  {name:<12} emotion accuracy {accs[0]:6.1%} {accs[1]:6.1%}")


if __name__ == "__main__":
    main()
