"""Training curves: accuracy and loss per epoch, train vs validation.

A history is Keras' ``History.history``: a dict of per-epoch lists under
``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` and ``lr``. The training
loop writes the same dict to ``<workdir>/history.json``; every function here
takes either. jaxcnn's histories may also hold ``data_loss`` (the
cross-entropy without the regularization penalty that Keras' ``loss``
includes) and, with ``training.eval_train``, ``train_eval_loss`` /
``train_eval_accuracy`` (the training part scored in evaluation mode:
dropout off, BatchNorm's moving statistics); the figures draw them where
present, ``data_loss`` only where it differs from ``loss``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from jaxcnn.visualize._figure import PathLike, finish, new_figure

HISTORY_FILE = "history.json"
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
# Older Keras (lecture 003) logs 'acc'; schedules may log 'learning_rate'.
_ALIASES = {"acc": "accuracy", "val_acc": "val_accuracy", "learning_rate": "lr"}
_STYLES = ("twin", "panels")

HistoryLike = Mapping[str, Sequence[float]] | PathLike | Any


def load_history(source: HistoryLike) -> dict[str, list[float] | float]:
  """A history dict from a dict, a Keras History, a workdir or a JSON file.

  Args:
    source: a dict of per-epoch lists; an object with a ``.history`` dict
      (Keras' History); a workdir holding ``history.json``; or a JSON file.

  Returns:
    A new dict: per-epoch entries as float lists, with Keras' old names
    ('acc', 'val_acc') renamed to 'accuracy', 'val_accuracy', and
    'learning_rate' to 'lr'; missing values (None) become NaN, which
    matplotlib leaves as gaps. Single numbers (the training loop's final
    'test_loss', 'test_accuracy') stay floats.

  Raises:
    FileNotFoundError: when a path holds no history.
    ValueError: when none of 'loss', 'accuracy', 'val_loss', 'val_accuracy'
      is a per-epoch list, or an entry is neither a list nor a number.
  """
  if isinstance(getattr(source, "history", None), Mapping):
    source = source.history
  if isinstance(source, (str, os.PathLike)):
    path = os.fspath(source)
    if os.path.isdir(path):
      path = os.path.join(path, HISTORY_FILE)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"no training history at {path} (a workdir holds {HISTORY_FILE})")
    with open(path) as f:
      source = json.load(f)
  if not isinstance(source, Mapping):
    raise TypeError(f"expected a history dict, Keras History, workdir or JSON path, "
                    f"got {type(source).__name__}")
  history = {}
  for key, values in source.items():
    if key == "members":  # A population's per-member histories: the mean and
      continue            # '<key>_std' lists are what the figures draw.
    key = _ALIASES.get(key, key)
    if hasattr(values, "tolist"):  # numpy / jax arrays and scalars
      values = values.tolist()
    if isinstance(values, numbers.Real):
      history[key] = float(values)
    elif isinstance(values, Sequence) and not isinstance(values, (str, bytes)):
      history[key] = [math.nan if v is None else float(v) for v in values]
    else:
      raise ValueError(f"history[{key!r}] must be a per-epoch list or a number, "
                       f"got {type(values).__name__}")
  if not any(isinstance(history.get(k), list) for k in METRICS):
    raise ValueError(f"history has no per-epoch list of {list(METRICS)}; its keys are "
                     f"{sorted(history)}")
  return history


def _series(history: Mapping[str, Any], key: str) -> list[float] | None:
  values = history.get(key)
  return values if isinstance(values, list) else None


def smooth_curve(points: Sequence[float], factor: float = 0.8) -> list[float]:
  """Lecture 003's smoothed curves: an exponential moving average.

  The lecture smooths its fine-tuning curves with ``smooth_curve`` (Chollet's
  ``smoothed_points``): the first point is kept, then each point is
  ``previous * factor + point * (1 - factor)``.

  Args:
    points: per-epoch values.
    factor: weight of the running average, in [0, 1); 0 returns the points.

  Returns:
    The smoothed values, as many as ``points``. A NaN (a missing epoch) stays
    NaN and leaves the running average as it was, so one gap does not blank
    the rest of the curve.
  """
  if not 0.0 <= factor < 1.0:
    raise ValueError(f"smoothing factor must be in [0, 1), got {factor}")
  smoothed, previous = [], None
  for point in points:
    point = float(point)
    if math.isnan(point):
      smoothed.append(point)
      continue
    previous = point if previous is None else previous * factor + point * (1.0 - factor)
    smoothed.append(previous)
  return smoothed


def _smoothed(history: dict[str, Any], smooth: float | None) -> dict[str, Any]:
  """The history with every per-epoch metric but 'lr' smoothed by ``smooth``."""
  if not smooth:
    return history
  # The learning rate is a schedule, not a noisy measurement: left as it is.
  return {k: smooth_curve(v, smooth) if isinstance(v, list) and k != "lr" else v
          for k, v in history.items()}


def _data_loss_differs(history: Mapping[str, Any]) -> bool:
  """Whether ``data_loss`` is there and differs from ``loss`` (a penalty was added).

  Without a penalty the train step adds 0 to the cross-entropy, so the two
  lists are equal to the bit; a second line would only hide the first.
  """
  data_loss, loss = _series(history, "data_loss"), _series(history, "loss")
  if data_loss is None:
    return False
  return loss is None or not np.array_equal(data_loss, loss, equal_nan=True)


def _plot(ax, history: Mapping[str, Any], key: str, *args: Any, **kwargs: Any) -> list:
  """Plots the per-epoch series ``key`` against epochs 1..N; nothing if absent."""
  values = _series(history, key)
  if values is None:
    return []
  epochs = range(1, len(values) + 1)
  lines = ax.plot(epochs, values, *args, **kwargs)
  std = _series(history, key + "_std")  # A population: mean ± std as a band.
  if std is not None and len(std) == len(values):
    mean, std = np.asarray(values), np.asarray(std)
    ax.fill_between(epochs, mean - std, mean + std, color=lines[0].get_color(),
                    alpha=0.2, linewidth=0)
  return lines


def plot_history(history: HistoryLike, *, style: str = "twin", show_lr: bool = False,
                 smooth: float | None = None, title: str | None = None,
                 path: PathLike | None = None, dpi: int = 100) -> Figure:
  """Accuracy and loss of one run, train vs validation.

  Where the history has them, two more training curves are drawn:
  ``train_eval_accuracy`` / ``train_eval_loss`` (``training.eval_train``: the
  training part in evaluation mode, beside the train-mode curves that
  understate a model with dropout) and ``data_loss`` (the cross-entropy
  without the penalty Keras' ``loss`` includes), the latter only where it
  differs from ``loss``. A population's history (``members`` and
  ``<metric>_std``) draws each mean with a ±std band.

  Args:
    history: anything :func:`load_history` takes.
    style: 'twin' (lecture 002's ``plot_history``: accuracy solid on the left
      axis, loss dashed on a twin right axis; train C0, validation C1,
      train-eval C2, data_loss dotted C0) or 'panels' (lecture 003: accuracy
      and loss side by side, training as dots, validation as a line;
      train-eval a green dashed line, data_loss hollow dots).
    show_lr: add a panel with the learning rate per epoch (log scale), when
      the history has 'lr'.
    smooth: draw every metric but 'lr' smoothed by :func:`smooth_curve` with this
      factor (lecture 003 uses 0.8); None or 0 draws the raw values.
    title: figure title; the final test accuracy is appended when the history
      has one.
    path: where to save the PNG, if anywhere.
    dpi: pixels per inch; the PNG is 8x5 inches (twin) or 12x4.5 (panels),
      4 inches wider with the learning-rate panel.

  Returns:
    The Figure.
  """
  if style not in _STYLES:
    raise ValueError(f"unknown style {style!r}; valid styles: {_STYLES}")
  raw = load_history(history)
  with_data_loss = _data_loss_differs(raw)
  h = _smoothed(raw, smooth)
  with_lr = show_lr and _series(h, "lr") is not None
  width, height = (8.0, 5.0) if style == "twin" else (12.0, 4.5)
  n_main = 1 if style == "twin" else 2
  fig = new_figure(width + 4.0 * with_lr, height, dpi)
  axes = fig.subplots(1, n_main + with_lr, squeeze=False,
                      width_ratios=[width / n_main] * n_main + [4.0] * with_lr)[0]
  if style == "twin":
    ax = axes[0]
    # Train in C0, validation in C1, as pandas draws lecture 002's DataFrame.
    # The training part in evaluation mode in C2; data_loss dotted beside loss.
    lines = _plot(ax, h, "accuracy", color="C0", label="accuracy")
    lines += _plot(ax, h, "val_accuracy", color="C1", label="val_accuracy")
    lines += _plot(ax, h, "train_eval_accuracy", color="C2", label="train_eval_accuracy")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    twin = ax.twinx()
    lines += _plot(twin, h, "loss", color="C0", linestyle="--", label="loss")
    if with_data_loss:
      lines += _plot(twin, h, "data_loss", color="C0", linestyle=":", label="data_loss")
    lines += _plot(twin, h, "val_loss", color="C1", linestyle="--", label="val_loss")
    lines += _plot(twin, h, "train_eval_loss", color="C2", linestyle="--",
                   label="train_eval_loss")
    twin.set_ylabel("loss")
    ax.legend(lines, [line.get_label() for line in lines], loc="center right")
  else:
    for ax, metric in zip(axes, ("accuracy", "loss")):
      _plot(ax, h, metric, "bo", label=f"training {metric}")
      if metric == "loss" and with_data_loss:
        _plot(ax, h, "data_loss", "o", color="b", markerfacecolor="none",
              label="training data loss (no penalty)")
      _plot(ax, h, f"val_{metric}", "b-", label=f"validation {metric}")
      _plot(ax, h, f"train_eval_{metric}", "g--", label=f"training {metric} (eval mode)")
      ax.set_title(f"Training and validation {metric}")
      ax.set_xlabel("epoch")
      ax.set_ylabel(metric)
      if ax.lines:
        ax.legend()
  if with_lr:
    _plot(axes[-1], h, "lr", color="C2")
    axes[-1].set_yscale("log")
    axes[-1].set_xlabel("epoch")
    axes[-1].set_ylabel("learning rate")
  for ax in fig.axes:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
  test = h.get("test_accuracy")
  if isinstance(test, float):
    title = f"{title + ': ' if title else ''}test accuracy {test:.4f}"
  if title:
    fig.suptitle(title)
  return finish(fig, path)


def plot_histories(runs: Mapping[str, HistoryLike], *,
                   metrics: Sequence[str] = ("accuracy", "loss"),
                   smooth: float | None = None, title: str | None = None,
                   path: PathLike | None = None, dpi: int = 100) -> Figure:
  """Several runs overlaid, one panel per metric, to compare experiments.

  Each run has its own colour; validation is the solid line, training the
  dashed one (lecture 002 compares the small CNN with and without BatchNorm
  this way). Where a run has them, the training part in evaluation mode
  (``train_eval_<metric>``) is dotted and, in the loss panel, ``data_loss``
  (where it differs from ``loss``) dash-dotted.

  Args:
    runs: run name -> anything :func:`load_history` takes (a dict, a workdir).
    metrics: base metric names ('accuracy', 'loss', 'lr'); each panel draws
      ``metric``, ``val_metric`` and ``train_eval_metric`` where present.
    smooth: draw every metric but 'lr' smoothed by :func:`smooth_curve` with
      this factor (lecture 003 uses 0.8); None or 0 draws the raw values.
    title: figure title.
    path: where to save the PNG, if anywhere.
    dpi: pixels per inch; the PNG is (5 * len(metrics)) x 4.5 inches.

  Returns:
    The Figure.
  """
  if not runs:
    raise ValueError("runs is empty: give {'name': history_or_workdir, ...}")
  if not metrics:
    raise ValueError("metrics is empty: give e.g. ('accuracy', 'loss')")
  raw = {name: load_history(source) for name, source in runs.items()}
  with_data_loss = {name: _data_loss_differs(h) for name, h in raw.items()}
  histories = {name: _smoothed(h, smooth) for name, h in raw.items()}
  available = sorted({k.removeprefix("val_") for h in histories.values() for k in h
                       if _series(h, k) is not None})
  for metric in metrics:
    if not any(_series(h, k) is not None for h in histories.values()
               for k in (metric, f"val_{metric}", f"train_eval_{metric}")):
      raise ValueError(f"no run has metric {metric!r}; available metrics: {available}")
  fig = new_figure(5.0 * len(metrics), 4.5, dpi)
  axes = fig.subplots(1, len(metrics), squeeze=False)[0]
  for ax, metric in zip(axes, metrics):
    for i, (name, h) in enumerate(histories.items()):
      color = f"C{i % 10}"
      _plot(ax, h, f"val_{metric}", color=color, label=f"{name} validation")
      _plot(ax, h, metric, color=color, linestyle="--", label=f"{name} train")
      _plot(ax, h, f"train_eval_{metric}", color=color, linestyle=":",
            label=f"{name} train (eval mode)")
      if metric == "loss" and with_data_loss[name]:
        _plot(ax, h, "data_loss", color=color, linestyle="-.", label=f"{name} train data loss")
    if metric == "lr":
      ax.set_yscale("log")
    ax.set_title(metric)
    ax.set_xlabel("epoch")
    ax.legend(fontsize="small")
  for ax in fig.axes:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
  if title:
    fig.suptitle(title)
  return finish(fig, path)
