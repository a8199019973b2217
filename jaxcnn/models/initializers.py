"""Weight initializers with Keras' names, formulas and defaults.

Every kernel uses ``glorot_uniform`` unless its layer says otherwise and every
bias starts at zero, as in Keras. The variance-scaling family follows
``keras.initializers.VarianceScaling`` exactly (lecture 004):

* ``fan_in`` / ``fan_out`` of a kernel of shape ``(..., in, out)`` are
  ``in * receptive_field`` / ``out * receptive_field`` where the receptive
  field is the product of the leading axes (1 for Dense);
* the variance is ``scale / n`` with ``n`` the chosen fan (``fan_avg`` is the
  mean of both), never dividing by less than 1;
* ``uniform`` draws from ``[-r, r]`` with ``r = sqrt(3 * scale / n)``;
  ``truncated_normal`` (what Keras' ``*_normal`` names use) draws from a normal
  cut at two standard deviations and divides the stddev by 0.87962566103423978,
  the stddev of a unit normal truncated to [-2, 2], so the variance is exact;
  ``untruncated_normal`` is a plain normal. ``'normal'`` is accepted as the
  Keras 2 alias of ``truncated_normal``.

Specs are plain data: a name (``'he_normal'``), a dict (``{'name':
'variance_scaling', 'scale': 2.0, 'mode': 'fan_avg', 'distribution':
'uniform'}``, lecture 004's ``he_avg_init``) or an initializer object from
this module. All initializer objects are frozen dataclasses (hashable, so they
can be linen module fields) and are called like JAX initializers:
``init(key, shape, dtype) -> Array``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from jaxcnn import config as config_lib

# Stddev of a unit normal truncated to [-2, 2] (Keras and JAX use the same).
_TRUNCATED_STDDEV = 0.87962566103423978

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")


def compute_fans(shape: Sequence[int], batch_axes: int = 0) -> tuple[int, int]:
  """Keras' fans of a weight shape.

  Args:
    shape: the weight shape.
    batch_axes: leading axes holding independent weight sets (the positions
      of a LocallyConnected2D kernel), excluded from the fans.

  Returns:
    ``(fan_in, fan_out)``.
  """
  shape = tuple(shape)[batch_axes:]
  if not shape:
    return 1, 1
  if len(shape) == 1:
    return shape[0], shape[0]
  receptive_field = math.prod(shape[:-2])
  return shape[-2] * receptive_field, shape[-1] * receptive_field


@dataclasses.dataclass(frozen=True)
class VarianceScaling:
  """``keras.initializers.VarianceScaling``.

  Attributes:
    scale: the variance numerator (2.0 for He, 1.0 for Glorot and LeCun).
    mode: ``fan_in``, ``fan_out`` or ``fan_avg``.
    distribution: ``truncated_normal``, ``untruncated_normal`` or
      ``uniform`` (``normal`` means ``truncated_normal``).
    batch_axes: leading axes excluded from the fans (LocallyConnected2D).
  """
  scale: float = 1.0
  mode: str = "fan_in"
  distribution: str = "truncated_normal"
  batch_axes: int = 0

  def __post_init__(self):
    if self.distribution == "normal":  # Keras 2 alias.
      object.__setattr__(self, "distribution", "truncated_normal")
    if self.scale <= 0:
      raise config_lib.ConfigError(f"VarianceScaling scale must be > 0, got {self.scale}.")
    if self.mode not in MODES:
      raise config_lib.ConfigError(
          f"VarianceScaling mode must be one of {', '.join(MODES)}; got {self.mode!r}.")
    if self.distribution not in DISTRIBUTIONS:
      raise config_lib.ConfigError(
          f"VarianceScaling distribution must be one of "
          f"{', '.join(DISTRIBUTIONS + ('normal',))}; got {self.distribution!r}.")

  def variance(self, shape: Sequence[int]) -> float:
    """The target variance for a weight of this shape."""
    fan_in, fan_out = compute_fans(shape, self.batch_axes)
    n = {"fan_in": fan_in, "fan_out": fan_out,
         "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
    return self.scale / max(1.0, n)

  def __call__(self, key: jax.Array, shape: Sequence[int],
               dtype: Any = jnp.float32) -> jax.Array:
    variance = self.variance(shape)
    if self.distribution == "truncated_normal":
      stddev = math.sqrt(variance) / _TRUNCATED_STDDEV
      return stddev * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)
    if self.distribution == "untruncated_normal":
      return math.sqrt(variance) * jax.random.normal(key, shape, dtype)
    limit = math.sqrt(3.0 * variance)
    return jax.random.uniform(key, shape, dtype, -limit, limit)


@dataclasses.dataclass(frozen=True)
class RandomNormal:
  """``keras.initializers.RandomNormal`` (Keras default stddev 0.05)."""
  mean: float = 0.0
  stddev: float = 0.05

  def __call__(self, key, shape, dtype=jnp.float32):
    return self.mean + self.stddev * jax.random.normal(key, shape, dtype)


@dataclasses.dataclass(frozen=True)
class RandomUniform:
  """``keras.initializers.RandomUniform`` (Keras default [-0.05, 0.05])."""
  minval: float = -0.05
  maxval: float = 0.05

  def __call__(self, key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, self.minval, self.maxval)


@dataclasses.dataclass(frozen=True)
class Constant:
  """A constant; ``zeros`` and ``ones`` are its two common cases."""
  value: float = 0.0

  def __call__(self, key, shape, dtype=jnp.float32):
    del key
    return jnp.full(shape, self.value, dtype)


# The named initializers of Keras (lecture 004's table 11-1).
NAMED: dict[str, Any] = {
    "glorot_uniform": VarianceScaling(1.0, "fan_avg", "uniform"),
    "glorot_normal": VarianceScaling(1.0, "fan_avg", "truncated_normal"),
    "he_uniform": VarianceScaling(2.0, "fan_in", "uniform"),
    "he_normal": VarianceScaling(2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": VarianceScaling(1.0, "fan_in", "uniform"),
    "lecun_normal": VarianceScaling(1.0, "fan_in", "truncated_normal"),
    "random_normal": RandomNormal(),
    "random_uniform": RandomUniform(),
    "zeros": Constant(0.0),
    "ones": Constant(1.0),
}
# Dict specs: name -> the class its remaining keys are passed to.
_CONFIGURABLE = {
    "variance_scaling": VarianceScaling,
    "random_normal": RandomNormal,
    "random_uniform": RandomUniform,
    "constant": Constant,
}
NAMES = tuple(sorted(set(NAMED) | set(_CONFIGURABLE)))

Initializer = VarianceScaling | RandomNormal | RandomUniform | Constant


def glorot_uniform() -> VarianceScaling:
  return NAMED["glorot_uniform"]


def glorot_normal() -> VarianceScaling:
  return NAMED["glorot_normal"]


def he_uniform() -> VarianceScaling:
  return NAMED["he_uniform"]


def he_normal() -> VarianceScaling:
  return NAMED["he_normal"]


def lecun_uniform() -> VarianceScaling:
  return NAMED["lecun_uniform"]


def lecun_normal() -> VarianceScaling:
  return NAMED["lecun_normal"]


def parse(spec: Any, where: str = "kernel_initializer") -> Initializer:
  """Parses an initializer spec (name, dict or initializer object).

  Args:
    spec: ``'he_normal'``, ``{'name': 'variance_scaling', 'scale': 2.0, ...}``
      or an initializer object of this module.
    where: what the spec belongs to, for error messages.

  Returns:
    A hashable initializer object.

  Raises:
    ConfigError: an unknown name or parameter, naming the valid ones.
  """
  if isinstance(spec, (VarianceScaling, RandomNormal, RandomUniform, Constant)):
    return spec
  if isinstance(spec, str):
    if spec in NAMED:
      return NAMED[spec]
    if spec in _CONFIGURABLE:
      return _CONFIGURABLE[spec]()
    guess = config_lib.closest(spec, NAMES)
    hint = f" Did you mean '{guess}'?" if guess else ""
    raise config_lib.ConfigError(
        f"Unknown initializer '{spec}' in {where}.{hint} Valid: {', '.join(NAMES)}.")
  if isinstance(spec, Mapping):
    spec = dict(spec)
    name = spec.pop("name", None)
    if name in NAMED and name not in _CONFIGURABLE:
      if spec:
        raise config_lib.ConfigError(
            f"Initializer '{name}' in {where} takes no parameters; got "
            f"{sorted(spec)}. Use {{'name': 'variance_scaling', ...}} to change them.")
      return NAMED[name]
    if name not in _CONFIGURABLE:
      raise config_lib.ConfigError(
          f"Initializer dict in {where} needs 'name' among {', '.join(NAMES)}; got {name!r}.")
    cls = _CONFIGURABLE[name]
    fields = [f.name for f in dataclasses.fields(cls) if f.name != "batch_axes"]
    for key in spec:
      if key not in fields:
        raise config_lib.unknown_key_error(f"{where}.{key}", fields, f"initializer '{name}'")
    return cls(**spec)
  raise config_lib.ConfigError(
      f"{where} must be an initializer name ({', '.join(NAMES)}), a dict or an "
      f"initializer object; got {spec!r}.")
