"""Feature maps: what named layers output for given images (lecture 003).

Flax's ``capture_intermediates`` records the return value of every module
whose name passes a filter, during one ordinary ``model.apply``: the Keras
"activation model" (one input, one output per layer) without building a
second model.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from jaxcnn.visualize._figure import PathLike, finish, new_figure
from jaxcnn.visualize._tree import lookup


def _is_called(node: Mapping[str, Any]) -> bool:
  return "__call__" in node


def _names(layer_names: str | Sequence[str]) -> list[str]:
  names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
  if not names:
    raise ValueError("layer_names is empty: give e.g. ['conv2d', 'max_pooling2d']")
  return names


def layer_outputs(model: nn.Module, variables: Mapping[str, Any], x: jax.Array,
                  layer_names: str | Sequence[str]) -> dict[str, jax.Array]:
  """The outputs of named layers for a batch, in inference mode; traceable.

  Args:
    model: a linen module called as ``model.apply(variables, x, train=False)``.
    variables: its variables (params and, if any, batch_stats).
    x: a batch of inputs, NHWC.
    layer_names: Keras-style module names ('conv2d', 'max_pooling2d_1') or
      full paths ('vgg16/block1_conv1').

  Returns:
    name -> output of that module's first call.

  Raises:
    ValueError: a name matches no module (the message lists the valid ones).
  """
  names = _names(layer_names)
  wanted = {name.rsplit("/", 1)[-1] for name in names}

  def keep(module: nn.Module, method_name: str) -> bool:
    return method_name == "__call__" and module.name in wanted

  _, state = model.apply(variables, x, train=False, capture_intermediates=keep)
  captured = state.get("intermediates", {})
  outputs = {}
  for name in names:
    try:
      outputs[name] = lookup(captured, name, _is_called, "layer")["__call__"][0]
    except ValueError:
      # Name every layer in the message: capture them all, shapes only.
      _, everything = jax.eval_shape(
          lambda v, x: model.apply(v, x, train=False, capture_intermediates=True),
          variables, x)
      lookup(everything["intermediates"], name, _is_called, "layer")
      raise
  return outputs


def feature_maps(model: nn.Module, variables: Mapping[str, Any], images: np.ndarray | jax.Array,
                 layer_names: str | Sequence[str]) -> dict[str, np.ndarray]:
  """The activations of named layers for given images (the data behind the plot).

  Args:
    model: a linen module called as ``model.apply(variables, x, train=False)``
      (BatchNorm on its moving statistics, dropout off).
    variables: its variables.
    images: one image (H, W, C) or a batch (N, H, W, C), preprocessed as the
      model was trained (e.g. normalized).
    layer_names: Keras-style names ('conv2d', 'max_pooling2d', ...) or full paths.

  Returns:
    name -> float32 array (N, h, w, channels) (or (N, units) for a dense
    layer), in the order of ``layer_names``.
  """
  names = _names(layer_names)
  x = jnp.asarray(images, jnp.float32)
  if x.ndim == 3:
    x = x[None]
  if x.ndim != 4:
    raise ValueError(f"images must be (H, W, C) or (N, H, W, C), got shape {x.shape}")
  outputs = jax.jit(lambda v, x: layer_outputs(model, v, x, names))(variables, x)
  return {name: np.asarray(outputs[name], np.float32) for name in names}


def normalize_feature_map(channel: np.ndarray) -> np.ndarray:
  """Lecture 003's display normalization of one channel, to uint8.

  ``x -= mean; x /= std; x *= 64; x += 128; clip to 0..255``. A constant
  channel (a filter that found nothing in this image) has no std and maps to
  0, the colormap's bottom: the lecture's violet tiles.
  """
  x = np.asarray(channel, np.float64)
  x = x - x.mean()
  std = x.std()
  if std == 0:
    return np.zeros(x.shape, np.uint8)
  return np.clip(x / std * 64 + 128, 0, 255).astype(np.uint8)


def tile_feature_maps(activation: np.ndarray, images_per_row: int = 16,
                      margin: int = 1) -> np.ndarray:
  """One image's channels, normalized, tiled ``images_per_row`` to a row.

  Args:
    activation: (h, w, channels) for one image.
    images_per_row: tiles per row (fewer channels: one row of them all).
    margin: pixels between tiles (drawn at 0).

  Returns:
    uint8 grid of shape (rows * (h + margin) - margin, cols * (w + margin) - margin).
  """
  activation = np.asarray(activation)
  if activation.ndim != 3:
    raise ValueError(f"expected (h, w, channels) for one image, got shape {activation.shape}")
  h, w, n = activation.shape
  cols = min(images_per_row, n)
  rows = math.ceil(n / cols)
  grid = np.zeros((rows * (h + margin) - margin, cols * (w + margin) - margin), np.uint8)
  for c in range(n):
    r, q = divmod(c, cols)
    grid[r * (h + margin):r * (h + margin) + h,
         q * (w + margin):q * (w + margin) + w] = normalize_feature_map(activation[:, :, c])
  return grid


def plot_feature_maps(maps: Mapping[str, np.ndarray], *, image_index: int = 0,
                      images_per_row: int = 16, margin: int = 1, cmap: str = "viridis",
                      width: float = 12.0, path: PathLike | None = None,
                      dpi: int = 100) -> Figure:
  """Each layer's feature maps for one image, tiled, one panel per layer.

  Args:
    maps: name -> (N, h, w, channels), as returned by :func:`feature_maps`.
    image_index: which image of the batch.
    images_per_row: tiles per row (the lecture's 16).
    margin: pixels between tiles.
    cmap: colormap (the lecture's viridis).
    width: figure width in inches; the height follows the grids' aspect.
    path: where to save the PNG, if anywhere.
    dpi: pixels per inch.

  Returns:
    The Figure.
  """
  if not maps:
    raise ValueError("maps is empty: pass feature_maps(model, variables, images, names)")
  grids = {}
  for name, act in maps.items():
    act = np.asarray(act)
    if act.ndim != 4:
      raise ValueError(f"layer {name!r} output has shape {act.shape}; feature maps need "
                       "(N, h, w, channels): choose conv or pooling layers")
    if not 0 <= image_index < act.shape[0]:
      raise ValueError(f"image_index {image_index} out of range for {act.shape[0]} images")
    grids[name] = (tile_feature_maps(act[image_index], images_per_row, margin), act.shape)
  # Each panel spans the full width; its height keeps the grid's aspect.
  heights = [width * g.shape[0] / g.shape[1] + 0.35 for g, _ in grids.values()]
  fig = new_figure(width, sum(heights), dpi)
  axes = fig.subplots(len(grids), 1, squeeze=False, height_ratios=heights)[:, 0]
  for ax, (name, (grid, shape)) in zip(axes, grids.items()):
    ax.imshow(grid, cmap=cmap, vmin=0, vmax=255, aspect="auto", interpolation="nearest")
    ax.set_title(f"{name} {tuple(shape[1:])}", fontsize=9)
    ax.set_xticks(())
    ax.set_yticks(())
  return finish(fig, path)
