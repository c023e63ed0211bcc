"""``avitalk data import ravdess`` on the real RAVDESS files in shared/assets (skipped when absent),
and the corpus-level split policy that lets ``data check`` accept corpora that share sentences."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from avitalk.cli import main
from avitalk.data.check import check_corpus, split_policy
from avitalk.data.format import Manifest, iter_clips
from avitalk.data.importers import ravdess
from avitalk.data.synth.captions import parse_caption
from avitalk.data.writer import CorpusWriter
from avitalk.spaces import ARKIT52
from conftest import make_clip
from import_fixtures import parse_args

ASSETS = Path(os.environ.get("AVITALK_SHARED_ASSETS", Path(__file__).resolve().parents[2] / "shared/assets"))
RAVDESS = ASSETS / "RAVDESS-speech-16k"
needs_ravdess = pytest.mark.skipif(not RAVDESS.is_dir(), reason=f"RAVDESS assets not found at {RAVDESS}")


def test_parse_name():
    info = ravdess.parse_name("03-01-06-02-01-01-07")
    assert (info["emotion"], info["intensity"], info["statement"], info["actor"]) == ("fear", 3, "01", 7)
    calm = ravdess.parse_name("03-01-02-01-02-02-12")
    assert (calm["emotion"], calm["intensity"], calm["ravdess_emotion"]) == ("neutral", 1, "calm")
    assert ravdess.parse_name("03-01-05-01-01-01-08")["intensity"] == 2
    assert "song" in ravdess.parse_name("03-02-05-01-01-01-08")
    assert "identifier" in ravdess.parse_name("speech_01")
    assert "emotion code 09" in ravdess.parse_name("03-01-09-01-01-01-08")


@needs_ravdess
def test_ravdess_subset_with_a_corrupt_file(tmp_path):
    src = tmp_path / "ravdess"
    for actor in ("07", "22", "23"):
        shutil.copytree(RAVDESS / f"Actor_{actor}", src / f"Actor_{actor}")
    (src / "Actor_07/03-01-05-02-02-02-07.flac").write_bytes(b"fLaC\x00broken")  # a corrupt file
    (src / "Actor_07/notes.wav").write_bytes(b"RIFF")  # not a RAVDESS name
    out = tmp_path / "corpus"
    args = parse_args(ravdess, ["--per-actor", "60", "--actors", "07,22,23", "--clips-per-shard", "16"])
    summary = ravdess.run(src, out, args)
    assert summary.imported == 179
    skipped = dict(summary.skipped)
    assert "cannot decode audio" in skipped["Actor_07/03-01-05-02-02-02-07.flac"]
    assert "not a RAVDESS identifier" in skipped["Actor_07/notes.wav"]
    report = check_corpus(out)
    assert report.ok and report.clips == 179, report.problems
    manifest = Manifest.load(out)
    assert split_policy(manifest) == {"speaker": True, "sentence": False} and manifest.source == "ravdess"
    clips = list(iter_clips(out))
    by_split = {s: {c.speaker for c in clips if c.split == s} for s in ("train", "val", "test")}
    assert by_split == {"train": {"ravdess-actor07"}, "val": {"ravdess-actor22"}, "test": {"ravdess-actor23"}}
    c = next(c for c in clips if c.clip_id == "ravdess-03-01-06-02-01-01-07")
    assert (c.emotion, c.intensity, c.gender, c.motion) == ("fear", 3, "male", None)
    assert c.transcript == "Kids are talking by the door." and c.sentence_id == "ravdess:statement01"
    assert c.sample_rate == 16000 and 2.0 < c.duration < 6.0
    assert c.extra["ravdess"]["ravdess_emotion"] == "fearful" and c.extra["instruction_source"] == "labels"
    assert len(c.instructions) == 4 and all(parse_caption(t) == ("fear", 3) for t in c.instructions)
    assert c.instructions[0].startswith("A man feels extremely fearful")
    female = next(c for c in clips if c.speaker == "ravdess-actor22" and c.emotion == "happy")
    assert female.gender == "female" and female.instructions[0].startswith("A woman")
    assert sum(c.extra["ravdess"]["ravdess_emotion"] == "calm" for c in clips) == 24

    # rerun after fixing the file: only it is imported; what was written stays
    shutil.copy(RAVDESS / "Actor_07/03-01-05-02-02-02-07.flac", src / "Actor_07/03-01-05-02-02-02-07.flac")
    again = ravdess.run(src, out, args)
    assert again.imported == 1 and again.already_done == 179
    assert check_corpus(out).clips == 180
    # same labels and seed -> same instructions on a fresh import
    fresh = tmp_path / "fresh"
    ravdess.run(src / "Actor_07", fresh, parse_args(ravdess, ["--per-actor", "5"]))
    a = {c.clip_id: c.instructions for c in iter_clips(fresh)}
    b = {c.clip_id: c.instructions for c in clips if c.clip_id in a}
    assert a == b and len(a) == 5


@needs_ravdess
def test_ravdess_cli(tmp_path, capsys):
    out = tmp_path / "corpus"
    argv = ["data", "import", "ravdess", str(RAVDESS), "--out", str(out), "--actors", "08,21,24", "--per-actor", "4"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert (
        "ravdess: imported 12 clip(s)" in text and "skipped 0 source(s)" in text and "data check: ok (12 clips)" in text
    )
    assert main([*argv[:3], "--calm", "skip", str(RAVDESS), "--out", str(out)]) == 2  # other options: refused
    err = capsys.readouterr().err
    assert "imported with other options" in err and err.count("\n") == 1


def test_cli_missing_source_is_one_line(tmp_path, capsys):
    assert main(["data", "import", "ravdess", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avitalk: error: ") and "no such file or directory" in err and err.count("\n") == 1


def test_split_policy_waives_sentences_but_not_speakers(tmp_path):
    def corpus(root, policy, test_speaker):
        w = CorpusWriter(root, ARKIT52, "test", generator={"split_policy": policy} if policy else None)
        w.add(make_clip(0, "train", "spkA", "s0"))
        w.add(make_clip(1, "test", test_speaker, "s0"))  # the same sentence in both splits
        w.close()
        return check_corpus(root)

    strict = corpus(tmp_path / "a", None, "spkB")
    assert not strict.ok and "share 1 sentence(s)" in str(strict.problems[0])
    assert corpus(tmp_path / "b", {"speaker": True, "sentence": False}, "spkB").ok
    shared = corpus(tmp_path / "c", {"speaker": True, "sentence": False}, "spkA")
    assert [str(p) for p in shared.problems] == ["splits: test and train share 1 speaker(s), e.g. 'spkA'"]


def test_python_api_runs_an_importer_with_keyword_options(tmp_path):
    from avitalk.data.importers import import_data
    from avitalk.errors import AvitalkError

    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(AvitalkError, match="has no option"):
        import_data("ravdess", src, tmp_path / "a", no_such_option=1)
    with pytest.raises(AvitalkError, match="unknown importer"):
        import_data("nope", src, tmp_path / "a")
    with pytest.raises(AvitalkError, match=r"no \.wav or \.flac files"):
        import_data("ravdess", src, tmp_path / "a")
    if RAVDESS.is_dir():
        for actor in ("07", "08", "23", "24"):
            f = sorted((RAVDESS / f"Actor_{actor}").glob("*.flac"))[0]
            shutil.copy(f, src / f.name)
        summary = import_data("ravdess", src, tmp_path / "b", val_actors="8", test_actors="24")
        assert summary.kind == "ravdess" and summary.imported == 4
        assert check_corpus(tmp_path / "b").ok
