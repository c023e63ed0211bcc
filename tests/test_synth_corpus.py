"""End to end: a tiny synthetic corpus with the real TTS backends, checked, resumed, reproduced."""

import shutil

import numpy as np
import pytest

from avitalk.cli import main
from avitalk.data.check import check_corpus, corpus_stats
from avitalk.data.format import Manifest, iter_clips
from avitalk.data.labels import EMOTIONS
from avitalk.data.synth.corpus import synthesize_corpus
from avitalk.errors import AvitalkError
from avitalk.spaces import ARKIT52

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "corpus"
    synthesize_corpus(out, hours=0.001, seed=5, workers=2)
    return out


def test_tiny_corpus_is_valid_and_complete(tiny):
    report = check_corpus(tiny)
    assert report.ok, [str(p) for p in report.problems]
    stats = corpus_stats(tiny)
    assert set(stats.by_split) == {"train", "val", "test"}
    for split in stats.by_emotion:
        assert set(stats.by_emotion[split]) == set(EMOTIONS)
    assert stats.with_motion == report.clips == 24
    clip = next(iter_clips(tiny, "test"))
    assert clip.motion.shape[1] == ARKIT52.dim and clip.motion.dtype == np.float32
    assert clip.phones and clip.words and len(clip.instructions) >= 2
    assert clip.gender in ("male", "female")
    assert ("man" if clip.gender == "male" else "woman") in clip.instructions[0].lower()
    assert 0.5 < clip.duration < 15


def test_interrupted_run_resumes_to_identical_bytes(tiny, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny, copy)
    manifest = Manifest.load(copy)
    victim = copy / manifest.shards[0].file
    original_manifest = (copy / "manifest.json").read_bytes()
    victim.unlink()  # as if the run had stopped before this shard was written
    (copy / "manifest.json").unlink()
    (victim.parent / ".shard-00000.parquet.abc.tmp.parquet").write_bytes(b"half-written")
    synthesize_corpus(copy, hours=0.001, seed=5, workers=1)  # other process count, same bytes
    assert (copy / "manifest.json").read_bytes() == original_manifest
    assert not list(copy.rglob(".*.tmp*"))


def test_other_arguments_do_not_mix_into_an_existing_corpus(tiny):
    with pytest.raises(AvitalkError, match="holds a synthetic corpus made with"):
        synthesize_corpus(tiny, hours=0.002, seed=5)


def test_cli_refuses_a_non_empty_foreign_directory(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["data", "synth", "--out", str(tmp_path), "--hours", "0.001"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
