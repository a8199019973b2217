"""``model.summary()`` as in Keras: layers, output shapes, parameter counts.

Shapes come from ``jax.eval_shape``, so nothing is computed or allocated,
even for VGG16. As in Keras, BatchNorm's moving mean and variance count as
non-trainable parameters (lecture 004: 2,368 of the BN MLP's 271,346).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from jaxcnn.models import sequential


@dataclasses.dataclass(frozen=True)
class LayerRow:
  """One line of the table."""
  name: str
  type: str
  output_shape: tuple[int | None, ...]
  trainable: int
  non_trainable: int

  @property
  def params(self) -> int:
    return self.trainable + self.non_trainable


@dataclasses.dataclass(frozen=True)
class Summary:
  """Parameter counts of a model for one input shape; ``str()`` is the table."""
  name: str
  input_shape: tuple[int, ...]
  rows: tuple[LayerRow, ...]

  @property
  def trainable(self) -> int:
    return sum(r.trainable for r in self.rows)

  @property
  def non_trainable(self) -> int:
    return sum(r.non_trainable for r in self.rows)

  @property
  def total(self) -> int:
    return self.trainable + self.non_trainable

  def __str__(self) -> str:
    head = ("Layer (type)", "Output Shape", "Param #")
    cells = [(f"{r.name} ({r.type})", str(r.output_shape).replace(",)", ")"), f"{r.params:,}")
             for r in self.rows]
    w0 = max(len(head[0]), *(len(c[0]) for c in cells)) + 2
    w1 = max(len(head[1]), *(len(c[1]) for c in cells)) + 2
    w2 = max(len(head[2]), *(len(c[2]) for c in cells))
    width = w0 + w1 + w2
    lines = [f'Model: "{self.name}"', "_" * width,
             f"{head[0]:<{w0}}{head[1]:<{w1}}{head[2]:>{w2}}", "=" * width]
    for i, (a, b, c) in enumerate(cells):
      lines.append(f"{a:<{w0}}{b:<{w1}}{c:>{w2}}")
      lines.append("_" * width if i < len(cells) - 1 else "=" * width)
    lines += [f"Total params: {self.total:,}",
              f"Trainable params: {self.trainable:,}",
              f"Non-trainable params: {self.non_trainable:,}"]
    return "\n".join(lines)


def _count(tree: Any) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def summary(model: sequential.Sequential, input_shape: Sequence[int]) -> Summary:
  """Keras-like summary of ``model`` for inputs of ``input_shape``.

  Args:
    model: a :class:`Sequential` model.
    input_shape: one example's shape without the batch axis, e.g.
      ``(28, 28, 1)`` (Keras' ``input_shape``).

  Returns:
    A :class:`Summary` (``.total``, ``.trainable``, ``.non_trainable``,
    ``.rows``); print it for the table.
  """
  x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  key = jax.random.key(0)

  def init(x):
    return model.init_with_output({"params": key, "dropout": key}, x,
                                  capture_intermediates=True)

  _, variables = jax.eval_shape(init, x)
  params = variables.get("params", {})
  stats = variables.get("batch_stats", {})
  outputs = variables.get("intermediates", {})
  rows = []
  for spec in model.layers:
    shape = outputs[spec.name]["__call__"][0].shape
    rows.append(LayerRow(
        name=spec.name, type=spec.layer_type.keras_class,
        output_shape=(None, *shape[1:]),
        trainable=_count(params.get(spec.name, {})),
        non_trainable=_count(stats.get(spec.name, {}))))
  return Summary(model.preset, tuple(input_shape), tuple(rows))
