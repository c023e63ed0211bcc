"""Captioning metrics for generated visual instructions (stage 1): BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE.

The numbers are those of the standard MS-COCO caption evaluation (``coco-caption``), computed with the
``pycocoevalcap`` package: its Python scorers (BLEU with the *closest* reference length, ROUGE-L with
β = 1.2, CIDEr-D with σ = 6 and the ×10 scale) and its jars (Stanford PTB tokenizer 3.4.1, METEOR 1.5,
SPICE 1.0), run the way ``COCOEvalCap`` runs them: every text is PTB-tokenised and lower-cased and
punctuation tokens are dropped, then each scorer sees the tokenised texts. Only the plumbing is ours —
the jars are run as subprocesses (argument lists, temporary files outside the package directory, a
persistent METEOR process with the ``SCORE``/``EVAL`` protocol of ``pycocoevalcap.meteor``, errors
reported instead of hanging) so that a read-only install works and a crashed jar never blocks.

Inputs are ``hypotheses: list[str]`` (one generated text per item) and ``references: list[list[str]]``
(one or more reference texts per item). Values are on the package's scale: BLEU, METEOR, ROUGE-L and
SPICE in [0, 1], CIDEr-D in [0, 10] (papers print them ×100: BLEU-1 47.4 is 0.474, CIDEr 49.3 is 0.493).
BLEU and METEOR are corpus-level (statistics pooled over items), ROUGE-L, CIDEr-D and SPICE are means
over items; CIDEr-D's document frequencies come from the evaluated references, so it is 0 for a
single item and depends on the evaluated set.

Availability policy: a metric that cannot be computed is never estimated. The single-metric functions
(:func:`bleu1`, :func:`meteor`, …) raise :class:`MetricUnavailableError` (an
:class:`~avitalk.errors.AvitalkError`) with the reason; :class:`CaptionScorer` computes what it can and
returns the others in :attr:`CaptionScores.unavailable` with their reasons. Java (≥ 8) is needed for
the tokenizer and therefore for every metric; METEOR needs ~2 GB of Java heap and ~15 s to load its
paraphrase table; SPICE runs only when Stanford CoreNLP 3.6.0's two jars have been put in
``pycocoevalcap/spice/lib`` (see :func:`spice_jars_missing`) — nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from avitalk.errors import AvitalkError

__all__ = [
    "METRICS",
    "CaptionScorer",
    "CaptionScores",
    "MetricUnavailableError",
    "bleu1",
    "bleu4",
    "caption_metrics",
    "cider_d",
    "meteor",
    "ptb_tokenize",
    "rouge_l",
    "spice",
    "spice_jars_missing",
]

METRICS: tuple[str, ...] = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "SPICE")
"""Metric names, in the order of the paper's Table 3. ``CIDEr`` is CIDEr-D as in coco-caption."""

PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])  # fmt: skip
"""Tokens ``pycocoevalcap``'s PTBTokenizer drops after tokenising."""

_PACKAGE = "pycocoevalcap"
_TOKENIZER_JAR = "tokenizer/stanford-corenlp-3.4.1.jar"
_METEOR_JAR = "meteor/meteor-1.5.jar"
_SPICE_JAR = "spice/spice-1.0.jar"
_SPICE_LIBS = ("spice/lib/stanford-corenlp-3.6.0.jar", "spice/lib/stanford-corenlp-3.6.0-models.jar")
_JAVA_TIMEOUT_S = 600.0


class MetricUnavailableError(AvitalkError):
    """A metric cannot be computed here (no ``pycocoevalcap``, no Java, missing SPICE jars, a jar failed)."""


@dataclass
class CaptionScores:
    """Scores of one evaluated set.

    Attributes:
        scores: metric name -> value (package scale, see the module docstring), only computed metrics.
        unavailable: metric name -> why it was not computed.
        n: number of (hypothesis, references) items.
    """

    scores: dict[str, float]
    unavailable: dict[str, str] = field(default_factory=dict)
    n: int = 0


# ------------------------------------------------------------------------------------------- plumbing


def _package_dir() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)  # a namespace package (no __init__.py): use its search path
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise MetricUnavailableError("pycocoevalcap is not installed (pip install pycocoevalcap)")
    return Path(locations[0])


def _java(java: str | None) -> str:
    exe = shutil.which(java or os.environ.get("AVITALK_JAVA", "java"))
    if exe is None:
        raise MetricUnavailableError(
            "java not found on PATH: the standard PTB tokenizer, METEOR and SPICE are Java programs "
            "(install a Java runtime >= 8, or set AVITALK_JAVA)"
        )
    return exe


def _jar(relative: str) -> Path:
    path = _package_dir() / relative
    if not path.is_file():
        raise MetricUnavailableError(f"{path} is missing (broken pycocoevalcap install?)")
    return path


def spice_jars_missing() -> list[str]:
    """Paths of the Stanford CoreNLP 3.6.0 jars SPICE needs that are absent (empty: SPICE can run).

    ``pycocoevalcap`` downloads them on first use; avitalk never downloads. To enable SPICE, unpack
    ``stanford-corenlp-3.6.0.jar`` and ``stanford-corenlp-3.6.0-models.jar`` from Stanford's
    ``stanford-corenlp-full-2015-12-09.zip`` into the listed directory.
    """
    try:
        root = _package_dir()
    except MetricUnavailableError:
        return [f"{_PACKAGE}/{p}" for p in (_SPICE_JAR, *_SPICE_LIBS)]
    return [str(root / p) for p in (_SPICE_JAR, *_SPICE_LIBS) if not (root / p).is_file()]


def _spice_absent_reason() -> str:
    return (
        f"absent: SPICE needs Stanford CoreNLP 3.6.0 jars (never downloaded); missing {', '.join(spice_jars_missing())}"
    )


def _one_line(text: str) -> str:
    """Every kind of line break -> space (the tokenizer keeps one caption per line)."""
    return " ".join(text.splitlines()).strip()


def _tail(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "no output")[-limit:]


def _check_inputs(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if isinstance(hypotheses, str) or not all(isinstance(h, str) for h in hypotheses):
        raise ValueError("hypotheses must be a list of strings")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not hypotheses:
        raise ValueError("no hypotheses to score")
    for i, refs in enumerate(references):
        if isinstance(refs, str) or not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references[{i}] must be a non-empty list of strings")


def ptb_tokenize(texts: Sequence[str], *, java: str | None = None) -> list[str]:
    """Tokenise like ``pycocoevalcap``'s PTBTokenizer: PTB tokens, lower case, punctuation dropped.

    Runs ``edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase`` from the package's
    CoreNLP 3.4.1 jar on a temporary file (one text per line; line breaks inside a text become spaces).

    Raises:
        MetricUnavailableError: no package, no Java, or the tokenizer failed.
    """
    if not texts:
        return []
    exe, jar = _java(java), _jar(_TOKENIZER_JAR)
    with tempfile.TemporaryDirectory(prefix="avitalk-ptb-") as tmp:
        src = Path(tmp) / "captions.txt"
        src.write_text("\n".join(_one_line(t) for t in texts), encoding="utf-8")
        cmd = [exe, "-Dfile.encoding=UTF-8", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
               "-preserveLines", "-lowerCase", "-encoding", "utf-8", str(src)]  # fmt: skip
        try:
            res = subprocess.run(cmd, capture_output=True, check=False, timeout=_JAVA_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise MetricUnavailableError(f"PTB tokenizer did not run: {e}") from None
    if res.returncode != 0:
        err = _tail(res.stderr.decode("utf-8", "replace"))
        raise MetricUnavailableError(f"PTB tokenizer failed (exit {res.returncode}): {err}")
    lines = res.stdout.decode("utf-8", "replace").split("\n")
    if len(lines) < len(texts) or any(ln.strip() for ln in lines[len(texts) :]):
        raise MetricUnavailableError(f"PTB tokenizer returned {len(lines)} lines for {len(texts)} texts")
    return [" ".join(w for w in ln.rstrip().split(" ") if w and w not in PUNCTUATIONS) for ln in lines[: len(texts)]]


class _Meteor:
    """A running METEOR 1.5 process (``-l en -norm``, as ``pycocoevalcap.meteor.Meteor``)."""

    def __init__(self, java: str | None) -> None:
        exe, jar = _java(java), _jar(_METEOR_JAR)
        self._err = tempfile.TemporaryFile()  # a file, not a pipe: a chatty jar can never block
        cmd = [exe, "-Dfile.encoding=UTF-8", "-jar", "-Xmx2G", str(jar), "-", "-", "-stdio", "-l", "en", "-norm"]
        try:
            self._p = subprocess.Popen(cmd, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=self._err)  # fmt: skip
        except OSError as e:
            self._err.close()
            raise MetricUnavailableError(f"METEOR did not start: {e}") from None

    def _fail(self, what: str) -> MetricUnavailableError:
        code = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = self._p.wait(timeout=5)
        self._err.seek(0)
        err = _tail(self._err.read().decode("utf-8", "replace"))
        self.close()
        return MetricUnavailableError(f"METEOR {what} (exit {code}): {err}")

    def _readline(self) -> str:
        assert self._p.stdout is not None
        line = self._p.stdout.readline()
        if not line:
            raise self._fail("stopped")
        return line.decode("utf-8", "replace").strip()

    def _write(self, line: str) -> None:
        assert self._p.stdin is not None
        try:
            self._p.stdin.write((line + "\n").encode("utf-8"))
            self._p.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            raise self._fail("stopped") from None

    def score(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
        """Corpus-level METEOR of tokenised texts (the aggregate line of ``EVAL``)."""
        stats = []
        for h, rs in zip(hyps, refs, strict=True):
            clean = [r.replace("|||", "").replace("  ", " ") for r in rs]
            self._write(" ||| ".join(("SCORE", " ||| ".join(clean), h.replace("|||", "").replace("  ", " "))))
            stats.append(self._readline())
        self._write("EVAL ||| " + " ||| ".join(stats))
        for _ in stats:
            self._readline()  # per-item scores
        try:
            return float(self._readline())
        except ValueError as e:
            raise self._fail(f"returned no score ({e})") from None

    def close(self) -> None:
        if self._p.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self._p.stdin is not None
                self._p.stdin.close()
            self._p.kill()
            self._p.wait()
        for f in (self._p.stdout, self._err):
            if f is not None:
                f.close()


def _spice(hyps: Sequence[str], refs: Sequence[Sequence[str]], java: str | None) -> float:
    """Mean SPICE F-score of tokenised texts (``spice-1.0.jar -subset -silent``, no LMDB cache)."""
    if spice_jars_missing():
        raise MetricUnavailableError(_spice_absent_reason())
    exe, jar = _java(java), _jar(_SPICE_JAR)
    with tempfile.TemporaryDirectory(prefix="avitalk-spice-") as tmp:
        src, out = Path(tmp) / "in.json", Path(tmp) / "out.json"
        items = [{"image_id": i, "test": h, "refs": list(r)} for i, (h, r) in enumerate(zip(hyps, refs, strict=True))]
        src.write_text(json.dumps(items), encoding="utf-8")
        cmd = [exe, "-Dfile.encoding=UTF-8", "-jar", "-Xmx8G", str(jar), str(src), "-out", str(out), "-subset",
               "-silent"]  # fmt: skip
        try:
            res = subprocess.run(cmd, cwd=jar.parent, capture_output=True, check=False, timeout=_JAVA_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise MetricUnavailableError(f"SPICE did not run: {e}") from None
        if res.returncode != 0 or not out.is_file():
            err = _tail(res.stderr.decode("utf-8", "replace") or res.stdout.decode("utf-8", "replace"))
            raise MetricUnavailableError(f"SPICE failed (exit {res.returncode}; it is known to need Java 8-11): {err}")
        try:
            results = json.loads(out.read_text(encoding="utf-8"))
            by_id = {int(r["image_id"]): r["scores"]["All"]["f"] for r in results}
        except (ValueError, KeyError, TypeError) as e:
            raise MetricUnavailableError(f"SPICE wrote an unreadable result: {e}") from None
    values = [by_id.get(i) for i in range(len(hyps))]
    if any(v is None for v in values):
        raise MetricUnavailableError("SPICE returned no score for some items")
    finite = [float(v) for v in values if v == v]  # SPICE writes NaN for items it could not parse
    if not finite:
        raise MetricUnavailableError("SPICE returned NaN for every item")
    return sum(finite) / len(finite)


# ---------------------------------------------------------------------------------------------- scorer


class CaptionScorer:
    """Score several evaluated sets with one METEOR process (use as a context manager).

    ::

        with CaptionScorer() as scorer:
            overall = scorer.score(hyps, refs)                       # CaptionScores
            synth = scorer.score(hyps[:10], refs[:10])

    Args:
        metrics: which of :data:`METRICS` to compute (default: all).
        java: the Java executable (default ``$AVITALK_JAVA`` or ``java`` on PATH).
    """

    def __init__(self, metrics: Sequence[str] = METRICS, *, java: str | None = None) -> None:
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}")
        self.metrics = tuple(metrics)
        self.java = java
        self._meteor: _Meteor | None = None
        self._meteor_error: str | None = None

    def __enter__(self) -> CaptionScorer:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the METEOR process, if any."""
        if self._meteor is not None:
            self._meteor.close()
            self._meteor = None

    def _meteor_score(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
        if self._meteor_error is not None:
            raise MetricUnavailableError(self._meteor_error)
        try:
            if self._meteor is None:
                self._meteor = _Meteor(self.java)
            return self._meteor.score(hyps, refs)
        except MetricUnavailableError as e:
            self._meteor, self._meteor_error = None, str(e)
            raise

    def score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> CaptionScores:
        """Every requested metric of one set; see :class:`CaptionScores`.

        Raises:
            ValueError: lengths differ, no items, or an item without references.
        """
        _check_inputs(hypotheses, references)
        out = CaptionScores(scores={}, n=len(hypotheses))
        try:
            hyps, refs = _tokenize_set(hypotheses, references, self.java)
        except MetricUnavailableError as e:
            out.unavailable = {m: str(e) for m in self.metrics}
            if "SPICE" in self.metrics and spice_jars_missing():
                out.unavailable["SPICE"] = _spice_absent_reason()
            return out
        res = {i: [h] for i, h in enumerate(hyps)}
        gts = dict(enumerate(refs))
        if "BLEU-1" in self.metrics or "BLEU-4" in self.metrics:
            from pycocoevalcap.bleu.bleu import Bleu

            b, _ = Bleu(4).compute_score(gts, res, verbose=0)
            for name, n in (("BLEU-1", 1), ("BLEU-4", 4)):
                if name in self.metrics:
                    out.scores[name] = float(b[n - 1])
        if "METEOR" in self.metrics:
            try:
                out.scores["METEOR"] = self._meteor_score(hyps, refs)
            except MetricUnavailableError as e:
                out.unavailable["METEOR"] = str(e)
        if "ROUGE-L" in self.metrics:
            from pycocoevalcap.rouge.rouge import Rouge

            out.scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
        if "CIDEr" in self.metrics:
            from pycocoevalcap.cider.cider import Cider

            out.scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
        if "SPICE" in self.metrics:
            try:
                out.scores["SPICE"] = _spice(hyps, refs, self.java)
            except MetricUnavailableError as e:
                out.unavailable["SPICE"] = str(e)
        out.scores = {m: out.scores[m] for m in METRICS if m in out.scores}
        return out


def _tokenize_set(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], java: str | None
) -> tuple[list[str], list[list[str]]]:
    """PTB-tokenise hypotheses and references in one tokenizer run."""
    tokens = ptb_tokenize([*hypotheses, *(r for rs in references for r in rs)], java=java)
    hyps, flat = tokens[: len(hypotheses)], tokens[len(hypotheses) :]
    refs, k = [], 0
    for rs in references:
        refs.append(flat[k : k + len(rs)])
        k += len(rs)
    return hyps, refs


def caption_metrics(
    hypotheses: Sequence[str], references: Sequence[Sequence[str]], metrics: Sequence[str] = METRICS
) -> CaptionScores:
    """All requested metrics of one set (one tokenizer run, one METEOR process)."""
    with CaptionScorer(metrics) as scorer:
        return scorer.score(hypotheses, references)


def _single(name: str, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    result = caption_metrics(hypotheses, references, (name,))
    if name in result.unavailable:
        raise MetricUnavailableError(f"{name}: {result.unavailable[name]}")
    return result.scores[name]


def bleu1(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-1 in [0, 1]."""
    return _single("BLEU-1", hypotheses, references)


def bleu4(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 in [0, 1]."""
    return _single("BLEU-4", hypotheses, references)


def meteor(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus METEOR 1.5 (``-l en -norm``) in [0, 1]."""
    return _single("METEOR", hypotheses, references)


def rouge_l(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean ROUGE-L F (β = 1.2, best precision and recall over references) in [0, 1]."""
    return _single("ROUGE-L", hypotheses, references)


def cider_d(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean CIDEr-D (1-4-grams, σ = 6, ×10) in [0, 10]; document frequencies from ``references``."""
    return _single("CIDEr", hypotheses, references)


def spice(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean SPICE F-score in [0, 1]; raises :class:`MetricUnavailableError` unless its jars are present."""
    return _single("SPICE", hypotheses, references)
