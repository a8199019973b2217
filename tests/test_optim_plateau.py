"""Reduce-on-plateau against keras.callbacks.ReduceLROnPlateau on the same
validation-loss sequences, and its resume through a real Orbax checkpoint."""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
import pytest  # noqa: E402

from jaxcnn import optim  # noqa: E402

PARAMS = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}


def _losses(seed, n=40):
  """A validation loss that falls, stalls, wiggles by less than min_delta and
  sometimes improves again: every branch of the callback gets exercised."""
  rng = np.random.default_rng(seed)
  loss, out = 2.0, []
  for i in range(n):
    r = rng.uniform()
    if r < 0.3:
      loss -= rng.uniform(0.05, 0.3)  # clear improvement
    elif r < 0.45:
      loss -= rng.uniform(0.0, 4e-5)  # improvement smaller than min_delta 1e-4
    else:
      loss += rng.uniform(0.0, 0.2)  # worse
    out.append(float(np.float32(loss)))
  return out


def keras_rates(losses, lr0, **kwargs):
  model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
  model.compile(optimizer=keras.optimizers.SGD(lr0), loss="mse")
  callback = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", mode="min",
                                               **kwargs)
  callback.set_model(model)
  callback.on_train_begin()
  rates = []
  for epoch, loss in enumerate(losses):
    callback.on_epoch_end(epoch, {"val_loss": loss})
    rates.append(float(model.optimizer.learning_rate.numpy()))
  return rates


def our_rates(losses, lr0, schedule, use_jit=False):
  tx = optim.create(dict(name="sgd", learning_rate=lr0), schedule,
                    steps_per_epoch=10, num_epochs=len(losses))
  opt_state, plateau = tx.init(PARAMS), optim.init_plateau(schedule)
  step = lambda o, p, l: optim.on_epoch_end(o, p, l, schedule)
  step = jax.jit(step) if use_jit else step
  rates = []
  for loss in losses:
    opt_state, plateau = step(opt_state, plateau, loss)
    rates.append(float(optim.learning_rate(opt_state)))
  return rates


CASES = [
    dict(factor=0.5, patience=2),
    dict(factor=0.5, patience=5),  # the lecture's ReduceLROnPlateau(0.5, 5)
    dict(factor=0.1, patience=3, cooldown=2, min_lr=1e-4),
    dict(factor=0.3, patience=0, min_delta=0.05),
    dict(factor=0.2, patience=1, cooldown=1, min_lr=5e-3, min_delta=0.0),
    {},  # Keras' defaults: factor 0.1, patience 10, min_delta 1e-4
]


@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: ",".join(
    f"{a}={b}" for a, b in k.items()) or "defaults")
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_keras_reduce_lr_on_plateau(kwargs, seed):
  losses = _losses(seed)
  expected = keras_rates(losses, 0.1, **kwargs)
  ours = our_rates(losses, 0.1, dict(name="plateau", **kwargs))
  # Keras multiplies in float64 and stores float32; here the product is
  # float32: one rounding per cut (30 cuts in a row stay within 2e-6).
  np.testing.assert_allclose(ours, expected, rtol=1e-5)
  if kwargs.get("patience", 10) <= 3:
    assert len(set(expected)) > 2  # the sequence did trigger cuts


def test_jitted_epoch_end_is_the_same():
  losses = _losses(3)
  schedule = dict(name="plateau", factor=0.5, patience=2, cooldown=1)
  assert our_rates(losses, 0.1, schedule, use_jit=True) == \
      our_rates(losses, 0.1, schedule)


def test_other_schedules_are_untouched():
  tx = optim.create(dict(name="sgd", learning_rate=0.1), dict(name="constant"),
                    steps_per_epoch=1, num_epochs=1)
  opt_state, plateau = tx.init(PARAMS), optim.init_plateau()
  for loss in [1.0, 2.0, 3.0, 4.0]:
    new_state, new_plateau = optim.on_epoch_end(opt_state, plateau, loss,
                                                dict(name="constant"))
    assert new_state is opt_state and new_plateau is plateau


def test_cut_rate_is_used_by_the_next_updates():
  tx = optim.create(dict(name="sgd", learning_rate=0.1),
                    dict(name="plateau", factor=0.5, patience=1),
                    steps_per_epoch=1, num_epochs=3)
  opt_state, plateau = tx.init(PARAMS), optim.init_plateau()
  ones = jax.tree.map(jnp.ones_like, PARAMS)
  for loss in [1.0, 1.5]:
    opt_state, plateau = optim.on_epoch_end(opt_state, plateau, loss,
                                            dict(name="plateau", factor=0.5, patience=1))
  assert float(optim.learning_rate(opt_state)) == pytest.approx(0.05)
  updates, opt_state = tx.update(ones, opt_state, PARAMS)
  np.testing.assert_allclose(updates["dense"]["kernel"], -0.05)
  assert float(optim.learning_rate(opt_state)) == pytest.approx(0.05)


def test_resume_through_orbax_checkpoint(tmp_path):
  """Train 12 epochs, checkpoint (opt_state, plateau) with Orbax, restore into
  a fresh process-like target and continue: identical to an unbroken run."""
  losses = _losses(4, n=30)
  schedule = dict(name="plateau", factor=0.5, patience=2, cooldown=1)
  tx = optim.create(dict(name="sgd", learning_rate=0.1, momentum=0.9), schedule,
                    steps_per_epoch=2, num_epochs=30)
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.1), PARAMS)
  update = jax.jit(tx.update)
  epoch_end = jax.jit(lambda o, p, l: optim.on_epoch_end(o, p, l, schedule))

  def run(state, epochs):
    params, opt_state, plateau = state
    rates = []
    for loss in epochs:
      for _ in range(2):
        updates, opt_state = update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
      opt_state, plateau = epoch_end(opt_state, plateau, loss)
      rates.append(float(optim.learning_rate(opt_state)))
    return (params, opt_state, plateau), rates

  start = (PARAMS, tx.init(PARAMS), optim.init_plateau(schedule))
  end_unbroken, rates_unbroken = run(start, losses)

  middle, rates_first = run(start, losses[:12])
  checkpointer = ocp.StandardCheckpointer()
  path = tmp_path / "ckpt"
  checkpointer.save(path, middle)
  checkpointer.wait_until_finished()
  fresh = (PARAMS, tx.init(PARAMS), optim.init_plateau(schedule))
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, fresh)
  restored = checkpointer.restore(path, target)
  checkpointer.close()
  assert isinstance(restored[2], optim.PlateauState)
  jax.tree.map(np.testing.assert_array_equal, restored, middle)
  end_resumed, rates_second = run(restored, losses[12:])
  assert rates_first + rates_second == rates_unbroken
  jax.tree.map(np.testing.assert_array_equal, end_resumed, end_unbroken)
  # The run cut the rate both before and after the checkpoint, so the restored
  # best / wait / cooldown and rate really steered the second half.
  assert rates_first[-1] < 0.1 and rates_second[-1] < rates_second[0]
