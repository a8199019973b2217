"""Keras' ``trainable = False`` for linen models: freezing layers, frozen bases.

Parameters are frozen by glob patterns (``config.regularization.freeze``):
they get no update and no optimizer state (:mod:`jaxcnn.optim.freeze`). This
module says which *layers* that makes frozen and builds the train-step model
that behaves as a frozen Keras model does: frozen BatchNorm layers normalize
with their moving statistics, and the frozen base (the longest prefix of
layers with no trainable parameter) gets no backward pass.

:func:`freeze_before` writes the fine-tuning patterns of lecture 003:
everything before a named layer (``'block5_conv1'``).
"""

from __future__ import annotations

from typing import Any, Iterable

import math

import flax.linen as nn
import jax
import numpy as np

from jaxcnn.config import ConfigError
from jaxcnn.config import closest
from jaxcnn.models import presets
from jaxcnn.models.sequential import Sequential
from jaxcnn.optim import freeze


class TransferError(ConfigError):
  """A source, layer selection or freeze that cannot work; says what would."""


def _as_model(model_or_config: Any) -> Sequential:
  if isinstance(model_or_config, Sequential):
    return model_or_config
  return presets.create(model_or_config)


def _has_params(spec) -> bool:
  if spec.layer_type.weighted:
    return True
  kwargs = spec.kwargs
  return spec.type == "batch_normalization" and (
      kwargs.get("center", True) or kwargs.get("scale", True))


def freeze_before(model: Any, layer_name: str) -> tuple[str, ...]:
  """Freeze patterns for fine-tuning from ``layer_name`` on (lecture 003).

  The lecture's loop sets ``trainable = False`` on every layer of the base
  before ``block5_conv1``; the same here is the names of the layers with
  parameters before it, for ``config.regularization.freeze``.

  Args:
    model: a :class:`Sequential`, or what ``models.create`` takes (a preset
      name or ``config.model``).
    layer_name: the first layer to train.

  Returns:
    The layer names to freeze, in order (empty when nothing precedes it).

  Raises:
    TransferError: ``layer_name`` is not a layer of the model; the message
      lists the model's layers.
  """
  model = _as_model(model)
  names = model.layer_names
  if layer_name not in names:
    guess = closest(layer_name, names)
    hint = f" Did you mean '{guess}'?" if guess else ""
    raise TransferError(
        f"Cannot fine-tune from '{layer_name}': model '{model.preset}' has no "
        f"such layer.{hint} Its layers: {', '.join(names)}.")
  index = names.index(layer_name)
  return tuple(spec.name for spec in model.layers[:index] if _has_params(spec))


def frozen_layers(model: Sequential, params: Any,
                  patterns: Iterable[str] | str | None) -> set[str]:
  """Names of the layers with at least one frozen parameter."""
  paths = freeze.frozen_paths(params, patterns)
  return {p.split("/", 1)[0] for p in paths} & set(model.layer_names)


def param_counts(params: Any, patterns: Iterable[str] | str | None) -> tuple[int, int]:
  """``(trainable, frozen)`` parameter counts under the freeze ``patterns``."""
  labels = freeze.labels(params, patterns)
  counts = {freeze.TRAINABLE: 0, freeze.FROZEN: 0}
  for leaf, label in zip(jax.tree.leaves(params), jax.tree.leaves(labels)):
    counts[label] += math.prod(np.shape(leaf))
  return counts[freeze.TRAINABLE], counts[freeze.FROZEN]


def base_end(model: Sequential, params: Any,
             patterns: Iterable[str] | str | None) -> int:
  """Index of the first layer with a trainable parameter.

  ``layers[:base_end]`` is the frozen base: no parameter there trains, so its
  output for an image never changes and can be computed once.
  """
  labels = freeze.labels(params, patterns)
  for i, name in enumerate(model.layer_names):
    if freeze.TRAINABLE in jax.tree.leaves(labels.get(name, {})):
      return i
  return len(model.layers)


class FrozenBaseSequential(Sequential):
  """:class:`Sequential` with Keras' ``trainable=False`` semantics for training.

  Attributes:
    frozen_batch_norm: BatchNorm layers that use their moving statistics (and
      do not update them) even with ``train=True``, as a frozen Keras
      BatchNormalization does since TF 2.0.
    frozen_prefix: number of leading layers whose output is a constant for
      the gradient (``stop_gradient``): nothing there trains, so their
      backward pass is skipped.
  """
  frozen_batch_norm: tuple[str, ...] = ()
  frozen_prefix: int = 0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False,
               deterministic: bool | None = None, start: int | None = None,
               stop: int | None = None) -> jax.Array:
    """As :meth:`Sequential.__call__`; frozen BatchNorm layers get ``train=False``."""
    start = self.input_layer if start is None else start
    first, last, _ = slice(start, stop).indices(len(self.layers))
    for i in range(first, last):
      spec = self.layers[i]
      layer_train = train and spec.name not in self.frozen_batch_norm
      x = spec.build(self.axis_name)(x, train=layer_train, deterministic=deterministic)
      if i == self.frozen_prefix - 1:
        x = jax.lax.stop_gradient(x)
    return x


def train_model_for(model: Sequential, params: Any,
                    patterns: Iterable[str] | str | None) -> Sequential:
  """The model for the train step under the freeze ``patterns``.

  Returns ``model`` itself when nothing is frozen, else a
  :class:`FrozenBaseSequential` with the same layers (same variables).
  """
  patterns = freeze.normalize(patterns)
  if not patterns:
    return model
  frozen = frozen_layers(model, params, patterns)
  bn = tuple(spec.name for spec in model.layers
             if spec.type == "batch_normalization" and spec.name in frozen)
  return FrozenBaseSequential(
      layers=model.layers, axis_name=model.axis_name,
      weights_path=model.weights_path, preset=model.preset,
      input_layer=model.input_layer, frozen_batch_norm=bn, frozen_prefix=base_end(model, params, patterns))


def describe(model: Sequential, params: Any,
             patterns: Iterable[str] | str | None) -> str:
  """One line: trainable and frozen parameter counts, and the frozen layers."""
  trainable, frozen_count = param_counts(params, patterns)
  line = f"Trainable params: {trainable:,}; frozen params: {frozen_count:,}"
  if frozen_count:
    names = sorted(frozen_layers(model, params, patterns), key=model.layer_names.index)
    line += f" ({short_list(names)})"
  return line + "."


def short_list(items: Iterable[str], limit: int = 8) -> str:
  """``a, b, c`` or, past ``limit`` items, the first and last few."""
  items = list(items)
  if len(items) <= limit:
    return ", ".join(items) or "none"
  return ", ".join(items[:limit // 2]) + f", ... ({len(items) - limit} more), " + \
      ", ".join(items[-limit // 2:])
