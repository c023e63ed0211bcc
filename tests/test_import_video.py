"""``avitalk data import video``: pure track maths (always) and real GRID videos through MediaPipe.

The end-to-end tests need the ``mediapipe`` package (``pip install 'avitalk[video]'``) and the shared
assets beside the repository (``../shared/assets``: GRID-samples and the Face Landmarker bundle), or
``$AVITALK_SHARED_ASSETS``; they are skipped with the reason otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avitalk.data.check import check_corpus
from avitalk.data.format import iter_clips
from avitalk.data.importers.video import add_arguments, clip_ids, find_videos, sentence_id
from avitalk.data.importers.video_caption import activity_scores, describe, make_instructions
from avitalk.data.importers.video_decode import parse_ffmpeg_header
from avitalk.data.importers.video_track import (
    HEAD_COLUMNS,
    NOT_ESTIMATED,
    blendshape_columns,
    fit_length,
    matrix_to_head_angles,
    resample_masked,
    smooth_masked,
)
from avitalk.errors import AvitalkError
from avitalk.face.linear import euler_to_matrix
from avitalk.rates import frames_for_samples
from avitalk.spaces import ARKIT52, ARKIT_BLENDSHAPES

_DEFAULT_ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
ASSETS = Path(os.environ.get("AVITALK_SHARED_ASSETS", _DEFAULT_ASSETS))
GRID = ASSETS / "GRID-samples"
MODEL = ASSETS / "mediapipe" / "face_landmarker_v2_with_blendshapes.task"

# The category names MediaPipe 1.2.2's Face Landmarker reports, in its (alphabetical) order.
MEDIAPIPE_NAMES = ("_neutral", *sorted(n for n in ARKIT_BLENDSHAPES if n != "tongueOut"))


# ------------------------------------------------------------------------------------- head angles


def test_head_angles_invert_euler_to_matrix():
    rng = np.random.default_rng(0)
    angles = rng.uniform(-0.6, 0.6, (50, 3)).astype(np.float32)  # (pitch, yaw, roll)
    r = euler_to_matrix(angles[:, 0], angles[:, 1], angles[:, 2])  # (50, 3, 3)
    m = np.tile(np.eye(4, dtype=np.float32), (50, 1, 1))
    m[:, :3, :3] = 1.3 * r  # MediaPipe-like: a scale and a translation that must not matter
    m[:, :3, 3] = [2.0, -4.0, -35.0]
    np.testing.assert_allclose(matrix_to_head_angles(m), angles, atol=1e-5)
    np.testing.assert_allclose(matrix_to_head_angles(m[7]), angles[7], atol=1e-5)


def _rot(axis: str, a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def test_head_angle_directions_in_camera_terms():
    # MediaPipe camera/face frame: +X image right (= the subject's left), +Y up, +Z towards the camera.
    a = 0.3
    pitch, yaw, roll = matrix_to_head_angles(_rot("y", a))
    front = _rot("y", a) @ [0, 0, 1]
    assert front[0] > 0 and yaw == pytest.approx(a, abs=1e-6) and abs(pitch) < 1e-6 and abs(roll) < 1e-6
    # face front turned to the image's right = the subject's left -> positive yaw (euler_to_matrix)

    down = _rot("x", a)  # front (0,0,1) -> (0, -sin a, cos a): the face looks down
    assert (down @ [0, 0, 1])[1] < 0
    assert matrix_to_head_angles(down)[0] == pytest.approx(a, abs=1e-6)  # positive pitch nods down

    tilt = _rot("z", a)  # the image rotated counter-clockwise: the top of the head moves to image left
    assert (tilt @ [0, 1, 0])[0] < 0
    assert matrix_to_head_angles(tilt)[2] == pytest.approx(a, abs=1e-6)


# ----------------------------------------------------------------------------------- blendshapes


def test_blendshape_columns_match_every_arkit_name():
    cols = blendshape_columns(MEDIAPIPE_NAMES)
    assert cols[0] == -1  # _neutral dropped
    mapped = {ARKIT52.channels[c] for c in cols[1:]}
    assert mapped == set(ARKIT_BLENDSHAPES) - set(NOT_ESTIMATED)
    for name, c in zip(MEDIAPIPE_NAMES[1:], cols[1:], strict=True):
        assert ARKIT52.channels[c] == name
    with pytest.raises(ValueError, match="not ARKit names"):
        blendshape_columns((*MEDIAPIPE_NAMES, "mouthWobble"))
    with pytest.raises(ValueError, match="jawOpen"):
        blendshape_columns(tuple(n for n in MEDIAPIPE_NAMES if n != "jawOpen"))


# ------------------------------------------------------------------------- masks and resampling


def test_resample_masked_30_to_25_fps_interpolates_valid_frames_only():
    t = np.arange(90)  # 3 s at 30 fps
    values = np.stack([t / 30.0, -t / 30.0], axis=1).astype(np.float32)  # linear in time
    mask = np.ones(90, dtype=bool)
    mask[31:45] = False  # no face for about half a second
    values[~mask] = 0.0
    out, out_mask = resample_masked(values, mask, 30.0, 25.0)
    assert out.shape == (75, 2) and out_mask.shape == (75,)
    centres = (np.arange(75) + 0.5) / 25.0  # seconds
    src_centres = (np.arange(90) + 0.5) / 30.0
    nearest = np.abs(centres[:, None] - src_centres[None]).argmin(1)
    np.testing.assert_array_equal(out_mask, mask[nearest])  # the mask follows the nearest video frame
    assert not out[~out_mask].any()  # masked frames hold zeros
    # valid frames: exact where both neighbours are valid (linear data), else a valid neighbour's value
    lo = np.floor(centres * 30 - 0.5).astype(int).clip(0, 89)
    hi = np.minimum(lo + 1, 89)
    both = out_mask & mask[lo] & mask[hi]
    expected_t = np.clip(centres * 30 - 0.5, 0, 89) / 30.0
    np.testing.assert_allclose(out[both, 0], expected_t[both], atol=1e-6)
    edge = out_mask & ~both
    assert edge.any()
    for k in np.flatnonzero(edge):
        valid_neighbour = lo[k] if mask[lo[k]] else hi[k]
        assert out[k, 0] == pytest.approx(values[valid_neighbour, 0])
    # same rate: unchanged
    same, same_mask = resample_masked(values, mask, 25.0, 25.0)
    np.testing.assert_array_equal(same, values)
    np.testing.assert_array_equal(same_mask, mask)


def test_smooth_masked_is_zero_phase_and_ignores_masked_frames():
    values = np.full((100, 1), 0.4, dtype=np.float32)
    mask = np.ones(100, dtype=bool)
    mask[40:50] = False
    values[~mask] = 0.0
    out = smooth_masked(values, mask, 25.0, 0.08)
    np.testing.assert_allclose(out[mask], 0.4, atol=1e-6)  # the zeros of masked frames do not leak in
    assert not out[~mask].any()
    pulse = np.zeros((101, 1), dtype=np.float32)
    pulse[50] = 1.0
    sm = smooth_masked(pulse, np.ones(101, dtype=bool), 25.0, 0.08)
    assert sm[:, 0].argmax() == 50 and np.allclose(sm[:50, 0], sm[51:, 0][::-1])  # symmetric: no delay
    np.testing.assert_array_equal(smooth_masked(pulse, np.ones(101, dtype=bool), 25.0, 0.0), pulse)


def test_fit_length_pads_and_crops_at_the_end():
    v = np.arange(10, dtype=np.float32)[:, None]
    m = np.ones(10, dtype=bool)
    m[-1] = False
    pv, pm = fit_length(v, m, 12)
    assert pv.shape == (12, 1) and pv[-1, 0] == 9.0 and not pm[-2:].any()
    cv, cm = fit_length(v, m, 8)
    np.testing.assert_array_equal(cv[:, 0], np.arange(8))
    assert cm.all()


# --------------------------------------------------------------------------- probing, naming, text

HEADER = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.mp4':
  Duration: 00:00:10.01, start: 0.000000, bitrate: 1000 kb/s
  Stream #0:0[0x1](und): Video: mjpeg (Baseline), yuvj420p, 300x300, 90k tbr, 90k tbn (attached pic)
  Stream #0:1[0x2](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p, 1920x1080, 29.97 fps, 29.97 tbr
  Stream #0:2[0x3](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 128 kb/s (default)
"""


def test_parse_ffmpeg_header():
    info = parse_ffmpeg_header(HEADER)
    assert info is not None
    assert (info.video_stream, info.audio_stream, info.audio_rate) == ("0:1", "0:2", 48000)
    assert info.fps == pytest.approx(29.97) and info.fps_exact == "30000/1001"
    no_audio = parse_ffmpeg_header("\n".join(ln for ln in HEADER.splitlines() if "Audio" not in ln))
    assert no_audio is not None and no_audio.audio_stream is None
    assert parse_ffmpeg_header("x.mp4: Invalid data found when processing input") is None
    assert parse_ffmpeg_header(HEADER.replace("29.97 fps, 29.97 tbr", "25 fps, 50 tbr")).fps_exact == "25/1"


def test_find_videos_and_clip_ids(tmp_path):
    for name in ("a/x.mp4", "a/x.MOV", "b/y z.mkv", ".hidden/h.mp4", "a/._x.mp4", "a/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    keys = [k for _, k in find_videos(tmp_path)]
    assert keys == ["a/x.MOV", "a/x.mp4", "b/y z.mkv"]
    assert clip_ids(keys) == ["a_x_mov", "a_x_mp4", "b_y_z"]
    assert find_videos(tmp_path / "a" / "x.mp4")[0][1] == "x.mp4"
    assert sentence_id("Bin blue at F two, now.", "c1") == sentence_id("bin blue at f two now", "c2")
    assert sentence_id("", "c1") == "c1"


def test_caption_from_measured_activity():
    motion = np.zeros((50, ARKIT52.dim), dtype=np.float32)
    motion[:, ARKIT52.index("mouthSmileLeft")] = motion[:, ARKIT52.index("mouthSmileRight")] = 0.5
    motion[:, ARKIT52.index("jawOpen")] = np.linspace(0, 0.6, 50)
    motion[:, HEAD_COLUMNS[1]] = 0.1 * np.sin(np.linspace(0, 12, 50))
    mask = np.ones(50, dtype=bool)
    mask[:5] = False
    scores = activity_scores(motion, mask)
    assert scores["smile"] > 0.5 and scores["brow_lower"] == 0.0
    text = describe(scores)
    assert text == "A person speaks with a broad smile, wide mouth movements and lively head movements."
    assert describe(scores, "female", "happy", 2).startswith("A woman feels fairly happy and speaks with a broad smile")
    ins = make_instructions(scores, "clip1")
    assert ins[0] == text and len(ins) == 3 and len(set(ins)) == 3
    assert make_instructions(scores, "clip1") == ins  # deterministic per clip


def test_missing_mediapipe_is_one_clear_error(monkeypatch):
    from avitalk.data.importers import video_landmarks

    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import fails as if not installed
    with pytest.raises(AvitalkError, match=r"pip install 'avitalk\[video\]'"):
        video_landmarks.require_mediapipe()


# ----------------------------------------------------------------------------- real GRID videos


def _skip_reason() -> str | None:
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        return "mediapipe not installed (pip install 'avitalk[video]')"
    if not MODEL.is_file() or not GRID.is_dir():
        return f"shared assets not present at {ASSETS} (GRID-samples and the MediaPipe model; $AVITALK_SHARED_ASSETS)"
    return None


needs_assets = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def _args(*extra: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["--model", str(MODEL), *extra])


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from avitalk.data.importers.video import run

    root = tmp_path_factory.mktemp("video-import")
    src = root / "src" / "spk1"
    src.mkdir(parents=True)
    for name in ("bbaf2n", "lbax4n"):
        shutil.copy(GRID / f"{name}.mpg", src / f"{name}.mpg")
    (src / "bbaf2n.txt").write_text("bin blue at f two now\n")
    (src / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(30_000))  # garbage with a video suffix
    out = root / "corpus"
    summary = run(root / "src", out, _args("--workers", "2", "--gender", "male"))
    return root, out, summary


@needs_assets
def test_import_grid_clips(imported):
    _, out, summary = imported
    assert summary.imported == 2 and summary.already_done == 0
    assert [k for k, _ in summary.skipped] == ["spk1/broken.mp4"]
    assert "not a readable video" in summary.skipped[0][1]
    report = check_corpus(out)
    assert report.ok, [str(p) for p in report.problems]
    clips = {c.clip_id: c for c in iter_clips(out)}
    assert set(clips) == {"spk1_bbaf2n", "spk1_lbax4n"}
    for c in clips.values():
        assert c.fps == 25.0 and c.sample_rate == 16000 and c.speaker == "spk1" and c.gender == "male"
        assert c.emotion == "unknown" and c.intensity == 0 and c.split == "train" and c.source == "video"
        assert c.motion.shape == (frames_for_samples(c.audio.shape[0]), ARKIT52.dim)
        valid = np.ones(len(c.motion), bool) if c.motion_mask is None else c.motion_mask
        assert valid.mean() >= 0.99  # a face in (nearly) every frame
        assert c.extra["face_frames"] == valid.sum() and c.extra["video_fps"] == 25.0
        jaw = c.motion[valid, ARKIT52.index("jawOpen")]
        assert jaw.std() > 0.03 and 0.0 <= c.motion[:, :52].min() and c.motion[:, :52].max() <= 1.0
        assert not c.motion[:, ARKIT52.index("tongueOut")].any()
        assert np.abs(c.motion[:, 52:]).max() < 0.35  # frontal GRID speakers: small head angles (rad)
        assert c.instructions[0].startswith("A man speaks with") and len(c.instructions) == 3
    assert clips["spk1_bbaf2n"].transcript == "bin blue at f two now"
    assert clips["spk1_bbaf2n"].sentence_id.startswith("txt-")
    assert clips["spk1_lbax4n"].sentence_id == "spk1_lbax4n" and clips["spk1_lbax4n"].transcript == ""


@needs_assets
def test_resume_skips_done_sources_and_resamples_30fps(imported):
    from avitalk.cli import main
    from avitalk.face.video import ffmpeg_exe

    root, out, _ = imported
    src = root / "src" / "spk1"
    # a third video at 30 fps (H.264 + AAC in MP4): exercises resampling to 25 fps end to end
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(GRID / "sbia1a.mpg"), "-r", "30",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(src / "sbia1a.mp4")],
        check=True,
    )  # fmt: skip
    argv = ["data", "import", "video", str(root / "src"), "--out", str(out), "--model", str(MODEL)]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main([*argv, "--workers", "1", "--gender", "male"]) == 0
    text = buf.getvalue()
    assert "imported 1 clip(s)" in text and "2 source(s) already imported" in text, text
    assert "skipped spk1/broken.mp4: not a readable video" in text and "data check: ok (3 clips)" in text
    clip = next(c for c in iter_clips(out) if c.clip_id == "spk1_sbia1a")
    assert clip.extra["video_fps"] == 30.0 and clip.extra["video_frames"] == 90
    assert clip.motion.shape[0] == frames_for_samples(clip.audio.shape[0])
    assert clip.extra["face_frames"] >= 0.99 * clip.motion.shape[0]
