"""Accuracy, calibration and uncertainty of predicted probabilities.

Everything takes probabilities ``[N, K]`` (rows sum to 1; a binary model's
``[N]`` probabilities of class 1 are accepted too) and integer labels ``[N]``:

  accuracy(probs, labels)                     # argmax == label, as lecture 004
  negative_log_likelihood(probs, labels)      # Keras' sparse categorical CE
  brier_score(probs, labels)                  # mean_n sum_k (p_nk - y_nk)^2
  expected_calibration_error(probs, labels)   # 15 equal-width confidence bins
  compare(single_probs, mc_probs, labels)     # the above, single vs MC dropout
  reliability_diagram(probs, labels, path)    # PNG
  certainty_examples(images, probs, labels, k=5, path=...)  # PNG

``entropy`` and ``mutual_information`` are written with ``jax.numpy`` so the
MC-dropout program (``jaxcnn.inference``) computes them on the device with the
very same code the tests check against the formulas. Entropies are in nats.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax.scipy import special
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
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


def _check(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
  """Validates and converts probabilities [N, K] (or binary [N]) and labels [N]."""
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
  probs, labels = _check(probs, labels)
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
  probs, labels = _check(probs, labels)
  picked = probs[np.arange(len(labels)), labels]
  return float(-np.mean(np.log(np.clip(picked, eps, 1.0 - eps))))


def brier_score(probs: Any, labels: Any) -> float:
  """Multi-class Brier score: ``mean_n sum_k (p_nk - y_nk)^2`` (0 best, 2 worst)."""
  probs, labels = _check(probs, labels)
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
  """Bins examples by confidence into ``num_bins`` equal-width bins of [0, 1]."""
  if num_bins < 1:
    raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
  probs, labels = _check(probs, labels)
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
  single_probs, labels = _check(single_probs, labels)
  mc_probs, _ = _check(mc_probs, labels)
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


# ---------------------------------------------------------------- figures


def _figure(width: float, height: float, dpi: int) -> Figure:
  # A Figure with an Agg canvas, not pyplot: no display, no global state.
  fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Figure, path: str | os.PathLike | None) -> None:
  if path:
    directory = os.path.dirname(os.fspath(path))
    if directory:
      os.makedirs(directory, exist_ok=True)
    fig.savefig(path, format="png")


def reliability_diagram(probs: Any, labels: Any, path: str | os.PathLike | None = None, *,
                        num_bins: int = NUM_BINS, title: str = "Reliability diagram",
                        dpi: int = 100) -> Figure:
  """Accuracy against confidence per bin, with the confidence histogram.

  Bars on the diagonal are a calibrated model; bars below it, an overconfident
  one. The title carries the ECE.

  Args:
    probs: ``[N, K]`` probabilities (binary ``[N]`` accepted).
    labels: ``[N]`` class ids.
    path: where to write the PNG (parent folders are made); None = don't.
    num_bins: equal-width confidence bins.
    title: the figure title (the ECE is appended).
    dpi: resolution of the PNG.

  Returns:
    The matplotlib Figure (drawn by Agg; no display needed).
  """
  bins = calibration_bins(probs, labels, num_bins=num_bins)
  ece = expected_calibration_error(probs, labels, num_bins=num_bins)
  centers = (bins.edges[:-1] + bins.edges[1:]) / 2
  width = 1.0 / num_bins
  fig = _figure(5.0, 6.0, dpi)
  top, bottom = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
  full = bins.counts > 0  # Empty bins get no bar: they carry no evidence.
  acc, conf = bins.accuracy[full], bins.confidence[full]
  top.bar(centers[full], acc, width=width, edgecolor="black", color="tab:blue",
          label="accuracy")
  top.bar(centers[full], conf - acc, bottom=acc, width=width, edgecolor="tab:red",
          color="tab:red", alpha=0.3, hatch="//", label="gap to mean confidence")
  top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
  top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=f"{title} (ECE {ece:.4f})")
  top.legend(loc="upper left")
  bottom.bar(centers, bins.counts / bins.counts.sum(), width=width, edgecolor="black",
             color="tab:gray")
  bottom.set(xlabel="confidence (max probability)", ylabel="fraction")
  _save(fig, path)
  return fig


def _display(image: np.ndarray) -> tuple[np.ndarray, str | None]:
  """An image as imshow wants it: min-max scaled, gray for one channel."""
  image = np.asarray(image, dtype=np.float64)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  elif image.ndim == 3 and image.shape[-1] != 3:
    image = image[..., 0]  # Not RGB: show the first channel.
  # Percentiles, not min/max: standardized inputs have a few extreme pixels
  # (rarely lit corners) that would leave the rest of the image black.
  low, high = np.percentile(image, [1, 99])
  image = np.clip((image - low) / (high - low), 0, 1) if high > low else np.zeros_like(image)
  return image, ("gray" if image.ndim == 2 else None)


def certainty_examples(images: Any, probs: Any, labels: Any, *, k: int = 5,
                       class_names: Sequence[str] | None = None, uncertainty: Any = None,
                       score_name: str | None = None, std: Any = None,
                       path: str | os.PathLike | None = None, dpi: int = 100) -> Figure:
  """The k most and k least certain images, each over its probability bars.

  Lecture 004 prints the MC probabilities (and their standard deviation) of
  one test image; this draws them for the extremes of the test set.

  Args:
    images: ``[N, H, W, C]`` (or ``[N, H, W]``) images, any scale.
    probs: ``[N, K]`` probabilities (e.g. the MC mean).
    labels: ``[N]`` true class ids (green bar; a wrong top class is red).
    k: examples per group, at most N (the groups overlap when 2k > N).
    class_names: K names for the bar ticks (default: class ids).
    uncertainty: ``[N]`` scores to rank by, higher = less certain (e.g. the
      MC mutual information); default the predictive entropy of ``probs``.
    score_name: what the titles call the score (default 'entropy' or 'score').
    std: optional ``[N, K]`` MC standard deviations, drawn as error bars.
    path: where to write the PNG; None = don't.
    dpi: resolution of the PNG.

  Returns:
    The Figure: row 1-2 the most certain, rows 3-4 the least certain.
  """
  probs, labels = _check(probs, labels)
  images = np.asarray(images)
  n, num_classes = probs.shape
  if images.shape[0] != n or images.ndim not in (3, 4):
    raise ValueError(
        f"images must be [N, H, W, C] or [N, H, W] with N={n} (as probs); got {images.shape}.")
  if not 1 <= k <= n:
    raise ValueError(f"k must be in [1, {n}] for {n} examples, got {k}.")
  names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
  if len(names) != num_classes:
    raise ValueError(f"class_names has {len(names)} names for {num_classes} classes.")
  score = (np.asarray(entropy(probs)) if uncertainty is None
           else np.asarray(uncertainty, dtype=np.float64).reshape(-1))
  if score.shape != (n,):
    raise ValueError(f"uncertainty must be [{n}], got shape {np.shape(uncertainty)}.")
  if std is not None:
    std = np.asarray(std, dtype=np.float64)
    if std.shape != probs.shape:
      raise ValueError(f"std must be {probs.shape} like probs, got {std.shape}.")
  if score_name is None:
    score_name = "entropy" if uncertainty is None else "score"
  order = np.argsort(score, kind="stable")
  groups = (("most certain", order[:k]), ("least certain", order[::-1][:k]))
  fig = _figure(2.2 * k, 9.0, dpi)
  axes = fig.subplots(4, k, squeeze=False, height_ratios=(1.2, 1, 1.2, 1))
  for g, (group, indices) in enumerate(groups):
    for j, i in enumerate(indices):
      image_ax, bar_ax = axes[2 * g, j], axes[2 * g + 1, j]
      shown, cmap = _display(images[i])
      image_ax.imshow(shown, cmap=cmap)
      image_ax.set_xticks([])
      image_ax.set_yticks([])
      predicted = int(probs[i].argmax())
      image_ax.set_title(
          f"{group}\ntrue {names[labels[i]]}, pred {names[predicted]} "
          f"{probs[i, predicted]:.2f}\n{score_name} {score[i]:.3f}", fontsize=8)
      colors = ["tab:gray"] * num_classes
      colors[predicted] = "tab:red"
      colors[labels[i]] = "tab:green"
      bar_ax.bar(range(num_classes), probs[i], color=colors,
                 yerr=None if std is None else std[i], capsize=2)
      bar_ax.set_ylim(0, 1.05)
      bar_ax.set_xticks(range(num_classes))
      bar_ax.set_xticklabels(names, rotation=90, fontsize=6)
      bar_ax.tick_params(axis="y", labelsize=6)
  _save(fig, path)
  return fig
