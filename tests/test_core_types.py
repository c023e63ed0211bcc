import numpy as np
import pytest

from avitalk import ARKIT52, FLAME, Motion, get_space
from avitalk.errors import AvitalkError, SpaceMismatchError
from avitalk.rates import frames_for_samples, resample_features
from avitalk.spaces import FLAME_NECK, space_from_json


def test_arkit52_is_apples_order_plus_head():
    assert ARKIT52.dim == 55
    assert ARKIT52.channels[:3] == ("eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft")
    assert ARKIT52.index("jawOpen") == 17
    assert ARKIT52.channels[51] == "tongueOut"
    assert ARKIT52.channels[-3:] == ("headPitch", "headYaw", "headRoll")
    assert ARKIT52.units[-1] == "rad"


def test_flame_spaces():
    assert FLAME.dim == 53 and FLAME_NECK.dim == 56
    assert get_space("flame@v1") is FLAME


def test_space_mismatch_names_both():
    with pytest.raises(SpaceMismatchError, match=r"flame@v1 \(53 channels\).*arkit52@v1 \(55 channels\)"):
        ARKIT52.require_same(FLAME, "checkpoint")
    with pytest.raises(AvitalkError, match="unknown motion space 'nope'"):
        get_space("nope")
    assert space_from_json(ARKIT52.to_json()) is ARKIT52


def test_motion_validates_shape():
    Motion(np.zeros((4, 55), np.float32), ARKIT52, 25)
    with pytest.raises(AvitalkError, match=r"needs \(T, 55\)"):
        Motion(np.zeros((4, 53), np.float32), ARKIT52, 25)


def test_rates():
    assert frames_for_samples(16000) == 25
    assert frames_for_samples(16320) == 26  # 25.5 rounds up
    x = np.arange(10, dtype=np.float32)[:, None]
    y = resample_features(x, 50, 25)
    np.testing.assert_allclose(y[:, 0], [0.5, 2.5, 4.5, 6.5, 8.5])
    assert resample_features(x, 25, 50).shape == (20, 1)
