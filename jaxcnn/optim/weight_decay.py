"""Decoupled weight decay (AdamW style), as Keras' ``weight_decay`` argument.

Keras 3 shrinks each decayed variable by ``w -= w * weight_decay * lr`` before
the optimizer step, independently of the gradient (Loshchilov & Hutter), for
every optimizer. Unlike Keras (which decays every variable unless told
otherwise), the default mask here decays only kernels: biases and BatchNorm's
scale and bias (1-D) are left alone, the usual practice.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax

from jaxcnn.optim import _paths

_NEVER_DECAYED = ("bias", "scale")


def default_mask(params: Any) -> Any:
  """True for the parameters to decay: ndim >= 2 and not named bias/scale."""
  return _paths.map_with_path(
      lambda path, p: p.ndim >= 2 and path.rsplit("/", 1)[-1] not in _NEVER_DECAYED,
      params)


def decoupled_weight_decay(
    learning_rate: Any, weight_decay: Any,
    mask: Callable[[Any], Any] | Any = default_mask,
) -> optax.GradientTransformation:
  """Adds ``-lr * weight_decay * w`` to the updates of the masked params.

  Placed after the optimizer's own (rate-scaled) update, this equals Keras'
  ``w -= w * weight_decay * lr`` followed by the optimizer step.

  Args:
    learning_rate: the rate in force (a scalar, possibly traced).
    weight_decay: the decay coefficient.
    mask: a pytree of bools like the params, or a function of the params
      returning one; True means decayed.

  Returns:
    The transformation; its ``update`` needs ``params``.
  """

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("weight_decay needs the params: call "
                       "tx.update(grads, opt_state, params).")
    updates = jax.tree.map(lambda u, w: u - w * weight_decay * learning_rate,
                           updates, params)
    return updates, state

  tx = optax.GradientTransformation(optax.init_empty_state, update_fn)
  return optax.masked(tx, mask)
