"""Class activation heatmaps (Grad-CAM): where in the image the class evidence lies.

Lecture 003 names three ways to look inside a CNN: the feature maps, the
filters, and locating in an image what made the class. The third is the
class activation map of Chollet's *Deep Learning with Python* (5.4.3),
Grad-CAM (Selvaraju et al. 2017): for a conv layer's output ``A`` (h, w, C)
and the class score ``y_c``,

  ``alpha_k = mean_ij d y_c / d A_ijk``  (how much channel k matters to c)
  ``heatmap = ReLU(sum_k alpha_k A_k)``, divided by its maximum (to [0, 1]).

The score is the class's logit (Grad-CAM's pre-softmax score; jaxcnn's
models return logits). Chollet differentiates the softmax output instead
and averages the weighted channels rather than summing them; the mean is
the sum over C, which the normalization removes. The model runs in
inference mode (dropout off, BatchNorm moving statistics), split at the
layer with ``model.apply(start=, stop=)``.

Always the whole model, from the image: a head made by
``models.from_layer(model, k)`` (feature extraction's, whose inputs are the
outputs of layer ``k - 1``) shares the whole model's variables, so its
heatmap is computed from layer 0, and a conv layer of the frozen base can
be chosen. A ``FrozenBaseSequential`` (the train model of a frozen base)
runs without its ``stop_gradient``, which would zero the base's gradients.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from jaxcnn.visualize._figure import PathLike, finish, new_figure


@dataclasses.dataclass(frozen=True)
class ClassHeatmap:
  """Grad-CAM of a batch of images at one layer.

  Attributes:
    layer: the layer's name.
    heatmap: (N, h, w) float32 in [0, 1] at the layer's resolution; an
      image with no positive evidence is all 0.
    weights: (N, C) the channel weights ``alpha``: the gradient of the class
      score with respect to the layer's output, averaged over positions.
    class_index: (N,) the class each heatmap is for.
    feature_maps: (N, h, w, C) the layer's output.
  """
  layer: str
  heatmap: np.ndarray
  weights: np.ndarray
  class_index: np.ndarray
  feature_maps: np.ndarray


def _layer_index(model: nn.Module, layer: str | int | None) -> int:
  """The index in ``model.layers`` of ``layer`` (default: the last conv layer)."""
  layers = getattr(model, "layers", None)
  if layers is None or not all(hasattr(s, "type") for s in layers):
    raise ValueError("class_heatmap needs a jaxcnn Sequential model (it splits the model "
                     "at the layer with model.apply(start=, stop=)).")
  names = [spec.name for spec in layers]
  convs = [i for i, spec in enumerate(layers) if spec.type == "conv2d"]
  if layer is None:
    if not convs:
      raise ValueError(f"{getattr(model, 'preset', 'the model')} has no conv layer: "
                       "class heatmaps need a CNN.")
    return convs[-1]
  if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
    if not -len(layers) <= layer < len(layers):
      raise ValueError(f"layer index {layer} out of range for {len(layers)} layers "
                       f"({', '.join(names)}).")
    return int(layer) % len(layers)
  if layer not in names:
    raise ValueError(f"No layer {layer!r}; the conv layers are "
                     f"{', '.join(names[i] for i in convs) or 'none'} (all: {', '.join(names)}).")
  return names.index(layer)


def _whole(model: nn.Module) -> nn.Module:
  """``model`` entered at layer 0, gradients through every layer (same variables)."""
  changes = {}
  if getattr(model, "input_layer", 0):
    changes["input_layer"] = 0  # models.from_layer's head: the base runs too.
  if getattr(model, "frozen_prefix", 0):
    changes["frozen_prefix"] = 0  # Its stop_gradient would zero a base layer's weights.
  return model.clone(**changes) if changes else model


def _check_images(model: nn.Module, entered_at: int, variables, x: jax.Array,
                  stop: int) -> None:
  """A clear error when ``x`` is not what layer 0 takes (e.g. a head's features)."""
  try:
    jax.eval_shape(lambda v, a: model.apply(v, a, train=False, start=0, stop=stop),
                   variables, x)
  except Exception as e:  # noqa: BLE001  (flax's shape errors have no common base)
    names = model.layer_names
    if entered_at:
      hint = (f"this model enters at layer {entered_at} ({names[entered_at]!r}, "
              "models.from_layer), but class_heatmap runs the whole model from the image: "
              "give the images the base takes, not the outputs of layer "
              f"{names[entered_at - 1]!r}.")
    else:
      hint = "give images shaped as the model was trained on."
    raise ValueError(f"class_heatmap: input of shape {tuple(x.shape)} does not fit layer "
                     f"{names[0]!r}: {hint} ({type(e).__name__}: {e})") from e


def _scores(logits: jax.Array, class_index: jax.Array) -> jax.Array:
  """Each image's score for its class; a 1-unit binary model's classes are -z and z."""
  if logits.shape[-1] == 1:
    return jnp.where(class_index == 1, logits[:, 0], -logits[:, 0])
  return jnp.take_along_axis(logits, class_index[:, None], axis=-1)[:, 0]


def class_heatmap(model: nn.Module, variables: Mapping[str, Any],
                  images: np.ndarray | jax.Array, *, layer: str | int | None = None,
                  class_index: int | Sequence[int] | None = None) -> ClassHeatmap:
  """Grad-CAM heatmaps of ``images`` at a layer (lecture 003's class activation map).

  The heatmap is the whole model's, from the image, also for a head made
  by ``models.from_layer(model, k)`` (feature extraction's): its layers
  ``[:k]`` run too, and ``layer`` may be one of them (a conv layer of the
  frozen base).

  Args:
    model: a jaxcnn Sequential model returning logits (a
      ``models.from_layer`` head or a ``FrozenBaseSequential`` too).
    variables: its variables (the whole model's).
    images: one image (H, W, C) or a batch (N, H, W, C), preprocessed as
      the model was trained; images, also for a ``from_layer`` head.
    layer: a layer name (``'conv2d_1'``), an index into ``model.layers`` (all
      of them, from layer 0), or None for the last conv layer (the
      lecture's choice). The layer's output must be (N, h, w, C).
    class_index: the class of every heatmap, one per image, or None for
      each image's predicted class.

  Returns:
    A :class:`ClassHeatmap`.

  Raises:
    ValueError: not a Sequential model, no conv layer, an unknown layer
      (the message lists the conv layers), a layer without spatial output,
      or images that layer 0 cannot take (for a ``from_layer`` head: the
      head's features given instead of images).
  """
  k = _layer_index(model, layer)
  name = model.layers[k].name
  x = jnp.asarray(images, jnp.float32)
  if x.ndim == 3:
    x = x[None]
  entered_at = getattr(model, "input_layer", 0)
  model = _whole(model)
  _check_images(model, entered_at, variables, x, k + 1)
  features = model.apply(variables, x, train=False, start=0, stop=k + 1)
  if features.ndim != 4:
    raise ValueError(f"layer {name!r} outputs shape {features.shape}; a heatmap needs "
                     "(N, h, w, channels): choose a conv or pooling layer.")
  head = lambda a: model.apply(variables, a, train=False, start=k + 1)  # noqa: E731
  logits = head(features)
  if class_index is None:
    classes = (logits[:, 0] > 0).astype(jnp.int32) if logits.shape[-1] == 1 else jnp.argmax(
        logits, axis=-1)
  else:
    classes = jnp.broadcast_to(jnp.asarray(class_index, jnp.int32), (x.shape[0],))
  # Images are independent in inference mode: the gradient of the sum of the
  # scores gives each image's own gradient.
  grads = jax.grad(lambda a: _scores(head(a), classes).sum())(features)
  weights = grads.mean(axis=(1, 2))
  cam = jax.nn.relu(jnp.einsum("nhwc,nc->nhw", features, weights))
  top = cam.max(axis=(1, 2), keepdims=True)
  heatmap = jnp.where(top > 0, cam / jnp.where(top > 0, top, 1.0), 0.0)
  return ClassHeatmap(layer=name, heatmap=np.asarray(heatmap, np.float32),
                      weights=np.asarray(weights, np.float32),
                      class_index=np.asarray(classes), feature_maps=np.asarray(features))


def upsample(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """A (h, w) heatmap resized bilinearly to the image's (H, W) (Chollet's cv2.resize)."""
  return np.asarray(jax.image.resize(jnp.asarray(heatmap, jnp.float32), tuple(size),
                                     "bilinear")).clip(0.0, 1.0)


def overlay(image: np.ndarray, heatmap: np.ndarray, *, alpha: float = 0.4,
            cmap: str = "jet") -> np.ndarray:
  """The heatmap in colour over the image, as the lecture's superimposed picture.

  Args:
    image: (H, W, C) display pixels in [0, 1] (C is 1 or 3).
    heatmap: (h, w) in [0, 1]; resized to (H, W).
    alpha: the heatmap's weight (Chollet's 0.4).
    cmap: the colormap (Chollet's jet).

  Returns:
    (H, W, 3) RGB in [0, 1]: ``alpha * colour(heatmap) + (1 - alpha) * image``.
  """
  image = np.asarray(image, np.float32)
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  colour = colormaps[cmap](upsample(heatmap, image.shape[:2]))[..., :3]
  return np.clip(alpha * colour + (1 - alpha) * image, 0.0, 1.0)


def plot_class_heatmap(images: np.ndarray, result: ClassHeatmap, *,
                       class_names: Sequence[str] | None = None, alpha: float = 0.4,
                       path: PathLike | None = None, dpi: int = 100) -> Figure:
  """Each image, its heatmap and the two superimposed, one column per image.

  Args:
    images: (N, H, W, C) display pixels in [0, 1] (undo the normalization first).
    result: :func:`class_heatmap` of these images.
    class_names: names of the classes, for the titles.
    alpha: the heatmap's weight in the overlay.
    path: where to save the PNG, if anywhere.
    dpi: pixels per inch.

  Returns:
    The Figure: 3 rows of 2.2-inch panels, one column per image.
  """
  images = np.asarray(images, np.float32)
  n = len(images)
  if len(result.heatmap) != n:
    raise ValueError(f"{n} images but {len(result.heatmap)} heatmaps")
  fig = new_figure(2.2 * n, 6.9, dpi)
  axes = fig.subplots(3, n, squeeze=False, subplot_kw={"xticks": (), "yticks": ()})
  for i in range(n):
    c = int(result.class_index[i])
    label = class_names[c] if class_names is not None else str(c)
    shown = images[i][..., 0] if images.shape[-1] == 1 else images[i]
    # Plain gray (not gray_r): the overlay below shows the same pixels.
    axes[0, i].imshow(shown, cmap="gray" if images.shape[-1] == 1 else None, vmin=0, vmax=1)
    axes[0, i].set_title(f"image {i}\nclass {label}", fontsize=8)
    axes[1, i].imshow(result.heatmap[i], cmap="jet", vmin=0, vmax=1, interpolation="nearest")
    axes[1, i].set_title(f"{result.layer} {result.heatmap.shape[1:]}", fontsize=8)
    axes[2, i].imshow(overlay(images[i], result.heatmap[i], alpha=alpha))
    axes[2, i].set_title("overlay", fontsize=8)
  return finish(fig, path)
