"""The bundled example clip (``avitalk.examples``) and ``avitalk animate --example``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from avitalk.audio.io import load_audio
from avitalk.cli import main
from avitalk.examples import DURATION_S, EXAMPLE, example_path


def test_example_clip_is_16k_mono_of_the_stated_length():
    path = example_path()
    assert path.name == EXAMPLE and path.stat().st_size < 200_000
    info = sf.info(str(path))
    assert (info.format, info.samplerate, info.channels) == ("FLAC", 16000, 1)
    audio = load_audio(path)
    assert audio.sample_rate == 16000 and audio.samples.ndim == 1
    assert abs(audio.duration - DURATION_S) < 0.01
    x = audio.samples
    rms = lambda a: float(np.sqrt(np.mean(a**2)))  # noqa: E731
    assert 0.1 < np.abs(x).max() <= 1.0 and rms(x) > 0.02  # speech at a normal level, not silence
    frames = x[: len(x) // 1600 * 1600].reshape(-1, 1600)  # 100 ms frames
    assert (np.sqrt((frames**2).mean(1)) > 0.02).mean() > 0.6  # voice most of the time, not one blip


def test_example_path_reports_a_missing_file():
    from avitalk.errors import AvitalkError

    with pytest.raises(AvitalkError, match="missing"):
        example_path("nope.flac")


def test_animate_needs_exactly_one_of_speech_or_example(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["animate", "-o", out]) == 2
    assert "exactly one of SPEECH" in capsys.readouterr().err
    assert main(["animate", str(example_path()), "--example", "-o", out]) == 2
    assert "exactly one of SPEECH" in capsys.readouterr().err
    # --example reads the bundled clip, then fails on the (empty) models directory: the clip was accepted
    (tmp_path / "models").mkdir()
    assert main(["animate", "--example", "-o", out, "--models", str(tmp_path / "models"), "--instruction", "x"]) == 2
    assert "not a models directory" in capsys.readouterr().err


@pytest.mark.integration
def test_make_example_reproduces_the_bundled_clip(tmp_path):
    if shutil.which("festival") is None:
        pytest.skip("festival is not installed")
    from avitalk.examples.make_example import make_example

    made = make_example(tmp_path / "hello.flac")
    a, b = sf.read(str(made), dtype="int16")[0], sf.read(str(example_path()), dtype="int16")[0]
    assert a.shape == b.shape and np.array_equal(a, b)
