"""Gradient clipping with Keras' three options (lecture 004, "Gradient Clipping").

- ``clipvalue``: each element into ``[-v, v]`` (can turn the direction:
  ``[0.9, 100.0] -> [0.9, 1.0]``);
- ``clipnorm``: each gradient tensor by its own L2 norm, ``g * c / max(|g|, c)``
  (``[0.9, 100.0] -> [0.00899964, 0.9999595]``);
- ``global_clipnorm``: all gradients together by their global L2 norm.

As in Keras, at most one of them may be set; 0 or None means off. Clipping
acts on the raw gradients, before the optimizer and the weight decay.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from jaxcnn.config import ConfigError
from jaxcnn.optim import _config

CLIP_KEYS = ("clipvalue", "clipnorm", "global_clipnorm")


def clip_by_norm(max_norm: Any) -> optax.GradientTransformation:
  """Clips each update tensor by its own L2 norm (Keras ``clipnorm``).

  Uses ``tf.clip_by_norm``'s arithmetic, ``g * c / max(|g|, c)``, with a zero
  tensor left at zero. ``optax.clip_by_global_norm`` would join all tensors.

  Args:
    max_norm: the largest L2 norm a tensor may keep.
  """

  def clip(g, params=None):
    del params
    l2sum = jnp.sum(jnp.square(g))
    positive = l2sum > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, l2sum, 1.0)), l2sum)
    return (g * max_norm) / jnp.maximum(norm, max_norm)

  return optax.stateless_with_tree_map(clip)


def resolve(hparams: Mapping[str, Any]) -> dict[str, float]:
  """Checks the clipping keys of an optimizer config.

  Args:
    hparams: the optimizer section (other keys are ignored).

  Returns:
    ``{key: value}`` for the one clipping option set, or ``{}``.

  Raises:
    ConfigError: a negative threshold, or more than one option set.
  """
  chosen = {}
  for key in CLIP_KEYS:
    value = hparams.get(key)
    if value is None:
      continue
    value = _config.number(value, f"optimizer.{key}", minimum=0.0)
    if value > 0:
      chosen[key] = value
  if len(chosen) > 1:
    raise ConfigError(
        f"Only one of clipvalue, clipnorm and global_clipnorm can be set (as in "
        f"Keras); got {', '.join(f'{k}={v:g}' for k, v in chosen.items())}. "
        "clipnorm clips each tensor by its own norm, global_clipnorm all "
        "gradients by their joint norm: pick one.")
  return chosen


def build(clipvalue: float | None = None, clipnorm: float | None = None,
          global_clipnorm: float | None = None) -> optax.GradientTransformation:
  """The clipping transformation for the options of :func:`resolve`.

  Args:
    clipvalue: clip each element into ``[-clipvalue, clipvalue]``.
    clipnorm: clip each tensor to L2 norm ``clipnorm``.
    global_clipnorm: clip all tensors jointly to global norm ``global_clipnorm``.

  Returns:
    The transformation; identity when no option is set.
  """
  chosen = resolve(dict(clipvalue=clipvalue, clipnorm=clipnorm,
                        global_clipnorm=global_clipnorm))
  if "clipvalue" in chosen:
    return optax.clip(chosen["clipvalue"])
  if "clipnorm" in chosen:
    return clip_by_norm(chosen["clipnorm"])
  if "global_clipnorm" in chosen:
    return optax.clip_by_global_norm(chosen["global_clipnorm"])
  return optax.identity()


def clip_tree(grads: Any, **options: float) -> Any:
  """Applies :func:`build`'s clipping to a gradient pytree once (no state).

  Handy to inspect what a setting does, e.g. ``clip_tree(jnp.array([0.9,
  100.0]), clipnorm=1.0)``.
  """
  clipped, _ = build(**options).update(grads, optax.EmptyState())
  return jax.tree.map(jnp.asarray, clipped)
