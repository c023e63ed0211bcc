"""``avitalk data import livelink`` on Live Link Face takes in the app's exact layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avitalk.data.check import check_corpus
from avitalk.data.format import Manifest, iter_clips
from avitalk.data.importers import livelink
from avitalk.data.synth.captions import parse_caption
from avitalk.errors import AvitalkError
from avitalk.spaces import ARKIT52
from import_fixtures import LIVE_LINK_HEADER, parse_args, write_audio, write_live_link_csv

SMILE = {"MouthSmileLeft": 0.8, "MouthSmileRight": 0.7, "CheekSquintLeft": 0.5, "CheekSquintRight": 0.5}


@pytest.fixture
def takes(tmp_path):
    root = tmp_path / "takes"
    # a calibrated take as the app stores it, recorded at 60 fps, head turned 0.1 (normalised units)
    take = root / "20240105_MySlate_3"
    head = {"HeadYaw": 0.1, "HeadPitch": -0.05, "HeadRoll": 0.02}
    cal = write_live_link_csv(take / "MySlate_3_iPhone_cal.csv", 90, 60, {**SMILE, **head, "JawOpen": 0.3}, seed=1)
    write_live_link_csv(take / "MySlate_3_iPhone_raw.csv", 90, 60, {"BrowDownLeft": 0.9}, seed=2)
    write_live_link_csv(take / "MySlate_3_iPhone_neutral.csv", 10, 60, {}, seed=3)
    write_audio(take / "MySlate_3_iPhone.mov", 1.5)
    (take / "video_metadata.json").write_text(json.dumps({"FrameRate": 60, "Quality": "High"}))
    (take / "take.json").write_text(json.dumps({"slateName": "MySlate", "takeNumber": 3, "subject": "iPhone"}))
    (take / "frame_log.csv").write_text("kind,index\nV,0\n")
    (take / "thumbnail.jpg").write_bytes(b"\xff\xd8\xff")
    # an uncalibrated take: plain CSV + a wav of the same name, 30 fps timecodes, no metadata
    plain = root / "loose"
    brow = write_live_link_csv(plain / "take2.csv", 45, 30, {"BrowDownLeft": 0.8, "BrowDownRight": 0.8}, seed=4)
    write_audio(plain / "take2.wav", 1.5, rate=44_100)
    # a corrupt CSV with audio, and a CSV without audio
    (plain / "bad.csv").write_text("Timecode,BlendShapeCount,EyeBlinkLeft\n00:00:00:01.000,61,0.1\n")
    write_audio(plain / "bad.wav", 1.0)
    write_live_link_csv(plain / "orphan.csv", 30, 30, {}, seed=5)
    return root, cal, brow


def test_livelink_import(takes, tmp_path):
    root, cal, _ = takes
    out = tmp_path / "corpus"
    summary = livelink.run(root, out, parse_args(livelink, ["--gender", "female"]))
    assert summary.imported == 2, summary.format()
    skipped = dict(summary.skipped)
    assert set(skipped) == {"loose/bad.csv", "loose/orphan.csv"}
    assert "lacks 51 ARKit blendshape columns" in skipped["loose/bad.csv"]
    assert "no audio or video" in skipped["loose/orphan.csv"]
    assert check_corpus(out).ok
    assert Manifest.load(out).space == ARKIT52
    clips = {c.clip_id: c for c in iter_clips(out)}
    assert set(clips) == {"livelink-20240105_MySlate_3-MySlate_3_iPhone_cal", "livelink-loose-take2"}

    c = clips["livelink-20240105_MySlate_3-MySlate_3_iPhone_cal"]
    assert c.extra["livelink"]["source_fps"] == 60.0 and c.extra["livelink"]["audio"] == "MySlate_3_iPhone.mov"
    assert (c.emotion, c.intensity, c.gender, c.split) == ("unknown", 0, "female", "train")
    assert c.motion.shape == (38, 55) and abs(c.duration - 1.5) < 0.01  # 90 frames at 60 fps: 1.5 s
    names = LIVE_LINK_HEADER[2:]
    for ch in ("mouthSmileLeft", "jawLeft", "jawRight", "mouthRight", "cheekSquintRight"):
        src = cal[:, names.index(ch[0].upper() + ch[1:])]
        assert abs(c.motion[:, ARKIT52.index(ch)].mean() - src.mean()) < 0.02, ch
    # the CSV's 0.1 is normalised (degrees / 180): 0.1 * pi radians
    assert abs(c.motion[:, ARKIT52.index("headYaw")].mean() - 0.1 * np.pi) < 1e-5
    assert c.instructions[0].startswith("A woman speaks with") and "smile" in c.instructions[0]
    assert c.extra["instruction_source"] == "measured" and len(c.instructions) == 3

    c = clips["livelink-loose-take2"]
    assert c.extra["livelink"]["source_fps"] == 30.0 and c.motion.shape[0] == 38
    assert "lowered brows" in c.instructions[0]
    np.testing.assert_allclose(c.motion[:, ARKIT52.index("browDownLeft")], 0.8, atol=1e-6)

    again = livelink.run(root, out, parse_args(livelink, ["--gender", "female"]))
    assert again.imported == 0 and again.already_done == 2 and len(again.skipped) == 2


def test_livelink_labels_units_and_instruction(takes, tmp_path):
    root, _, _ = takes
    take = root / "20240105_MySlate_3"
    out = tmp_path / "a"
    argv = [
        "--head-units",
        "radians",
        "--emotion",
        "happy",
        "--intensity",
        "3",
        "--gender",
        "male",
        "--split",
        "val",
    ]
    summary = livelink.run(take, out, parse_args(livelink, [*argv, "--speaker", "actor1"]))
    assert summary.imported == 1 and summary.skipped == []
    (c,) = iter_clips(out)
    assert abs(c.motion[:, ARKIT52.index("headYaw")].mean() - 0.1) < 1e-4  # taken as radians
    assert (c.emotion, c.intensity, c.speaker, c.split) == ("happy", 3, "actor1", "val")
    assert all(parse_caption(t) == ("happy", 3) for t in c.instructions) and "smile" in c.instructions[0]

    out = tmp_path / "b"  # one CSV given directly, with an instruction and a fixed rate
    csv = root / "loose/take2.csv"
    livelink.run(csv, out, parse_args(livelink, ["--instruction", "A man frowns.", "--fps", "30"]))
    (c,) = iter_clips(out)
    assert c.instructions == ["A man frowns."] and c.gender == "unknown" and c.extra["instruction_source"] == "given"
    assert check_corpus(out).ok

    with pytest.raises(AvitalkError, match="--intensity needs --emotion"):
        livelink.run(csv, tmp_path / "c", parse_args(livelink, ["--intensity", "2"]))


def test_measured_description_without_labels():
    values = np.zeros((50, ARKIT52.dim), np.float32)
    values[:, ARKIT52.index("browInnerUp")] = 0.7
    values[:, ARKIT52.index("mouthFrownLeft")] = values[:, ARKIT52.index("mouthFrownRight")] = 0.5
    texts = livelink.describe(values, "unknown", 0, "unknown", "spk", "k")
    assert texts[0].startswith("A person speaks with") and "raised inner brows" in texts[0]
    assert "downturned mouth corners" in texts[0] and len(set(texts)) == 3
