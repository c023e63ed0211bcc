"""``avitalk data import mead-emoca`` on tiny fixtures in EMOTE's and EMOCA's exact output layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avitalk.cli import main
from avitalk.data.check import check_corpus
from avitalk.data.format import Manifest, iter_clips
from avitalk.data.importers import mead
from avitalk.errors import AvitalkError
from avitalk.rates import frames_for_samples
from avitalk.spaces import FLAME, FLAME_NECK
from import_fixtures import parse_args, write_audio, write_emoca_frames, write_emote_hdf5

pytest.importorskip("h5py")


@pytest.fixture
def mead_tree(tmp_path):
    """Fits in three layouts + MEAD-named audio, one corrupt fit and one corrupt audio file."""
    root = tmp_path / "mead"
    fits = root / "EMICA-MEAD_flame2020"
    truth = {}
    # EMOTE processed MEAD (25 fps) + MEAD audio (AAC m4a) of a training speaker
    truth["emote"] = write_emote_hdf5(fits / "M003/front/angry/level_2/001", n_frames=30, seed=1)
    write_audio(root / "M003/audio/angry/level_2/001.m4a", 1.2, seed=1)
    # EMOTE fit of a held-out speaker, MEAD's folder name 'disgusted'
    write_emote_hdf5(fits / "W033/front/disgusted/level_3/012", n_frames=25, seed=2)
    write_audio(root / "W033/audio/disgusted/level_3/012.wav", 1.0, rate=16_000, seed=2)
    # EMOCA test_emoca_on_video output on a raw 30 fps MEAD video, frame 4 without a face
    seq = root / "emoca/M032/video/front/sad/level_1/003/processed_2024_Jan_01/003/results/EMOCA_v2_lr_mse_20"
    truth["emoca"] = write_emoca_frames(seq, n_frames=36, seed=3, missing=(4,))
    write_audio(root / "M032/audio/sad/level_1/003.m4a", 1.2, seed=3)
    # AVI-Talking's MEAD layout: <name>/EMOCA_v2_lr_mse_20/<frame>_000 and <name>/<name>.wav (25 fps)
    avi = root / "avi/W009_front_neutral_level1_017"
    truth["avi"] = write_emoca_frames(avi / "EMOCA_v2_lr_mse_20", n_frames=20, seed=4, n_exp=100)
    write_audio(avi / "W009_front_neutral_level1_017.wav", 0.8, seed=4)
    # corrupt fit (not HDF5) with good audio, and a good fit with corrupt audio
    bad = fits / "M003/front/happy/level_1/002"
    bad.mkdir(parents=True)
    (bad / "shape_pose_cam.hdf5").write_bytes(b"not an hdf5 file")
    write_audio(root / "M003/audio/happy/level_1/002.m4a", 1.0)
    write_emote_hdf5(fits / "M003/front/sad/level_2/005", n_frames=25, seed=5)
    (root / "M003/audio/sad/level_2").mkdir(parents=True)
    (root / "M003/audio/sad/level_2/005.m4a").write_bytes(b"\x00\x01garbage" * 50)
    return root, truth


def test_parse_mead_names():
    m = mead.parse_mead_name("M012_front_neutral_level1_017")
    assert (m.speaker, m.view, m.emotion, m.level, m.number, m.intensity) == ("M012", "front", "neutral", 1, "017", 1)
    m = mead.parse_mead_name("W009/video/left_30/disgusted/level_3/012.mp4")
    assert (m.speaker, m.view, m.emotion, m.intensity, m.gender) == ("W009", "left_30", "disgust", 3, "female")
    assert m.clip_id == "W009_left_30_disgusted_level_3_012" and m.sentence_id == "mead:disgust:3:012"
    m = mead.parse_mead_name("x/M003/front/surprised/level_2/001/shape_pose_cam.hdf5")
    assert (m.speaker, m.emotion, m.level) == ("M003", "surprised", 2)
    assert mead.parse_mead_name("M003/front/angry/001") is None
    assert mead.parse_mead_name("clips/take_01") is None


def test_mead_import_all_layouts(mead_tree, tmp_path):
    root, truth = mead_tree
    out = tmp_path / "corpus"
    summary = mead.run(root, out, parse_args(mead, []))
    assert summary.imported == 4, summary.format()
    skipped = dict(summary.skipped)
    assert (
        "not a readable HDF5 file" in skipped["EMICA-MEAD_flame2020/M003/front/happy/level_1/002/shape_pose_cam.hdf5"]
    )
    assert (
        "audio 005.m4a: cannot decode" in skipped["EMICA-MEAD_flame2020/M003/front/sad/level_2/005/shape_pose_cam.hdf5"]
    )
    assert check_corpus(out).ok, check_corpus(out).problems
    manifest = Manifest.load(out)
    assert manifest.space == FLAME and manifest.source == "mead-emoca"
    assert manifest.generator["split_policy"] == {"speaker": True, "sentence": False}
    clips = {c.clip_id: c for c in iter_clips(out)}
    assert set(clips) == {
        "M003_front_angry_level_2_001",
        "W033_front_disgusted_level_3_012",
        "M032_front_sad_level_1_003",
        "W009_front_neutral_level_1_017",
    }
    assert {c.split for c in clips.values()} == {"train", "test"}  # W033, M032 are not AVI-Talking training speakers

    c = clips["M003_front_angry_level_2_001"]  # 25 fps fit: frames are the source frames
    assert (c.speaker, c.gender, c.emotion, c.intensity, c.split) == ("M003", "male", "angry", 2, "train")
    assert c.sentence_id == "mead:angry:2:001" and c.extra["fit"]["source_fps"] == 25.0
    assert c.motion.shape == (frames_for_samples(c.audio.shape[0]), 53) and c.motion_mask is None
    n = c.motion.shape[0]
    np.testing.assert_allclose(c.motion[:, :50], truth["emote"]["exp"][:n, :50], atol=1e-6)
    np.testing.assert_allclose(c.motion[:, 50:], truth["emote"]["jaw"][:n], atol=1e-6)
    assert "angry" in c.instructions[0] and len(c.instructions) == 4

    c = clips["W033_front_disgusted_level_3_012"]
    assert (c.emotion, c.intensity, c.gender, c.split) == ("disgust", 3, "female", "test")

    c = clips["M032_front_sad_level_1_003"]  # 30 fps EMOCA frames resampled to 25, one frame without a face
    assert c.extra["fit"]["source_fps"] == 30.0 and c.extra["fit"]["missing_frames"] == 1
    assert c.motion.shape[0] == frames_for_samples(c.audio.shape[0]) == 30
    assert c.motion_mask is not None and (~c.motion_mask).sum() in (1, 2) and not c.motion[~c.motion_mask].any()
    exp = truth["emoca"]["exp"]
    np.testing.assert_allclose(c.motion[0, :50], 0.9 * exp[0] + 0.1 * exp[1], atol=1e-5)  # 25 fps frame 0 = 30 fps 0.1
    assert np.abs(c.motion[c.motion_mask][:, :50]).max() < 10  # the second detection (+100) was ignored
    jaw = truth["emoca"]["pose"][:, 3:6]
    np.testing.assert_allclose(c.motion[-1, 50:], 0.1 * jaw[34] + 0.9 * jaw[35], atol=1e-5)  # frame 29 = 34.9

    c = clips["W009_front_neutral_level_1_017"]  # AVI-Talking layout, 100-d exp truncated to 50
    assert c.extra["fit"]["exp_dims"] == 100 and c.extra["fit"]["source_fps"] == 25.0
    np.testing.assert_allclose(c.motion[:, :50], truth["avi"]["exp"][: c.motion.shape[0], :50], atol=1e-6)


def test_mead_resume_after_fixing_a_bad_file(mead_tree, tmp_path):
    root, _ = mead_tree
    out = tmp_path / "corpus"
    args = parse_args(mead, ["--clips-per-shard", "2", "--val-speakers", "W009"])
    first = mead.run(root, out, args)
    assert first.imported == 4
    before = Manifest.load(out).shards
    write_audio(root / "M003/audio/sad/level_2/005.m4a", 1.0, seed=9)  # the user fixes the corrupt file
    second = mead.run(root, out, args)
    assert second.imported == 1 and second.already_done == 4
    assert len(second.skipped) == 1  # the corrupt HDF5 is still reported
    after = Manifest.load(out).shards
    assert {s.file: s.sha256 for s in before}.items() <= {s.file: s.sha256 for s in after}.items()
    report = check_corpus(out)
    assert report.ok and report.clips == 5
    splits = {c.clip_id: c.split for c in iter_clips(out)}
    assert splits["W009_front_neutral_level_1_017"] == "val"


def test_mead_flame_neck_fixed_rate_and_transcripts(mead_tree, tmp_path):
    root, truth = mead_tree
    transcripts = tmp_path / "t.json"
    transcripts.write_text(json.dumps({"mead:angry:2:001": "She is angry about it."}))
    out = tmp_path / "corpus"
    argv = ["--space", "flame_neck", "--transcripts", str(transcripts), "--test-speakers", "W033", "--source-fps", "25"]
    summary = mead.run(root / "EMICA-MEAD_flame2020", out, parse_args(mead, [*argv, "--audio", str(root)]))
    assert summary.imported == 2  # only the EMOTE fits are under this SRC; one has corrupt audio
    clips = {c.clip_id: c for c in iter_clips(out)}
    c = clips["M003_front_angry_level_2_001"]
    assert Manifest.load(out).space == FLAME_NECK and c.motion.shape[1] == 56
    assert c.transcript == "She is angry about it." and c.split == "train"
    np.testing.assert_allclose(c.motion[:, 53:], truth["emote"]["global_pose"][: c.motion.shape[0]], atol=1e-6)
    assert check_corpus(out).ok


def test_mead_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AvitalkError, match="no fits found"):
        mead.run(tmp_path / "empty", tmp_path / "out", parse_args(mead, []))
    with pytest.raises(AvitalkError, match="both --val-speakers and --test-speakers"):
        mead.run(
            tmp_path / "empty",
            tmp_path / "out",
            parse_args(mead, ["--val-speakers", "M003", "--test-speakers", "M003"]),
        )


def test_mead_cli(mead_tree, tmp_path, capsys):
    root, _ = mead_tree
    out = tmp_path / "corpus"
    assert main(["data", "import", "mead-emoca", str(root), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mead-emoca: imported 4 clip(s)" in text and "skipped 2 source(s)" in text and "data check: ok" in text
