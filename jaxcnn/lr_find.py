"""The learning-rate range test (``--mode=lr_find``): where 1cycle's peak comes from.

Lecture 004 picks 1cycle's peak rate "with the same method described before
to find the optimal rate": the one of Geron's book the lecture follows
(chapter 10). Train from the initialization for a few hundred steps while the
rate grows exponentially -- multiplied by the same factor after every step,
from ``lr_find.start`` to ``lr_find.end`` in ``lr_find.steps`` steps, as
Geron's ``ExponentialLearningRate`` Keras callback does -- and record each
step's loss; then plot loss against rate on a log axis. The loss falls, flattens
and shoots up once the rate is too large.

The suggestion follows Geron's rule: the good rate is "about 10 times lower
than the point at which the loss starts to climb". Here that turning point is
the rate at the minimum of the smoothed loss (an exponential moving average,
factor ``lr_find.smoothing``, bias-corrected), so

    suggestion = rate at the minimum smoothed loss / 10.

The sweep is the experiment's own: its data (training batches in the
training order), model, regularization and optimizer (its schedule replaced
by the swept rate; 1cycle's momentum therefore stays at the optimizer's
configured value), and the same compiled data-parallel train step as
training (``parallel.make_train_step``), built once and called per step so
that the sweep can stop as soon as the smoothed loss exceeds
``lr_find.stop_factor`` times its best (or turns non-finite). Loss ``i`` is
the loss of batch ``i`` before the update with rate ``i`` (what Keras'
``on_batch_end`` sees), so the rate that blows the loss up shows one step
later.

Nothing of the workdir's training is touched: no checkpoint, no
``config.json``; the sweep writes ``lr_find.json`` and ``lr_find.png`` only.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxcnn import config as config_lib
from jaxcnn import models
from jaxcnn import optim
from jaxcnn import parallel
from jaxcnn import state as state_lib
from jaxcnn import train
from jaxcnn import workdir as workdir_lib

JSON_FILE = "lr_find.json"
PLOT_FILE = "lr_find.png"
# Geron's rule: the good rate is about 10x below the turning point.
SUGGESTION_DIVISOR = 10.0
RULE = ("the rate at the minimum smoothed loss divided by 10 (Geron: about 10 "
        "times lower than the point at which the loss starts to climb)")


def rates(start: float, end: float, steps: int) -> np.ndarray:
  """The swept rates: ``start * factor**i``, ``factor = (end/start)**(1/(steps-1))``.

  Returns:
    float64[steps], from ``start`` to ``end``, each ``factor`` times the last.
  """
  return start * (end / start) ** (np.arange(steps, dtype=np.float64) / (steps - 1))


class SweepState(NamedTuple):
  """The state of :func:`sweeping`: the steps taken and the wrapped optimizer's."""
  count: jax.Array
  inner: Any


def sweeping(tx: optax.GradientTransformation,
             rate_table: np.ndarray) -> optax.GradientTransformation:
  """``tx`` whose update ``i`` uses learning rate ``rate_table[i]`` (float32).

  Args:
    tx: an optimizer from ``optim.create`` with a constant schedule (its rate
      is a plain injected hyperparameter, set here before every update).
    rate_table: the rates, in order; updates past its end keep the last.
  """
  table = jnp.asarray(rate_table, jnp.float32)

  def init(params):
    return SweepState(jnp.zeros([], jnp.int32), tx.init(params))

  def update(updates, state, params=None):
    rate = table[jnp.minimum(state.count, table.shape[0] - 1)]
    inner = optim.set_hyperparam(state.inner, "learning_rate", rate)
    updates, inner = tx.update(updates, inner, params)
    return updates, SweepState(state.count + 1, inner)

  return optax.GradientTransformation(init, update)


@dataclasses.dataclass(frozen=True)
class Sweep:
  """What a range test found.

  Attributes:
    rates: the rates of the steps taken (float64; the optimizer used their
      float32 roundings).
    losses: each step's training loss, before its update (NaN/inf kept).
    smoothed: the bias-corrected exponential moving average of ``losses``.
    stopped_at: the step at which the smoothed loss exceeded ``stop_factor``
      times its best or a loss was not finite (the last step recorded);
      None when the sweep ran to its end.
    planned_steps: the steps the sweep would have taken.
    minimum_rate: the rate at the minimum smoothed loss (the turning point).
    suggestion: ``minimum_rate / 10`` (:data:`RULE`).
  """
  rates: np.ndarray
  losses: np.ndarray
  smoothed: np.ndarray
  stopped_at: int | None
  planned_steps: int
  minimum_rate: float
  suggestion: float

  def to_json(self) -> dict[str, Any]:
    """A JSON-able dict (non-finite losses as None)."""
    finite = lambda xs: [float(x) if math.isfinite(x) else None for x in xs]
    i = int(np.nanargmin(np.where(np.isfinite(self.smoothed), self.smoothed, np.nan)))
    return {"rates": [float(r) for r in self.rates], "losses": finite(self.losses),
            "smoothed_losses": finite(self.smoothed), "stopped_at": self.stopped_at,
            "planned_steps": self.planned_steps,
            "minimum": {"step": i, "rate": self.minimum_rate,
                        "smoothed_loss": float(self.smoothed[i])},
            "suggestion": self.suggestion, "rule": RULE}


def sweep(step: Callable[[Any, Any], tuple[Any, dict]], state: Any,
          batches: Iterator[Any], rate_table: np.ndarray, *, stop_factor: float,
          smoothing: float) -> Sweep:
  """Runs ``step`` over ``batches`` once per rate and records the losses.

  Args:
    step: ``step(state, batch) -> (state, metrics)`` whose optimizer is
      :func:`sweeping` over ``rate_table`` (so update ``i`` uses rate ``i``);
      ``metrics['loss']`` is the batch's loss before the update.
    state: the starting state (consumed if the step donates it).
    batches: at least ``len(rate_table)`` batches.
    rate_table: the rates (:func:`rates`).
    stop_factor: stop once the smoothed loss exceeds this times its best.
    smoothing: the moving average's factor (0: the raw losses).

  Returns:
    The :class:`Sweep`.
  """
  losses, smoothed = [], []
  average, best, stopped_at = 0.0, math.inf, None
  for i, batch in zip(range(len(rate_table)), batches):
    state, metrics = step(state, batch)
    loss = float(np.asarray(parallel.to_host(metrics["loss"])).reshape(-1)[0])
    average = smoothing * average + (1 - smoothing) * loss
    value = average / (1 - smoothing ** (i + 1))  # bias-corrected
    losses.append(loss)
    smoothed.append(value)
    if not math.isfinite(value) or value > stop_factor * best:
      stopped_at = i
      break
    best = min(best, value)
  smoothed_arr = np.asarray(smoothed)
  taken = np.asarray(rate_table[:len(losses)], np.float64)
  finite = np.where(np.isfinite(smoothed_arr), smoothed_arr, np.inf)
  minimum_rate = float(taken[int(np.argmin(finite))])
  return Sweep(rates=taken, losses=np.asarray(losses), smoothed=smoothed_arr,
               stopped_at=stopped_at, planned_steps=len(rate_table),
               minimum_rate=minimum_rate,
               suggestion=minimum_rate / SUGGESTION_DIVISOR)


def _sweep_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The single-run config the sweep trains: member 0's, schedule constant."""
  population = config.training.population > 1
  if population:
    config = config_lib.member_configs(config)[0]
  config = ml_collections.ConfigDict(config.to_dict())
  if population and config.transfer.source and config.transfer.source_member < 0:
    # Member 0 of a population continues member 0 of a population source (a
    # single run or a weights file takes 0 as well).
    config.transfer.source_member = 0
  config.schedule = ml_collections.ConfigDict({"name": "constant"})
  config.optimizer.learning_rate = float(config.lr_find.start)
  return config_lib.validate(config)


def _training_batches(data) -> Iterator[Any]:
  """The training batches in the training order, epoch after epoch."""
  epoch = 0
  while True:
    yield from data.train_epoch(epoch)
    epoch += 1


def find(config: ml_collections.ConfigDict, workdir: str) -> Sweep:
  """Runs the range test of ``config`` and writes its JSON and plot to ``workdir``.

  Args:
    config: an experiment config; ``config.lr_find`` sets the sweep. A
      population's member 0 is swept.
    workdir: where ``lr_find.json`` and ``lr_find.png`` go (nothing else is
      written there: no checkpoint, no ``config.json``).

  Returns:
    The :class:`Sweep`; its suggestion is printed.

  Raises:
    config_lib.ConfigError: an invalid config.
  """
  from jaxcnn import visualize  # matplotlib only when a sweep runs.
  config = _sweep_config(config)
  lr = config.lr_find
  table = rates(lr.start, lr.end, lr.steps)
  setup = train.build(config, workdir)  # Writes nothing to the workdir.
  tx = sweeping(setup.tx, table)
  state = state_lib.create(config, setup.model, tx, setup.data.info.image_shape)
  state = state_lib.from_pretrained(config, setup.model, state, tx)
  rules = optim.regularizers.build_rules(models.param_rules(setup.model),
                                         state.params, config.regularization)
  train_model = models.freezing.train_model_for(setup.train_model, state.params,
                                                config.regularization.freeze)
  step = parallel.make_train_step(
      train_model, tx, penalty_fn=lambda p: optim.regularizers.penalty(p, rules),
      project_fn=lambda p: optim.constraints.project(p, rules),
      label_smoothing=config.training.label_smoothing,
      pmap=not jax.config.jax_debug_nans)
  print(f"lr_find: {lr.steps} steps of batch {config.training.batch_size}, rate "
        f"{lr.start:g} -> {lr.end:g} (x{table[1] / table[0]:.6g} per step), "
        f"{config.optimizer.name}, stopping at {lr.stop_factor:g}x the best "
        "smoothed loss.")
  result = sweep(step, state, _training_batches(setup.data), table,
                 stop_factor=lr.stop_factor, smoothing=lr.smoothing)
  out = result.to_json()
  out.update(start=lr.start, end=lr.end, steps=lr.steps, stop_factor=lr.stop_factor,
             smoothing=lr.smoothing, factor=float(table[1] / table[0]),
             optimizer=config.optimizer.to_dict(),
             batch_size=config.training.batch_size)
  if train.is_main_process():
    workdir_lib.write_json(os.path.join(setup.workdir, JSON_FILE), out)
    visualize.plot_lr_find(out, path=os.path.join(setup.workdir, PLOT_FILE))
  where = (f"stopped at step {result.stopped_at} (rate {result.rates[-1]:.3g})"
           if result.stopped_at is not None else "ran all steps")
  print(f"lr_find: {where}; minimum smoothed loss at rate {result.minimum_rate:.4g}. "
        f"Suggested peak learning rate: {result.suggestion:.4g} = {RULE}. "
        f"Wrote {os.path.join(setup.workdir, JSON_FILE)} and {PLOT_FILE}.")
  return result
