import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from avitalk.cli import main
from avitalk.data.check import check_corpus, corpus_stats, format_stats
from avitalk.data.format import Manifest, clip_to_row, iter_clips, row_to_clip, write_shard
from avitalk.errors import AvitalkError
from conftest import make_clip, write_corpus


def test_clip_round_trip_is_exact_for_motion_and_close_for_audio():
    clip = make_clip(0)
    back = row_to_clip(clip_to_row(clip))
    np.testing.assert_array_equal(back.motion, clip.motion)
    assert back.motion.dtype == np.float32
    assert np.max(np.abs(back.audio - clip.audio)) < 1.0 / 2**14  # 16-bit FLAC
    assert back.phones == clip.phones or [p.symbol for p in back.phones] == ["b", "ɑ"]
    assert back.instructions == clip.instructions
    assert back.extra == {"k": 1}
    assert back.words[0][0] == "Bob"


def test_audio_only_clip_round_trips(tmp_path):
    clip = make_clip(1)
    clip.motion = None
    clip.phones = None
    back = row_to_clip(clip_to_row(clip))
    assert back.motion is None and back.phones is None


def test_shard_writing_is_deterministic(tmp_path):
    clips = [make_clip(i) for i in range(3)]
    d1 = write_shard(tmp_path / "a.parquet", clips)
    d2 = write_shard(tmp_path / "b.parquet", clips)
    assert d1 == d2
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.num_rows == 3


def test_good_corpus_checks_clean_and_streams(small_corpus):
    report = check_corpus(small_corpus)
    assert report.ok, [str(p) for p in report.problems]
    assert report.clips == 5
    assert [c.clip_id for c in iter_clips(small_corpus, "test")] == ["test-010", "test-011"]


def test_check_names_each_bad_clip(tmp_path):
    bad_nan = make_clip(0, sentence="a")
    bad_nan.motion[3, 5] = np.nan
    bad_len = make_clip(1, sentence="b")
    bad_len.motion = bad_len.motion[:-5]
    bad_rate = make_clip(2, sentence="c")
    bad_rate.sample_rate = 22050
    good = make_clip(3, sentence="d")
    write_corpus(tmp_path, {"train": [bad_nan, bad_len, bad_rate, good]})
    report = check_corpus(tmp_path)
    text = "\n".join(map(str, report.problems))
    assert report.bad_clips == 3
    assert "train-000: motion contains NaN/Inf" in text
    assert "train-001: motion has 20 frames but the audio (1.000 s) needs 25 ± 1" in text
    assert "train-002: sample rate 22050 Hz" in text
    assert "train-003" not in text


def test_check_detects_split_leaks_and_tampering(tmp_path):
    write_corpus(
        tmp_path,
        {"train": [make_clip(0, "train", "spkA", "s0")], "val": [make_clip(1, "val", "spkA", "s0")]},
    )
    report = check_corpus(tmp_path)
    text = "\n".join(map(str, report.problems))
    assert "share 1 speaker(s)" in text and "share 1 sentence(s)" in text
    (tmp_path / "val/shard-00000.parquet").write_bytes(b"garbage")
    text = "\n".join(map(str, check_corpus(tmp_path).problems))
    assert "sha256 differs" in text and "not a readable Parquet shard" in text


def test_unknown_channels_and_versions_are_errors(small_corpus):
    m = json.loads((small_corpus / "manifest.json").read_text())
    m["space"]["channels"][0] = "eyeBlinkSideways"
    (small_corpus / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(AvitalkError, match="arkit52@v1"):
        Manifest.load(small_corpus)
    m["format_version"] = 99
    (small_corpus / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(AvitalkError, match="format version 99"):
        Manifest.load(small_corpus)


def test_stats_counts_and_durations(small_corpus):
    stats = corpus_stats(small_corpus)
    assert stats.by_split["train"][0] == 3 and stats.by_split["test"][0] == 2
    assert stats.by_split["train"][1] == pytest.approx(3.0)
    assert stats.by_speaker["test"] == {"spkB": (2, pytest.approx(2.0))}
    table = format_stats(stats)
    assert "happy" in table and "spkA" in table


def test_cli_check_and_stats(small_corpus, tmp_path, capsys):
    assert main(["data", "check", str(small_corpus)]) == 0
    assert "ok: 5 clips" in capsys.readouterr().out
    assert main(["data", "stats", str(small_corpus)]) == 0
    assert "total" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "nope")]) == 2
    assert "not an avitalk corpus" in capsys.readouterr().err


def test_motion_mask_round_trips_and_is_checked(tmp_path):
    clip = make_clip(0)
    clip.motion_mask = np.ones(clip.motion.shape[0], bool)
    clip.motion_mask[3:5] = False
    back = row_to_clip(clip_to_row(clip))
    np.testing.assert_array_equal(back.motion_mask, clip.motion_mask)
    bad = make_clip(1, sentence="x")
    bad.motion_mask = np.ones(3, bool)
    bad.emotion = "unknown"
    write_corpus(tmp_path, {"train": [bad]})
    text = "\n".join(map(str, check_corpus(tmp_path).problems))
    assert "motion_mask has 3 entries for 25 frames" in text and "emotion" not in text
