"""The six optimizers of lecture 004, with Keras 3's names, defaults and maths.

Each builder returns a whole update rule, learning rate included, as an optax
``GradientTransformation``: ``params + updates`` is the Keras step. Where optax
has the same arithmetic it is composed from optax's own transformations; Adam,
Adamax and Nadam put epsilon or the bias correction elsewhere than optax does,
so they are small optax-style transformations here, written in Keras'
operation order so trajectories agree with Keras to float32 rounding.

Keras 3 update rules (g: gradient, lr: rate in force, t: 1-based step):

- ``sgd``: ``m = momentum*m - lr*g; w += m`` (``w += momentum*m - lr*g`` with
  ``nesterov``); plain ``w -= lr*g`` when ``momentum == 0``. The rate sits
  inside the velocity, so a schedule changes only the new contributions (optax
  ``sgd`` scales the velocity instead; the two differ once the rate moves).
- ``adagrad``: ``s += g²; w -= lr*g / sqrt(s + eps)``, ``s`` starts at
  ``initial_accumulator_value``.
- ``rmsprop``: ``s = rho*s + (1-rho)*g²; w -= lr*g / sqrt(s + eps)``; centered:
  ``sqrt(s - mean_g² + eps)``; with momentum ``v = momentum*v + lr*g/...;
  w -= v``. Epsilon is inside the square root in Keras 3 (and in the lecture).
- ``adam``: ``m += (g-m)(1-b1); v += (g²-v)(1-b2);
  w -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)`` -- Keras' "epsilon
  hat": eps is added to the *uncorrected* sqrt(v).
- ``adamax``: ``u = max(b2*u, |g|); w -= lr*m / ((1-b1^t)(u + eps))``.
- ``nadam``: Dozat's momentum schedule ``mu_t = b1(1 - 0.5*0.96^t)`` with the
  running product of the ``mu``; see :func:`keras_nadam`.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxcnn.config import ConfigError
from jaxcnn.optim import _config

# Keras 3's hyperparameters and defaults, per optimizer (``learning_rate``
# included). Shared keys (weight decay, clipping) are handled by the builder.
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": dict(learning_rate=0.01, momentum=0.0, nesterov=False),
    "adagrad": dict(learning_rate=0.001, initial_accumulator_value=0.1,
                    epsilon=1e-7),
    "rmsprop": dict(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                    centered=False),
    "adam": dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False),
    "adamax": dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7),
    "nadam": dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7),
}

# The hyperparameter that 1cycle cycles, per optimizer (None: no momentum).
MOMENTUM_HYPERPARAM = {
    "sgd": "momentum", "rmsprop": "momentum", "adagrad": None,
    "adam": "beta_1", "adamax": "beta_1", "nadam": "beta_1",
}

_BOOLEAN = ("nesterov", "centered", "amsgrad")


def check_name(name: Any) -> str:
  """Returns ``name`` if it is a known optimizer.

  Raises:
    ConfigError: listing the valid names.
  """
  if name not in OPTIMIZERS:
    raise ConfigError(
        f"Unknown optimizer {name!r}. Valid optimizers: "
        f"{', '.join(sorted(OPTIMIZERS))}.")
  return name


def resolve(name: str, given: Mapping[str, Any],
            shared_keys: tuple[str, ...] = ()) -> dict[str, Any]:
  """Checks an optimizer's hyperparameters and fills in Keras' defaults.

  Args:
    name: a key of :data:`OPTIMIZERS`.
    given: the hyperparameters from the config (``name`` removed).
    shared_keys: keys every optimizer accepts, checked elsewhere, that the
      error message should list as valid too.

  Returns:
    Every hyperparameter of the optimizer, checked.

  Raises:
    ConfigError: a key that belongs to another optimizer or to none (with the
      closest valid one), a wrong type, or a value out of range.
  """
  defaults = OPTIMIZERS[check_name(name)]
  _config.check_keys(given, [*defaults, *shared_keys, "name"],
                     f"optimizer '{name}'", "optimizer",
                     elsewhere={k: v for k, v in OPTIMIZERS.items() if k != name})
  hp = {**defaults, **{k: v for k, v in given.items() if k in defaults}}
  for key, value in hp.items():
    where = f"optimizer.{key}"
    if key in _BOOLEAN:
      hp[key] = _config.boolean(value, where)
    elif key in ("learning_rate", "epsilon", "initial_accumulator_value"):
      hp[key] = _config.number(value, where, minimum=0.0)
    elif key == "momentum":
      hp[key] = _config.number(value, where, minimum=0.0, maximum=1.0)
    elif key in ("rho", "beta_1", "beta_2"):
      hp[key] = _config.number(value, where, minimum=0.0, maximum=1.0,
                               strict_max=True)
  if name == "sgd" and hp["nesterov"] and hp["momentum"] == 0:
    raise ConfigError("'optimizer.nesterov' needs 'optimizer.momentum' > 0 "
                      "(Nesterov momentum without momentum is plain SGD).")
  return hp


def build(name: str, learning_rate: Any, hp: Mapping[str, Any], *,
          use_momentum: bool) -> optax.GradientTransformation:
  """The Keras update rule of optimizer ``name``, learning rate included.

  Args:
    name: a key of :data:`OPTIMIZERS`.
    learning_rate: the rate in force (a scalar, possibly traced).
    hp: the hyperparameters from :func:`resolve` (``momentum`` / ``beta_1`` may
      be traced scalars when a schedule cycles them).
    use_momentum: for ``sgd`` / ``rmsprop``: whether to keep a velocity (a
      static choice: Keras keeps one only when ``momentum > 0``).

  Returns:
    A transformation whose updates are added to the params.
  """
  if name == "sgd":
    return keras_sgd(learning_rate, hp["momentum"] if use_momentum else None,
                     nesterov=hp["nesterov"])
  if name == "adagrad":
    return optax.chain(
        optax.scale_by_rss(initial_accumulator_value=hp["initial_accumulator_value"],
                           eps=hp["epsilon"]),
        optax.scale_by_learning_rate(learning_rate))
  if name == "rmsprop":
    # optax.rmsprop applies the rate before the velocity, as Keras does, and
    # with eps_in_sqrt=True divides by sqrt(s + eps) (centered:
    # sqrt(s - mean² + eps)): Keras 3's arithmetic.
    return optax.rmsprop(learning_rate, decay=hp["rho"], eps=hp["epsilon"],
                         initial_scale=0.0, eps_in_sqrt=True,
                         centered=hp["centered"],
                         momentum=hp["momentum"] if use_momentum else None)
  if name == "adam":
    return keras_adam(learning_rate, hp["beta_1"], hp["beta_2"], hp["epsilon"],
                      amsgrad=hp["amsgrad"])
  if name == "adamax":
    return keras_adamax(learning_rate, hp["beta_1"], hp["beta_2"], hp["epsilon"])
  if name == "nadam":
    return keras_nadam(learning_rate, hp["beta_1"], hp["beta_2"], hp["epsilon"])
  raise ConfigError(f"Unknown optimizer {name!r}.")  # check_name ran before.


def keras_sgd(learning_rate: Any, momentum: Any | None = None,
              nesterov: bool = False) -> optax.GradientTransformation:
  """Keras' SGD: the rate is applied before the velocity (``m = b*m - lr*g``).

  ``optax.trace`` on ``-lr*g`` keeps exactly Keras' ``m``; with ``nesterov`` it
  returns ``-lr*g + b*m_new``, Keras' look-ahead form of the lecture's NAG (the
  params are the lecture's ``theta + b*m``).

  Args:
    learning_rate: the rate in force.
    momentum: the velocity decay; None for plain SGD (no state).
    nesterov: Nesterov momentum.
  """
  if momentum is None:
    return optax.scale_by_learning_rate(learning_rate)
  return optax.chain(optax.scale_by_learning_rate(learning_rate),
                     optax.trace(decay=momentum, nesterov=nesterov))


def _step_powers(count: jax.Array, *betas: Any) -> tuple[jax.Array, ...]:
  t = (count + 1).astype(jnp.float32)
  return tuple(jnp.power(jnp.asarray(b, jnp.float32), t) for b in betas)


class KerasAdamState(NamedTuple):
  """State of :func:`keras_adam`: step count and the two moments."""
  count: jax.Array  # int32 scalar: updates done so far
  mu: optax.Updates  # first moment m
  nu: optax.Updates  # second moment v
  nu_max: optax.Updates | None  # max of v over time (amsgrad only)


def keras_adam(learning_rate: Any, beta_1: Any = 0.9, beta_2: Any = 0.999,
               epsilon: Any = 1e-7, amsgrad: bool = False
               ) -> optax.GradientTransformation:
  """Keras' Adam: ``w -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)``.

  optax.adam divides the corrected ``m_hat`` by ``sqrt(v_hat) + eps``; Keras
  folds both corrections into the rate, so its eps meets the uncorrected
  ``sqrt(v)`` (eps is effectively ``eps*sqrt(1-b2^t)`` in optax terms).
  """

  def init_fn(params):
    zeros = lambda: optax.tree.zeros_like(params)
    return KerasAdamState(count=jnp.zeros([], jnp.int32), mu=zeros(),
                          nu=zeros(), nu_max=zeros() if amsgrad else None)

  def update_fn(updates, state, params=None):
    del params
    b1_power, b2_power = _step_powers(state.count, beta_1, beta_2)
    alpha = learning_rate * jnp.sqrt(1 - b2_power) / (1 - b1_power)
    mu = jax.tree.map(lambda g, m: m + (g - m) * (1 - beta_1), updates, state.mu)
    nu = jax.tree.map(lambda g, v: v + (jnp.square(g) - v) * (1 - beta_2),
                      updates, state.nu)
    nu_max = state.nu_max
    if amsgrad:
      nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
    denom_v = nu_max if amsgrad else nu
    new_updates = jax.tree.map(lambda m, v: -(m * alpha) / (jnp.sqrt(v) + epsilon),
                               mu, denom_v)
    count = optax.safe_increment(state.count)
    return new_updates, KerasAdamState(count=count, mu=mu, nu=nu, nu_max=nu_max)

  return optax.GradientTransformation(init_fn, update_fn)


class KerasAdamaxState(NamedTuple):
  """State of :func:`keras_adamax`: step count, first moment, infinity norm."""
  count: jax.Array
  mu: optax.Updates
  norm: optax.Updates


def keras_adamax(learning_rate: Any, beta_1: Any = 0.9, beta_2: Any = 0.999,
                 epsilon: Any = 1e-7) -> optax.GradientTransformation:
  """Keras' Adamax: ``u = max(b2*u, |g|); w -= lr*m / ((1-b1^t)(u + eps))``.

  optax.adamax adds eps inside the max (``max(b2*u, |g| + eps)``), Keras after.
  """

  def init_fn(params):
    return KerasAdamaxState(count=jnp.zeros([], jnp.int32),
                            mu=optax.tree.zeros_like(params),
                            norm=optax.tree.zeros_like(params))

  def update_fn(updates, state, params=None):
    del params
    (b1_power,) = _step_powers(state.count, beta_1)
    mu = jax.tree.map(lambda g, m: m + (g - m) * (1 - beta_1), updates, state.mu)
    norm = jax.tree.map(lambda g, u: jnp.maximum(beta_2 * u, jnp.abs(g)),
                        updates, state.norm)
    new_updates = jax.tree.map(
        lambda m, u: -(learning_rate * m) / ((1 - b1_power) * (u + epsilon)),
        mu, norm)
    count = optax.safe_increment(state.count)
    return new_updates, KerasAdamaxState(count=count, mu=mu, norm=norm)

  return optax.GradientTransformation(init_fn, update_fn)


class KerasNadamState(NamedTuple):
  """State of :func:`keras_nadam`: step count, moments, product of the mu_t."""
  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates
  mu_product: jax.Array  # float32 scalar, prod_{i<=t} b1(1 - 0.5*0.96^i)


def keras_nadam(learning_rate: Any, beta_1: Any = 0.9, beta_2: Any = 0.999,
                epsilon: Any = 1e-7) -> optax.GradientTransformation:
  """Keras' Nadam (Dozat 2016) with its 0.96 momentum-decay schedule.

  With ``mu_t = b1(1 - 0.5*0.96^t)`` and ``P_t = mu_1 ... mu_t``::

    m_hat = mu_{t+1} m / (1 - P_t mu_{t+1}) + (1 - mu_t) g / (1 - P_t)
    v_hat = v / (1 - b2^t)
    w -= lr * m_hat / (sqrt(v_hat) + eps)

  optax.nadam is Adam with a Nesterov look-ahead and no momentum schedule.
  """

  def init_fn(params):
    return KerasNadamState(count=jnp.zeros([], jnp.int32),
                           mu=optax.tree.zeros_like(params),
                           nu=optax.tree.zeros_like(params),
                           mu_product=jnp.ones([], jnp.float32))

  def update_fn(updates, state, params=None):
    del params
    t = (state.count + 1).astype(jnp.float32)
    b1 = jnp.asarray(beta_1, jnp.float32)
    decay = jnp.float32(0.96)
    mu_t = b1 * (1.0 - 0.5 * jnp.power(decay, t))
    mu_next = b1 * (1.0 - 0.5 * jnp.power(decay, t + 1))
    mu_product = state.mu_product * mu_t
    mu_product_next = mu_product * mu_next
    # Keras' Nadam casts the betas to float32 before 1 - beta (Adam does not):
    # with 0.999, 1 - beta_2 then carries the same rounding as 1 - beta_2^t.
    b2 = jnp.asarray(beta_2, jnp.float32)
    b2_power = jnp.power(b2, t)
    mu = jax.tree.map(lambda g, m: m + (g - m) * (1 - b1), updates, state.mu)
    nu = jax.tree.map(lambda g, v: v + (jnp.square(g) - v) * (1 - b2),
                      updates, state.nu)

    def step(g, m, v):
      m_hat = mu_next * m / (1 - mu_product_next) + (1 - mu_t) * g / (1 - mu_product)
      v_hat = v / (1 - b2_power)
      return -(m_hat * learning_rate) / (jnp.sqrt(v_hat) + epsilon)

    new_updates = jax.tree.map(step, updates, mu, nu)
    count = optax.safe_increment(state.count)
    return new_updates, KerasNadamState(count=count, mu=mu, nu=nu,
                                        mu_product=mu_product)

  return optax.GradientTransformation(init_fn, update_fn)
