"""The learning-rate range test's figure: loss against rate, log x, suggestion marked."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from jaxcnn.visualize._figure import PathLike, finish, new_figure


def plot_lr_find(result: Mapping[str, Any], *, path: PathLike | None = None,
                 dpi: int = 100) -> Figure:
  """Loss (raw and smoothed) against learning rate, with the suggestion marked.

  Args:
    result: ``lr_find.json``'s content (``jaxcnn.lr_find.Sweep.to_json``):
      ``rates``, ``losses``, ``smoothed_losses`` (None for non-finite),
      ``minimum`` and ``suggestion``.
    path: where to save the PNG (8x5 inches), if anywhere.
    dpi: pixels per inch.

  Returns:
    The Figure.
  """
  rates = np.asarray(result["rates"], float)
  as_array = lambda xs: np.asarray([np.nan if x is None else x for x in xs], float)
  losses, smoothed = as_array(result["losses"]), as_array(result["smoothed_losses"])
  fig = new_figure(8.0, 5.0, dpi)
  ax = fig.subplots()
  ax.plot(rates, losses, color="0.75", linewidth=0.8, label="loss per step")
  ax.plot(rates, smoothed, color="C0", label="smoothed loss")
  turn, suggestion = result["minimum"]["rate"], result["suggestion"]
  ax.axvline(turn, color="C3", linestyle=":",
             label=f"minimum smoothed loss: {turn:.3g}")
  ax.axvline(suggestion, color="C2", linestyle="--",
             label=f"suggested rate (/10): {suggestion:.3g}")
  finite = smoothed[np.isfinite(smoothed)]
  if finite.size:  # The blow-up would squash the curve: show up to 4x the start.
    top = max(float(finite[0]), float(np.nanmin(finite))) * 4
    ax.set_ylim(max(0.0, float(np.nanmin(finite)) * 0.9 - 0.05), top)
  ax.set_xscale("log")
  ax.set_xlabel("learning rate")
  ax.set_ylabel("training loss")
  ax.set_title("Learning-rate range test")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend()
  return finish(fig, path)
