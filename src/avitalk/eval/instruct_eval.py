"""Stage-1 evaluation: generate an instruction for every clip and score it (paper §4.3, Table 3, Fig. 8).

:func:`evaluate_instruct` runs a describer (anything with ``describe_batch`` / ``embed``, e.g. the
``Describer`` of ``avitalk.train.load_instruct.load_stage1``) over corpus clips and measures:

- **text metrics** (:mod:`avitalk.eval.text_metrics`): BLEU-1, BLEU-4, METEOR, ROUGE-L, CIDEr-D and
  SPICE when available, with *all* of a clip's ``instructions`` as references;
- **emotion accuracy**: the emotion the generated text names (:func:`parse_generated`, i.e.
  :func:`~avitalk.data.synth.captions.parse_caption`) equals the clip's label, over clips with a known
  emotion; a text that names no emotion word at all is *unparsed* and counts as wrong (``parse_caption``
  alone would read it as neutral);
- **intensity accuracy**, over clips with a non-neutral known emotion and a known level, whatever emotion
  the text names; the text must name a non-neutral emotion (neutral or unparsed text is wrong). The
  comparison depends on the clip's corpus (:func:`intensity_scheme`):

  * ``ravdess`` clips, 2-way *normal/strong*: the importer stores normal as level 2 and strong as 3; a
    generated level 3 ("extremely", "very", …) reads as strong, 1 or 2 as normal;
  * every other corpus (synthetic, MEAD), 3-way MEAD levels 1..3: generated level == stored level.

  The overall intensity accuracy pools clips under their own scheme; the per-source numbers are the
  ones to quote;
- a confusion matrix (labelled emotion x named emotion, plus ``none`` for unparsed text), the same
  numbers per source (``clip.source``: ``synth``, ``ravdess``, …), and seconds per clip spent in
  ``describe_batch``.

:func:`plot_tsne` draws the pooled Q-Former embeddings of the clips in 2-D (t-SNE, coloured by emotion,
one marker per source) as the paper's Figure 8, written as a PNG atomically with Pillow; t-SNE needs
scikit-learn (``pip install scikit-learn``, part of ``avitalk[dev]``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from avitalk.data.format import Clip
from avitalk.data.labels import EMOTIONS, UNKNOWN
from avitalk.data.synth.captions import EMOTION_NOUNS, EMOTION_WORDS, parse_caption
from avitalk.errors import AvitalkError
from avitalk.eval.text_metrics import METRICS, CaptionScorer
from avitalk.fsutil import atomic_path
from avitalk.types import Audio, Instruction

__all__ = [
    "NONE",
    "PAPER_TABLE3",
    "Describer",
    "GeneratedText",
    "GroupResult",
    "InstructResult",
    "compare_runs",
    "evaluate_instruct",
    "intensity_scheme",
    "parse_generated",
    "plot_tsne",
    "select_clips",
]

NONE = "none"
"""Confusion-matrix column of generated texts that name no emotion."""

PAPER_TABLE3: dict[str, float] = {
    "BLEU-1": 0.474, "BLEU-4": 0.114, "METEOR": 0.220, "ROUGE-L": 0.384, "CIDEr": 0.493, "SPICE": 0.409,
}  # fmt: skip
"""AVI-Talking's Table 3 (full model, MeadText test set), on the package scale (the paper prints ×100)."""

RAVDESS = "ravdess"
_TWO_WAY = {1: "normal", 2: "normal", 3: "strong"}
_EMOTION_VOCAB = frozenset(w for ws in EMOTION_WORDS.values() for w in ws) | frozenset(EMOTION_NOUNS)
_WORD_RE = re.compile(r"[a-z]+(?:-[a-z]+)*")  # parse_caption's tokenisation


class Describer(Protocol):
    """What :func:`evaluate_instruct` needs of a stage-1 model."""

    def describe_batch(
        self,
        audios: Sequence[Audio],
        *,
        decoding: str = "greedy",
        num_beams: int = 3,
        max_new_tokens: int | None = None,
        seed: int | None = None,
    ) -> list[Instruction]:
        """One instruction per clip."""
        ...

    def embed(self, audios: Sequence[Audio]) -> Any:
        """``(N, D_q)`` L2-normalised pooled Q-Former embeddings (a torch tensor or an array)."""
        ...


# ------------------------------------------------------------------------------------------ parsing


def parse_generated(text: str) -> tuple[str | None, int | None]:
    """``(emotion, level)`` named by a generated text, or ``(None, None)`` when it names no emotion.

    Same reading as :func:`~avitalk.data.synth.captions.parse_caption` (first emotion word, the adverb
    before it, neutral is level 1), except that text without any emotion word is unparsed instead of
    neutral.
    """
    if not any(w in _EMOTION_VOCAB for w in _WORD_RE.findall(text.lower())):
        return None, None
    return parse_caption(text)


def intensity_scheme(source: str) -> str:
    """``"normal/strong"`` for RAVDESS clips, ``"MEAD 1-3"`` for every other corpus."""
    return "normal/strong" if source == RAVDESS else "MEAD 1-3"


def _intensity_eligible(clip_emotion: str, clip_level: int) -> bool:
    return clip_emotion not in ("neutral", UNKNOWN, "") and clip_level in (1, 2, 3)


def _intensity_correct(source: str, clip_level: int, emotion: str | None, level: int | None) -> bool:
    if emotion is None or emotion == "neutral" or level is None:
        return False
    if source == RAVDESS:
        return _TWO_WAY[level] == _TWO_WAY[clip_level]
    return level == clip_level


# ------------------------------------------------------------------------------------------ results


@dataclass
class GeneratedText:
    """One clip's generated instruction and how it was read."""

    clip_id: str
    source: str
    emotion: str
    intensity: int
    text: str
    predicted_emotion: str | None
    predicted_intensity: int | None
    reference: str

    def to_json(self) -> dict:
        return dict(vars(self))


@dataclass
class GroupResult:
    """Scores of a set of clips (all, or one source).

    Attributes:
        metrics: text metric -> value on the package scale (BLEU/METEOR/ROUGE-L/SPICE in [0, 1],
            CIDEr-D in [0, 10]); only computed metrics.
        metrics_unavailable: metric -> reason it was not computed.
        emotion_accuracy: fraction of clips with a known emotion whose text names it (None: no such clip).
        intensity_accuracy: fraction of intensity-eligible clips read at the right level (None: none).
        n_emotion, n_intensity: clips counted by the two accuracies.
        unparsed: generated texts naming no emotion.
        intensity_schemes: the schemes used, e.g. ``["MEAD 1-3", "normal/strong"]``.
    """

    n: int
    metrics: dict[str, float]
    metrics_unavailable: dict[str, str]
    emotion_accuracy: float | None
    intensity_accuracy: float | None
    n_emotion: int
    n_intensity: int
    unparsed: int
    intensity_schemes: list[str]

    def to_json(self) -> dict:
        return dict(vars(self))


@dataclass
class InstructResult(GroupResult):
    """:class:`GroupResult` over all clips plus the breakdowns, timing and generated texts.

    Attributes:
        confusion: labelled emotion -> named emotion (or :data:`NONE`) -> count, every MEAD emotion in
            both axes (clips of unknown emotion are left out).
        per_source: ``clip.source`` -> :class:`GroupResult`.
        seconds_per_clip: wall time in ``describe_batch`` divided by the number of clips.
        audio_seconds_per_clip: mean clip duration.
        decoding: decoding options passed to the describer.
        texts: one :class:`GeneratedText` per clip, in input order.
        embeddings: ``(N, D_q)`` float32 pooled Q-Former embeddings when requested (not in :meth:`to_json`).
    """

    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    per_source: dict[str, GroupResult] = field(default_factory=dict)
    seconds_per_clip: float = 0.0
    audio_seconds_per_clip: float = 0.0
    decoding: dict[str, Any] = field(default_factory=dict)
    texts: list[GeneratedText] = field(default_factory=list)
    embeddings: np.ndarray | None = None

    def to_json(self) -> dict:
        """A JSON-serialisable dict (without the embeddings)."""
        d = {k: v for k, v in vars(self).items() if k not in ("per_source", "texts", "embeddings")}
        d["per_source"] = {s: g.to_json() for s, g in self.per_source.items()}
        d["texts"] = [t.to_json() for t in self.texts]
        return d


def _group(texts: list[GeneratedText], references: list[list[str]], scorer: CaptionScorer | None) -> GroupResult:
    known = [t for t in texts if t.emotion in EMOTIONS]
    eligible = [t for t in texts if _intensity_eligible(t.emotion, t.intensity)]
    right_emotion = sum(t.predicted_emotion == t.emotion for t in known)
    right_level = sum(
        _intensity_correct(t.source, t.intensity, t.predicted_emotion, t.predicted_intensity) for t in eligible
    )
    metrics: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    if scorer is not None:
        scores = scorer.score([t.text for t in texts], references)
        metrics, unavailable = scores.scores, scores.unavailable
    unavailable |= {m: "not requested" for m in METRICS if m not in metrics and m not in unavailable}
    return GroupResult(
        n=len(texts),
        metrics=metrics,
        metrics_unavailable=unavailable,
        emotion_accuracy=right_emotion / len(known) if known else None,
        intensity_accuracy=right_level / len(eligible) if eligible else None,
        n_emotion=len(known),
        n_intensity=len(eligible),
        unparsed=sum(t.predicted_emotion is None for t in texts),
        intensity_schemes=sorted({intensity_scheme(t.source) for t in eligible}),
    )


def _batches(clips: Iterable[Clip], size: int) -> Iterable[list[Clip]]:
    batch: list[Clip] = []
    for clip in clips:
        batch.append(clip)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def evaluate_instruct(
    describer: Describer,
    clips: Iterable[Clip],
    *,
    decoding: str = "greedy",
    num_beams: int = 3,
    max_new_tokens: int | None = None,
    seed: int | None = 0,
    batch_size: int = 8,
    embed: bool = False,
    metrics: Sequence[str] | None = METRICS,
    scorer: CaptionScorer | None = None,
    progress: bool = True,
) -> InstructResult:
    """Generate an instruction for every clip and score the texts; see the module docstring.

    Args:
        describer: the stage-1 model (:class:`Describer` protocol).
        clips: corpus clips (consumed once, in batches of ``batch_size``); each needs ``instructions``.
        decoding, num_beams, max_new_tokens, seed: passed to ``describe_batch`` (``max_new_tokens=None``:
            the model's own cap).
        embed: also keep ``describer.embed`` of every clip in :attr:`InstructResult.embeddings`.
        metrics: text metrics to compute (``None`` or empty: none, only the accuracies).
        scorer: an open :class:`~avitalk.eval.text_metrics.CaptionScorer` to reuse (its METEOR process
            is shared across calls; its own metric list applies); default: one is opened and closed here.
        progress: show a tqdm bar.

    Raises:
        AvitalkError: no clips, a clip without instructions, or a describer returning the wrong count.
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise AvitalkError(f"batch size must be >= 1, got {batch_size}")
    options = {"decoding": decoding, "num_beams": num_beams, "max_new_tokens": max_new_tokens, "seed": seed}
    total = len(clips) if isinstance(clips, Sized) else None
    texts: list[GeneratedText] = []
    references: list[list[str]] = []
    embeddings: list[np.ndarray] = []
    spent, audio_s = 0.0, 0.0
    bar = tqdm(total=total, desc="describe", unit="clip", dynamic_ncols=True, disable=not progress, leave=False)
    try:
        for batch in _batches(clips, batch_size):
            for c in batch:
                if not c.instructions:
                    raise AvitalkError(f"clip {c.clip_id} has no instructions to compare with")
            audios = [Audio(np.asarray(c.audio, dtype=np.float32), c.sample_rate) for c in batch]
            t0 = time.perf_counter()
            out = describer.describe_batch(audios, **options)
            spent += time.perf_counter() - t0
            if len(out) != len(batch):
                raise AvitalkError(f"the describer returned {len(out)} instructions for {len(batch)} clips")
            if embed:
                e = _to_numpy(describer.embed(audios))
                if e.ndim != 2 or e.shape[0] != len(batch):
                    raise AvitalkError(f"describer.embed returned shape {e.shape} for {len(batch)} clips")
                embeddings.append(e)
            for c, ins in zip(batch, out, strict=True):
                text = ins.text if isinstance(ins, Instruction) else str(ins)
                emotion, level = parse_generated(text)
                source = c.source or "unknown"
                texts.append(
                    GeneratedText(
                        c.clip_id, source, c.emotion, int(c.intensity), text, emotion, level, c.instructions[0]
                    )
                )
                references.append(list(c.instructions))
                audio_s += c.duration
            bar.update(len(batch))
    finally:
        bar.close()
    if not texts:
        raise AvitalkError("no clips to evaluate")

    own_scorer = scorer is None and bool(metrics)
    if own_scorer:
        scorer = CaptionScorer(metrics)
    elif not metrics:
        scorer = None
    try:
        overall = _group(texts, references, scorer)
        by_source: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            by_source.setdefault(t.source, []).append(i)
        per_source = {
            s: _group([texts[i] for i in idx], [references[i] for i in idx], scorer)
            for s, idx in sorted(by_source.items())
        }
    finally:
        if own_scorer and scorer is not None:
            scorer.close()

    confusion = {e: {p: 0 for p in (*EMOTIONS, NONE)} for e in EMOTIONS}
    for t in texts:
        if t.emotion in confusion:
            confusion[t.emotion][t.predicted_emotion or NONE] += 1
    return InstructResult(
        **vars(overall),
        confusion=confusion,
        per_source=per_source,
        seconds_per_clip=spent / len(texts),
        audio_seconds_per_clip=audio_s / len(texts),
        decoding=options,
        texts=texts,
        embeddings=np.concatenate(embeddings) if embed else None,
    )


def select_clips(corpus: str | Path, split: str = "test", limit: int | None = None) -> list[Clip]:
    """The clips of one split of a corpus; with ``limit``, at most that many, evenly spaced (deterministic).

    Clips without a ``source`` take the manifest's.

    Raises:
        AvitalkError: not a corpus, unknown split, or no clip in the split.
    """
    from avitalk.data.format import SPLITS, Manifest, iter_clips

    if split not in SPLITS:
        raise AvitalkError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if limit is not None and limit < 1:
        raise AvitalkError(f"--limit must be >= 1, got {limit}")
    manifest = Manifest.load(corpus)
    total = sum(s.clips for s in manifest.shards if s.split == split)
    if total == 0:
        have = {sp: sum(s.clips for s in manifest.shards if s.split == sp) for sp in SPLITS}
        listed = ", ".join(f"{sp} {n}" for sp, n in have.items() if n) or "none"
        raise AvitalkError(f"{corpus}: no clips in split {split!r} (clips per split: {listed})")
    keep = None
    if limit is not None and limit < total:
        keep = set(np.unique(np.round(np.linspace(0, total - 1, limit)).astype(int)).tolist())
    clips = []
    for i, clip in enumerate(iter_clips(corpus, split)):
        if keep is None or i in keep:
            clip.source = clip.source or manifest.source or "unknown"
            clips.append(clip)
    return clips


def compare_runs(full: GroupResult, other: GroupResult) -> dict[str, Any]:
    """How ``full`` fares against ``other`` (e.g. an ablation) on the same clips.

    Returns ``{"text_wins": [...], "text_compared": [...], "emotion_win": bool | None, "beats": bool}``:
    the text metrics computed for both where ``full`` is strictly higher, the metrics compared, whether
    its emotion accuracy is strictly higher, and issue #6's criterion (at least 4 text-metric wins — or
    all of them when fewer than 4 could be compared — and a higher emotion accuracy).
    """
    compared = [m for m in METRICS if m in full.metrics and m in other.metrics]
    wins = [m for m in compared if full.metrics[m] > other.metrics[m]]
    emotion = None
    if full.emotion_accuracy is not None and other.emotion_accuracy is not None:
        emotion = full.emotion_accuracy > other.emotion_accuracy
    need = min(4, len(compared))
    return {
        "text_wins": wins,
        "text_compared": compared,
        "emotion_win": emotion,
        "beats": bool(compared) and len(wins) >= need and emotion is True,
    }


# --------------------------------------------------------------------------------------------- plot

_PALETTE: dict[str, tuple[int, int, int]] = {
    "neutral": (127, 127, 127), "happy": (255, 127, 14), "sad": (31, 119, 180), "angry": (214, 39, 40),
    "surprised": (188, 189, 34), "fear": (148, 103, 189), "disgust": (44, 160, 44), "contempt": (140, 86, 75),
}  # fmt: skip
_OTHER = (23, 190, 207)
_MARKERS = ("circle", "square", "triangle", "diamond")


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise AvitalkError("the t-SNE plot needs scikit-learn: pip install scikit-learn (or avitalk[dev])") from None
    perplexity = float(min(30.0, max(2.0, (x.shape[0] - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed)
    return tsne.fit_transform(x.astype(np.float64))


def _marker(draw: Any, kind: str, x: float, y: float, r: float, fill: tuple[int, int, int]) -> None:
    outline = (40, 40, 40)
    if kind == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=outline)
    elif kind == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=fill, outline=outline)
    elif kind == "triangle":
        draw.polygon(
            [(x, y - r * 1.2), (x - r * 1.1, y + r * 0.8), (x + r * 1.1, y + r * 0.8)], fill=fill, outline=outline
        )
    else:
        draw.polygon(
            [(x, y - r * 1.3), (x + r * 1.1, y), (x, y + r * 1.3), (x - r * 1.1, y)], fill=fill, outline=outline
        )


def plot_tsne(
    embeddings: np.ndarray,
    emotions: Sequence[str],
    path: str | Path,
    *,
    sources: Sequence[str] | None = None,
    title: str = "Audio embeddings (pooled Q-Former output), t-SNE",
    seed: int = 0,
) -> Path:
    """Write a t-SNE scatter of ``embeddings`` coloured by emotion as a PNG (atomically); returns ``path``.

    Args:
        embeddings: ``(N, D)`` pooled Q-Former embeddings, N >= 3.
        emotions: ``N`` emotion labels (colours; unknown labels share one colour).
        sources: ``N`` corpus names (one marker shape per source); default: one shape.
        seed: t-SNE random state (the layout is deterministic for a given seed and input).

    Raises:
        AvitalkError: fewer than 3 points, mismatched lengths, or scikit-learn missing.
    """
    from PIL import Image, ImageDraw, ImageFont

    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != len(emotions):
        raise AvitalkError(f"embeddings of shape {x.shape} for {len(emotions)} labels")
    if sources is not None and len(sources) != len(emotions):
        raise AvitalkError(f"{len(sources)} sources for {len(emotions)} labels")
    if x.shape[0] < 3:
        raise AvitalkError(f"the t-SNE plot needs at least 3 clips, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise AvitalkError("embeddings contain NaN or inf")
    y = _tsne(x, seed)
    srcs = list(sources) if sources is not None else ["clips"] * len(emotions)
    source_names = sorted(set(srcs))
    marker = {s: _MARKERS[i % len(_MARKERS)] for i, s in enumerate(source_names)}

    w, h, legend_w, pad = 1100, 800, 240, 50
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    font, small = ImageFont.load_default(size=20), ImageFont.load_default(size=15)
    draw.text((pad, 14), title, fill="black", font=font)
    x0, y0, x1, y1 = pad, 60, w - legend_w - 20, h - pad
    draw.rectangle([x0, y0, x1, y1], outline=(180, 180, 180))
    lo, hi = y.min(0), y.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    uv = (y - lo) / span * 0.92 + 0.04  # (N, 2) in [0.04, 0.96]
    px = x0 + uv[:, 0] * (x1 - x0)
    py = y1 - uv[:, 1] * (y1 - y0)
    for i in np.random.default_rng(seed).permutation(len(emotions)):  # no emotion always drawn on top
        _marker(draw, marker[srcs[i]], float(px[i]), float(py[i]), 5.0, _PALETTE.get(emotions[i], _OTHER))

    lx, ly = x1 + 20, y0
    draw.text((lx, ly), "emotion", fill="black", font=font)
    ly += 30
    counts = {e: list(emotions).count(e) for e in dict.fromkeys([*EMOTIONS, *emotions]) if e in emotions}
    for e, n in counts.items():
        _marker(draw, "circle", lx + 8, ly + 9, 6.0, _PALETTE.get(e, _OTHER))
        draw.text((lx + 22, ly), f"{e} ({n})", fill="black", font=small)
        ly += 24
    if len(source_names) > 1 or sources is not None:
        ly += 16
        draw.text((lx, ly), "source", fill="black", font=font)
        ly += 30
        for s in source_names:
            _marker(draw, marker[s], lx + 8, ly + 9, 6.0, (200, 200, 200))
            draw.text((lx + 22, ly), f"{s} ({srcs.count(s)})", fill="black", font=small)
            ly += 24
    draw.text((x0, y1 + 12), f"{len(emotions)} clips, {x.shape[1]}-d embeddings, t-SNE seed {seed}",
              fill=(90, 90, 90), font=small)  # fmt: skip
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
