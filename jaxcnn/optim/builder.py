"""``optim.create``: the optimizer of a config, as one optax transformation.

The update rule, in Keras' order: clip the gradients -> the optimizer's step
(rate included) -> decoupled weight decay; frozen parameters are split off
around all of it (zero update, no state). The whole chain is wrapped in
``optax.inject_hyperparams`` so the rate in force (and 1cycle's momentum)
lives in ``opt_state.hyperparams``.
"""

from __future__ import annotations

import numbers
from typing import Any, Iterable

import jax.numpy as jnp
import optax

from jaxcnn.config import ConfigError
from jaxcnn.optim import _config, clipping, freeze as freeze_lib, optimizers
from jaxcnn.optim import schedules, weight_decay as weight_decay_lib

_SHARED_KEYS = ("weight_decay", *clipping.CLIP_KEYS)


def create(optimizer_config: Any, schedule_config: Any = None, *,
           steps_per_epoch: int, num_epochs: int,
           freeze: str | Iterable[str] = ()) -> optax.GradientTransformation:
  """Builds the optimizer described by ``config.optimizer`` and ``config.schedule``.

  Args:
    optimizer_config: ``name`` (sgd, adagrad, rmsprop, adam, adamax, nadam),
      ``learning_rate`` (default: Keras'), the optimizer's own Keras
      hyperparameters (sgd: momentum, nesterov; adagrad:
      initial_accumulator_value, epsilon; rmsprop: rho, momentum, epsilon,
      centered; adam: beta_1, beta_2, epsilon, amsgrad; adamax / nadam:
      beta_1, beta_2, epsilon), and for all: ``weight_decay`` (decoupled,
      kernels only) and one of ``clipvalue`` / ``clipnorm`` /
      ``global_clipnorm``. A ConfigDict or a dict.
    schedule_config: ``name`` plus parameters, see
      :mod:`jaxcnn.optim.schedules`; None means constant.
    steps_per_epoch: updates per epoch (for epoch-unit schedules).
    num_epochs: epochs of the run (for 1cycle).
    freeze: glob patterns of parameters that get no update and no state, see
      :mod:`jaxcnn.optim.freeze` (checked against the params at ``init``).

  Returns:
    An ``optax.GradientTransformation``; call ``update(grads, state, params)``
    (params are needed by weight decay) and add the updates to the params.

  Raises:
    ConfigError: an unknown optimizer or schedule (listing the valid ones), a
      hyperparameter the optimizer does not have (naming the closest valid
      one), clipnorm with global_clipnorm, negative rates, a 1cycle longer
      than the run.
  """
  opt = _config.as_dict(optimizer_config, "optimizer")
  if "name" not in opt:
    raise ConfigError("'optimizer.name' is missing; valid optimizers: "
                      f"{', '.join(sorted(optimizers.OPTIMIZERS))}.")
  name = optimizers.check_name(opt["name"])
  hp = optimizers.resolve(name, {k: v for k, v in opt.items() if k != "name"},
                          shared_keys=_SHARED_KEYS)
  clip_options = clipping.resolve(opt)
  decay = _config.number(opt.get("weight_decay") or 0.0, "optimizer.weight_decay")
  for value, what in ((steps_per_epoch, "steps_per_epoch"), (num_epochs, "num_epochs")):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
      raise ConfigError(f"{what} must be an integer >= 1, got {value!r}.")
  momentum_name = optimizers.MOMENTUM_HYPERPARAM[name]
  if momentum_name == "momentum" and hp["momentum"] == 0:
    momentum_name = None  # Keras' sgd / rmsprop keep no velocity then.
  sched = schedules.build(schedule_config, hp["learning_rate"],
                          steps_per_epoch=steps_per_epoch, num_epochs=num_epochs,
                          momentum_name=momentum_name)
  patterns = freeze_lib.normalize(freeze)
  use_momentum = name in ("sgd", "rmsprop") and (
      hp["momentum"] > 0 or sched.momentum is not None)

  def inner(learning_rate, momentum=None):
    h = dict(hp) if momentum is None else {**hp, momentum_name: momentum}
    tx = optax.chain(
        clipping.build(**clip_options),
        optimizers.build(name, learning_rate, h, use_momentum=use_momentum),
        weight_decay_lib.decoupled_weight_decay(learning_rate, decay)
        if decay else optax.identity())
    return freeze_lib.partition(tx, patterns)

  inject = lambda factory: optax.inject_hyperparams(
      factory, hyperparam_dtype=jnp.float32)
  if sched.momentum is None:
    return inject(lambda learning_rate: inner(learning_rate))(
        learning_rate=sched.learning_rate)
  if momentum_name == "momentum":
    return inject(lambda learning_rate, momentum: inner(learning_rate, momentum))(
        learning_rate=sched.learning_rate, momentum=sched.momentum)
  return inject(lambda learning_rate, beta_1: inner(learning_rate, beta_1))(
      learning_rate=sched.learning_rate, beta_1=sched.momentum)
