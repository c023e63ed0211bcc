import pytest

from avitalk.data.check import check_corpus
from avitalk.data.format import Manifest
from avitalk.data.writer import CorpusWriter
from avitalk.errors import AvitalkError
from avitalk.spaces import ARKIT52, FLAME
from conftest import make_clip


def test_writer_shards_and_resumes_after_interruption(tmp_path):
    w = CorpusWriter(tmp_path, ARKIT52, "test", clips_per_shard=2)
    for i in range(3):
        w.add(make_clip(i, "train", "spkA", f"s{i}"), key=f"file{i}")
    # interrupted here: clips 0-1 are in a shard, clip 2 only in memory
    del w
    w = CorpusWriter(tmp_path, ARKIT52, "test", clips_per_shard=2)
    assert w.is_done("file0") and w.is_done("file1") and not w.is_done("file2")
    w.add(make_clip(2, "train", "spkA", "s2"), key="file2")
    w.add(make_clip(3, "test", "spkB", "t0"), key="file3")
    manifest = w.close()
    assert [s.file for s in manifest.shards] == [
        "test/shard-00000.parquet",
        "train/shard-00000.parquet",
        "train/shard-00001.parquet",
    ]
    assert Manifest.load(tmp_path).shards == manifest.shards
    report = check_corpus(tmp_path)
    assert report.ok and report.clips == 4


def test_writer_refuses_mixing(tmp_path):
    CorpusWriter(tmp_path, ARKIT52, "test").close()
    with pytest.raises(AvitalkError, match="holds an import of 'test'"):
        CorpusWriter(tmp_path, FLAME, "test")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("x")
    with pytest.raises(AvitalkError, match="not empty"):
        CorpusWriter(tmp_path / "other", ARKIT52, "test")
    w = CorpusWriter(tmp_path / "new", FLAME, "test")
    with pytest.raises(AvitalkError, match="55 channels, flame@v1 has 53"):
        w.add(make_clip(0))
