"""One image under several random augmentations (lecture 003's figure)."""

from __future__ import annotations

import dataclasses
import math
import textwrap
from typing import Any, Mapping

import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from jaxcnn.data import augment
from jaxcnn.visualize._figure import PathLike, finish, new_figure

PANEL_INCHES = 2.5  # each panel is 250 x 250 pixels at the default 100 dpi


def _grid(panels: int) -> tuple[int, int]:
  """(rows, cols) of a near-square grid holding ``panels`` panels."""
  cols = math.ceil(math.sqrt(panels))
  return math.ceil(panels / cols), cols


def _describe(config: augment.AugmentConfig, raw: Mapping[str, Any] | None) -> str:
  """The non-default settings, as the user wrote them."""
  if raw is None or isinstance(raw, augment.AugmentConfig):
    return str(config)
  items = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw)
  shown = [f"{k}={v!r}" for k, v in items.items() if augment.DEFAULTS.get(k) != v]
  return ", ".join(shown) or "no augmentation"


def plot_augmentations(image: Any, aug_config: Mapping[str, Any] | augment.AugmentConfig,
                       n: int = 8, seed: int = 0, path: PathLike | None = None) -> Figure:
  """Shows ``image`` and ``n`` random augmentations of it.

  Panel k uses the stateless seed ``(seed, k)``, the form the train pipeline
  passes per example, so the figure is reproducible. ``rescale`` is left out
  so the panels show the geometry in the image's own [0, 255] range.

  Args:
    image: [H, W], [H, W, 1] or [H, W, 3] in [0, 255] (uint8 or float).
    aug_config: a dict or ConfigDict for :func:`jaxcnn.data.augment.build`.
    n: number of augmented panels (the original is shown first).
    seed: the first half of each panel's seed.
    path: where to save a PNG, if given; it is ``cols * 250`` by
      ``rows * 250`` pixels for a near-square grid of ``n + 1`` panels.

  Returns:
    The matplotlib Figure (Agg, headless).

  Raises:
    ConfigError: a bad ``aug_config``.
    ValueError: an image that is not [H, W], [H, W, 1] or [H, W, 3], or n < 1.
  """
  config = augment.parse_config(aug_config)
  if n < 1:
    raise ValueError(f"n must be >= 1 augmented panels, got {n}")
  pixels = np.asarray(image, dtype=np.float32)
  if pixels.ndim == 2:
    pixels = pixels[..., None]
  if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3):
    raise ValueError(f"image must be [H, W], [H, W, 1] or [H, W, 3], got {pixels.shape}")
  fn = augment.build(dataclasses.replace(config, rescale=None))
  panels = [pixels] + [fn(pixels, tf.constant([seed, k], tf.int64)).numpy()
                       for k in range(n)]

  rows, cols = _grid(n + 1)
  fig = new_figure(cols * PANEL_INCHES, rows * PANEL_INCHES)
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  for k, ax in enumerate(axes):
    ax.set_axis_off()
    if k > n:
      continue
    shown = np.clip(panels[k], 0, 255) / 255
    if shown.shape[-1] == 1:
      ax.imshow(shown[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
      ax.imshow(shown)
    ax.set_title("original" if k == 0 else f"seed ({seed}, {k - 1})", fontsize=9)
  fig.suptitle(textwrap.fill(_describe(config, aug_config), width=30 * cols), fontsize=9)
  return finish(fig, path)
