"""Filter patterns: the input a filter responds to most (lecture 003).

Gradient ascent on the input image maximizes the mean activation of filter k
of a named layer: 40 steps of size 1 along the gradient normalized by its RMS,
from gray noise (``random * 20 + 128`` for a model fed 0..255 pixels). The
loop runs inside one jit-compiled ``lax.fori_loop``, and the filters of a grid
are ascended together under ``vmap``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from jaxcnn.visualize._figure import PathLike, finish, new_figure
from jaxcnn.visualize.activations import layer_outputs


class FilterPatterns(NamedTuple):
  """Result of :func:`filter_patterns`; arrays are indexed like ``filters``."""
  images: np.ndarray    # (K, H, W, C) the ascended inputs, in the model's input scale
  filters: np.ndarray   # (K,) filter indices
  initial: np.ndarray   # (K,) mean activation of each filter on its starting noise
  final: np.ndarray     # (K,) ... on the pattern


def deprocess_image(x: np.ndarray | jax.Array) -> np.ndarray:
  """Lecture 003's ``deprocess_image``: an ascended input to a viewable uint8 image.

  Centres on 0 with std 0.1, shifts to 0.5, clips to [0, 1] and scales to 0..255.
  """
  x = np.array(x, np.float64)
  x -= x.mean()
  x /= x.std() + 1e-5
  x *= 0.1
  x += 0.5
  x = np.clip(x, 0, 1)
  x *= 255
  return np.clip(x, 0, 255).astype(np.uint8)


def _num_filters(model, variables, layer_name, input_shape) -> int:
  shape = jax.eval_shape(
      lambda v, x: layer_outputs(model, v, x, [layer_name])[layer_name],
      variables, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)).shape
  return shape[-1]


def _check_ranges(input_shape: Sequence[int],
                  value_range: tuple[float, float]) -> tuple[tuple[int, ...], float, float]:
  """Validated ``(input_shape, low, high)``."""
  input_shape = tuple(int(s) for s in input_shape)
  if len(input_shape) != 3:
    raise ValueError(f"input_shape must be (H, W, C), got {input_shape}")
  low, high = (float(v) for v in value_range)
  if not high > low:
    raise ValueError(f"value_range must be (value of pixel 0, value of pixel 255) with "
                     f"the first smaller, got {value_range}")
  return input_shape, low, high


def _filter_array(model, variables, layer_name: str, input_shape: tuple[int, ...],
                  filter_indices: Sequence[int] | None) -> np.ndarray:
  """The filters to ascend as int32 indices; default the first 64 (all when fewer)."""
  n = _num_filters(model, variables, layer_name, input_shape)
  if filter_indices is None:
    filter_indices = range(min(64, n))
  filters = np.asarray(list(filter_indices), np.int32)
  if filters.size == 0 or filters.min() < 0 or filters.max() >= n:
    raise ValueError(f"filter indices must be in [0, {n}) for layer {layer_name!r} "
                     f"({n} filters), got {filters.tolist()}")
  return filters


def _starting_images(init: np.ndarray | jax.Array | None, count: int,
                     input_shape: tuple[int, ...], low: float, scale: float,
                     seed: int) -> jax.Array:
  """``(count, H, W, C)`` starting inputs: ``init``, or the lecture's gray noise."""
  if init is None:
    # Gray noise: the lecture's random * 20 + 128 in pixels, mapped to value_range.
    noise = jax.random.uniform(jax.random.key(seed), (count, *input_shape))
    return low + (noise * 20.0 + 128.0) * scale
  x0s = jnp.asarray(init, jnp.float32)
  if x0s.shape == input_shape:
    x0s = jnp.broadcast_to(x0s, (count, *input_shape))
  if x0s.shape != (count, *input_shape):
    raise ValueError(f"init must have shape {input_shape} or {(count, *input_shape)}, "
                     f"got {x0s.shape}")
  return x0s


def _ascent_program(model, layer_name: str, *, steps: int, step: float,
                    batch_size: int | None):
  """``run(variables, x0s, filters) -> (images, initial, final)``, jit-compiled.

  Each filter's ascent is one ``lax.fori_loop``; the filters run together
  under ``vmap`` (or ``lax.map`` over ``batch_size`` at a time).
  """

  def mean_activation(v, x, k):
    act = layer_outputs(model, v, x[None], [layer_name])[layer_name]
    return jnp.mean(act[..., k])

  def ascend(v, x0, k):
    grad = jax.grad(mean_activation, argnums=1)

    def update(_, x):
      g = grad(v, x, k)
      # The RMS normalization makes each step the same size whatever the
      # gradient's scale, so a fixed step size works for any layer.
      g = g / (jnp.sqrt(jnp.mean(jnp.square(g))) + 1e-5)
      return x + step * g

    x = jax.lax.fori_loop(0, steps, update, x0)
    return x, mean_activation(v, x0, k), mean_activation(v, x, k)

  @jax.jit
  def run(v, x0s, ks):
    one = lambda xk: ascend(v, *xk)  # noqa: E731
    if batch_size is None:
      return jax.vmap(one)((x0s, ks))
    return jax.lax.map(one, (x0s, ks), batch_size=batch_size)

  return run


def filter_patterns(model: nn.Module, variables: Mapping[str, Any], layer_name: str,
                    filter_indices: Sequence[int] | None = None, *,
                    input_shape: Sequence[int], steps: int = 40, step_size: float = 1.0,
                    value_range: tuple[float, float] = (0.0, 255.0), seed: int = 0,
                    init: np.ndarray | jax.Array | None = None,
                    batch_size: int | None = None) -> FilterPatterns:
  """Gradient ascent on the input for each filter, all filters at once.

  For each filter k: ``loss = mean(activation[..., k])``; ``g = grad(loss)``;
  ``g /= sqrt(mean(g**2)) + 1e-5``; ``x += step * g``, ``steps`` times.

  Args:
    model: a linen module called as ``model.apply(variables, x, train=False)``.
    variables: its variables.
    layer_name: Keras-style name (or full path) of the layer whose filters to
      maximize; a conv layer, or any layer (e.g. a dense unit) with channels last.
    filter_indices: which filters; default the first 64 (all when fewer).
    input_shape: (H, W, C) of the pattern (a fully convolutional model takes
      any size; a model with dense layers needs its training size).
    steps: ascent steps (the lecture's 40).
    step_size: step in 0..255 pixel units (the lecture's 1).
    value_range: the model's input values for pixels 0 and 255: (0, 255) for
      raw pixels (the lecture's VGG16), (0, 1) for rescaled inputs,
      ((0 - mean) / std, (255 - mean) / std) for standardized ones. The
      starting noise and the step are scaled to it.
    seed: seed of the starting noise (each filter gets its own).
    init: starting images instead of the noise, (H, W, C) for all filters or
      (K, H, W, C), in the model's input scale (e.g. a real image).
    batch_size: ascend this many filters at a time (``lax.map``) to bound
      memory on large models; None ascends all of them in one vmap.

  Returns:
    :class:`FilterPatterns`: the patterns and each filter's mean activation
    before and after.

  Raises:
    ValueError: an unknown layer, filter indices outside the layer, a bad
      ``value_range`` or ``input_shape``.
  """
  input_shape, low, high = _check_ranges(input_shape, value_range)
  filters = _filter_array(model, variables, layer_name, input_shape, filter_indices)
  scale = (high - low) / 255.0  # one pixel unit in the model's input scale
  run = _ascent_program(model, layer_name, steps=steps, step=step_size * scale,
                        batch_size=batch_size)
  x0s = _starting_images(init, filters.size, input_shape, low, scale, seed)
  images, initial, final = run(variables, x0s, jnp.asarray(filters))
  return FilterPatterns(np.asarray(images), filters, np.asarray(initial), np.asarray(final))


def generate_pattern(model: nn.Module, variables: Mapping[str, Any], layer_name: str,
                     filter_index: int, *, input_shape: Sequence[int],
                     **kwargs: Any) -> np.ndarray:
  """Lecture 003's ``generate_pattern``: one filter's pattern, deprocessed to uint8.

  Args:
    model, variables, layer_name, input_shape: as in :func:`filter_patterns`.
    filter_index: the filter.
    **kwargs: ``steps``, ``step_size``, ``value_range``, ``seed``, ``init`` of
      :func:`filter_patterns`.

  Returns:
    uint8 image (H, W, C).
  """
  result = filter_patterns(model, variables, layer_name, [filter_index],
                           input_shape=input_shape, **kwargs)
  return deprocess_image(result.images[0])


def pattern_grid(patterns: np.ndarray, ncols: int = 8, margin: int = 5) -> np.ndarray:
  """Deprocessed patterns on a black canvas, row by row (lecture 003's ``results``).

  Args:
    patterns: (K, H, W, C) ascended inputs (each deprocessed on its own).
    ncols: patterns per row.
    margin: black pixels between patterns.

  Returns:
    uint8 (rows * (H + margin) - margin, ncols' * (W + margin) - margin, C).
  """
  patterns = np.asarray(patterns)
  if patterns.ndim != 4:
    raise ValueError(f"patterns must be (K, H, W, C), got shape {patterns.shape}")
  k, h, w, c = patterns.shape
  ncols = min(ncols, k)
  nrows = math.ceil(k / ncols)
  grid = np.zeros((nrows * (h + margin) - margin, ncols * (w + margin) - margin, c), np.uint8)
  for i in range(k):
    r, q = divmod(i, ncols)
    grid[r * (h + margin):r * (h + margin) + h,
         q * (w + margin):q * (w + margin) + w] = deprocess_image(patterns[i])
  return grid


def plot_filter_patterns(model: nn.Module, variables: Mapping[str, Any], layer_name: str, *,
                         input_shape: Sequence[int], num_filters: int = 64, ncols: int = 8,
                         margin: int = 5, size_inches: float = 8.0,
                         path: PathLike | None = None, dpi: int = 100,
                         **kwargs: Any) -> Figure:
  """The grid of filter patterns of a layer (lecture 003: 8x8, 64 filters).

  Args:
    model, variables, layer_name, input_shape: as in :func:`filter_patterns`.
    num_filters: the first this many filters (fewer if the layer has fewer).
    ncols: patterns per row.
    margin: black pixels between patterns.
    size_inches: the figure's width; the height follows the grid's aspect.
    path: where to save the PNG, if anywhere.
    dpi: pixels per inch.
    **kwargs: ``steps``, ``step_size``, ``value_range``, ``seed``,
      ``batch_size`` of :func:`filter_patterns`.

  Returns:
    The Figure.
  """
  n = _num_filters(model, variables, layer_name, input_shape)
  result = filter_patterns(model, variables, layer_name, range(min(num_filters, n)),
                           input_shape=input_shape, **kwargs)
  grid = pattern_grid(result.images, ncols, margin)
  height = size_inches * grid.shape[0] / grid.shape[1] + 0.4
  fig = new_figure(size_inches, height, dpi)
  ax = fig.add_subplot()
  ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid,
            cmap="gray" if grid.shape[-1] == 1 else None, vmin=0, vmax=255,
            interpolation="nearest")
  ax.set_xticks(())
  ax.set_yticks(())
  ax.set_title(f"{layer_name}: patterns of filters 0-{len(result.filters) - 1}", fontsize=10)
  return finish(fig, path)
