"""MP4 writer (H.264 yuv420p + AAC audio) through the ffmpeg binary that ships in ``imageio-ffmpeg``.

Frames are streamed into ffmpeg's stdin as raw RGB (never held in memory); the audio is written
to a temporary WAV, trimmed or zero-padded to exactly ``n_frames / fps`` seconds when the frame
count is known, so picture and sound end together. ffmpeg gets an argument list (no shell), writes
to a temporary file beside the target, and the file is renamed onto the target only after ffmpeg
succeeded: a failed or interrupted encode never leaves a half-written MP4. Encoder failures become
one :class:`~avitalk.errors.AvitalkError` line with ffmpeg's last message.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avitalk.errors import AvitalkError
from avitalk.fsutil import atomic_path
from avitalk.rates import AUDIO_SAMPLE_RATE
from avitalk.types import Audio

AudioSource = Audio | np.ndarray | str | os.PathLike[str]


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with ``imageio-ffmpeg`` (or ``$IMAGEIO_FFMPEG_EXE``)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise AvitalkError("video output needs the 'imageio-ffmpeg' package: pip install imageio-ffmpeg") from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
        raise AvitalkError(f"no usable ffmpeg binary: {e}") from None


def _audio_samples(audio: AudioSource) -> tuple[np.ndarray, int]:
    """``(N,)`` or ``(N, C)`` float32 samples and their rate, from an :class:`Audio`, an array or a file.

    No resampling here: the WAV handed to ffmpeg keeps the source rate (ffmpeg's AAC encoder takes
    any common rate). Arrays are taken to be 16 kHz.
    """
    if isinstance(audio, Audio):
        return np.asarray(audio.samples, dtype=np.float32), int(audio.sample_rate)
    if isinstance(audio, np.ndarray):
        if audio.ndim not in (1, 2):
            raise AvitalkError(f"audio array must be (N,) or (N, C) samples, got shape {audio.shape}")
        return audio.astype(np.float32, copy=False), AUDIO_SAMPLE_RATE
    import soundfile as sf

    p = Path(audio)
    if not p.is_file():
        raise AvitalkError(f"{p}: no such audio file")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AvitalkError(f"{p}: cannot decode audio (wav/flac/ogg/mp3 expected): {str(e).splitlines()[0]}") from None
    if not np.isfinite(data).all():
        raise AvitalkError(f"{p}: audio contains NaN or infinite samples")
    return (data[:, 0] if data.shape[1] == 1 else data), int(rate)


class VideoWriter:
    """Stream RGB frames into an MP4 file; use as a context manager.

    Args:
        path: output ``.mp4``.
        fps: frame rate.
        audio: optional soundtrack: :class:`Audio`, ``(N,)`` float32 16 kHz samples, or an audio file
            (wav/flac/ogg/mp3, any rate and channel count; kept as is).
        n_frames: expected frame count; when given, the audio is trimmed/padded to match exactly.
        crf, preset: libx264 quality (lower crf = better) and speed preset.

    ``write`` the frames, then leave the ``with`` block; the MP4 appears only if all went well.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float,
        *,
        audio: AudioSource | None = None,
        n_frames: int | None = None,
        crf: int = 18,
        preset: str = "medium",
    ) -> None:
        if fps <= 0:
            raise AvitalkError(f"video fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.crf, self.preset = crf, preset
        self.n_written = 0
        self._samples, self._rate = (None, AUDIO_SAMPLE_RATE) if audio is None else _audio_samples(audio)
        self._n_frames = n_frames
        self._stack = contextlib.ExitStack()
        self._proc: subprocess.Popen | None = None
        self._shape: tuple[int, ...] | None = None
        self._tmp_out: Path | None = None
        self._log: Path | None = None
        self._tmpdir: Path | None = None

    def __enter__(self) -> VideoWriter:
        self._tmp_out = self._stack.enter_context(atomic_path(self.path))
        self._tmpdir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="avitalk-video-")))
        self._log = self._tmpdir / "ffmpeg.log"
        return self

    def _start(self, height: int, width: int) -> None:
        assert self._tmp_out is not None and self._tmpdir is not None and self._log is not None
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", f"{self.fps:g}"]
        cmd += ["-i", "pipe:0"]
        if self._samples is not None:
            wav = self._tmpdir / "audio.wav"
            samples = self._samples
            if self._n_frames is not None:
                n = round(self._n_frames / self.fps * self._rate)
                pad = [(0, max(0, n - samples.shape[0]))] + [(0, 0)] * (samples.ndim - 1)
                samples = np.pad(samples[:n], pad)
            import soundfile as sf

            sf.write(str(wav), np.clip(samples, -1.0, 1.0), self._rate, subtype="PCM_16")
            cmd += ["-i", str(wav)]
        cmd += ["-map", "0:v:0"]
        if self._samples is not None:
            cmd += ["-map", "1:a:0", "-c:a", "aac", "-b:a", "128k"]
        # H.264 4:2:0 needs even dimensions: pad odd sizes by one pixel
        cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", self.preset]
        cmd += ["-crf", str(self.crf), "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4"]
        cmd += [str(self._tmp_out)]
        log = self._stack.enter_context(open(self._log, "wb"))
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        except OSError as e:
            raise AvitalkError(f"cannot start ffmpeg: {e}") from None

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame (all frames the same size)."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
        if self._shape is None:
            self._shape = frame.shape
            self._start(frame.shape[0], frame.shape[1])
        elif frame.shape != self._shape:
            raise ValueError(f"frame {self.n_written} has shape {frame.shape}, earlier frames {self._shape}")
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except (BrokenPipeError, OSError):
            self._proc.wait()
            raise AvitalkError(f"{self.path}: video encoder failed: {self._last_error()}") from None
        self.n_written += 1

    def _last_error(self) -> str:
        text = self._log.read_text(errors="replace").strip() if self._log and self._log.exists() else ""
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return lines[-1] if lines else f"ffmpeg exited with status {self._proc.returncode if self._proc else '?'}"

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        proc.wait()

    def _finish(self) -> None:
        proc = self._proc
        if proc is None:
            raise AvitalkError(f"{self.path}: no frames to write")
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError):
            proc.stdin.close()
        if proc.wait() != 0:
            raise AvitalkError(f"{self.path}: video encoder failed: {self._last_error()}")

    def __exit__(self, exc_type, exc, tb) -> None:
        failure = exc
        if failure is None:
            try:
                self._finish()
            except AvitalkError as e:
                failure = e
        if failure is None:
            self._stack.__exit__(None, None, None)  # renames the finished MP4 onto the target
            return
        self._kill()
        # passing the exception makes atomic_path delete the temporary MP4 instead of renaming it
        self._stack.__exit__(type(failure), failure, failure.__traceback__)
        if exc is None:
            raise failure


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: float,
    *,
    audio: AudioSource | None = None,
    n_frames: int | None = None,
    progress: Callable[[int], None] | None = None,
    crf: int = 18,
    preset: str = "medium",
) -> int:
    """Encode ``frames`` (``(H, W, 3)`` uint8) into an MP4 with optional audio, atomically.

    Args:
        n_frames: expected frame count (e.g. ``motion.n_frames``); lets the audio be cut/padded to
            the exact video length before encoding.
        progress: called with 1 after each frame (e.g. ``tqdm.update``).

    Returns:
        The number of frames written.
    """
    with VideoWriter(path, fps, audio=audio, n_frames=n_frames, crf=crf, preset=preset) as writer:
        for frame in frames:
            writer.write(frame)
            if progress is not None:
                progress(1)
    return writer.n_written


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` found in a file (durations in seconds; None if no such stream)."""

    n_frames: int
    width: int
    height: int
    video_codec: str
    pix_fmt: str
    fps: float
    video_duration: float
    audio_codec: str | None
    audio_duration: float | None
    sample_rate: int | None


_TIME_RE = re.compile(r"time=\s*(\d+):(\d+):([\d.]+)")


def _null_pass(exe: str, path: Path, stream: str, copy: bool) -> str:
    """Run ffmpeg reading one stream into the null muxer; returns its log (stream info, counters)."""
    cmd = [exe, "-hide_banner", "-nostdin", "-i", str(path), "-map", stream]
    cmd += ["-c", "copy"] if copy else []
    cmd += ["-f", "null", "-"]
    res = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    if res.returncode != 0:
        last = [ln for ln in res.stderr.splitlines() if ln.strip()]
        raise AvitalkError(f"{path}: cannot read video: {last[-1] if last else res.returncode}")
    return res.stderr


def _last_time(log: str) -> float:
    times = _TIME_RE.findall(log)
    if not times:
        return 0.0
    h, m, s = times[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Count frames and read stream facts with the bundled ffmpeg.

    The video stream is stream-copied (no decoding) to count frames; the audio stream, if any, is
    decoded so its duration is the decoded length (to 10 ms).
    """
    p = Path(path)
    if not p.exists():
        raise AvitalkError(f"{p}: no such video file")
    exe = ffmpeg_exe()
    log = _null_pass(exe, p, "0:v:0", copy=True)
    frames = re.findall(r"frame=\s*(\d+)", log)
    video = re.search(r"Stream #\S+.*?: Video: (\w+)[^,]*, (\w+)[^,]*?(?:\([^)]*\))?, (\d+)x(\d+)", log)
    rate = re.search(r"Video: .*?, ([\d.]+) fps", log)
    if video is None or rate is None:
        raise AvitalkError(f"{p}: no video stream found")
    audio = re.search(r"Stream #\S+.*?: Audio: (\w+).*?, (\d+) Hz", log)
    audio_duration = _last_time(_null_pass(exe, p, "0:a:0", copy=False)) if audio else None
    n_frames = int(frames[-1]) if frames else 0
    return VideoInfo(
        n_frames=n_frames,
        width=int(video.group(3)),
        height=int(video.group(4)),
        video_codec=video.group(1),
        pix_fmt=video.group(2),
        fps=float(rate.group(1)),
        video_duration=n_frames / float(rate.group(1)),
        audio_codec=audio.group(1) if audio else None,
        audio_duration=audio_duration,
        sample_rate=int(audio.group(2)) if audio else None,
    )


__all__ = ["VideoInfo", "VideoWriter", "ffmpeg_exe", "probe_video", "write_video"]
