"""An 8-way emotion classifier over facial motion, trained on teacher motion (stage-2 evaluation).

The emotion-following metric asks: does generated motion show the instructed emotion? A classifier
trained on the corpus's own (teacher) motion of the ``train`` split answers it; its accuracy on the
held-out teacher motion (``test`` split: unseen speakers and sentences) says how far to trust it.

Small, fast and deterministic: a clip ``(T, D)`` becomes ``4 D`` statistics per channel (mean, std,
std of the frame-to-frame velocity, mean absolute velocity; :func:`motion_features`), standardised
with the training statistics, then multinomial logistic regression with an L2 penalty, fitted full
batch by L-BFGS in float64 (no sklearn). Training adds a few seeded random crops (half to full length)
of every clip so that the features are stable across clip lengths. Saved as ``weights.safetensors`` +
``classifier.json`` in a directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from avitalk.data.format import Manifest, iter_shard_rows
from avitalk.data.labels import EMOTIONS
from avitalk.errors import AvitalkError
from avitalk.fsutil import atomic_path, atomic_write_text

FORMAT = "avitalk-emotion-classifier"
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
META = "classifier.json"


def motion_features(values: np.ndarray) -> np.ndarray:
    """``(4 D,)`` float64 clip statistics of ``(T, D)`` motion: per-channel mean, std, velocity std, mean |velocity|.

    Clips of fewer than 2 frames have zero velocity statistics.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"motion must be (T, D) with T >= 1, got shape {x.shape}")
    v = np.diff(x, axis=0) if x.shape[0] > 1 else np.zeros((1, x.shape[1]))  # (T-1, D)
    return np.concatenate([x.mean(0), x.std(0), v.std(0), np.abs(v).mean(0)])


@dataclass
class EmotionClassifier:
    """Logistic regression on standardised :func:`motion_features`.

    Attributes:
        labels: class names (MEAD's eight emotions by default), in output order.
        space: motion-space key (``name@vN``) of the motion it was trained on.
        feat_mean, feat_std: ``(F,)`` float64 feature standardisation (``F = 4 D``).
        weight: ``(K, F)`` float64; bias: ``(K,)`` float64.
        info: training facts (clips, crops, penalty, train accuracy), saved with the weights.
    """

    labels: tuple[str, ...]
    space: str
    feat_mean: np.ndarray
    feat_std: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    info: dict

    def logits(self, motions: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, K)`` class scores for ``N`` clips of ``(T_i, D)`` motion."""
        if not len(motions):
            return np.zeros((0, len(self.labels)))
        f = np.stack([motion_features(m) for m in motions])  # (N, F)
        if f.shape[1] != self.weight.shape[1]:
            raise AvitalkError(
                f"emotion classifier expects {self.weight.shape[1] // 4}-channel motion, got {f.shape[1] // 4}"
            )
        return ((f - self.feat_mean) / self.feat_std) @ self.weight.T + self.bias

    def predict(self, motions: Sequence[np.ndarray]) -> list[str]:
        """The most likely label of each ``(T_i, D)`` clip."""
        return [self.labels[k] for k in np.argmax(self.logits(motions), axis=1)]

    def accuracy(self, motions: Sequence[np.ndarray], labels: Sequence[str]) -> float:
        """Fraction of clips whose prediction equals ``labels`` (NaN for no clips)."""
        if not len(motions):
            return float("nan")
        return float(np.mean([p == y for p, y in zip(self.predict(motions), labels, strict=True)]))

    def confusion(self, motions: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
        """``(K, K)`` int counts, rows = true label, columns = predicted."""
        out = np.zeros((len(self.labels), len(self.labels)), dtype=np.int64)
        for p, y in zip(self.predict(motions), labels, strict=True):
            out[self.labels.index(y), self.labels.index(p)] += 1
        return out

    # ------------------------------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path/weights.safetensors`` and ``path/classifier.json`` (atomically, each); returns ``path``."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        tensors = {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k))) for k in _ARRAYS}
        with atomic_path(root / WEIGHTS) as tmp:
            save_file(tensors, str(tmp))
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "labels": list(self.labels)}
        meta.update(space=self.space, info=self.info)
        atomic_write_text(root / META, json.dumps(meta, indent=1, sort_keys=True) + "\n")
        return root


_ARRAYS = ("feat_mean", "feat_std", "weight", "bias")


def load_emotion_classifier(path: str | os.PathLike[str]) -> EmotionClassifier:
    """Read a classifier written by :meth:`EmotionClassifier.save`.

    Raises:
        AvitalkError: missing files, another format, or inconsistent shapes.
    """
    root = Path(path)
    if not (root / META).is_file() or not (root / WEIGHTS).is_file():
        raise AvitalkError(f"{root}: no emotion classifier ({META} + {WEIGHTS})")
    try:
        meta = json.loads((root / META).read_text(encoding="utf-8"))
        arrays = {k: v.numpy().astype(np.float64) for k, v in load_file(str(root / WEIGHTS)).items()}
    except (OSError, ValueError) as e:
        raise AvitalkError(f"{root}: unreadable emotion classifier: {e}") from None
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise AvitalkError(f"{root}: not an {FORMAT} v{FORMAT_VERSION} directory")
    if set(arrays) != set(_ARRAYS):
        raise AvitalkError(f"{root / WEIGHTS}: expected tensors {', '.join(_ARRAYS)}, got {', '.join(sorted(arrays))}")
    labels = tuple(meta["labels"])
    k, f = arrays["weight"].shape
    if k != len(labels) or arrays["bias"].shape != (k,) or arrays["feat_mean"].shape != (f,):
        raise AvitalkError(f"{root}: inconsistent classifier shapes")
    return EmotionClassifier(labels, str(meta.get("space", "")), **arrays, info=dict(meta.get("info", {})))


def teacher_motions(root: str | os.PathLike[str], split: str) -> tuple[list[np.ndarray], list[str]]:
    """Teacher motion ``(T_i, D)`` and emotion of every clip of ``split`` with fully valid motion and a known
    emotion (reads only those columns: no audio is decoded)."""
    motions, emotions = [], []
    cols = ("motion", "n_frames", "motion_dim", "motion_mask", "emotion")
    for shard in Manifest.load(root).shards:
        if shard.split != split:
            continue
        for row in iter_shard_rows(Path(root) / shard.file, columns=cols):
            mask = row["motion_mask"]
            if row["motion"] is None or row["emotion"] not in EMOTIONS or (mask is not None and not all(mask)):
                continue
            motions.append(np.asarray(row["motion"], np.float32).reshape(row["n_frames"], row["motion_dim"]))
            emotions.append(row["emotion"])
    return motions, emotions


def _crops(x: np.ndarray, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """The clip and ``n`` random contiguous crops of half to full length."""
    out, t = [x], x.shape[0]
    for _ in range(n):
        length = int(rng.integers(max(t // 2, 1), t + 1))
        start = int(rng.integers(0, t - length + 1))
        out.append(x[start : start + length])
    return out


def train_emotion_classifier(
    motions: Sequence[np.ndarray],
    emotions: Sequence[str],
    *,
    space: str = "",
    labels: Sequence[str] = EMOTIONS,
    crops: int = 4,
    l2: float = 1e-3,
    max_iter: int = 300,
    seed: int = 0,
) -> EmotionClassifier:
    """Fit the classifier on teacher motion clips; deterministic for equal inputs.

    Args:
        motions: ``N`` clips of ``(T_i, D)`` motion (raw corpus units, not standardised).
        emotions: ``N`` labels, each in ``labels``.
        space: motion-space key stored with the classifier.
        labels: the classes.
        crops: extra random crops per clip (seeded by ``seed``).
        l2: L2 penalty on the weights (``l2 * ||W||²`` added to the mean cross-entropy).
        max_iter: L-BFGS iterations.
        seed: crop seed.

    Raises:
        AvitalkError: no clips, or a label outside ``labels``.
    """
    if not len(motions) or len(motions) != len(emotions):
        raise AvitalkError(f"need motion clips with one emotion each, got {len(motions)} clips, {len(emotions)} labels")
    labels = tuple(labels)
    unknown = sorted(set(emotions) - set(labels))
    if unknown:
        raise AvitalkError(f"emotions outside the classifier's labels: {', '.join(unknown)}")
    rng = np.random.default_rng(seed)
    feats, ys = [], []
    for m, e in zip(motions, emotions, strict=True):
        for c in _crops(np.asarray(m), rng, crops):
            feats.append(motion_features(c))
            ys.append(labels.index(e))
    x = torch.from_numpy(np.stack(feats))  # (M, F) float64
    y = torch.tensor(ys)
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    xs = (x - mean) / std
    w = torch.zeros(len(labels), x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(labels), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xs @ w.T + b, y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        train_acc = float(((xs @ w.T + b).argmax(1) == y).double().mean())
    info = {"clips": len(motions), "crops": crops, "l2": l2, "seed": seed, "train_accuracy": train_acc}
    return EmotionClassifier(
        labels, space, mean.numpy(), std.numpy(), w.detach().numpy().copy(), b.detach().numpy().copy(), info
    )
