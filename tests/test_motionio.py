"""Motion NPZ / ARKit CSV reading and writing, and the one-line errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from avitalk.errors import AvitalkError
from avitalk.face.export import write_arkit_csv
from avitalk.motionio import LIVE_LINK_COLUMNS, load_motion, save_motion
from avitalk.spaces import ARKIT52, FLAME
from face_util import talking_motion


def test_npz_round_trip_without_pickle(tmp_path):
    m = talking_motion(30, fps=30.0)
    p = tmp_path / "m.npz"
    save_motion(p, m)
    with np.load(p, allow_pickle=False) as z:  # loads with pickle disabled
        assert z["values"].dtype == np.float32
        assert str(z["space"]) == "arkit52@v1"
        assert tuple(z["channels"]) == ARKIT52.channels
    back = load_motion(p)
    assert back.space == ARKIT52 and back.fps == 30.0
    np.testing.assert_array_equal(back.values, m.values)


def test_flame_round_trip(tmp_path):
    m = talking_motion(5, space=FLAME)
    save_motion(tmp_path / "f.npz", m)
    assert load_motion(tmp_path / "f.npz").space == FLAME


def _npz(path, **over):
    m = talking_motion(4)
    d = {
        "values": m.values,
        "channels": np.array(ARKIT52.channels),
        "fps": np.float64(25),
        "space": np.array("arkit52@v1"),
    }
    d.update(over)
    d = {k: v for k, v in d.items() if v is not None}
    np.savez(path, **d)
    return path


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p / "missing.npz", "no such motion file"),
        (lambda p: (p / "x.txt").write_text("hello") and p / "x.txt", "not a motion file"),
        (lambda p: _npz(p / "a.npz", fps=None), "missing fps"),
        (lambda p: _npz(p / "b.npz", values=np.zeros((4, 53), np.float32)), "needs (T, 55)"),
        (lambda p: _npz(p / "c.npz", space=np.array("klingon@v1")), "unknown motion space 'klingon@v1'"),
        (lambda p: _npz(p / "d.npz", space=np.array("arkit52@v9")), "is not supported"),
        (lambda p: _npz(p / "e.npz", values=np.full((4, 55), np.nan, np.float32)), "NaN/infinite"),
        (lambda p: _npz(p / "f.npz", channels=np.array(ARKIT52.channels[::-1])), "channel 0 is 'headRoll'"),
        (lambda p: _npz(p / "g.npz", values=np.array([{"a": 1}], dtype=object)), "cannot read motion NPZ"),
        (lambda p: (p / "h.npz").write_bytes(b"PK\x03\x04garbage") and p / "h.npz", "not a motion file"),
        (lambda p: _npz(p / "i.npz", format=np.array("avitalk-motion@v9")), "this avitalk reads avitalk-motion@v1"),
        (lambda p: _npz(p / "j.npz", fps=np.array([25.0, 30.0])), "'fps' must be one number"),
    ],
)
def test_bad_motion_files_are_one_line(tmp_path, make, needle):
    path = make(tmp_path)
    with pytest.raises(AvitalkError) as e:
        load_motion(path)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_save_refuses_nan(tmp_path):
    m = talking_motion(3)
    m.values[1, 2] = np.inf
    with pytest.raises(AvitalkError, match="NaN/infinite"):
        save_motion(tmp_path / "x.npz", m)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_live_link_csv_round_trip(tmp_path):
    m = talking_motion(60, fps=25.0)
    p = tmp_path / "take.csv"
    write_arkit_csv(p, m)
    header = p.read_text().splitlines()[0].split(",")
    assert tuple(header) == LIVE_LINK_COLUMNS
    assert header[2:4] == ["EyeBlinkLeft", "EyeLookDownLeft"] and header[54:57] == ["HeadYaw", "HeadPitch", "HeadRoll"]
    back = load_motion(p)
    assert back.fps == 25.0  # from the timecodes' frame field
    np.testing.assert_allclose(back.values, m.values, atol=1e-6)


def test_live_link_csv_columns_by_name_and_errors(tmp_path):
    m = talking_motion(3)
    p = tmp_path / "take.csv"
    write_arkit_csv(p, m)
    lines = p.read_text().splitlines()
    # reorder columns: still loads by name
    rows = [ln.split(",") for ln in lines]
    order = [0, 1, *range(len(rows[0]) - 1, 1, -1)]
    (tmp_path / "r.csv").write_text("\n".join(",".join(r[i] for i in order) for r in rows))
    np.testing.assert_allclose(load_motion(tmp_path / "r.csv", fps=25).values, m.values, atol=1e-6)
    (tmp_path / "bad.csv").write_text(lines[0].replace("JawOpen", "JawShut") + "\n" + lines[1])
    with pytest.raises(AvitalkError, match="lacks 1 ARKit blendshape columns"):
        load_motion(tmp_path / "bad.csv")
    fields = lines[1].split(",")
    fields[5] = "abc"
    (tmp_path / "word.csv").write_text(lines[0] + "\n" + ",".join(fields))
    with pytest.raises(AvitalkError, match="column 'EyeLookOutLeft': 'abc' is not a number"):
        load_motion(tmp_path / "word.csv")
    fields[5] = "nan"
    (tmp_path / "nan.csv").write_text(lines[0] + "\n" + ",".join(fields))
    with pytest.raises(AvitalkError, match="NaN/infinite"):
        load_motion(tmp_path / "nan.csv")


def test_csv_export_needs_arkit(tmp_path):
    with pytest.raises(AvitalkError, match="needs a motion in arkit52@v1, got flame@v1"):
        write_arkit_csv(tmp_path / "x.csv", talking_motion(3, space=FLAME))
