import numpy as np
import pytest

from models.scoring import score, tune_thresholds


def test_scores_match_a_hand_computed_case() -> None:
    names = ["a", "b", "c"]
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    y_pred = np.array([[1, 0, 1], [0, 0, 0], [1, 0, 1]])
    s = score(y_true, y_pred, names)
    # tp=3 (a,a,c on row 0/2), fp=1 (c on row 2), fn=2 (b rows 1,2)
    assert s.f1_micro == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    # a: 1.0; b: 0.0; c: tp1 fp1 fn0 -> 2/3
    assert s.f1_macro == pytest.approx((1.0 + 0.0 + 2 / 3) / 3)
    assert s.exact_match == pytest.approx(1 / 3)
    assert s.hamming_loss == pytest.approx(3 / 9)
    assert s.per_label["b"]["support"] == 2


def test_tune_thresholds_separates_a_clean_label() -> None:
    y = np.array([[1], [1], [0], [0]])
    probs = np.array([[0.3], [0.35], [0.1], [0.2]])
    (threshold,) = tune_thresholds(y, probs)
    assert 0.2 < threshold <= 0.3


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        score(np.zeros((2, 2)), np.zeros((2, 3)), ["a", "b"])
