"""``avitalk data import meadtext``: MeadText / TalkCLIP-style captions attached to an imported MEAD corpus."""

from __future__ import annotations

import json

import pytest

from avitalk.data.check import check_corpus
from avitalk.data.format import Manifest, file_sha256, iter_clips
from avitalk.data.importers import meadtext
from avitalk.errors import AvitalkError
from import_fixtures import parse_args, small_mead_corpus

pytest.importorskip("h5py")


@pytest.fixture
def corpus(tmp_path):
    return small_mead_corpus(tmp_path)


def _snapshot(root):
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_captions_from_a_folder_of_files(corpus, tmp_path):
    caps = tmp_path / "captions"
    caps.mkdir()
    # AVI-Talking stage-1 records (experiments/json_dir/*.json), keyed by the MEAD wav path
    (caps / "0000.json").write_text(json.dumps({
        "mm_paths": "wav_dir/0004/M003_front_angry_level2_001.wav",
        "output_texts": "An angry man speaks with brow quite lowered.",
        "stage1_prompt": "Examine the emotion ...", "dataset_types": "AudioToText", "caption": ["unrelated"],
    }))  # fmt: skip
    # a {key: captions} object, EMOTE-style id, several captions, and a second record for the same clip
    (caps / "map.json").write_text(json.dumps({
        "M003/front/angry/level_2/001": ["A fairly angry man speaks with lowered brows."],
        "W033_front_sad_level_3_003": ["A very sad woman speaks with raised inner brows.", "A woman is deeply sad."],
        "M999_front_sad_level_1_001": "no such clip",
    }))  # fmt: skip
    (caps / "more.jsonl").write_text(
        json.dumps(
            {"video": "M003_front_angry_level_2_001", "captions": ["An angry man speaks with brow quite lowered."]}
        )
        + "\n"
    )
    (caps / "broken.json").write_text('{"M003_front_happy_level_1_002": ["cut off')
    before = _snapshot(corpus)
    out = tmp_path / "with-captions"
    summary = meadtext.run(caps, out, parse_args(meadtext, ["--corpus", str(corpus)]))
    assert _snapshot(corpus) == before  # the source corpus is never modified
    assert summary.imported == 3
    assert [s for s, _ in summary.skipped] == ["broken.json"] and "malformed JSON" in summary.skipped[0][1]
    clips = {c.clip_id: c for c in iter_clips(out)}
    angry = clips["M003_front_angry_level_2_001"]
    assert angry.instructions == [
        "An angry man speaks with brow quite lowered.",  # 0000.json comes first, the duplicate in more.jsonl is merged
        "A fairly angry man speaks with lowered brows.",
    ]
    assert angry.extra["instruction_source"] == "meadtext" and angry.extra["label_instructions"]
    assert clips["W033_front_sad_level_3_003"].instructions[1] == "A woman is deeply sad."
    happy = clips["M003_front_happy_level_1_002"]  # no caption (its file was broken): keeps its label captions
    assert happy.extra["instruction_source"] == "labels" and "happy" in happy.instructions[0]
    assert "2 clip(s) got captions; 1 had none (keep)" in summary.notes
    manifest = Manifest.load(out)
    assert manifest.source == "meadtext" and manifest.space == Manifest.load(corpus).space
    assert manifest.generator["split_policy"] == {"speaker": True, "sentence": False}
    assert {c.split for c in clips.values()} == {c.split for c in iter_clips(corpus)}
    assert check_corpus(out).ok

    again = meadtext.run(caps, out, parse_args(meadtext, ["--corpus", str(corpus)]))  # resume: nothing new
    assert again.imported == 0 and again.already_done == 3 and check_corpus(out).clips == 3


def test_drop_unmatched_and_keep_instructions(corpus, tmp_path):
    caps = tmp_path / "c.json"
    caps.write_text(json.dumps([{"clip_id": "M003_front_happy_level_1_002", "text": "A man smiles slightly."}]))
    out = tmp_path / "out"
    args = parse_args(meadtext, ["--corpus", str(corpus), "--unmatched", "drop", "--keep-instructions"])
    summary = meadtext.run(caps, out, args)
    assert summary.imported == 1 and sorted(why for _, why in summary.skipped) == ["no caption", "no caption"]
    (clip,) = iter_clips(out)
    assert clip.instructions[0] == "A man smiles slightly." and len(clip.instructions) == 5
    assert check_corpus(out).ok


def test_meadtext_errors(corpus, tmp_path):
    caps = tmp_path / "c.json"
    caps.write_text(json.dumps({"x": 1}))
    with pytest.raises(AvitalkError, match="no readable caption records"):
        meadtext.run(caps, tmp_path / "out", parse_args(meadtext, ["--corpus", str(corpus)]))
    with pytest.raises(AvitalkError, match="must differ from --corpus"):
        meadtext.run(caps, corpus, parse_args(meadtext, ["--corpus", str(corpus)]))
    with pytest.raises(AvitalkError, match="not an avitalk corpus"):
        meadtext.run(caps, tmp_path / "out", parse_args(meadtext, ["--corpus", str(tmp_path)]))
