"""Every schedule against its formula, step by step, through the optimizer
state (what the training loop logs), plus Keras' built-in schedules."""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxcnn import optim  # noqa: E402
from jaxcnn.config import ConfigError  # noqa: E402

PARAMS = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}


def rates_in_force(optimizer, schedule, steps_per_epoch, num_epochs, steps=None,
                   key="learning_rate"):
  """The hyperparameter each update used, read back from the state."""
  tx = optim.create(optimizer, schedule, steps_per_epoch=steps_per_epoch,
                    num_epochs=num_epochs)
  state = tx.init(PARAMS)
  update = jax.jit(tx.update)
  zeros = jax.tree.map(jnp.zeros_like, PARAMS)
  out = []
  for _ in range(steps or steps_per_epoch * num_epochs):
    _, state = update(zeros, state, PARAMS)
    out.append(float(optim.hyperparams(state)[key]))
  return np.array(out)


def test_constant():
  lr = rates_in_force(dict(name="adam", learning_rate=3e-4), dict(name="constant"), 2, 3)
  np.testing.assert_allclose(lr, 3e-4, rtol=1e-7)


def test_power_per_step_and_lecture_halving():
  """eta(t) = eta0 / (1 + t/s)^c: eta0/2 after s steps, eta0/3 after 2s (c=1)."""
  lr = rates_in_force(dict(name="sgd", learning_rate=0.1),
                      dict(name="power", s=4, c=1.0, unit="step"), 5, 3)
  t = np.arange(15)
  np.testing.assert_allclose(lr, 0.1 / (1 + t / 4), rtol=1e-6)
  assert lr[4] == pytest.approx(0.05) and lr[8] == pytest.approx(0.1 / 3)
  keras_inverse_time = keras.optimizers.schedules.InverseTimeDecay(0.1, 4, 1.0)
  np.testing.assert_allclose(lr, [float(keras_inverse_time(i)) for i in t], rtol=1e-6)
  lr2 = rates_in_force(dict(name="sgd", learning_rate=0.1),
                       dict(name="power", s=2.5, c=2.0, unit="epoch"), 3, 4)
  np.testing.assert_allclose(lr2, 0.1 / (1 + (np.arange(12) // 3) / 2.5) ** 2,
                             rtol=1e-6)


def test_exponential_per_epoch_is_the_lecture_function():
  """The lecture's exponential_decay_fn(epoch) = lr0 * 0.1**(epoch / s), set
  at each epoch start as LearningRateScheduler does."""
  spe = 3
  lr = rates_in_force(dict(name="sgd", learning_rate=0.01),
                      dict(name="exponential", s=2), spe, 5)
  epochs = np.arange(15) // spe
  np.testing.assert_allclose(lr, 0.01 * 0.1 ** (epochs / 2), rtol=1e-6)
  assert len(set(lr[:spe])) == 1 and lr[spe] < lr[spe - 1]  # changes at boundary


def test_exponential_per_step_matches_keras_exponential_decay():
  """The lecture's keras.optimizers.schedules.ExponentialDecay(0.01, s, 0.1)."""
  lr = rates_in_force(dict(name="sgd", learning_rate=0.01),
                      dict(name="exponential", s=7, unit="step"), 5, 4)
  keras_sched = keras.optimizers.schedules.ExponentialDecay(0.01, 7, 0.1)
  np.testing.assert_allclose(lr, [float(keras_sched(i)) for i in range(20)], rtol=1e-6)


def test_piecewise_is_the_lecture_example():
  """0.01 before epoch 5, 0.005 before epoch 15, then 0.001."""

  def piecewise_constant_fn(epoch):  # verbatim from the lecture
    if (epoch < 5):
      return 0.01
    elif (epoch < 15):
      return 0.005
    else:
      return 0.001

  spe = 2
  sched = ml_collections.ConfigDict(dict(
      name="piecewise", boundaries=(5, 15), values=(0.01, 0.005, 0.001),
      unit="epoch"))
  lr = rates_in_force(dict(name="sgd", learning_rate=0.01), sched, spe, 20)
  expected = [piecewise_constant_fn(step // spe) for step in range(40)]
  np.testing.assert_allclose(lr, expected, rtol=1e-7)


def _one_cycle_reference(t, lr0, peak, length, ann=0.0, final=None, m_hi=0.95,
                         m_lo=0.85):
  n_ann = int(round(ann * length))
  cycle = length - n_ann
  half = cycle // 2
  final = lr0 / 1000 if final is None else final
  if t <= half:
    return lr0 + (peak - lr0) * t / half, m_hi - (m_hi - m_lo) * t / half
  if t <= cycle:
    frac = (t - half) / (cycle - half)
    return peak - (peak - lr0) * frac, m_lo + (m_hi - m_lo) * frac
  frac = min(1.0, (t - cycle) / n_ann)
  return lr0 + (final - lr0) * frac, m_hi


@pytest.mark.parametrize("name,key", [("sgd", "momentum"), ("adam", "beta_1"),
                                      ("rmsprop", "momentum")])
def test_one_cycle_rate_and_momentum(name, key):
  """Linear lr0 -> peak over the first half, back over the second; momentum
  0.95 -> 0.85 -> 0.95 the other way."""
  opt = dict(name=name, learning_rate=0.002, momentum=0.9) if name != "adam" else \
      dict(name=name, learning_rate=0.002)
  sched = dict(name="1cycle", max_learning_rate=0.02)
  lr = rates_in_force(opt, sched, 4, 5)
  mom = rates_in_force(opt, sched, 4, 5, key=key)
  ref = np.array([_one_cycle_reference(t, 0.002, 0.02, 20) for t in range(20)])
  np.testing.assert_allclose(lr, ref[:, 0], rtol=1e-5)
  np.testing.assert_allclose(mom, ref[:, 1], rtol=1e-6)
  assert lr.max() == pytest.approx(0.02) and lr.argmax() == 10
  assert mom.min() == pytest.approx(0.85) and mom.argmin() == 10


def test_one_cycle_with_annihilation_and_shorter_cycle():
  """cycle_length 16 of a 20-step run; the last 25% annihilates to lr0/1000;
  after the cycle the last rate holds."""
  sched = dict(name="1cycle", max_learning_rate=0.05, cycle_length=16,
               annihilation_fraction=0.25)
  lr = rates_in_force(dict(name="sgd", learning_rate=0.005, momentum=0.9), sched, 4, 5)
  ref = [_one_cycle_reference(min(t, 16), 0.005, 0.05, 16, ann=0.25)[0]
         for t in range(20)]
  np.testing.assert_allclose(lr, ref, rtol=1e-5, atol=1e-9)
  assert lr[-1] == pytest.approx(5e-6)


def test_one_cycle_per_epoch_and_without_momentum():
  spe = 3
  sched = dict(name="1cycle", max_learning_rate=0.01, unit="epoch")
  lr = rates_in_force(dict(name="adagrad", learning_rate=0.001), sched, spe, 6)
  ref = [_one_cycle_reference(s // spe, 0.001, 0.01, 6)[0] for s in range(18)]
  np.testing.assert_allclose(lr, ref, rtol=1e-5)
  # adagrad and momentum-free sgd have no momentum to cycle.
  for opt in (dict(name="adagrad"), dict(name="sgd")):
    tx = optim.create(opt, sched, steps_per_epoch=spe, num_epochs=6)
    assert set(optim.hyperparams(tx.init(PARAMS))) == {"learning_rate"}
  # cycle_momentum=False keeps the configured momentum.
  tx = optim.create(dict(name="sgd", momentum=0.9), {**sched, "cycle_momentum": False},
                    steps_per_epoch=spe, num_epochs=6)
  assert set(optim.hyperparams(tx.init(PARAMS))) == {"learning_rate"}


def test_learning_rate_before_first_update_and_inside_a_chain():
  import optax  # pylint: disable=g-import-not-at-top
  tx = optim.create(dict(name="sgd", learning_rate=0.1),
                    dict(name="exponential", s=1, unit="step"),
                    steps_per_epoch=2, num_epochs=2)
  wrapped = optax.chain(optax.identity(), tx)
  state = wrapped.init(PARAMS)
  assert float(optim.learning_rate(state)) == pytest.approx(0.1)
  with pytest.raises(ValueError, match="learning_rate"):
    optim.learning_rate(optax.adam(0.1).init(PARAMS))


@pytest.mark.parametrize("schedule,match", [
    (dict(name="cosine"), "Unknown schedule 'cosine'.*1cycle, constant, exponential, "
                          "piecewise, plateau, power"),
    (dict(name="exponential", s=2, decay_steps=3), "schedule.decay_steps"),
    (dict(name="power", s=2, patience=3), "patience' is a parameter of plateau"),
    (dict(name="exponential"), "needs s"),
    (dict(name="power", s=0), "schedule.s' must be > 0"),
    (dict(name="exponential", s=2, unit="batch"), "'epoch' or 'step'"),
    (dict(name="piecewise", boundaries=(5, 15), values=(0.01, 0.005)),
     "one rate more"),
    (dict(name="piecewise", boundaries=(15, 5), values=(0.1, 0.01, 0.001)),
     "increase strictly"),
    (dict(name="piecewise", boundaries=(5,), values=(0.1, -0.01)), "schedule.values"),
    (dict(name="piecewise", boundaries=5, values=(0.1, 0.01)), "list or tuple"),
    (dict(name="1cycle", max_learning_rate=0.1, cycle_length=50),
     "longer than the run"),
    (dict(name="1cycle", max_learning_rate=0.1, cycle_length=5, unit="epoch"),
     "longer than the run"),
    (dict(name="1cycle", max_learning_rate=1e-4), "must be >= optimizer.learning_rate"),
    (dict(name="plateau", factor=1.5), "schedule.factor"),
])
def test_bad_schedules(schedule, match):
  with pytest.raises(ConfigError, match=match):
    optim.create(dict(name="sgd", learning_rate=1e-3), schedule,
                 steps_per_epoch=10, num_epochs=4)


def test_closest_key_is_named():
  with pytest.raises(ConfigError, match="Did you mean 'max_learning_rate'"):
    optim.create(dict(name="sgd"), dict(name="1cycle", max_learning_rat=0.1),
                 steps_per_epoch=10, num_epochs=4)
