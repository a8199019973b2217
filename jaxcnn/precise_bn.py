"""BatchNorm moving statistics on short runs: "precise BN" and the staleness warning.

Keras' BatchNorm keeps ``moving = m * moving + (1 - m) * batch`` with
``m = 0.99``: after ``n`` updates the initial values (mean 0, variance 1)
still weigh ``m**n`` (0.99**50 is 0.61), so a run of a few dozen steps
evaluates with statistics that are mostly the initial ones (the
regularization ladder's BatchNorm rung). Two remedies, both config keys:

* ``model.bn_momentum``: a lower momentum (``models.presets.with_bn_momentum``).
* ``training.recompute_bn_stats = N``: after training, the moving mean and
  variance of every BatchNorm layer become the plain average of the batch
  statistics of N training batches, in train mode, with no parameter update
  (:func:`recompute`, "precise BN", Wu & Johnson 2021).

:func:`stale_warning` says, at the end of a run, when neither was enough.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Iterable

import jax
import jax.numpy as jnp

from jaxcnn import parallel

KERAS_MOMENTUM = 0.99
# Warn when the initial moving statistics still weigh more than this.
STALE_THRESHOLD = 0.05


def _bn_specs(model) -> list:
  return [spec for spec in getattr(model, "layers", ())
          if getattr(spec, "type", None) == "batch_normalization"]


def momenta(model) -> list[float]:
  """The moving-average momentum of each updated BatchNorm layer of a Sequential model.

  A frozen BatchNorm (``models.freezing``: Keras' ``trainable=False``) keeps
  its moving statistics on purpose and is left out.
  """
  frozen = set(getattr(model, "frozen_batch_norm", ()))
  return [float(spec.kwargs.get("momentum", KERAS_MOMENTUM)) for spec in _bn_specs(model)
          if spec.name not in frozen]


def with_momentum(model, momentum: float):
  """The same model (same variables) with every BatchNorm layer at ``momentum``."""
  layers = tuple(
      dataclasses.replace(spec, options=tuple(sorted(
          {**spec.kwargs, "momentum": float(momentum)}.items())))
      if spec.type == "batch_normalization" else spec for spec in model.layers)
  return model.clone(layers=layers)


def stale_weight(momentum: float, updates: int) -> float:
  """The weight ``momentum**updates`` the initial moving statistics still carry."""
  return float(momentum) ** int(updates)


def stale_warning(model, updates: int, *, threshold: float = STALE_THRESHOLD) -> str | None:
  """A warning when the BatchNorm moving statistics have seen too few updates.

  Args:
    model: a Sequential model (its BatchNorm layers' momenta are read).
    updates: train steps the moving statistics were updated in.
    threshold: warn when the initial values still weigh more than this.

  Returns:
    The warning text, or None (no BatchNorm layer, or enough updates).
  """
  found = momenta(model)
  if not found:
    return None
  m = max(found)
  weight = stale_weight(m, updates)
  if weight <= threshold:
    return None
  # The updates that bring the initial weight down to the threshold, and the
  # momentum that does it in the updates seen.
  needed = math.ceil(math.log(threshold) / math.log(m))
  lower = math.floor(100 * threshold ** (1 / max(updates, 1))) / 100
  return (f"Warning: the BatchNorm moving statistics saw {updates} updates at "
          f"momentum {m:g}, so their initial values (mean 0, variance 1) still weigh "
          f"{m:g}**{updates} = {weight:.2f} of them (more than {threshold:g}): "
          "evaluation and test use statistics that are still partly the initial "
          "ones. Set training.recompute_bn_stats (e.g. 50 training batches) to "
          f"recompute them after training, train at least {needed} steps, or lower "
          f"model.bn_momentum (at most {lower:g} for {updates} steps: "
          f"--config.model.bn_momentum={lower:g}).")


def recompute(train_model, state, batches: Iterable[Any], num_batches: int, *,
              pmap: bool = True):
  """The state with its moving statistics the mean of ``num_batches`` batches' statistics.

  Args:
    train_model: the train-step model (``axis_name='batch'``, its freeze
      semantics: a frozen BatchNorm keeps its moving statistics).
    state: a single run's TrainState.
    batches: training batches ``{'image': [D, b, ...], ...}``; the first
      ``num_batches`` are used.
    num_batches: how many (>= 1).
    pmap: False runs on one device (``--debug_nans``).

  Returns:
    ``state`` with ``batch_stats`` replaced; params and optimizer untouched.

  Raises:
    ValueError: ``batches`` ran out before ``num_batches``.
  """
  if not state.batch_stats:
    return state
  step = parallel.make_batch_stats_step(with_momentum(train_model, 0.0), pmap=pmap)
  total, count = None, 0
  for batch in itertools.islice(batches, num_batches):
    stats = step(state.replace(step=state.step + count), batch)
    total = stats if total is None else jax.tree.map(jnp.add, total, stats)
    count += 1
  if count < num_batches:
    raise ValueError(f"Only {count} training batches for recompute_bn_stats={num_batches}.")
  return state.replace(batch_stats=jax.tree.map(lambda x: x / count, total))
