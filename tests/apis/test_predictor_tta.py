"""Predictor(tta=...): the model wrapped in TestTimeAugmentation, its options checked."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluation"))

from eval_toys import OracleDetector  # noqa: E402

from detkit.apis.predictor import Predictor  # noqa: E402
from detkit.models.tta import TestTimeAugmentation  # noqa: E402


def test_predictor_tta_wraps_the_model_and_keeps_its_results() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    image[4:20, 6:30] = 255  # lit in all three channels: one box per class
    plain = Predictor(OracleDetector(score=0.8, masks=False), device="cpu")
    tta = Predictor(OracleDetector(score=0.8, masks=False), device="cpu",
                    tta=dict(scales=(1.0, 2.0), merge="wbf"))
    assert isinstance(tta.model, TestTimeAugmentation) and not isinstance(plain.model, TestTimeAugmentation)
    assert tta.model.views == [(1.0, "none"), (1.0, "horizontal"), (2.0, "none"), (2.0, "horizontal")]
    (ours,), (theirs,) = tta(image), plain(image)
    np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=1e-4)  # the views map back exactly
    np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-6)


def test_predictor_bad_tta_option_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"^Predictor\(tta=\.\.\.\): unknown option 'scale'; the options are") as error:
        Predictor(OracleDetector(), device="cpu", tta={"scale": 2})
    assert "\n" not in str(error.value)
