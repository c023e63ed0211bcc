"""MP4 writer: frame count, duration, audio stream in sync, atomic output, encoder errors."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from avitalk.errors import AvitalkError
from avitalk.face.render import RenderConfig, render_motion
from avitalk.face.video import VideoWriter, probe_video, write_video
from face_util import SphereFace, talking_motion

pytest.importorskip("imageio_ffmpeg")


def _frames(n, h=64, w=80):
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, : (i * 7) % w] = (200, 80, 40)
        yield f


def test_render_to_mp4_with_audio(tmp_path):
    face = SphereFace(subdivisions=2)
    m = talking_motion(30, fps=25)
    audio = (0.3 * np.sin(np.arange(int(1.5 * 16000)) * 2 * np.pi * 440 / 16000)).astype(np.float32)  # 1.5 s
    out = tmp_path / "talk.mp4"
    ticks = []
    n = write_video(out, render_motion(face, m, RenderConfig(size=96)), m.fps, audio=audio, n_frames=m.n_frames,
                    progress=ticks.append)  # fmt: skip
    assert n == 30 and len(ticks) == 30
    info = probe_video(out)
    assert info.n_frames == 30 and (info.width, info.height) == (96, 96)
    assert info.video_codec == "h264" and info.pix_fmt == "yuv420p" and info.fps == 25
    assert info.video_duration == pytest.approx(1.2)
    assert info.audio_codec == "aac" and info.sample_rate == 16000
    assert info.audio_duration == pytest.approx(1.2, abs=0.03)  # trimmed to the video
    assert [p.name for p in tmp_path.iterdir()] == ["talk.mp4"]  # no temporaries left


def test_short_audio_is_padded_and_wav_input(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, 0.2 * np.ones((22050, 2), np.float32), 44100)  # 0.5 s stereo 44.1 kHz
    out = tmp_path / "v.mp4"
    write_video(out, _frames(25), 25, audio=wav, n_frames=25)
    info = probe_video(out)
    assert info.n_frames == 25 and info.audio_duration == pytest.approx(1.0, abs=0.03)
    assert info.sample_rate == 44100
    with pytest.raises(AvitalkError, match="no such audio file"):
        write_video(tmp_path / "w.mp4", _frames(2), 25, audio=tmp_path / "nope.wav")


def test_odd_size_and_no_audio(tmp_path):
    out = tmp_path / "odd.mp4"
    write_video(out, _frames(5, 31, 45), 10)
    info = probe_video(out)
    assert (info.width, info.height) == (46, 32) and info.audio_codec is None and info.n_frames == 5


def test_failure_leaves_no_file(tmp_path):
    out = tmp_path / "x.mp4"

    def boom():
        yield from _frames(3)
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError):
        write_video(out, boom(), 25)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AvitalkError, match="no frames"):
        write_video(out, iter(()), 25)
    assert list(tmp_path.iterdir()) == []


def test_encoder_error_is_one_line(tmp_path):
    out = tmp_path / "bad.mp4"
    with pytest.raises(AvitalkError) as e, VideoWriter(out, 25, preset="no-such-preset") as w:
        for f in _frames(40):
            w.write(f)
    assert "video encoder failed" in str(e.value) and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_frame_size_change_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="earlier frames"), VideoWriter(tmp_path / "v.mp4", 25) as w:
        w.write(np.zeros((8, 8, 3), np.uint8))
        w.write(np.zeros((8, 10, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
