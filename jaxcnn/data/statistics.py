"""Normalization statistics: the mean and std that ``(x / 255 - mean) / std`` uses.

'rescale' is mean 0, std 1; 'none' is mean 0, std 1/255 (raw x).
'standardize' uses per-channel and 'standardize_pixel' per-pixel statistics
of the training part only (never validation or test, lecture 000): the
population std (numpy's ``.std()``, as in the lectures), where a constant
pixel (std 0) is divided by 1. Moments are float64 and merged over chunks
and processes, so no process holds more than a chunk at a time.

'minmax' (per channel) and 'minmax_pixel' (per pixel: lecture 000's "the
minimum and maximum of each dimension become -1 and 1") are the same
formula with ``mean = (min + max) / 2`` and ``std = (max - min) / 2`` of the
training part, so its minimum maps to -1 and its maximum to 1 (validation
and test values may fall outside); a constant pixel is divided by 1 (it
maps to 0).
"""

from __future__ import annotations

from typing import Callable, Iterator

import jax
import numpy as np

Moments = tuple[float, np.ndarray, np.ndarray]  # (count, mean, sum of squared deviations)


def merge(a: Moments, b: Moments) -> Moments:
  """Merges two (count, mean, M2) moments (Chan et al.'s parallel variance)."""
  (na, ma, sa), (nb, mb, sb) = a, b
  n = na + nb
  if nb == 0:
    return a
  d = mb - ma
  return n, ma + d * (nb / n), sa + sb + d * d * (na * nb / n)


def moments(chunks: Iterator[np.ndarray], per_pixel: bool) -> Moments:
  """Moments of uint8 image chunks [n, H, W, C] scaled to [0, 1].

  Args:
    chunks: the images, in any number of chunks.
    per_pixel: moments per (H, W, C) position; else per channel.
  """
  total = None
  axes = (0,) if per_pixel else (0, 1, 2)
  for chunk in chunks:
    x = chunk.astype(np.float64) / 255.0
    n = float(np.prod([x.shape[a] for a in axes]))
    mean = x.mean(axis=axes)
    m = (n, mean, ((x - mean) ** 2).sum(axis=axes))
    total = m if total is None else merge(total, m)
  return total


def extremes(chunks: Iterator[np.ndarray], per_pixel: bool) -> tuple[np.ndarray, np.ndarray]:
  """The minimum and maximum of uint8 image chunks [n, H, W, C] scaled to [0, 1].

  Args:
    chunks: the images, in any number of chunks.
    per_pixel: per (H, W, C) position; else per channel.
  """
  low = high = None
  axes = (0,) if per_pixel else (0, 1, 2)
  for chunk in chunks:
    if not len(chunk):
      continue
    lo = chunk.min(axis=axes).astype(np.float64) / 255.0
    hi = chunk.max(axis=axes).astype(np.float64) / 255.0
    low = lo if low is None else np.minimum(low, lo)
    high = hi if high is None else np.maximum(high, hi)
  return low, high


def merge_extremes(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The minimum and maximum over all processes, from each process's own."""
  if jax.process_count() == 1:
    return low, high
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  g = multihost_utils.process_allgather((low.astype(np.float32), high.astype(np.float32)))
  return (np.asarray(g[0], np.float64).min(axis=0),
          np.asarray(g[1], np.float64).max(axis=0))


def merge_processes(local: Moments) -> Moments:
  """The moments of all processes, from each process's own."""
  if jax.process_count() == 1:
    return local
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  n, mean, m2 = local
  g = multihost_utils.process_allgather(
      (np.float32(n), mean.astype(np.float32), m2.astype(np.float32)))
  total = (0.0, np.zeros_like(mean), np.zeros_like(m2))
  for p in range(jax.process_count()):
    total = merge(total, (float(g[0][p]), g[1][p].astype(np.float64),
                          g[2][p].astype(np.float64)))
  return total


def compute(mode: str, chunks: Callable[[], Iterator[np.ndarray]], channels: int,
            tile: int, gather: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """The ``(mean, std)`` of normalization ``mode``, float32.

  Args:
    mode: one of ``config.NORMALIZATIONS``.
    chunks: returns the training part's uint8 images in chunks; called only
      by the 'standardize' modes.
    channels: channels of the stored images.
    tile: times the channels are repeated (3 for grayscale to RGB).
    gather: merge the moments of all processes (each holds a share of the
      training part); False when every process holds all of it.

  Returns:
    ``(mean, std)`` shaped ``[channels * tile]`` (the '_pixel' modes:
    ``[H, W, channels * tile]``).
  """
  if mode == "rescale":
    return np.zeros(channels * tile, np.float32), np.ones(channels * tile, np.float32)
  if mode == "none":
    return (np.zeros(channels * tile, np.float32),
            np.full(channels * tile, 1 / 255, np.float32))
  per_pixel = mode.endswith("_pixel")
  if mode.startswith("minmax"):
    low, high = extremes(chunks(), per_pixel=per_pixel)
    low, high = merge_extremes(low, high) if gather else (low, high)
    mean, std = (low + high) / 2, (high - low) / 2
  else:
    total = moments(chunks(), per_pixel=per_pixel)
    n, mean, m2 = merge_processes(total) if gather else total
    std = np.sqrt(m2 / n)  # population std, as numpy's .std() in the lectures
  std = np.where(std == 0, 1.0, std)  # a constant pixel carries no signal
  reps = (1,) * (mean.ndim - 1) + (tile,)
  return (np.tile(mean, reps).astype(np.float32),
          np.tile(std, reps).astype(np.float32))
