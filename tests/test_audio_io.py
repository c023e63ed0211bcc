import numpy as np
import pytest
import soundfile as sf

from avitalk.audio import load_audio, save_audio
from avitalk.cli import main
from avitalk.errors import AvitalkError
from avitalk.types import Audio


def _tone(sr, seconds=0.5, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([x] * channels, 1) if channels > 1 else x


@pytest.mark.parametrize(("fmt", "ext"), [("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg"), ("MP3", ".mp3")])
def test_any_format_rate_and_channels_become_16k_mono(tmp_path, fmt, ext):
    p = tmp_path / f"a{ext}"
    sf.write(p, _tone(44100, channels=2), 44100, format=fmt)
    audio = load_audio(p)
    assert audio.sample_rate == 16000 and audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert abs(audio.duration - 0.5) < 0.06  # mp3 adds encoder padding


def test_bad_inputs_give_one_line_errors(tmp_path):
    (tmp_path / "text.wav").write_text("this is not audio")
    sf.write(tmp_path / "silent.wav", np.zeros(8000, np.float32), 16000)
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    good = tmp_path / "good.wav"
    sf.write(good, _tone(16000, 1.0), 16000)
    (tmp_path / "trunc.wav").write_bytes(good.read_bytes()[:30])
    cases = {
        "missing.wav": "no such audio file",
        "text.wav": "cannot decode audio",
        "silent.wav": "audio is silent",
        "empty.wav": "no samples",
        "trunc.wav": "cannot decode audio",
    }
    for name, msg in cases.items():
        with pytest.raises(AvitalkError, match=msg) as e:
            load_audio(tmp_path / name)
        assert "\n" not in str(e.value)
        assert name in str(e.value)


def test_save_audio_is_atomic_and_checked(tmp_path):
    a = Audio(_tone(16000), 16000)
    save_audio(tmp_path / "x.flac", a)
    assert load_audio(tmp_path / "x.flac").samples.shape == (8000,)
    with pytest.raises(AvitalkError, match="unsupported output audio format"):
        save_audio(tmp_path / "x.xyz", a)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.flac"]


def test_cli_prints_one_line_for_user_errors(capsys, tmp_path):
    assert main(["data", "stats", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avitalk: error:") and err.count("\n") == 1
