"""Depth diagnostics' figure: std per layer of activations and gradients (lecture 004)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from jaxcnn.visualize._figure import PathLike, finish, new_figure

_PANELS = (("activation_std", "activations (output of each layer)"),
           ("activation_grad_std", "gradient w.r.t. each layer's output"),
           ("kernel_grad_std", "gradient w.r.t. each layer's kernel"))


def plot_depth_statistics(runs: Mapping[str, Mapping[str, Any]], *,
                          title: str | None = None, path: PathLike | None = None,
                          dpi: int = 100) -> Figure:
  """Std per layer (input side left) of activations and gradients, one line per run.

  Args:
    runs: ``{label: statistics}``, each as ``jaxcnn.diagnostics.depth_statistics``
      returns (``layers`` and the ``*_std`` arrays); e.g. one per rung of a
      ladder, or one per epoch of a run.
    title: the figure's title.
    path: where to save the PNG (15x4.5 inches), if anywhere.
    dpi: pixels per inch.

  Returns:
    The Figure. Activation std is on a linear axis (SELU's 1 shows as a
    line), the gradients' on a log axis (vanishing is orders of magnitude).
  """
  fig = new_figure(15.0, 4.5, dpi)
  axes = fig.subplots(1, len(_PANELS))
  for ax, (key, label) in zip(axes, _PANELS):
    for name, stats in runs.items():
      values = np.asarray(stats[key], float)
      ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3,
              label=name)
    ax.set_xlabel("layer (1 = nearest the input)")
    ax.set_ylabel("std")
    ax.set_title(label, fontsize=10)
    if key != "activation_std":
      ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
  for ax in axes:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  axes[0].axhline(1.0, color="0.5", linestyle=":", linewidth=1)
  axes[0].legend(fontsize=8)
  if title:
    fig.suptitle(title)
  return finish(fig, path)
