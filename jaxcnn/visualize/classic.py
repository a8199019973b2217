"""Figures of the classic kernels in :mod:`jaxcnn.kernels` (lectures 000, 002, 003)."""

from __future__ import annotations

from typing import Collection, Mapping

import numpy as np
from matplotlib.figure import Figure

from jaxcnn import kernels
from jaxcnn.visualize._figure import PathLike, finish, new_figure


def _displayable(image: np.ndarray, signed: bool) -> np.ndarray:
  """A filtered image in [0, 1] for imshow.

  Unsigned: clipped to 0..255, as an image editor (GIMP, lecture 003's
  source) shows a convolution; edge kernels then give bright edges on black.
  Signed: black = negative, gray = 0, white = positive (lecture 003's
  "Convolución" slide), scaled by the largest magnitude; lecture 002 shows
  its gradient image this way.
  """
  image = np.asarray(image, np.float32)
  if not signed:
    return np.clip(image, 0, 255) / 255.0
  return 0.5 + 0.5 * image / max(float(np.abs(image).max()), 1e-12)


def plot_smoothing(signal: np.ndarray | None = None, kernel: np.ndarray | None = None, *,
                   path: PathLike | None = None, dpi: int = 100) -> Figure:
  """Lecture 002's 1-D example: the Gaussian filter, and a random walk before and after.

  Args:
    signal: a 1-D signal; default :func:`jaxcnn.kernels.random_walk` (seed 2).
    kernel: a 1-D kernel; default :func:`jaxcnn.kernels.gaussian_1d` (15 taps).
    path: where to save the PNG (12x4 inches), if anywhere.
    dpi: pixels per inch.

  Returns:
    The Figure.
  """
  signal = kernels.random_walk() if signal is None else np.asarray(signal)
  kernel = kernels.gaussian_1d() if kernel is None else np.asarray(kernel)
  smoothed = np.asarray(kernels.convolve(signal, kernel))
  fig = new_figure(12.0, 4.0, dpi)
  ax_k, ax_s = fig.subplots(1, 2, width_ratios=[1, 2])
  ax_k.plot(kernel, "o-", color="C1")
  ax_k.set_title(f"filter ({kernel.size} taps, sum {kernel.sum():.3g})")
  ax_s.plot(signal, color="C0", label="signal")
  ax_s.plot(smoothed, color="C1", label="convolved with the filter")
  ax_s.set_title("random walk, smoothed")
  ax_s.legend()
  return finish(fig, path)


def plot_filtered(image: np.ndarray, filters: Mapping[str, np.ndarray], *,
                  signed: Collection[str] = (), mode: str = "reflect",
                  tile_inches: float = 2.5,
                  path: PathLike | None = None, dpi: int = 100) -> Figure:
  """The original and its convolution with each kernel, side by side, kernels above.

  Args:
    image: (H, W) gray or (H, W, 3) RGB, values 0..255.
    filters: title -> 2-D kernel (applied to each channel).
    signed: titles whose results are drawn signed (gray = 0) rather than
      clipped to 0..255.
    mode: boundary mode of :func:`jaxcnn.kernels.convolve`.
    tile_inches: width of each column.
    path: where to save the PNG, if anywhere.
    dpi: pixels per inch.

  Returns:
    The Figure: row 1 the kernels, row 2 the images.
  """
  image = np.asarray(image, np.float32)
  if image.ndim not in (2, 3):
    raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
  if not filters:
    raise ValueError("filters is empty: give {'title': kernel, ...}")
  cols = 1 + len(filters)
  aspect = image.shape[0] / image.shape[1]
  unknown = set(signed) - set(filters)
  if unknown:
    raise ValueError(f"signed names {sorted(unknown)} are not in filters {list(filters)}")
  fig = new_figure(tile_inches * cols, tile_inches * (0.6 + aspect) + 0.4, dpi)
  axes = fig.subplots(2, cols, height_ratios=[0.6, aspect])
  cmap = "gray" if image.ndim == 2 else None
  axes[0, 0].set_visible(False)
  axes[1, 0].imshow(image / 255.0, cmap=cmap, vmin=0, vmax=1)
  axes[1, 0].set_title("original", fontsize=9)
  for col, (title, kernel) in enumerate(filters.items(), start=1):
    kernel = np.asarray(kernel, np.float32)
    axes[0, col].imshow(kernel, cmap="viridis")
    axes[0, col].set_title(f"{title} {kernel.shape[0]}x{kernel.shape[1]}", fontsize=9)
    out = np.asarray(kernels.convolve(image, kernel, mode=mode))
    axes[1, col].imshow(_displayable(out, title in signed), cmap=cmap, vmin=0, vmax=1)
  for ax in axes.flat:
    ax.set_xticks(())
    ax.set_yticks(())
  return finish(fig, path)


def plot_classic_kernels(image: np.ndarray | None = None, *, gray: bool = False,
                         path: PathLike | None = None, dpi: int = 100) -> Figure:
  """Lecture 002's Gaussian blur and gradient and lecture 003's GIMP kernels on a photo.

  Args:
    image: (H, W) or (H, W, 3) in 0..255; default scikit-learn's china.jpg.
    gray: convert to gray first (lecture 002 finds edges on the gray image).
    path: where to save the PNG, if anywhere.
    dpi: pixels per inch.

  Returns:
    The Figure of :func:`plot_filtered` with 'gaussian', 'gradient' (drawn
    signed) and the five kernels of ``jaxcnn.kernels.FILTERS``.
  """
  if image is None:
    image = kernels.sample_image(gray=gray)
  elif gray and np.ndim(image) == 3:
    image = np.asarray(image, np.float32).mean(axis=2)
  filters = {"gaussian": kernels.gaussian_2d(), "gradient": kernels.gradient_2d()}
  filters.update({name: kernels.classic_filter(name) for name in kernels.FILTERS})
  return plot_filtered(image, filters, signed=("gradient",), path=path, dpi=dpi)


def plot_pattern_detection(*, path: PathLike | None = None, dpi: int = 100) -> Figure:
  """Lecture 000's worked example: the curve filter on the rat's back (6600) and head (0).

  Returns:
    The Figure: the filter and the two patches, each value written in its
    cell, with the sum of products in the titles.
  """
  ex = kernels.pattern_detection_example()
  fig = new_figure(12.0, 4.6, dpi)
  axes = fig.subplots(1, 3, subplot_kw={"xticks": (), "yticks": ()})
  panels = (
      ("curve filter", ex.filter, None),
      ("rat's back", ex.back_patch, (ex.back_products, ex.back_score)),
      ("rat's head", ex.head_patch, (ex.head_products, ex.head_score)),
  )
  for ax, (title, values, products) in zip(axes, panels):
    ax.imshow(values, cmap="Greys", vmin=0, vmax=60)
    for (i, j), v in np.ndenumerate(values):
      # Outline the cells under the filter's weights: they make the score.
      under = ex.filter[i, j] != 0
      ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=9,
              color="C3" if under and products else ("white" if v > 30 else "black"),
              fontweight="bold" if under else "normal")
    if products:
      terms, score = products
      text = " + ".join(f"{w:g}·{x:g}" for w, x in terms)
      ax.set_title(f"{title}\n{text} = {score:g}", fontsize=8)
    else:
      ax.set_title(title, fontsize=10)
  return finish(fig, path)
