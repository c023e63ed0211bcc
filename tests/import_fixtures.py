"""Tiny source trees in the exact layouts the real-data importers read (MEAD/EMOCA/EMOTE, Live Link Face)."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf


def parse_args(module, argv: list[str]) -> argparse.Namespace:
    """The namespace an importer's ``run`` gets for ``argv`` (its own options only)."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser.parse_args(argv)


def tone(seconds: float, rate: int = 48_000, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_audio(path: Path, seconds: float, rate: int = 48_000, seed: int = 0) -> Path:
    """Write a short tone as .wav/.flac (soundfile) or .m4a/.mov (AAC through the bundled ffmpeg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = tone(seconds, rate, seed=seed)
    if path.suffix in (".wav", ".flac"):
        sf.write(path, samples, rate)
        return path
    import imageio_ffmpeg

    wav = path.with_name(path.stem + ".src.wav")
    sf.write(wav, samples, rate)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(wav)]
    if path.suffix == ".mov":  # a take's video: grey frames + AAC audio, like an iPhone recording
        cmd += ["-f", "lavfi", "-i", f"color=c=gray:s=32x32:r=30:d={seconds}", "-map", "1:v", "-map", "0:a"]
        cmd += ["-c:v", "mpeg4", "-shortest"]
    cmd += ["-c:a", "aac", str(path)]
    subprocess.run(cmd, check=True)
    wav.unlink()
    return path


def write_emote_hdf5(folder: Path, n_frames: int, seed: int = 0, n_exp: int = 100) -> dict[str, np.ndarray]:
    """EMOTE's ``shape_pose_cam.hdf5``: datasets ``(1, T, K)``; returns the arrays written."""
    import h5py

    rng = np.random.default_rng(seed)
    arrays = {
        "exp": rng.normal(0, 1, (1, n_frames, n_exp)),
        "jaw": rng.normal(0, 0.1, (1, n_frames, 3)),
        "global_pose": rng.normal(0, 0.1, (1, n_frames, 3)),
        "shape": rng.normal(0, 1, (1, n_frames, 300)),
        "cam": rng.normal(0, 1, (1, n_frames, 3)),
    }
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "shape_pose_cam.hdf5", "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v.astype(np.float32))
    return {k: v[0].astype(np.float32) for k, v in arrays.items()}


def write_emoca_frames(
    folder: Path, n_frames: int, seed: int = 0, missing: tuple[int, ...] = (), n_exp: int = 50
) -> dict[str, np.ndarray]:
    """EMOCA ``save_codes`` output: ``<frame:06d>_000/{exp,pose,shape,cam,tex,detail}.npy``, frames from 1.

    Frames in ``missing`` (0-based) have no folder (no face detected); frame 2 (0-based) also gets
    a second detection ``_001`` that must be ignored. Returns the per-frame arrays (all frames).
    """
    rng = np.random.default_rng(seed)
    exp = rng.normal(0, 1, (n_frames, n_exp)).astype(np.float32)
    pose = rng.normal(0, 0.1, (n_frames, 6)).astype(np.float32)
    for t in range(n_frames):
        if t in missing:
            continue
        for det in (0, 1) if t == 2 else (0,):
            d = folder / f"{t + 1:06d}_{det:03d}"
            d.mkdir(parents=True, exist_ok=True)
            np.save(d / "exp.npy", exp[t] if det == 0 else exp[t] + 100.0)
            np.save(d / "pose.npy", pose[t])
            np.save(d / "shape.npy", np.zeros(100, np.float32))
            np.save(d / "cam.npy", np.ones(3, np.float32))
            np.save(d / "tex.npy", np.zeros(50, np.float32))
            np.save(d / "detail.npy", np.zeros(128, np.float32))
    return {"exp": exp, "pose": pose}


def small_mead_corpus(tmp_path: Path) -> Path:
    """A 3-clip corpus imported by ``mead-emoca`` from EMOTE fits (M003 angry/happy, W033 sad)."""
    from avitalk.data.importers import mead

    root = tmp_path / "mead-src"
    for i, (spk, emo, level, num) in enumerate([("M003", "angry", 2, "001"), ("M003", "happy", 1, "002"),
                                                ("W033", "sad", 3, "003")]):  # fmt: skip
        write_emote_hdf5(root / f"fits/{spk}/front/{emo}/level_{level}/{num}", n_frames=20, seed=i)
        write_audio(root / f"{spk}/audio/{emo}/level_{level}/{num}.wav", 0.8, rate=16_000, seed=i)
    out = tmp_path / "mead-corpus"
    summary = mead.run(root, out, parse_args(mead, []))
    assert summary.imported == 3, summary.format()
    return out


#: Column order of a CSV recorded by the Live Link Face app (note JawRight before JawLeft, MouthRight before MouthLeft).
LIVE_LINK_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,EyeSquintLeft,"
    "EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,EyeSquintRight,"
    "EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,MouthRight,MouthLeft,"
    "MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,MouthDimpleRight,MouthStretchLeft,"
    "MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,MouthShrugUpper,MouthPressLeft,MouthPressRight,"
    "MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,"
    "BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,"
    "TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
).split(",")


def write_live_link_csv(path: Path, n_frames: int, fps: int, channels: dict[str, float | np.ndarray], seed: int = 0):
    """A Live Link Face CSV: ``HH:MM:SS:FF.fff`` timecodes at ``fps``, noise plus ``channels`` (by column name)."""
    rng = np.random.default_rng(seed)
    names = LIVE_LINK_HEADER[2:]
    values = np.abs(rng.normal(0, 0.02, (n_frames, len(names))))
    for name, v in channels.items():
        values[:, names.index(name)] = v
    lines = [",".join(LIVE_LINK_HEADER)]
    start = 10 * 3600 + 20 * 60 + 30
    for t in range(n_frames):
        s, ff = divmod(t, fps)
        sec = start + s
        tc = f"{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}:{ff:02d}.{(t * 37) % 1000:03d}"
        lines.append(",".join([tc, "61", *(f"{x:.6f}" for x in values[t])]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return values
