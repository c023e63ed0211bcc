"""``avitalk train instruct``: both stage-1 phases on a tiny corpus (weightless encoders, tiny random LLM)."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from avitalk.cli import main
from avitalk.data.synth.captions import parse_caption
from avitalk.errors import AvitalkError
from avitalk.instruct.causal_lm import CausalLM, load_causal_lm
from avitalk.train.instruct_data import InstructClips, collate_instruct
from avitalk.train.instruct_recipe import resolve_config, train_instruct
from avitalk.train.load_instruct import load_stage1, strip_stage1
from avitalk.types import Audio
from conftest import write_corpus
from instruct_fixtures import EMOTIONS, HashTextEncoder, SpectralEncoder, emotion_clip
from test_train_motion import _scalars

pytest.importorskip("accelerate")
pytest.importorskip("tensorboardX")
torch.set_num_threads(1)

EMOS = list(EMOTIONS)
BASE = [
    "model.qformer.audio_dim=8",
    "model.text_dim=16",
    "align.train.batch_size=8",
    "project.train.batch_size=8",
    "align.train.log_every=5",
    "project.train.log_every=5",
    "align.train.eval_every=10",
    "project.train.eval_every=10",
    "align.train.progress=false",
    "project.train.progress=false",
    "align.warmup=1",
    "project.warmup=1",
    "align.lr=3e-3",
    "project.lr=5e-2",
]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("s1corpus")
    synth, audio_only = root / "synth", root / "ravdess"
    synth.mkdir()
    audio_only.mkdir()
    write_corpus(
        synth,
        {
            "train": [emotion_clip(i, EMOS[i % 4]) for i in range(12)],
            "val": [emotion_clip(100 + i, EMOS[i % 4], "val") for i in range(4)],
        },
    )
    write_corpus(audio_only, {"train": [emotion_clip(200 + i, EMOS[i % 4], motion=False) for i in range(4)]})
    return synth, audio_only


@pytest.fixture(scope="module")
def lm() -> CausalLM:
    return load_causal_lm("tiny-random")


def _train(corpora, out, lm, phase="all", steps=20, extra=()):
    cfg = resolve_config(
        "tiny", None, [*BASE, f"align.train.max_steps={steps}", f"project.train.max_steps={steps}", *extra]
    )
    enc, txt = SpectralEncoder(), HashTextEncoder()
    return train_instruct(cfg, list(corpora), out, [], phase, speech_encoder=enc, text_encoder=txt, causal_lm=lm)


def test_dataset_crops_and_concatenates(corpora) -> None:
    ds = InstructClips(list(corpora), "train", SpectralEncoder(), max_frames=20, seed=1)
    assert ds.clips == 16 and ds.corpus_of.count(1) == 4  # the audio-only corpus is used
    a, b = ds[3], ds[3]
    assert torch.equal(a["features"], b["features"]) and a["text"] == b["text"]
    assert a["features"].shape == (20, 8) and a["features"].dtype == torch.float32
    batch = collate_instruct([ds[0], ds[1]])
    assert batch["audio"].shape == (2, 20, 8) and batch["mask"].all() and len(batch["text"]) == 2
    full = InstructClips(list(corpora), "val", SpectralEncoder(), max_frames=1000, crop=False, augment=False)
    assert full[0]["features"].shape[0] == 60 and full[0]["text"] in full.instructions[0]
    with pytest.raises(AvitalkError):
        InstructClips([corpora[1]], "test", SpectralEncoder(), max_frames=20)


def _words_changed(a: str, b: str) -> int:
    ops = difflib.SequenceMatcher(a=a.split(), b=b.split()).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")


def test_augment_rate_sets_how_much_of_a_caption_is_reworded(corpora) -> None:
    caption = "A woman feels fairly sad and speaks with subtly drooping eyelids and a noticeably tensed chin."
    changed = {}
    for rate in (0.0, 0.15, 1.0):
        ds = InstructClips(list(corpora), "train", SpectralEncoder(), max_frames=20, variants=0, augment_rate=rate)
        ds.instructions = [[caption]] * ds.clips
        texts = [ds[i]["text"] for i in range(4 * ds.clips)]
        assert all(parse_caption(t) == ("sad", 2) for t in texts)  # emotion and intensity survive rewording
        changed[rate] = np.mean([_words_changed(caption, t) for t in texts])
    assert changed[0.0] == 0  # rate 0: no rewording (the projection phase's default)
    assert 1.0 <= changed[0.15] < changed[1.0] and changed[1.0] > 6
    with pytest.raises(ValueError, match="augment_rate"):
        InstructClips(list(corpora), "train", SpectralEncoder(), max_frames=20, augment_rate=1.5)


def test_train_both_phases_frozen_parts_resume_and_describe(corpora, tmp_path, lm) -> None:
    run = tmp_path / "run"
    llm_before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    assert _train(corpora, run, lm) == 0
    align = json.loads((run / "align" / "checkpoints" / "step-000020" / "meta.json").read_text())
    assert set(align["modules"]) == {"qformer", "align_head"}
    proj_dir = run / "project" / "checkpoints" / "step-000020"
    proj = json.loads((proj_dir / "meta.json").read_text())
    assert set(proj["modules"]) == {"qformer", "align_head", "prompt"}
    assert proj["config"]["align_checkpoint"].endswith("step-000020")
    assert list((run / "features").rglob("*.npy"))  # features cached under the run
    a_loss, p_loss = _scalars(run / "align")["loss"], _scalars(run / "project")["loss"]
    assert sorted(a_loss) == [5, 10, 15, 20] and a_loss[20] < a_loss[5]
    # the projection alone steers a random 2-layer LM slowly (its soft tokens start at the embedding scale)
    assert p_loss[20] < 0.98 * p_loss[5]
    assert {10, 20} <= set(_scalars(run / "align")["val/r1"]) and 20 in _scalars(run / "project")["val/loss"]
    # the LLM and (phase 2) the Q-Former stay bit-identical
    assert all(torch.equal(v, llm_before[k]) for k, v in lm.model.state_dict().items())
    q_align = load_file(run / "align" / "checkpoints" / "step-000020" / "qformer.safetensors")
    q_proj = load_file(proj_dir / "qformer.safetensors")
    assert q_align.keys() == q_proj.keys() and all(torch.equal(q_align[k], q_proj[k]) for k in q_align)

    # resume: more steps continue from the latest checkpoints of both phases
    assert _train(corpora, run, lm, steps=25) == 0
    for phase in ("align", "project"):
        assert (run / phase / "checkpoints" / "latest").read_text().strip() == "step-000025"
    assert {25} <= set(_scalars(run / "project")["loss"])

    # inference: deterministic, batch = single, stripped checkpoint loads the same model
    describer = load_stage1(run, speech_encoder=SpectralEncoder(), causal_lm=lm)
    clip = emotion_clip(7, "sad")
    audio = Audio(clip.audio, 16000)
    other = Audio(emotion_clip(8, "happy").audio, 16000)
    s1 = describer.describe(audio, decoding="sample", seed=3).text
    assert s1 == describer.describe(audio, decoding="sample", seed=3).text and isinstance(s1, str)
    g = describer.describe(audio).text
    assert describer.describe_batch([audio, other])[0].text == g
    assert isinstance(describer.describe(audio, decoding="beam", num_beams=2).text, str)
    emb = describer.embed([audio, other, audio])
    assert emb.shape == (3, 16)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(emb[0], emb[2])
    stripped = strip_stage1(run, tmp_path / "shipped")
    assert not list(stripped.glob("optim*")) and not (stripped / "rng.json").exists()
    again = load_stage1(stripped, speech_encoder=SpectralEncoder(), causal_lm=lm)
    assert again.describe(audio).text == g
    for bad in ({"decoding": "topk"}, {"max_new_tokens": 0}, {"template": 10}):
        with pytest.raises(AvitalkError):
            describer.describe(audio, **bad)
    with pytest.raises(AvitalkError):
        describer.describe(Audio(torch.zeros(0).numpy(), 16000))
    with pytest.raises(AvitalkError):
        describer.describe_batch([])


@pytest.mark.parametrize(
    ("name", "extra", "modules"),
    [
        ("no_llm", ["model.decoder=qformer"], {"qformer", "align_head", "text_decoder"}),
        ("no_qformer", ["model.use_qformer=false"], {"prompt"}),
        ("no_augment_tuned", ["augment=false", "model.tune_qformer=true"], {"qformer", "align_head", "prompt"}),
    ],
)
def test_ablations_train_and_describe(corpora, tmp_path, lm, name, extra, modules, monkeypatch) -> None:
    import avitalk.train.instruct_recipe as recipe

    rates: list[list[float]] = []  # the optimizer groups' learning rates, per phase
    scheduled = recipe._scheduled

    def record(groups, pc):
        rates.append([g.get("lr", pc.lr) for g in groups])
        return scheduled(groups, pc)

    monkeypatch.setattr(recipe, "_scheduled", record)
    run = tmp_path / name
    assert _train(corpora, run, lm, steps=10, extra=[*extra, "qformer_lr=2e-4"]) == 0
    if "model.tune_qformer=true" in extra:  # projection phase: new parts at project.lr, the Q-Former at its own
        assert rates[-1] == [5e-2, 2e-4]
    ckpt = run / "project" / "checkpoints" / "step-000010"
    assert set(json.loads((ckpt / "meta.json").read_text())["modules"]) == modules
    assert (run / "align").exists() == ("qformer" in modules)
    loss = _scalars(run / "project")["loss"]
    assert loss[10] < loss[5] * 1.05 and all(torch.isfinite(torch.tensor(v)) for v in loss.values())
    if "model.tune_qformer=true" in extra:  # the Q-Former moved away from its aligned weights
        q_align = load_file(run / "align" / "checkpoints" / "step-000010" / "qformer.safetensors")
        q_proj = load_file(ckpt / "qformer.safetensors")
        assert any(not torch.equal(q_align[k], q_proj[k]) for k in q_align)
    d = load_stage1(run, speech_encoder=SpectralEncoder(), causal_lm=lm)
    audio = Audio(emotion_clip(3, "angry").audio, 16000)
    for decoding in ("greedy", "beam", "sample"):
        a = d.describe(audio, decoding=decoding, num_beams=2, seed=1, max_new_tokens=6)
        assert a == d.describe(audio, decoding=decoding, num_beams=2, seed=1, max_new_tokens=6)
    assert d.embed([audio]).shape[0] == 1


def test_project_needs_align_and_user_errors(corpora, tmp_path, lm, capsys) -> None:
    with pytest.raises(AvitalkError, match="phase align"):
        _train(corpora, tmp_path / "r", lm, phase="project")
    with pytest.raises(AvitalkError, match="not a corpus"):
        _train([tmp_path], tmp_path / "r", lm)
    with pytest.raises(AvitalkError, match=r"project\.augment_rate must be in \[0, 1\]"):
        _train(corpora, tmp_path / "r", lm, extra=["project.augment_rate=1.5"])
    with pytest.raises(AvitalkError, match="only the alignment"):
        _train(corpora, tmp_path / "r2", lm, phase="align", steps=2)
        load_stage1(tmp_path / "r2", speech_encoder=SpectralEncoder(), causal_lm=lm)
    with pytest.raises(AvitalkError):
        load_stage1(tmp_path / "nothing")
    synth = str(corpora[0])
    assert main(["train", "instruct", "--data", str(tmp_path / "x"), "--out", str(tmp_path / "o")]) == 2
    assert "not a corpus directory" in capsys.readouterr().err
    assert main(["train", "instruct", "--data", synth, "--out", str(tmp_path / "o"), "--set", "model.llm2=x"]) == 2
    err = capsys.readouterr().err
    assert "llm2" in err and len(err.strip().splitlines()) == 1
    assert (
        main(["train", "instruct", "--data", synth, "--out", str(tmp_path / "o"), "--set", "model.prompt_tokens=3"])
        == 2
    )
    assert "prompt_tokens" in capsys.readouterr().err


def test_lora_adapter_trains_saves_and_loads(corpora, tmp_path) -> None:
    """model.lora_rank > 0: LoRA on the LLM trains with the projection, is checkpointed alone and reloads."""
    from avitalk.instruct.adapter import LLMAdapter
    from avitalk.instruct.model import PrefixCache, llm_prompt_loss

    run = tmp_path / "lora"
    assert _train(corpora, run, load_causal_lm("tiny-random"), steps=10, extra=["model.lora_rank=2"]) == 0
    ckpt = run / "project" / "checkpoints" / "step-000010"
    assert set(json.loads((ckpt / "meta.json").read_text())["modules"]) == {
        "qformer", "align_head", "prompt", "llm_adapter"
    }  # fmt: skip
    weights = load_file(ckpt / "llm_adapter.safetensors")
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and len(weights) == 2 * len(lora_b)  # A and B of each target layer, nothing of the LLM
    assert any(float(v.abs().max()) > 0 for v in lora_b)  # B starts at zero: it trained
    loss = _scalars(run / "project")["loss"]
    assert loss[10] < loss[5] * 1.05

    fresh = load_causal_lm("tiny-random")
    d = load_stage1(run, speech_encoder=SpectralEncoder(), causal_lm=fresh)
    assert any("lora_" in n for n, _ in fresh.model.named_parameters())
    with pytest.raises(AvitalkError, match="already carries"):
        LLMAdapter(fresh, 2, 4.0, ("q_proj",))
    audio = Audio(emotion_clip(3, "angry").audio, 16000)
    assert d.describe(audio, max_new_tokens=6) == d.describe(audio, max_new_tokens=6)

    # the reloaded adapter is the trained one: same loss as a model without it differs
    plain = load_causal_lm("tiny-random")
    feats = torch.randn(2, 5, plain.hidden_size)
    targets = [[5, 6, 7, plain.eos_token_id], [8, 9, plain.eos_token_id]]
    with torch.no_grad():
        adapted = llm_prompt_loss(fresh, PrefixCache(fresh, d.parts.llm_adapter), 0, feats, targets)
        cached = llm_prompt_loss(fresh, PrefixCache(fresh), 0, feats, targets)
        base = llm_prompt_loss(plain, PrefixCache(plain), 0, feats, targets)
    assert torch.allclose(adapted, cached)  # the adapter lives in the LLM: both paths see it
    assert not torch.allclose(adapted, base)
    with pytest.raises(AvitalkError, match="LoRA targets"):
        LLMAdapter(plain, 2, 4.0, ("no_such_layer",))

    # merging folds the trained LoRA into the weights: the same function, plain layers, nothing left to save
    adapter = d.parts.llm_adapter
    adapter.merge_into_llm()
    with torch.no_grad():
        merged = llm_prompt_loss(fresh, PrefixCache(fresh), 0, feats, targets)
    assert torch.allclose(merged, adapted, atol=1e-5) and adapter.merged and not adapter.state_dict()
    assert not any("lora_" in n for n, _ in fresh.model.named_parameters())
    # the bfloat16 inference path loads merged
    bf = load_stage1(
        run, speech_encoder=SpectralEncoder(), causal_lm=load_causal_lm("tiny-random"), llm_dtype="bfloat16"
    )
    assert bf.parts.llm_adapter.merged and bf.llm.dtype == torch.bfloat16 and bf.describe(audio, max_new_tokens=4)
