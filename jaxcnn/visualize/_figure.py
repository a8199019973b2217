"""Headless figures: Agg canvases, no pyplot state, PNGs of a known pixel size."""

from __future__ import annotations

import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PathLike = str | os.PathLike


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
  """A Figure drawn by Agg, whatever backend pyplot would pick.

  Building the Figure directly (not through ``pyplot``) keeps no global state,
  needs no display, and leaks no figures across calls in long sessions. The
  size is snapped to whole pixels, so the PNG is ``round(width * dpi)`` by
  ``round(height * dpi)`` pixels.
  """
  # Agg truncates size * dpi to int; a hair over the whole pixel count keeps
  # float error (e.g. 0.29 * 100 = 28.999...) from losing a pixel.
  size = [(round(v * dpi) + 1e-3) / dpi for v in (width, height)]
  fig = Figure(figsize=size, dpi=dpi, layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def finish(fig: Figure, path: PathLike | None) -> Figure:
  """Saves ``fig`` as a PNG at ``path`` (parents created) when given; returns it.

  The PNG is ``figsize * dpi`` pixels: no 'tight' bounding box, so callers
  know the size of what they get.
  """
  if path is not None:
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
      os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi, format="png")
  return fig
