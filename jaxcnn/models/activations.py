"""Activation functions named as in Keras, given as a string or a dict.

A layer's ``activation`` is ``None``, a name (``'relu'``) or a dict with the
name and its parameter (``{'name': 'leaky_relu', 'alpha': 0.2}``), so configs
stay plain data. :func:`parse` turns any of these into a hashable
:class:`Activation` (linen module fields must be hashable), which is applied
by calling it.

Defaults follow Keras 3: ``keras.activations.leaky_relu`` has slope 0.2 and
``elu`` has alpha 1.0. SELU uses the constants of Klambauer et al. (2017).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from jaxcnn import config as config_lib

# Klambauer et al. (2017), as in keras.activations.selu.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def leaky_relu(x: jax.Array, alpha: float = 0.2) -> jax.Array:
  """LeakyReLU_alpha(z) = max(alpha * z, z) (lecture 004)."""
  return jnp.where(x >= 0, x, alpha * x)


def elu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
  """ELU_alpha(z) = alpha * (exp(z) - 1) for z < 0, z otherwise."""
  # expm1 of the clipped input keeps the unused branch finite for large z.
  return jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0.0)))


def selu(x: jax.Array) -> jax.Array:
  """Scaled ELU with the self-normalizing constants."""
  return SELU_SCALE * elu(x, SELU_ALPHA)


def _linear(x: jax.Array) -> jax.Array:
  return x


# name -> (function, default of its one parameter or None if it takes none).
_FUNCTIONS: dict[str, tuple[Callable[..., jax.Array], float | None]] = {
    "linear": (_linear, None),
    "relu": (jax.nn.relu, None),
    "sigmoid": (jax.nn.sigmoid, None),
    "tanh": (jnp.tanh, None),
    "softmax": (lambda x: jax.nn.softmax(x, axis=-1), None),
    "leaky_relu": (leaky_relu, 0.2),
    "elu": (elu, 1.0),
    "selu": (selu, None),
}

NAMES = tuple(sorted(_FUNCTIONS))


@dataclasses.dataclass(frozen=True)
class Activation:
  """A parsed activation: a name and, for leaky_relu/elu, its alpha."""
  name: str = "linear"
  alpha: float | None = None

  def __call__(self, x: jax.Array) -> jax.Array:
    fn, default = _FUNCTIONS[self.name]
    if default is None:
      return fn(x)
    return fn(x, default if self.alpha is None else self.alpha)

  def to_config(self) -> str | dict[str, Any]:
    """The plain-data form (what :func:`parse` accepts)."""
    if self.alpha is None:
      return self.name
    return {"name": self.name, "alpha": self.alpha}


def parse(spec: Any, where: str = "activation") -> Activation | None:
  """Parses an activation spec.

  Args:
    spec: None, a name such as ``'relu'``, a dict ``{'name': ..., 'alpha':
      ...}`` or an :class:`Activation`.
    where: what the spec belongs to, for error messages.

  Returns:
    An :class:`Activation`, or None for None / ``'linear'``.

  Raises:
    ConfigError: an unknown name or key, or alpha given to a function that
      takes none.
  """
  if spec is None:
    return None
  if isinstance(spec, Activation):
    return None if spec.name == "linear" else spec
  if isinstance(spec, str):
    name, alpha = spec, None
  elif isinstance(spec, Mapping):
    spec = dict(spec)
    for key in spec:
      if key not in ("name", "alpha"):
        raise config_lib.unknown_key_error(f"{where}.{key}", ("name", "alpha"), where)
    if "name" not in spec:
      raise config_lib.ConfigError(f"{where} dict needs a 'name' (one of {', '.join(NAMES)}).")
    name, alpha = spec["name"], spec.get("alpha")
  else:
    raise config_lib.ConfigError(
        f"{where} must be None, a name ({', '.join(NAMES)}) or a dict like "
        f"{{'name': 'leaky_relu', 'alpha': 0.2}}; got {spec!r}.")
  if name not in _FUNCTIONS:
    guess = config_lib.closest(name, NAMES)
    hint = f" Did you mean '{guess}'?" if guess else ""
    raise config_lib.ConfigError(
        f"Unknown activation '{name}' in {where}.{hint} Valid: {', '.join(NAMES)}.")
  if alpha is not None and _FUNCTIONS[name][1] is None:
    raise config_lib.ConfigError(
        f"Activation '{name}' in {where} takes no alpha; only leaky_relu and elu do.")
  if name == "linear":
    return None
  return Activation(name, None if alpha is None else float(alpha))
