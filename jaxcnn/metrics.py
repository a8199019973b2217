"""Accuracy, calibration and uncertainty of predicted probabilities.

Everything takes probabilities ``[N, K]`` (rows sum to 1; a binary model's
``[N]`` probabilities of class 1 are accepted too) and integer labels ``[N]``:

  accuracy(probs, labels)                     # argmax == label, as lecture 004
  negative_log_likelihood(probs, labels)      # Keras' sparse categorical CE
  brier_score(probs, labels)                  # mean_n sum_k (p_nk - y_nk)^2
  expected_calibration_error(probs, labels)   # 15 equal-width confidence bins
  calibration_bins(probs, labels)             # the numbers of a reliability diagram
  compare(single_probs, mc_probs, labels)     # the above, single vs MC dropout

Numbers only: their figures (reliability diagram, most and least certain
images) are :mod:`jaxcnn.visualize.uncertainty`.

``entropy`` and ``mutual_information`` are written with ``jax.numpy`` so the
MC-dropout program (``jaxcnn.inference``) computes them on the device with the
very same code the tests check against the formulas. Entropies are in nats.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy import special
import numpy as np

# Keras' backend epsilon: its cross-entropy clips probabilities to
# [eps, 1 - eps], so our NLL equals Keras' loss on the same probabilities.
KERAS_EPSILON = 1e-7
NUM_BINS = 15


def entropy(probs: Any, axis: int = -1) -> jax.Array:
  """Shannon entropy ``-sum_k p_k log p_k`` in nats, with ``0 log 0 = 0``.

  Args:
    probs: probabilities; ``axis`` holds the classes.
    axis: the class axis.

  Returns:
    The entropy per row (``axis`` removed). Traceable under ``jit``.
  """
  return jnp.sum(special.entr(jnp.asarray(probs)), axis=axis)


def mutual_information(samples: Any) -> jax.Array:
  """Epistemic uncertainty of MC samples: ``H(mean_s p_s) - mean_s H(p_s)``.

  The entropy of the mean prediction (total uncertainty) minus the mean
  entropy of the individual samples (the part every sample agrees on): the
  information the prediction would gain from knowing the dropout mask. It is
  >= 0 by Jensen's inequality; float round-off below 0 is clipped to 0.

  Args:
    samples: ``[S, N, K]`` probabilities of S stochastic passes.

  Returns:
    ``[N]`` mutual information in nats.
  """
  samples = jnp.asarray(samples)
  if samples.ndim != 3:
    raise ValueError(f"samples must be [num_samples, N, K]; got shape {samples.shape}.")
  total = entropy(samples.mean(axis=0))
  return jnp.maximum(total - entropy(samples).mean(axis=0), 0.0)


def as_probs_and_labels(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
  """Validated float64 probabilities ``[N, K]`` and integer labels ``[N]``.

  Args:
    probs: ``[N, K]`` probabilities, or a binary model's ``[N]`` probabilities
      of class 1 (returned as ``[N, 2]``).
    labels: ``[N]`` class ids (integer-valued floats are accepted).

  Raises:
    ValueError: shapes that do not match, no examples, or labels that are
      not class ids of ``probs`` (the message says which).
  """
  probs = np.asarray(probs, dtype=np.float64)
  labels = np.asarray(labels)
  if probs.ndim == 1:  # A sigmoid output: P(class 1).
    probs = np.stack([1.0 - probs, probs], axis=-1)
  if probs.ndim != 2 or probs.shape[1] < 2:
    raise ValueError(
        f"probs must be [N, K] with K >= 2 classes (or [N] binary probabilities); "
        f"got shape {probs.shape}.")
  if labels.ndim != 1 or labels.shape[0] != probs.shape[0]:
    raise ValueError(
        f"labels must be integer class ids of shape [{probs.shape[0]}] to match probs "
        f"{probs.shape}; got shape {labels.shape} (one-hot labels: use labels.argmax(-1)).")
  if probs.shape[0] == 0:
    raise ValueError("probs and labels are empty: metrics need at least one example.")
  if not np.issubdtype(labels.dtype, np.integer):
    if not np.all(labels == np.round(labels)):
      raise ValueError(f"labels must be integer class ids; got dtype {labels.dtype}.")
    labels = labels.astype(np.int64)
  if labels.min() < 0 or labels.max() >= probs.shape[1]:
    raise ValueError(
        f"labels must be in [0, {probs.shape[1] - 1}] for {probs.shape[1]} classes; "
        f"got values in [{labels.min()}, {labels.max()}].")
  return probs, labels


def accuracy(probs: Any, labels: Any) -> float:
  """Fraction of examples whose most probable class is the label."""
  probs, labels = as_probs_and_labels(probs, labels)
  return float(np.mean(probs.argmax(axis=1) == labels))


def negative_log_likelihood(probs: Any, labels: Any, *,
                            eps: float = KERAS_EPSILON) -> float:
  """Mean ``-log p_label``: Keras' ``sparse_categorical_crossentropy``.

  Args:
    probs: ``[N, K]`` probabilities (binary ``[N]`` accepted).
    labels: ``[N]`` class ids.
    eps: probabilities are clipped to ``[eps, 1 - eps]`` first, as Keras does,
      so one confident mistake costs ``-log(eps)`` (16.1) instead of infinity.

  Returns:
    The mean negative log-likelihood in nats.
  """
  probs, labels = as_probs_and_labels(probs, labels)
  picked = probs[np.arange(len(labels)), labels]
  return float(-np.mean(np.log(np.clip(picked, eps, 1.0 - eps))))


def brier_score(probs: Any, labels: Any) -> float:
  """Multi-class Brier score: ``mean_n sum_k (p_nk - y_nk)^2`` (0 best, 2 worst)."""
  probs, labels = as_probs_and_labels(probs, labels)
  onehot = np.eye(probs.shape[1])[labels]
  return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


class CalibrationBins(NamedTuple):
  """Examples grouped by confidence (the max probability).

  Bin ``b`` holds confidences in ``(edges[b], edges[b + 1]]`` (the first bin
  also holds 0). Empty bins have count 0 and NaN accuracy/confidence.
  """
  edges: np.ndarray       # [B + 1]
  counts: np.ndarray      # [B]
  accuracy: np.ndarray    # [B] fraction correct in the bin
  confidence: np.ndarray  # [B] mean confidence in the bin


def calibration_bins(probs: Any, labels: Any, *, num_bins: int = NUM_BINS) -> CalibrationBins:
  """Bins examples by confidence into ``num_bins`` equal-width bins of [0, 1].

  Args:
    probs: ``[N, K]`` probabilities (binary ``[N]`` accepted).
    labels: ``[N]`` class ids.
    num_bins: equal-width bins of the max probability.

  Returns:
    :class:`CalibrationBins`: what a reliability diagram draws
    (``jaxcnn.visualize.plot_reliability_diagram``).
  """
  if num_bins < 1:
    raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
  probs, labels = as_probs_and_labels(probs, labels)
  confidence = probs.max(axis=1)
  correct = probs.argmax(axis=1) == labels
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  # searchsorted on the inner edges puts c in bin b when edges[b] < c <= edges[b+1],
  # the right-closed bins of Guo et al. (2017), without float trouble at edges.
  index = np.searchsorted(edges[1:-1], confidence, side="left")
  counts = np.bincount(index, minlength=num_bins)
  with np.errstate(invalid="ignore", divide="ignore"):
    acc = np.bincount(index, weights=correct, minlength=num_bins) / counts
    conf = np.bincount(index, weights=confidence, minlength=num_bins) / counts
  return CalibrationBins(edges, counts, acc, conf)


def expected_calibration_error(probs: Any, labels: Any, *,
                               num_bins: int = NUM_BINS) -> float:
  """ECE: ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over confidence bins.

  Args:
    probs: ``[N, K]`` probabilities (binary ``[N]`` accepted).
    labels: ``[N]`` class ids.
    num_bins: equal-width bins of the max probability (15, as Guo et al.).

  Returns:
    The ECE in [0, 1]: 0 when, in every bin, the model is right exactly as
    often as it is confident.
  """
  bins = calibration_bins(probs, labels, num_bins=num_bins)
  full = bins.counts > 0
  gaps = np.abs(bins.accuracy[full] - bins.confidence[full])
  return float(np.sum(bins.counts[full] * gaps) / np.sum(bins.counts))


def mean_entropy(probs: Any) -> float:
  """Mean predictive entropy (nats) of ``[N, K]`` probabilities."""
  probs = np.asarray(probs, dtype=np.float64)
  if probs.ndim == 1:
    probs = np.stack([1.0 - probs, probs], axis=-1)
  return float(np.mean(np.asarray(entropy(probs))))


METRICS = {
    "accuracy": accuracy,
    "nll": negative_log_likelihood,
    "brier": brier_score,
    "ece": expected_calibration_error,
}


def compare(single_probs: Any, mc_probs: Any, labels: Any) -> dict[str, dict[str, float]]:
  """The metrics of a single deterministic pass and of MC dropout, side by side.

  Args:
    single_probs: ``[N, K]`` from ``inference.predict``.
    mc_probs: ``[N, K]``, the MC mean from ``inference.predict_mc``.
    labels: ``[N]`` class ids.

  Returns:
    ``{metric: {'single': value, 'mc': value}}`` for accuracy, nll, brier,
    ece and mean_entropy (higher accuracy is better; lower for the rest,
    except entropy, which only says how unsure the predictions are).
  """
  single_probs, labels = as_probs_and_labels(single_probs, labels)
  mc_probs, _ = as_probs_and_labels(mc_probs, labels)
  if single_probs.shape != mc_probs.shape:
    raise ValueError(
        f"single_probs {single_probs.shape} and mc_probs {mc_probs.shape} must have "
        "the same shape.")
  out = {name: {"single": fn(single_probs, labels), "mc": fn(mc_probs, labels)}
         for name, fn in METRICS.items()}
  out["mean_entropy"] = {"single": mean_entropy(single_probs), "mc": mean_entropy(mc_probs)}
  return out


def format_comparison(comparison: dict[str, dict[str, float]]) -> str:
  """A text table of :func:`compare`'s result."""
  lines = [f"{'metric':<14}{'single':>10}{'MC dropout':>12}"]
  for name, values in comparison.items():
    lines.append(f"{name:<14}{values['single']:>10.4f}{values['mc']:>12.4f}")
  return "\n".join(lines)
