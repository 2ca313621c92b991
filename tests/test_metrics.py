"""The GcGAN maps protocol on hand-made images with known answers."""

import numpy as np
import pytest

from sesim.evaluation.paired import maps_protocol

pytestmark = pytest.mark.numerics  # float comparisons: CI re-runs them with AVX2 kernels


def test_maps_protocol_known_answer():
    target = np.zeros((2, 2, 3), np.uint8)
    prediction = target.copy()
    prediction[0, 0] = [3, 0, 0]  # largest difference 3: below 5 and 10
    prediction[0, 1] = [0, 7, 0]  # 7: below 10 only
    prediction[1, 1] = [20, 20, 20]  # 20: neither
    scores = maps_protocol([prediction, target], [target, target])
    expected_rmse = np.sqrt((9 + 49 + 3 * 400) / 4)
    assert scores.rmse == pytest.approx(expected_rmse / 2)  # second image is perfect
    assert scores.accuracy_5 == pytest.approx(6 / 8) and scores.accuracy_10 == pytest.approx(7 / 8)


def test_maps_protocol_bad_input():
    with pytest.raises(ValueError, match="equal, non-zero"):
        maps_protocol([], [])
    with pytest.raises(ValueError, match="shapes differ"):
        maps_protocol([np.zeros((2, 2, 3))], [np.zeros((3, 2, 3))])
