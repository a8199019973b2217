"""The declarative model: a linen module running a list of layer specs.

Like ``keras.Sequential``, a model is its layers in order, each with a
Keras-style name that is also its linen module name, so
``variables['params']['conv2d_1']['kernel']`` exists. The call runs a slice
of the layers, which lets a frozen base run once and be cached (lecture 003's
feature extraction) and MC dropout skip the deterministic prefix.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models import specs as specs_lib


class Sequential(nn.Module):
  """Runs ``layers`` in order.

  Attributes:
    layers: validated layer specs (see :func:`build`).
    axis_name: the ``pmap`` axis BatchNorm averages its statistics over
      (``'batch'`` in the train step); None outside ``pmap``.
    weights_path: a Keras weights file for :func:`keras_import.load_pretrained`
      ('' = none).
    preset: the preset this model came from (summary title).
    input_layer: the layer inputs enter at by default (see :func:`from_layer`).
    dtype: the compute dtype (``jnp.bfloat16``, ``jnp.float16``): the input
      is cast to it, every layer computes in its input's dtype (parameters
      stay float32 and are cast where used; BatchNorm's statistics are
      float32), and the output is cast back to float32 for softmax and the
      loss. None computes in float32 and casts nothing.
  """
  layers: tuple[specs_lib.LayerSpec, ...]
  axis_name: str | None = None
  weights_path: str = ""
  preset: str = "sequential"
  input_layer: int = 0
  dtype: Any = None

  @property
  def layer_names(self) -> tuple[str, ...]:
    """Keras-style names of the layers, in order."""
    return tuple(spec.name for spec in self.layers)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               deterministic: bool | None = None, start: int | None = None,
               stop: int | None = None) -> jax.Array:
    """Runs ``layers[start:stop]``.

    Args:
      x: NHWC images (or, with ``start > 0``, the output of layer
        ``start - 1``).
      train: BatchNorm normalizes with batch statistics and updates
        ``batch_stats`` (apply with ``mutable=['batch_stats']``).
      deterministic: switches dropout off; defaults to ``not train``. MC
        dropout is ``train=False, deterministic=False``: dropout on,
        BatchNorm frozen. MCDropout layers are on unless this is True.
      start: first layer to run (Python slice semantics, negatives allowed);
        None means ``input_layer``.
      stop: one past the last layer to run (None = to the end).

    Returns:
      The output of layer ``stop - 1``: logits for a whole classifier.
    """
    start = self.input_layer if start is None else start
    first, last, _ = slice(start, stop).indices(len(self.layers))
    if self.dtype is not None:
      x = x.astype(self.dtype)
    for spec in self.layers[first:last]:
      x = spec.build(self.axis_name)(x, train=train, deterministic=deterministic)
    if self.dtype is not None:
      x = x.astype(jnp.float32)
    return x


def build(layers: Iterable[Mapping[str, Any] | specs_lib.LayerSpec], *,
          axis_name: str | None = None, weights_path: str = "",
          name: str = "sequential", dtype: Any = None) -> Sequential:
  """Builds a model from layer dicts.

  Args:
    layers: dicts such as ``{'type': 'dense', 'units': 10}`` (see
      :mod:`jaxcnn.models.specs`).
    axis_name: BatchNorm's ``pmap`` axis name, None outside ``pmap``.
    weights_path: optional Keras weights file (loaded by
      ``keras_import.load_pretrained`` after ``init``).
    name: the model's name in summaries.
    dtype: the compute dtype (:attr:`Sequential.dtype`); None is float32.

  Returns:
    A :class:`Sequential`.
  """
  return Sequential(layers=specs_lib.parse_layers(layers), axis_name=axis_name,
                    weights_path=weights_path or "", preset=name, dtype=dtype)


def first_stochastic_layer(model: Sequential) -> int:
  """Index of the first dropout-type layer (``len(layers)`` if none).

  Layers before it are deterministic at inference, so MC dropout can run
  ``model.apply(v, x, stop=k)`` once and then ``start=k`` per sample.
  """
  for i, spec in enumerate(model.layers):
    if spec.layer_type.stochastic:
      return i
  return len(model.layers)


def from_layer(model: Sequential, k: int) -> Sequential:
  """The same model (same variables) whose inputs enter at layer ``k``.

  Its inputs are the outputs of layer ``k - 1``: a head trained on cached
  features of a frozen base keeps the whole model's variable tree, so its
  checkpoints are the whole model's.
  """
  return model.clone(input_layer=k)
