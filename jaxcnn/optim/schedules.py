"""Learning-rate schedules of lecture 004 (``config.schedule``).

``lr0`` is ``optimizer.learning_rate``; ``t`` counts from 0 in the schedule's
``unit``: ``'step'`` (every update) or ``'epoch'`` (``t = step //
steps_per_epoch``: the rate changes only at epoch boundaries, as Keras'
``LearningRateScheduler`` callback does when it sets the rate at the start of
each epoch).

============  ==========================================  ===================
name          rate at ``t``                               parameters
============  ==========================================  ===================
constant      ``lr0``                                     --
power         ``lr0 / (1 + t/s)**c``                      s, c=1, unit='epoch'
exponential   ``lr0 * decay_rate**(t/s)``                 s, decay_rate=0.1,
                                                          unit='epoch'
piecewise     ``values[i]`` for                           boundaries, values,
              ``boundaries[i-1] <= t < boundaries[i]``    unit='epoch'
plateau       ``lr0``, cut by ``factor`` when the         factor=0.1,
              validation loss stalls (:mod:`.plateau`)    patience=10,
                                                          min_lr=0,
                                                          min_delta=1e-4,
                                                          cooldown=0
1cycle        linear ``lr0 -> max_learning_rate -> lr0``  max_learning_rate,
              (+ optional annihilation to                 cycle_length=0,
              ``final_learning_rate``)                    annihilation_fraction=0,
                                                          final_learning_rate,
                                                          cycle_momentum=True,
                                                          max_momentum=0.95,
                                                          min_momentum=0.85,
                                                          unit='step'
============  ==========================================  ===================

Notes against the lecture and Keras:

- piecewise ``values`` are absolute rates (the lecture's 0.01 / 0.005 / 0.001
  with ``boundaries=(5, 15)``, ``unit='epoch'``) and follow the lecture's
  ``epoch < 5`` test: the new value starts *at* the boundary (Keras'
  ``PiecewiseConstantDecay`` switches one step later, ``step <= boundary``).
  ``optimizer.learning_rate`` is not used by it.
- power with ``c=1`` and ``unit='step'`` is the legacy Keras ``SGD(decay=1/s)``.
- 1cycle (Smith 2018): over ``cycle_length`` units (0: the whole run), the
  rate rises linearly from ``lr0`` to ``max_learning_rate`` over the first
  half and falls back to ``lr0`` over the second half. With
  ``annihilation_fraction = a > 0``, the cycle takes the first ``1 - a`` of
  the length and the last ``a`` lowers the rate linearly from ``lr0`` to
  ``final_learning_rate`` (default ``lr0 / 1000``, as in Geron's
  ``OneCycleScheduler``). After the cycle the last rate holds. For momentum
  optimizers the momentum moves the other way, ``max_momentum ->
  min_momentum -> max_momentum`` (then stays at ``max_momentum``): it is
  ``momentum`` for ``sgd`` (only with ``momentum > 0``) and ``rmsprop`` (only
  with ``momentum > 0``), ``beta_1`` for ``adam``, ``adamax`` and ``nadam``
  (whose bias corrections then use the ``beta_1`` in force); ``adagrad`` has
  none. The cycled value replaces the optimizer's configured one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax.numpy as jnp
import optax

from jaxcnn.config import ConfigError
from jaxcnn.optim import _config

_REQUIRED = object()

# name -> {parameter: default}; _REQUIRED marks parameters without a default.
SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "power": dict(s=_REQUIRED, c=1.0, unit="epoch"),
    "exponential": dict(s=_REQUIRED, decay_rate=0.1, unit="epoch"),
    "piecewise": dict(boundaries=_REQUIRED, values=_REQUIRED, unit="epoch"),
    "plateau": dict(factor=0.1, patience=10, min_lr=0.0, min_delta=1e-4,
                    cooldown=0),
    "1cycle": dict(max_learning_rate=_REQUIRED, cycle_length=0,
                   annihilation_fraction=0.0, final_learning_rate=None,
                   cycle_momentum=True, max_momentum=0.95, min_momentum=0.85,
                   unit="step"),
}

Schedule = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class Built:
  """What :func:`build` returns.

  Attributes:
    name: the schedule's name.
    learning_rate: a float (constant, plateau: a plain hyperparameter that
      :func:`jaxcnn.optim.on_epoch_end` may change) or a schedule of the step.
    momentum: the 1cycle momentum schedule, or None.
  """
  name: str
  learning_rate: float | Schedule
  momentum: Schedule | None = None


def resolve(schedule_config: Any) -> tuple[str, dict[str, Any]]:
  """Checks a schedule section and fills in the defaults.

  Args:
    schedule_config: ``config.schedule`` (ConfigDict or dict) with ``name``;
      None means constant.

  Returns:
    ``(name, parameters)``.

  Raises:
    ConfigError: an unknown schedule (listing the valid ones), an unknown
      parameter (with the closest valid one), a missing or invalid value.
  """
  given = _config.as_dict(schedule_config, "schedule")
  name = given.pop("name", "constant")
  if name not in SCHEDULES:
    raise ConfigError(f"Unknown schedule {name!r}. Valid schedules: "
                      f"{', '.join(sorted(SCHEDULES))}.")
  spec = SCHEDULES[name]
  _config.check_keys(given, [*spec, "name"], f"schedule '{name}'", "schedule",
                     elsewhere={k: v for k, v in SCHEDULES.items() if k != name},
                     noun="parameter")
  params = {**spec, **given}
  missing = [k for k, v in params.items() if v is _REQUIRED]
  if missing:
    raise ConfigError(f"Schedule '{name}' needs {', '.join(missing)} "
                      f"(schedule.{missing[0]}).")
  _check(name, params)
  return name, params


def _check(name: str, p: dict[str, Any]) -> None:
  """Range checks of the parameters; converts them to plain Python types."""
  num, integer = _config.number, _config.integer
  if "unit" in p and p["unit"] not in ("epoch", "step"):
    raise ConfigError(
        f"'schedule.unit' must be 'epoch' or 'step', got {p['unit']!r}.")
  if name in ("power", "exponential"):
    p["s"] = num(p["s"], "schedule.s", minimum=0.0, strict_min=True)
  if name == "power":
    p["c"] = num(p["c"], "schedule.c", minimum=0.0)
  if name == "exponential":
    p["decay_rate"] = num(p["decay_rate"], "schedule.decay_rate", minimum=0.0,
                          strict_min=True)
  if name == "piecewise":
    for key in ("boundaries", "values"):
      if not isinstance(p[key], (list, tuple)):
        raise ConfigError(f"'schedule.{key}' must be a list or tuple, got {p[key]!r}.")
    bounds = [integer(b, "schedule.boundaries", minimum=1) for b in p["boundaries"]]
    values = [num(v, "schedule.values", minimum=0.0) for v in p["values"]]
    if any(b >= c for b, c in zip(bounds, bounds[1:])):
      raise ConfigError(f"'schedule.boundaries' must increase strictly, got "
                        f"{tuple(p['boundaries'])}.")
    if len(values) != len(bounds) + 1:
      raise ConfigError(
          f"'schedule.values' needs one rate more than 'schedule.boundaries' "
          f"(the rate before the first boundary, then after each): got "
          f"{len(values)} values for {len(bounds)} boundaries.")
    p["boundaries"], p["values"] = tuple(bounds), tuple(values)
  if name == "plateau":
    p["factor"] = num(p["factor"], "schedule.factor", minimum=0.0, maximum=1.0,
                      strict_min=True, strict_max=True)
    p["patience"] = integer(p["patience"], "schedule.patience", minimum=0)
    p["min_lr"] = num(p["min_lr"], "schedule.min_lr", minimum=0.0)
    p["min_delta"] = abs(num(p["min_delta"], "schedule.min_delta", minimum=None))
    p["cooldown"] = integer(p["cooldown"], "schedule.cooldown", minimum=0)
  if name == "1cycle":
    p["max_learning_rate"] = num(p["max_learning_rate"],
                                 "schedule.max_learning_rate", minimum=0.0)
    p["cycle_length"] = integer(p["cycle_length"], "schedule.cycle_length")
    p["annihilation_fraction"] = num(
        p["annihilation_fraction"], "schedule.annihilation_fraction",
        minimum=0.0, maximum=1.0, strict_max=True)
    if p["final_learning_rate"] is not None:
      p["final_learning_rate"] = num(p["final_learning_rate"],
                                     "schedule.final_learning_rate", minimum=0.0)
    p["cycle_momentum"] = _config.boolean(p["cycle_momentum"],
                                          "schedule.cycle_momentum")
    for key in ("max_momentum", "min_momentum"):
      p[key] = num(p[key], f"schedule.{key}", minimum=0.0, maximum=1.0,
                   strict_max=True)
    if p["min_momentum"] > p["max_momentum"]:
      raise ConfigError(
          f"'schedule.min_momentum' ({p['min_momentum']}) must not exceed "
          f"'schedule.max_momentum' ({p['max_momentum']}).")


def in_units(schedule: Schedule, unit: str, steps_per_epoch: int) -> Schedule:
  """``schedule`` of the unit count turned into a schedule of the step count."""
  if unit == "step":
    return schedule
  return lambda step: schedule(jnp.asarray(step) // steps_per_epoch)


def power(lr0: float, s: float, c: float = 1.0) -> Schedule:
  """``lr0 / (1 + t/s)**c``: ``lr0/2`` after ``s`` units, ``lr0/3`` after 2s (c=1)."""
  return lambda t: lr0 / jnp.power(1.0 + jnp.asarray(t, jnp.float32) / s, c)


def exponential(lr0: float, s: float, decay_rate: float = 0.1) -> Schedule:
  """``lr0 * decay_rate**(t/s)``: divided by 10 every ``s`` units (rate 0.1)."""
  return optax.exponential_decay(lr0, transition_steps=s, decay_rate=decay_rate)


def piecewise(boundaries: tuple[int, ...], values: tuple[float, ...]) -> Schedule:
  """``values[i]`` while ``boundaries[i-1] <= t < boundaries[i]`` (absolute)."""
  bounds = jnp.asarray(boundaries, jnp.int32)
  rates = jnp.asarray(values, jnp.float32)
  return lambda t: rates[jnp.searchsorted(bounds, jnp.asarray(t), side="right")]


def one_cycle(lr0: float, max_learning_rate: float, length: int,
              annihilation_fraction: float = 0.0,
              final_learning_rate: float | None = None,
              max_momentum: float = 0.95, min_momentum: float = 0.85
              ) -> tuple[Schedule, Schedule]:
  """The 1cycle rate and momentum schedules over ``length`` units.

  Returns:
    ``(rate, momentum)``, built from optax's linear and joined schedules.
  """
  annihilation = int(round(annihilation_fraction * length))
  cycle = length - annihilation
  half = cycle // 2
  final = lr0 / 1000 if final_learning_rate is None else final_learning_rate
  rate = optax.join_schedules(
      [optax.linear_schedule(lr0, max_learning_rate, half),
       optax.linear_schedule(max_learning_rate, lr0, cycle - half),
       optax.linear_schedule(lr0, final, annihilation)],
      [half, cycle])
  momentum = optax.join_schedules(
      [optax.linear_schedule(max_momentum, min_momentum, half),
       optax.linear_schedule(min_momentum, max_momentum, cycle - half)],
      [half])
  return rate, momentum


def build(schedule_config: Any, lr0: float, *, steps_per_epoch: int,
          num_epochs: int, momentum_name: str | None = None) -> Built:
  """The rate (and 1cycle momentum) schedule of ``config.schedule``.

  Args:
    schedule_config: ``config.schedule``; see the module docstring.
    lr0: ``optimizer.learning_rate``.
    steps_per_epoch: updates per epoch.
    num_epochs: epochs of the run (for 1cycle's length and its check).
    momentum_name: the optimizer's momentum hyperparameter in force (None when
      it has none); 1cycle cycles it.

  Returns:
    A :class:`Built`.

  Raises:
    ConfigError: as :func:`resolve`, or a 1cycle longer than the run or with a
      peak below ``lr0``.
  """
  name, p = resolve(schedule_config)
  if name in ("constant", "plateau"):
    return Built(name, lr0)
  unit = p["unit"]
  if name == "power":
    fn = power(lr0, p["s"], p["c"])
  elif name == "exponential":
    fn = exponential(lr0, p["s"], p["decay_rate"])
  elif name == "piecewise":
    fn = piecewise(p["boundaries"], p["values"])
  else:
    run = num_epochs if unit == "epoch" else num_epochs * steps_per_epoch
    length = p["cycle_length"] or run
    if length > run:
      raise ConfigError(
          f"1cycle of {length} {unit}s is longer than the run ({num_epochs} "
          f"epochs = {run} {unit}s); set 'schedule.cycle_length' <= {run} "
          "(0 uses the whole run).")
    if length < 2:
      raise ConfigError(f"1cycle needs at least 2 {unit}s, got {length}.")
    if p["max_learning_rate"] < lr0:
      raise ConfigError(
          f"'schedule.max_learning_rate' ({p['max_learning_rate']:g}) is the "
          f"peak of 1cycle and must be >= optimizer.learning_rate ({lr0:g}).")
    fn, mom = one_cycle(lr0, p["max_learning_rate"], length,
                        p["annihilation_fraction"], p["final_learning_rate"],
                        p["max_momentum"], p["min_momentum"])
    cycled = p["cycle_momentum"] and momentum_name is not None
    return Built(name, in_units(fn, unit, steps_per_epoch),
                 in_units(mom, unit, steps_per_epoch) if cycled else None)
  return Built(name, in_units(fn, unit, steps_per_epoch))
