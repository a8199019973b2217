"""Max-norm as a projection after each update (lecture 004, Keras ``MaxNorm``).

For each unit, the norm of its incoming weights is kept at most ``r``:
``w <- w * clip(|w|, 0, r) / (eps + |w|)`` with Keras' ``eps = 1e-7`` (so a
norm already below ``r`` is scaled by ``|w| / (eps + |w|)``, as in Keras).
Norms run over all axes but the last, Keras' meaning for channels-last
layers: a Dense kernel ``(in, out)`` -> each unit's ``in`` weights
(``MaxNorm(axis=0)``); a Conv kernel ``(h, w, in, out)`` -> each filter's
``h*w*in`` weights (``MaxNorm(axis=[0, 1, 2])``). A rule on a 1-D parameter
(``'dense/bias'``) bounds the norm of the whole vector.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp

from jaxcnn.optim import _paths
from jaxcnn.optim.regularizers import ParamRule

EPSILON = 1e-7  # keras.config.epsilon()


def max_norm(w: jnp.ndarray, r: float) -> jnp.ndarray:
  """Keras' MaxNorm of one tensor, norms over all axes but the last.

  Raises:
    ValueError: a scalar (it has no incoming weights to bound).
  """
  if w.ndim == 0:
    raise ValueError("max_norm needs a tensor with at least one axis.")
  axes = tuple(range(w.ndim - 1)) if w.ndim >= 2 else (0,)
  norms = jnp.sqrt(jnp.sum(jnp.square(w), axis=axes, keepdims=True))
  desired = jnp.clip(norms, 0, r)
  return (w * (desired / (EPSILON + norms))).astype(w.dtype)


def project(params: Any, rules: Mapping[str, ParamRule]) -> Any:
  """Applies every rule's max-norm to ``params`` (others pass through).

  Args:
    params: the params pytree, after the optimizer update.
    rules: from :func:`jaxcnn.optim.regularizers.build_rules` (static).

  Returns:
    The projected params, same structure.
  """
  bounds = {path: rule.max_norm for path, rule in rules.items() if rule.max_norm}
  if not bounds:
    return params
  return _paths.map_with_path(
      lambda path, w: max_norm(w, bounds[path]) if path in bounds else w, params)
