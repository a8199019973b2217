"""Performance scheduling: reduce the rate when the validation loss stalls.

Keras' ``ReduceLROnPlateau`` (monitor ``val_loss``, mode ``min``) as a pure
function of a small pytree, so the loop can checkpoint it with the rest of the
train state and resume mid-run exactly. Once per epoch, with the validation
loss ``L``:

1. in cooldown (``cooldown_counter > 0``): count it down and reset ``wait``;
2. if ``L + min_delta < best``: ``best = L``, ``wait = 0``;
3. else, if not in cooldown (after step 1): ``wait += 1``; when ``wait >=
   patience`` and ``lr > min_lr``: ``lr = max(lr * factor, min_lr)``,
   ``cooldown_counter = cooldown``, ``wait = 0``.

``best`` starts at +inf, so the first finite loss is always an improvement
(Keras starts from None; the two differ only for a NaN first loss).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxcnn.optim import schedules, state


class PlateauState(NamedTuple):
  """What reduce-on-plateau remembers between epochs (checkpoint it)."""
  best: jax.Array  # float32 scalar: best validation loss so far (+inf at first)
  wait: jax.Array  # int32 scalar: epochs without improvement
  cooldown_counter: jax.Array  # int32 scalar: epochs of cooldown left


def init_plateau(schedule_config: Any = None) -> PlateauState:
  """The state before the first epoch (for any schedule, so loops stay uniform).

  Args:
    schedule_config: ``config.schedule``; checked, so a typo fails early.
  """
  if schedule_config is not None:
    schedules.resolve(schedule_config)
  return PlateauState(best=jnp.asarray(jnp.inf, jnp.float32),
                      wait=jnp.zeros([], jnp.int32),
                      cooldown_counter=jnp.zeros([], jnp.int32))


def on_epoch_end(opt_state: Any, plateau_state: PlateauState, val_loss: Any,
                 schedule_config: Any) -> tuple[Any, PlateauState]:
  """Feeds one epoch's validation loss to reduce-on-plateau.

  A no-op unless ``schedule_config.name == 'plateau'``. Pure and jit-able (the
  schedule config is read in Python).

  Args:
    opt_state: the state of a transformation from :func:`jaxcnn.optim.create`.
    plateau_state: from :func:`init_plateau` or the previous call.
    val_loss: this epoch's validation loss (a scalar).
    schedule_config: ``config.schedule``.

  Returns:
    ``(opt_state, plateau_state)``; ``opt_state`` carries the new rate.
  """
  name, p = schedules.resolve(schedule_config)
  if name != "plateau":
    return opt_state, plateau_state
  current = jnp.asarray(val_loss, jnp.float32)
  best, wait, cooldown = plateau_state
  in_cooldown = cooldown > 0
  cooldown = jnp.where(in_cooldown, cooldown - 1, cooldown)
  wait = jnp.where(in_cooldown, 0, wait)
  improved = current + p["min_delta"] < best
  best = jnp.where(improved, current, best)
  counting = jnp.logical_and(~improved, ~(cooldown > 0))
  wait = jnp.where(improved, 0, jnp.where(counting, wait + 1, wait))
  old_lr = state.learning_rate(opt_state)
  reduce = counting & (wait >= p["patience"]) & (old_lr > jnp.float32(p["min_lr"]))
  new_lr = jnp.where(reduce, jnp.maximum(old_lr * p["factor"], p["min_lr"]), old_lr)
  cooldown = jnp.where(reduce, p["cooldown"], cooldown)
  wait = jnp.where(reduce, 0, wait)
  opt_state = state.set_hyperparam(opt_state, "learning_rate", new_lr)
  return opt_state, PlateauState(best=best.astype(jnp.float32),
                                 wait=wait.astype(jnp.int32),
                                 cooldown_counter=cooldown.astype(jnp.int32))
