"""Tests of jaxcnn.metrics: formulas on hand-made arrays, Keras."""

import numpy as np
import pytest

from jaxcnn import metrics


def test_entropy_against_the_formula():
  probs = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.25, 0.25]])
  expected = [0.0, np.log(3), -(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25))]
  np.testing.assert_allclose(metrics.entropy(probs), expected, rtol=1e-6)


def test_mutual_information_against_the_formula():
  # Two samples that disagree completely: total log 2, each sample certain.
  disagree = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
  np.testing.assert_allclose(metrics.mutual_information(disagree), [np.log(2)], rtol=1e-6)
  # Samples that agree carry no epistemic uncertainty, however unsure they are.
  agree = np.tile(np.array([[[0.5, 0.3, 0.2]]]), (4, 1, 1))
  np.testing.assert_allclose(metrics.mutual_information(agree), [0.0], atol=1e-7)
  rng = np.random.default_rng(0)
  samples = rng.dirichlet(np.ones(4), size=(6, 5))  # [S=6, N=5, K=4]
  mean = samples.mean(0)
  total = -np.sum(mean * np.log(mean), axis=-1)
  aleatoric = -np.sum(samples * np.log(samples), axis=-1).mean(0)
  np.testing.assert_allclose(metrics.mutual_information(samples), total - aleatoric,
                             rtol=1e-5)
  with pytest.raises(ValueError, match="num_samples, N, K"):
    metrics.mutual_information(samples[0])


def test_accuracy_nll_brier_on_hand_made_arrays():
  probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])
  labels = np.array([0, 1, 1])
  assert metrics.accuracy(probs, labels) == pytest.approx(2 / 3)
  assert metrics.negative_log_likelihood(probs, labels) == pytest.approx(
      -(np.log(0.7) + np.log(0.3) + np.log(0.5)) / 3)
  brier = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.7**2 + 0.6**2)
           + (0.25**2 + 0.5**2 + 0.25**2)) / 3
  assert metrics.brier_score(probs, labels) == pytest.approx(brier)
  # Perfect one-hot predictions: Brier 0; the worst: 2.
  assert metrics.brier_score(np.eye(3), [0, 1, 2]) == 0.0
  assert metrics.brier_score(np.eye(3), [1, 2, 0]) == pytest.approx(2.0)


def test_binary_probabilities_accepted():
  p = np.array([0.9, 0.2, 0.6])
  labels = np.array([1, 0, 0])
  pairs = np.stack([1 - p, p], axis=-1)
  assert metrics.accuracy(p, labels) == metrics.accuracy(pairs, labels) == pytest.approx(2 / 3)
  assert metrics.negative_log_likelihood(p, labels) == pytest.approx(
      -(np.log(0.9) + np.log(0.8) + np.log(0.4)) / 3)


def test_nll_equals_keras_sparse_categorical_crossentropy():
  import keras
  rng = np.random.default_rng(1)
  probs = rng.dirichlet(np.ones(10) * 0.3, size=64).astype(np.float32)
  probs[0] = np.eye(10)[3]  # a confident mistake: Keras clips, so do we
  labels = rng.integers(0, 10, size=64)
  labels[0] = 4
  keras_loss = np.mean(np.asarray(keras.losses.sparse_categorical_crossentropy(labels, probs)))
  assert metrics.negative_log_likelihood(probs, labels) == pytest.approx(keras_loss, rel=1e-5)


def test_ece_is_near_zero_when_calibrated():
  # Confidence c, right with probability c: calibrated by construction.
  rng = np.random.default_rng(0)
  n = 200_000
  confidence = rng.uniform(0.5, 1.0, n)
  labels = (rng.uniform(size=n) < confidence).astype(int)  # predicted class is 1
  probs = np.stack([1 - confidence, confidence], axis=-1)
  assert metrics.expected_calibration_error(probs, labels) < 0.01


def test_ece_of_an_overconfident_model_matches_a_hand_computation():
  # Bins are (b/15, (b+1)/15]: 0.95 -> bin 14, 0.62 -> bin 9.
  probs = np.array([[0.95, 0.05]] * 6 + [[0.62, 0.38]] * 2)
  labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])
  # Bin 14: 6 examples, accuracy 3/6, confidence 0.95. Bin 9: 2, accuracy 1/2, 0.62.
  expected = 6 / 8 * abs(0.5 - 0.95) + 2 / 8 * abs(0.5 - 0.62)
  assert metrics.expected_calibration_error(probs, labels) == pytest.approx(expected)
  assert expected > 0.3


def test_calibration_bins_are_right_closed():
  # 0.2 = 3/15 exactly: it belongs to (2/15, 3/15], bin 2, not bin 3.
  probs = np.array([[0.2, 0.2, 0.2, 0.2, 0.2], [0.2000001, 0.2, 0.2, 0.2, 0.1999999]])
  bins = metrics.calibration_bins(probs, [0, 1])
  assert bins.counts[2] == 1 and bins.counts[3] == 1
  assert bins.counts.sum() == 2
  assert np.isnan(bins.accuracy[0])  # empty bins say so


def test_compare_side_by_side():
  labels = np.array([0, 1, 1, 0])
  single = np.array([[0.99, 0.01], [0.02, 0.98], [0.97, 0.03], [0.9, 0.1]])
  mc = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.7, 0.3]])
  result = metrics.compare(single, mc, labels)
  assert set(result) == {"accuracy", "nll", "brier", "ece", "mean_entropy"}
  assert result["accuracy"] == {"single": 0.75, "mc": 0.75}
  assert result["nll"]["single"] == pytest.approx(metrics.negative_log_likelihood(single, labels))
  # The confident mistake costs the single pass; the softer MC mean pays less.
  assert result["nll"]["mc"] < result["nll"]["single"]
  assert result["mean_entropy"]["mc"] > result["mean_entropy"]["single"]
  table = metrics.format_comparison(result)
  assert "MC dropout" in table and "nll" in table
  with pytest.raises(ValueError, match="same shape"):
    metrics.compare(single, np.full((4, 3), 1 / 3), labels)


def test_bad_inputs_say_what_is_valid():
  probs = np.full((3, 4), 0.25)
  with pytest.raises(ValueError, match=r"labels must be in \[0, 3\]"):
    metrics.accuracy(probs, [0, 1, 4])
  with pytest.raises(ValueError, match=r"shape \[3\]"):
    metrics.accuracy(probs, [0, 1])
  with pytest.raises(ValueError, match="K >= 2"):
    metrics.brier_score(np.ones((3, 1)), [0, 0, 0])
  with pytest.raises(ValueError, match="integer class ids"):
    metrics.accuracy(probs, [0.5, 1, 2])


def test_numbers_only():
  """Figures are jaxcnn.visualize's: metrics keeps the bins and the ECE."""
  assert not hasattr(metrics, "reliability_diagram")
  assert not hasattr(metrics, "certainty_examples")
  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.ones(4), size=50)
  labels = rng.integers(0, 4, size=50)
  bins = metrics.calibration_bins(probs, labels, num_bins=5)
  assert bins.counts.sum() == 50
  full = bins.counts > 0
  ece = np.sum(bins.counts[full] * np.abs(bins.accuracy[full] - bins.confidence[full])) / 50
  assert metrics.expected_calibration_error(probs, labels, num_bins=5) == pytest.approx(ece)
