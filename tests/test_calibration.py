from pathlib import Path

import numpy as np
import pytest

from models.calibration import (
    T_MAX,
    T_MIN,
    apply_temperatures,
    expected_calibration_error,
    fit_biases,
    fit_temperatures,
    mean_ece,
    plot_reliability,
    probs_to_logits,
    reliability_curve,
)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _overconfident(rows: int = 4000, labels: int = 3, factor: float = 3.0, seed: int = 0):
    """True logits, labels drawn from their probabilities, and a model whose logits are ``factor`` times too big."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(loc=-0.5, scale=1.5, size=(rows, labels))
    y = (rng.random((rows, labels)) < _sigmoid(true_logits)).astype(np.float64)
    return factor * true_logits, y


def test_ece_matches_a_hand_computed_case() -> None:
    probs = np.array([[0.05], [0.15], [0.85], [0.95]])
    y = np.array([[0], [1], [1], [1]])
    # bin [0, 0.1): p 0.05, rate 0 -> |0 - 0.05|; bin [0.1, 0.2): p 0.15, rate 1 -> 0.85;
    # bin [0.8, 0.9): p 0.85, rate 1 -> 0.15; bin [0.9, 1]: p 0.95, rate 1 -> 0.05; each weighs 1/4
    assert expected_calibration_error(probs, y, bins=10) == [pytest.approx((0.05 + 0.85 + 0.15 + 0.05) / 4)]
    # with 2 bins: [0, 0.5) holds 0.05 and 0.15 (mean 0.1, rate 0.5), [0.5, 1] holds 0.85, 0.95 (mean 0.9, rate 1)
    assert expected_calibration_error(probs, y, bins=2) == [pytest.approx(0.5 * 0.4 + 0.5 * 0.1)]


def test_ece_is_per_label_and_zero_when_perfect() -> None:
    probs = np.array([[0.0, 0.5], [0.0, 0.5], [1.0, 0.5], [1.0, 0.5]])
    y = np.array([[0, 1], [0, 0], [1, 1], [1, 0]])
    eces = expected_calibration_error(probs, y)
    assert eces == [pytest.approx(0.0), pytest.approx(0.0)]
    assert mean_ece(probs, np.array([[1, 1], [0, 0], [1, 1], [1, 0]])) == pytest.approx((0.25 + 0.0) / 2)


def test_overconfident_model_recovers_temperature_and_improves_ece() -> None:
    logits, y = _overconfident()
    result = fit_temperatures(logits, y)
    assert all(result.per_label)
    for temperature in result.temperatures:
        assert temperature == pytest.approx(3.0, rel=0.15)
    assert result.nll_after < result.nll_before
    before = mean_ece(apply_temperatures(logits, [1.0] * 3), y)
    after = mean_ece(apply_temperatures(logits, result.temperatures), y)
    assert after < before / 2
    assert after < 0.03


def test_a_shifted_base_rate_is_what_the_bias_fixes_and_temperature_cannot() -> None:
    """A model trained with a positive class weight predicts every label too often: logits shifted by +2."""
    true_logits, y = _overconfident(factor=1.0)
    shifted = true_logits + 2.0
    temperatures = fit_temperatures(shifted, y).temperatures
    scaled_only = mean_ece(apply_temperatures(shifted, temperatures), y)
    biases = fit_biases(shifted, y, [1.0] * 3)
    assert biases == [pytest.approx(-2.0, abs=0.15)] * 3
    corrected = mean_ece(apply_temperatures(shifted, [1.0] * 3, biases), y)
    assert corrected < 0.03 < scaled_only
    one_class = fit_biases(np.array([[3.0], [2.0]]), np.array([[0.0], [0.0]]), [1.0])
    assert -8.0 <= one_class[0] < -2.0  # pulled down, held finite by the ridge and the limit


def test_a_label_with_two_positives_gets_the_global_temperature() -> None:
    logits, y = _overconfident()
    rare = np.zeros((len(y), 1))
    rare[[10, 20]] = 1.0
    all_logits, all_y = np.hstack([logits, logits[:, :1]]), np.hstack([y, rare])
    result = fit_temperatures(all_logits, all_y, min_positives=20)
    assert result.per_label == [True, True, True, False]
    assert result.temperatures[3] == result.global_temperature
    assert result.temperatures[:3] != [result.global_temperature] * 3
    # two positives are too little evidence for the pooled fit: the global temperature comes from every entry
    everything = fit_temperatures(all_logits.reshape(-1, 1), all_y.reshape(-1, 1), min_positives=20)
    assert result.global_temperature == pytest.approx(everything.temperatures[0])


def test_rare_labels_pool_their_entries_for_the_global_temperature() -> None:
    rng = np.random.default_rng(1)
    common, y_common = _overconfident(rows=3000, labels=1, factor=3.0, seed=2)
    # five rare labels (about 1.5 % positives each, 45 pooled) from a model that is under-confident by half
    true_rare = rng.normal(-4.5, 1.0, size=(3000, 5))
    y_rare = (rng.random(true_rare.shape) < _sigmoid(true_rare)).astype(float)
    y_rare[:3, :] = 1.0  # at least 3 positives per label, fewer than min_positives=20 each
    assert (y_rare.sum(axis=0) < 80).all() and y_rare.sum() >= 20
    logits = np.hstack([common, 0.5 * true_rare])
    result = fit_temperatures(logits, np.hstack([y_common, y_rare]), min_positives=80)
    assert result.per_label == [True] + [False] * 5
    assert result.temperatures[0] == pytest.approx(3.0, rel=0.15)
    assert result.global_temperature < 1.0
    assert result.temperatures[1:] == [result.global_temperature] * 5


@pytest.mark.parametrize("factor", [1e-4, 0.01, 100.0, 1e4])
def test_fitted_temperatures_stay_within_bounds(factor: float) -> None:
    logits, y = _overconfident(rows=600, labels=2, factor=factor, seed=3)
    result = fit_temperatures(logits, y, min_positives=5)
    for temperature in [*result.temperatures, result.global_temperature]:
        assert T_MIN <= temperature <= T_MAX
    if factor >= 100:
        assert result.temperatures == [pytest.approx(T_MAX, rel=0.01)] * 2
    if factor <= 0.01:
        assert result.temperatures == [pytest.approx(T_MIN, rel=0.01)] * 2


def test_anti_correlated_and_single_class_labels_stay_in_bounds() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random((500, 1)) < 0.5).astype(float)
    anti = np.where(y == 1, -2.0, 2.0) + rng.normal(0, 0.1, size=y.shape)
    result = fit_temperatures(anti, y, min_positives=5)
    assert T_MIN <= result.temperatures[0] <= T_MAX
    no_positives = fit_temperatures(rng.normal(size=(50, 2)), np.zeros((50, 2)))
    assert no_positives.temperatures == [1.0, 1.0]
    assert no_positives.per_label == [False, False]


def test_probs_to_logits_round_trips_and_undoes_checkpoint_temperatures() -> None:
    logits = np.array([[-3.0, 0.0, 2.5], [1.0, -0.5, 8.0]])
    probs = apply_temperatures(logits, [1.0, 1.0, 1.0])
    assert np.allclose(probs_to_logits(probs), logits, atol=1e-6)
    served = apply_temperatures(logits, [2.0, 0.5, 4.0])  # what a calibrated checkpoint returns
    assert np.allclose(probs_to_logits(served, temperatures=[2.0, 0.5, 4.0]), logits, atol=1e-5)
    assert np.abs(probs_to_logits(np.array([[0.0, 1.0]]))).max() == pytest.approx(np.log((1 - 1e-6) / 1e-6))


def test_invalid_inputs_say_what_was_found() -> None:
    with pytest.raises(ValueError, match=r"same shape; found logits \(3, 2\) and y \(3, 1\)"):
        fit_temperatures(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        fit_temperatures(np.zeros((2, 1)), np.array([[0.0], [2.0]]))
    with pytest.raises(ValueError, match="min_positives must be a positive integer, found 0"):
        fit_temperatures(np.zeros((2, 1)), np.zeros((2, 1)), min_positives=0)
    with pytest.raises(ValueError, match=r"one temperature per label \(3\); found 2"):
        apply_temperatures(np.zeros((1, 3)), [1.0, 1.0])
    with pytest.raises(ValueError, match="are these logits already"):
        probs_to_logits(np.array([[2.5]]))
    with pytest.raises(ValueError, match="probs must lie in"):
        expected_calibration_error(np.array([[1.5]]), np.array([[1]]))


def test_reliability_curve_pools_labels() -> None:
    probs = np.array([[0.1, 0.9], [0.2, 0.8]])
    y = np.array([[0, 1], [1, 1]])
    mean_pred, observed, counts = reliability_curve(probs, y, bins=2)
    assert counts == [2, 2]
    assert mean_pred == [pytest.approx(0.15), pytest.approx(0.85)]
    assert observed == [pytest.approx(0.5), pytest.approx(1.0)]
    _, observed10, counts10 = reliability_curve(probs, y, bins=10)
    assert sum(counts10) == 4 and np.isnan(observed10[5])


def test_plot_writes_a_png(tmp_path: Path) -> None:
    logits, y = _overconfident(rows=1000)
    result = fit_temperatures(logits, y)
    before_probs = apply_temperatures(logits, [1.0] * 3)
    after_probs = apply_temperatures(logits, result.temperatures)
    path = tmp_path / "plots" / "reliability.png"
    plot_reliability(
        reliability_curve(before_probs, y),
        reliability_curve(after_probs, y),
        path,
        ece_before=mean_ece(before_probs, y),
        ece_after=mean_ece(after_probs, y),
    )
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    plot_reliability(reliability_curve(before_probs, y), reliability_curve(after_probs, y), tmp_path / "b.png")
    assert (tmp_path / "b.png").stat().st_size > 5000
