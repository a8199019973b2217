"""The learned kernels of a conv layer, drawn as lecture 002 draws them."""

from __future__ import annotations

import math
from typing import Any, Mapping

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from jaxcnn.visualize._figure import PathLike, finish, new_figure
from jaxcnn.visualize._tree import lookup

_MODES = ("auto", "channels", "pairs")


def _is_conv(node: Mapping[str, Any]) -> bool:
  kernel = node.get("kernel")
  return kernel is not None and not isinstance(kernel, Mapping) and np.ndim(kernel) == 4


def conv_kernel(variables: Mapping[str, Any], layer_name: str) -> np.ndarray:
  """The HWIO kernel of a 2-D conv layer.

  Args:
    variables: ``{'params': ...}`` as returned by ``model.init`` (or the params
      alone).
    layer_name: Keras-style name ('conv2d', 'conv2d_1', 'block1_conv1') or a
      full path ('vgg16/block1_conv1').

  Returns:
    float array of shape (height, width, in_channels, out_channels).

  Raises:
    ValueError: no conv layer has that name (the message lists those that do).
  """
  params = variables.get("params", variables)
  return np.asarray(lookup(params, layer_name, _is_conv, "conv layer")["kernel"])


def _mosaic(tiles: np.ndarray, fill: float, gap: int = 1) -> np.ndarray:
  """(rows, cols, h, w[, 3]) tiles -> one image, tiles ``gap`` pixels apart."""
  rows, cols, h, w = tiles.shape[:4]
  out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, *tiles.shape[4:]), fill,
                np.float32)
  for r in range(rows):
    for c in range(cols):
      out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[r, c]
  return out


def _label_tiles(axis, count: int, size: int, gap: int = 1) -> None:
  """Ticks at tile centres, labelled with channel indices (every k-th when many)."""
  every = max(1, count // 16)
  centres = [i * (size + gap) + (size - 1) / 2 for i in range(0, count, every)]
  axis.set_ticks(centres, [str(i) for i in range(0, count, every)], fontsize=7)


def _tiles(kernel: np.ndarray, mode: str) -> tuple[np.ndarray, int, int, bool]:
  """The kernel's tiles ``(rows, cols, h, w[, 3])``, ``rows``, ``cols`` and RGB-ness.

  'channels' puts one tile per output channel, 16 a row (NaN pads the last
  row); 'pairs' one per (input, output) pair.
  """
  kh, kw, n_in, n_out = kernel.shape
  rgb = mode == "channels" and n_in == 3
  if mode != "channels":
    return np.transpose(kernel, (2, 3, 0, 1)), n_in, n_out, rgb  # (in, out, h, w)
  cols = min(n_out, 16)
  rows = math.ceil(n_out / cols)
  tiles = np.full((rows * cols, kh, kw, 3 if rgb else 1), np.nan, np.float32)
  tiles[:n_out] = np.moveaxis(kernel, -1, 0)
  tiles = tiles.reshape(rows, cols, kh, kw, -1)
  return (tiles if rgb else tiles[..., 0]), rows, cols, rgb


def _label_axes(ax, mode: str, rows: int, cols: int, kh: int, kw: int) -> None:
  """Channel indices on the axes: both in 'pairs', along one row in 'channels'."""
  if mode == "pairs":
    _label_tiles(ax.xaxis, cols, kw)
    _label_tiles(ax.yaxis, rows, kh)
    ax.set_xlabel("output channel")
    ax.set_ylabel("input channel")
    return
  if rows == 1:
    _label_tiles(ax.xaxis, cols, kw)
  else:
    ax.set_xticks(())
  ax.set_yticks(())


def plot_filters(variables: Mapping[str, Any], layer_name: str, *, mode: str = "auto",
                 max_inputs: int = 16, max_outputs: int = 32, cmap: str = "viridis",
                 tile_inches: float = 0.45, path: PathLike | None = None,
                 dpi: int = 100) -> Figure:
  """The kernels of a conv layer as a grid of small images.

  Two layouts, as in lecture 002:

  * 'channels': one tile per output channel (a first layer: 1 input channel
    drawn with ``cmap``, 3 drawn as RGB), 16 tiles a row.
  * 'pairs': one tile per (input, output) channel pair, rows = input
    channels, columns = output channels (a deeper layer: each output map sums
    the row of kernels applied to the previous layer's maps).

  All tiles share one vmin/vmax, so their weights compare. The grid is one
  image (white lines between tiles), not one Axes per tile, so the drawing
  time does not grow with the number of tiles.

  Args:
    variables: ``{'params': ...}`` (see :func:`conv_kernel`).
    layer_name: the conv layer's Keras-style name or full path.
    mode: 'auto' ('channels' when the layer has 1 or 3 input channels, else
      'pairs'), 'channels' or 'pairs'.
    max_inputs: at most this many input channels (rows) in 'pairs'.
    max_outputs: at most this many output channels (tiles or columns).
    cmap: colormap of single-channel tiles.
    tile_inches: size of one tile.
    path: where to save the PNG, if anywhere.
    dpi: pixels per inch.

  Returns:
    The Figure.
  """
  if mode not in _MODES:
    raise ValueError(f"unknown mode {mode!r}; valid modes: {_MODES}")
  kernel = conv_kernel(variables, layer_name).astype(np.float32)
  full_shape = kernel.shape
  kh, kw, n_in, n_out = full_shape
  if mode == "auto":
    mode = "channels" if n_in in (1, 3) else "pairs"
  if mode == "channels" and n_in not in (1, 3):
    raise ValueError(f"mode='channels' draws 1 (gray) or 3 (RGB) input channels; "
                     f"{layer_name!r} has {n_in}: use mode='pairs'")
  shown_out = min(n_out, max_outputs)
  shown_in = n_in if mode == "channels" else min(n_in, max_inputs)
  kernel = kernel[:, :, :shown_in, :shown_out]
  vmin, vmax = float(kernel.min()), float(kernel.max())
  tiles, rows, cols, rgb = _tiles(kernel, mode)
  if rgb:  # one scale for the whole layer keeps the colours comparable
    tiles = (tiles - vmin) / max(vmax - vmin, 1e-12)
  grid = _mosaic(np.nan_to_num(tiles, nan=1.0) if rgb else tiles, fill=1.0 if rgb else np.nan)
  fig = new_figure(tile_inches * cols + 1.4, tile_inches * rows + 1.0, dpi)
  ax = fig.add_subplot()
  colormap = matplotlib.colormaps[cmap].with_extremes(bad="white")
  image = ax.imshow(grid, cmap=None if rgb else colormap, vmin=vmin, vmax=vmax,
                    interpolation="nearest")
  _label_axes(ax, mode, rows, cols, kh, kw)
  if not rgb:
    fig.colorbar(image, ax=ax, shrink=0.8, fraction=0.05)
  shape = "x".join(str(s) for s in full_shape)
  clipped = ", first shown" if (shown_in, shown_out) != (n_in, n_out) else ""
  ax.set_title(f"{layer_name} kernels (HWIO {shape}{clipped})", fontsize=10)
  return finish(fig, path)
