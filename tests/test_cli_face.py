"""``avitalk render`` / ``avitalk export``: outputs, and one-line errors with exit status 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import avitalk.cli.face as cli_face
from avitalk.cli import main
from avitalk.errors import AvitalkError
from avitalk.face.export_gltf import read_glb
from avitalk.motionio import save_motion
from avitalk.spaces import FLAME
from face_util import SphereFace, talking_motion


@pytest.fixture
def sphere_face(monkeypatch):
    """Serve a small test face for every ``--face`` value except obviously broken ones."""

    def fake(spec: str):
        if spec.startswith("ict:") and "missing" in spec:
            raise AvitalkError(f"ICT-FaceKit not found: expected {spec[4:]}/FaceXModel/generic_neutral_mesh.obj")
        return SphereFace(subdivisions=2)

    monkeypatch.setattr(cli_face, "load_face_spec", fake)


@pytest.fixture
def motion_file(tmp_path):
    p = tmp_path / "m.npz"
    save_motion(p, talking_motion(20))
    return p


def _one_line_error(capsys, needle: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith("avitalk: error: ") and needle in err, err
    assert "\n" not in err and "Traceback" not in err


def test_render_side_by_side_with_audio(tmp_path, motion_file, sphere_face, capsys):
    pytest.importorskip("imageio_ffmpeg")
    from avitalk.face.video import probe_video

    wav = tmp_path / "a.wav"
    sf.write(wav, 0.2 * np.sin(np.arange(12800) * 0.05), 16000)
    other = tmp_path / "gt.npz"
    save_motion(other, talking_motion(20, seed=5))
    out = tmp_path / "out" / "v.mp4"
    argv = ["render", str(other), str(motion_file), "--audio", str(wav), "--size", "64", "--caption", "A test."]
    status = main([*argv, "--label", "truth", "--label", "pred", "-o", str(out)])
    assert status == 0
    info = probe_video(out)
    assert info.n_frames == 20 and info.width == 128 and info.audio_codec == "aac"


def test_export_formats(tmp_path, motion_file, sphere_face):
    assert main(["export", str(motion_file), "-o", str(tmp_path / "a.glb")]) == 0
    doc, _ = read_glb(tmp_path / "a.glb")
    assert len(doc["meshes"][0]["extras"]["targetNames"]) == 52
    assert main(["export", str(motion_file), "--format", "csv", "-o", str(tmp_path / "a.csv")]) == 0
    assert main(["export", str(tmp_path / "a.csv"), "-o", str(tmp_path / "b.npz")]) == 0
    assert main(["export", str(motion_file), "--format", "ply", "-o", str(tmp_path / "plys")]) == 0
    assert len(list((tmp_path / "plys").iterdir())) == 20


@pytest.mark.parametrize(
    ("setup", "argv", "needle"),
    [
        (None, ["export", "{d}/nope.npz", "-o", "{d}/o.glb"], "no such motion file"),
        ("nan", ["export", "{d}/m.npz", "-o", "{d}/o.glb"], "NaN/infinite"),
        ("flame", ["export", "{d}/m.npz", "--format", "csv", "-o", "{d}/o.csv"], "needs a motion in arkit52@v1"),
        ("flame", ["render", "{d}/m.npz", "-o", "{d}/o.mp4"], "motion is in motion space flame@v1"),
        ("ok", ["export", "{d}/m.npz", "--face", "ict:/missing", "-o", "{d}/o.glb"], "ICT-FaceKit not found"),
        ("ok", ["export", "{d}/m.npz", "-o", "{d}/o.fbx"], "cannot tell the format"),
        ("ok", ["render", "{d}/m.npz", "-o", "{d}/o.avi"], "give an output ending in .mp4"),
        ("ok", ["render", "{d}/m.npz", "--size", "2", "-o", "{d}/o.mp4"], "render size"),
        ("ok", ["render", "{d}/m.npz", "--audio", "{d}/none.wav", "-o", "{d}/o.mp4"], "no such audio file"),
        ("ok", ["render", "{d}/m.npz", "--label", "a", "--label", "b", "-o", "{d}/o.mp4"], "one per motion"),
        ("wrongdim", ["export", "{d}/m.npz", "-o", "{d}/o.npz"], "needs (T, 55)"),
    ],
)
def test_cli_errors_are_one_line_and_leave_nothing(tmp_path, sphere_face, capsys, setup, argv, needle):
    if setup is not None:
        m = talking_motion(4, space=FLAME if setup == "flame" else None or talking_motion(1).space)
        if setup == "nan":
            m.values[2, 3] = np.nan
            np.savez(tmp_path / "m.npz", values=m.values, channels=np.array(m.space.channels), fps=25.0,
                     space=np.array(m.space.key))  # fmt: skip
        elif setup == "wrongdim":
            np.savez(tmp_path / "m.npz", values=np.zeros((4, 52), np.float32), channels=np.array(m.space.channels),
                     fps=25.0, space=np.array(m.space.key))  # fmt: skip
        else:
            save_motion(tmp_path / "m.npz", m)
    before = set(tmp_path.iterdir())
    status = main([a.format(d=tmp_path) for a in argv])
    assert status == 2
    _one_line_error(capsys, needle)
    assert set(tmp_path.iterdir()) == before  # no output, no temporaries


def test_builtin_face_when_available(tmp_path, motion_file):
    models = pytest.importorskip("avitalk.face.models")
    try:
        models.load_face("builtin")
    except AvitalkError as e:
        pytest.skip(str(e))
    assert main(["export", str(motion_file), "--face", "builtin", "-o", str(tmp_path / "b.glb")]) == 0
    doc, _ = read_glb(tmp_path / "b.glb")
    assert len(doc["meshes"][0]["primitives"][0]["targets"]) >= 1
    assert main(["render", str(motion_file), "--size", "64", "-o", str(tmp_path / "b.mp4")]) == 0
    assert main(["render", str(motion_file), "--size", "32", "--framing", "head", "-o", str(tmp_path / "h.mp4")]) == 0


ICT = Path(__file__).resolve().parents[2] / "shared" / "assets" / "ICT-FaceKit"


@pytest.mark.integration
@pytest.mark.skipif(not (ICT / "FaceXModel").is_dir(), reason="ICT-FaceKit assets not present")
def test_ict_face_render_and_glb(tmp_path, motion_file):
    pytest.importorskip("imageio_ffmpeg")
    assert main(["export", str(motion_file), "--face", f"ict:{ICT}", "-o", str(tmp_path / "i.glb")]) == 0
    doc, _ = read_glb(tmp_path / "i.glb")
    assert doc["meshes"][0]["extras"]["targetNames"][17] == "jawOpen" and "bakeMaxErrorMetres" not in doc["asset"]
    assert (
        main(["render", str(motion_file), "--face", f"ict:{ICT}", "--size", "96", "-o", str(tmp_path / "i.mp4")]) == 0
    )
