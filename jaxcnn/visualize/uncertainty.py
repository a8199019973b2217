"""Figures of calibration and uncertainty: reliability diagrams, certain and unsure images.

The numbers behind them (confidence bins, ECE, entropy) are
:mod:`jaxcnn.metrics`; these functions only draw them. ``jaxcnn.inference``
writes both figures for ``--mode=predict_mc``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from jaxcnn import metrics
from jaxcnn.visualize._figure import PathLike, finish, new_figure


def plot_reliability_diagram(probs: Any, labels: Any, *, num_bins: int = metrics.NUM_BINS,
                             title: str = "Reliability diagram",
                             path: PathLike | None = None, dpi: int = 100) -> Figure:
  """Accuracy against confidence per bin, with the confidence histogram.

  Bars on the diagonal are a calibrated model; bars below it, an overconfident
  one. The title carries the ECE.

  Args:
    probs: ``[N, K]`` probabilities (binary ``[N]`` accepted).
    labels: ``[N]`` class ids.
    num_bins: equal-width confidence bins (``metrics.calibration_bins``).
    title: the figure title (the ECE is appended).
    path: where to write the PNG (parent folders are made); None = don't.
    dpi: pixels per inch; the PNG is 5 x 6 inches.

  Returns:
    The Figure.
  """
  bins = metrics.calibration_bins(probs, labels, num_bins=num_bins)
  ece = metrics.expected_calibration_error(probs, labels, num_bins=num_bins)
  centers = (bins.edges[:-1] + bins.edges[1:]) / 2
  width = 1.0 / num_bins
  fig = new_figure(5.0, 6.0, dpi)
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
  return finish(fig, path)


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


def _certainty_inputs(images, probs, labels, k, class_names, uncertainty, std):
  """Validated ``(images, probs, labels, names, score, std)`` for the figure."""
  probs, labels = metrics.as_probs_and_labels(probs, labels)
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
  score = (np.asarray(metrics.entropy(probs)) if uncertainty is None
           else np.asarray(uncertainty, dtype=np.float64).reshape(-1))
  if score.shape != (n,):
    raise ValueError(f"uncertainty must be [{n}], got shape {np.shape(uncertainty)}.")
  if std is not None:
    std = np.asarray(std, dtype=np.float64)
    if std.shape != probs.shape:
      raise ValueError(f"std must be {probs.shape} like probs, got {std.shape}.")
  return images, probs, labels, names, score, std


def _draw_example(image_ax, bar_ax, image, probs, label, names, std, title) -> None:
  """One image over its probability bars (true class green, a wrong top class red)."""
  shown, cmap = _display(image)
  image_ax.imshow(shown, cmap=cmap)
  image_ax.set_xticks([])
  image_ax.set_yticks([])
  image_ax.set_title(title, fontsize=8)
  num_classes = len(probs)
  colors = ["tab:gray"] * num_classes
  colors[int(probs.argmax())] = "tab:red"
  colors[label] = "tab:green"
  bar_ax.bar(range(num_classes), probs, color=colors, yerr=std, capsize=2)
  bar_ax.set_ylim(0, 1.05)
  bar_ax.set_xticks(range(num_classes))
  bar_ax.set_xticklabels(names, rotation=90, fontsize=6)
  bar_ax.tick_params(axis="y", labelsize=6)


def plot_certainty_examples(images: Any, probs: Any, labels: Any, *, k: int = 5,
                            class_names: Sequence[str] | None = None,
                            uncertainty: Any = None, score_name: str | None = None,
                            std: Any = None, path: PathLike | None = None,
                            dpi: int = 100) -> Figure:
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
    dpi: pixels per inch; the PNG is ``2.2 k`` x 9 inches.

  Returns:
    The Figure: rows 1-2 the most certain, rows 3-4 the least certain.

  Raises:
    ValueError: shapes that do not match ``probs``, or ``k`` outside [1, N].
  """
  images, probs, labels, names, score, std = _certainty_inputs(
      images, probs, labels, k, class_names, uncertainty, std)
  if score_name is None:
    score_name = "entropy" if uncertainty is None else "score"
  order = np.argsort(score, kind="stable")
  groups = (("most certain", order[:k]), ("least certain", order[::-1][:k]))
  fig = new_figure(2.2 * k, 9.0, dpi)
  axes = fig.subplots(4, k, squeeze=False, height_ratios=(1.2, 1, 1.2, 1))
  for g, (group, indices) in enumerate(groups):
    for j, i in enumerate(indices):
      predicted = int(probs[i].argmax())
      title = (f"{group}\ntrue {names[labels[i]]}, pred {names[predicted]} "
               f"{probs[i, predicted]:.2f}\n{score_name} {score[i]:.3f}")
      _draw_example(axes[2 * g, j], axes[2 * g + 1, j], images[i], probs[i], labels[i],
                    names, None if std is None else std[i], title)
  return finish(fig, path)
