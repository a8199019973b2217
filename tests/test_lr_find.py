"""The learning-rate range test (jaxcnn.lr_find, --mode=lr_find).

The sweep is pinned on a quadratic, where gradient descent's divergence rate
is known (2 / L for curvature L), and the mode on mock Fashion-MNIST: its
files, its geometric rates, and a workdir whose training state it leaves
byte for byte as it was.
"""

import hashlib
import itertools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxcnn import config as config_lib
from jaxcnn import lr_find
from jaxcnn import optim
from jaxcnn import run


def test_rates_are_exactly_geometric():
  r = lr_find.rates(1e-5, 10.0, 500)
  assert r[0] == 1e-5 and len(r) == 500
  np.testing.assert_allclose(r[-1], 10.0, rtol=1e-14)
  factor = math.exp(math.log(10.0 / 1e-5) / 499)  # Geron's exp(log(10^6)/500)-style factor
  np.testing.assert_allclose(r[1:] / r[:-1], factor, rtol=1e-12)


def _quadratic_sweep(curvatures, table, stop_factor=4.0, smoothing=0.0):
  """Plain gradient descent on 0.5 * sum(h * x**2) from x = 1, swept over ``table``."""
  h = jnp.asarray(curvatures, jnp.float32)
  tx = lr_find.sweeping(optim.create({"name": "sgd"}, None, steps_per_epoch=1,
                                     num_epochs=1), table)
  seen = []

  @jax.jit
  def step(state, _):
    x, opt_state = state
    loss, g = jax.value_and_grad(lambda x: 0.5 * jnp.sum(h * x ** 2))(x)
    updates, opt_state = tx.update(g, opt_state, x)
    return (x + updates, opt_state), {"loss": loss, "lr": optim.learning_rate(opt_state)}

  def recording(state, batch):
    state, metrics = step(state, batch)
    seen.append(float(metrics["lr"]))
    return state, metrics

  x0 = jnp.ones(len(curvatures), jnp.float32)
  result = lr_find.sweep(recording, (x0, tx.init(x0)), itertools.repeat(None), table,
                         stop_factor=stop_factor, smoothing=smoothing)
  return result, seen


def test_each_update_uses_its_rate():
  table = lr_find.rates(1e-3, 1.0, 20)
  result, seen = _quadratic_sweep([1e-3], table, stop_factor=1e9)
  assert result.stopped_at is None and len(result.losses) == 20
  np.testing.assert_array_equal(seen, table.astype(np.float32))
  # x after update i is prod_j (1 - r_j h) exactly (h small: no blow-up).
  x = np.cumprod(1 - table.astype(np.float32).astype(np.float64) * 1e-3)
  np.testing.assert_allclose(result.losses[1:], 0.5 * 1e-3 * x[:-1] ** 2, rtol=1e-5)


def test_quadratic_blows_up_past_two_over_l_and_the_suggestion_is_below():
  curvature = 10.0
  diverge = 2.0 / curvature
  # 60 steps: x (~1e-9 at 2/L) stays far from float32's underflow.
  table = lr_find.rates(1e-3, 1.0, 60)
  result, _ = _quadratic_sweep([curvature], table, smoothing=0.0)
  assert result.stopped_at is not None
  losses, rates = result.losses, result.rates
  # Loss i is measured after updates 0..i-1, and loss i+1 = loss i * (1 - r_i L)^2:
  # it never grows while the rate is <= 2/L, and grows from the first rate above.
  first_over = int(np.argmax(rates > diverge))
  assert np.all(np.diff(losses[:first_over + 1]) <= 0)
  assert losses[first_over + 1] > losses[first_over]
  # The sweep stops a few steps (of x1.12) after the divergence rate ...
  assert result.stopped_at - first_over <= 5, (result.stopped_at, first_over)
  assert diverge < rates[-1] < 2 * diverge, (rates[-1], diverge)
  # ... and the suggestion (turning point / 10) is well below it.
  assert result.suggestion == result.minimum_rate / 10
  assert result.minimum_rate <= 1.5 * diverge
  assert result.suggestion < diverge / 5


def test_smoothing_is_the_bias_corrected_moving_average_and_stops_at_k_times_best():
  given = [5.0, 4.0, 3.0, 2.0, 2.5, 4.0, 9.0, 30.0, 1.0]
  step = lambda state, batch: (state, {"loss": jnp.float32(batch)})
  result = lr_find.sweep(step, None, iter(given), lr_find.rates(1e-3, 1.0, len(given)),
                         stop_factor=3.0, smoothing=0.5)
  average, expected = 0.0, []
  for i, loss in enumerate(given):
    average = 0.5 * average + 0.5 * loss
    expected.append(average / (1 - 0.5 ** (i + 1)))
  # The best smoothed loss is at step 4; step 7's exceeds 3x it: the sweep stops there.
  best = min(expected[:7])
  assert expected[6] <= 3 * best < expected[7]
  assert result.stopped_at == 7
  np.testing.assert_allclose(result.smoothed, expected[:8], rtol=1e-6)
  assert result.minimum_rate == result.rates[int(np.argmin(expected[:8]))]


def test_lr_find_config_rules():
  for key, value, words in (("start", 0.0, "'lr_find.start' must be > 0"),
                            ("start", float("nan"), "'lr_find.start' must be > 0"),
                            ("end", 1e-6, "'lr_find.end' must be > 'lr_find.start'"),
                            ("stop_factor", 1.0, "'lr_find.stop_factor' must be > 1")):
    c = config_lib.defaults()
    c.lr_find[key] = value
    with pytest.raises(config_lib.ConfigError, match=words):
      config_lib.validate(c)
  assert config_lib.validate(config_lib.defaults())


def _mock_config(tmp_path, **lr):
  c = config_lib.defaults()
  c.dataset.name = "fashion_mnist"
  c.dataset.data_dir = str(tmp_path / "tfds")
  c.dataset.mirror_dir = str(tmp_path / "no-mirror")
  c.dataset.num_train_examples = 160
  c.dataset.validation_split = 32
  c.model.name = "mlp"
  c.model.hidden_units = (32,)
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.01
  c.schedule.name = "1cycle"
  c.schedule.max_learning_rate = 0.05
  c.training.batch_size = 32
  c.training.num_epochs = 1
  c.training.progress_bar = False
  c.lr_find.update(lr)
  return c


def _digests(workdir):
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return out


def test_mode_writes_its_files_and_leaves_the_training_state(tmp_path, synchronous_saves):
  workdir = str(tmp_path / "run")
  with tfds.testing.mock_data(num_examples=160, policy=tfds.testing.MockPolicy.USE_CODE):
    # A sweep in a fresh folder writes its two files and nothing else.
    config = _mock_config(tmp_path, start=1e-4, end=100.0, steps=12)
    fresh = str(tmp_path / "fresh")
    result = run.run(config, fresh, "lr_find")
    assert sorted(os.listdir(fresh)) == ["lr_find.json", "lr_find.png"]
    with open(os.path.join(fresh, "lr_find.json")) as f:
      saved = json.load(f)
    # 4 steps per epoch: the sweep reads the training batches epoch after epoch.
    assert len(saved["losses"]) == len(saved["rates"]) == len(result.losses)
    np.testing.assert_allclose(saved["rates"], lr_find.rates(1e-4, 100.0, 12)[:len(saved["rates"])],
                               rtol=1e-15)
    assert saved["suggestion"] == pytest.approx(saved["minimum"]["rate"] / 10)
    assert saved["optimizer"]["name"] == "sgd"

    # In a trained workdir it changes no file of the run.
    run.run(config, workdir, "train")
    before = _digests(workdir)
    run.run(config, workdir, "lr_find")
    after = _digests(workdir)
    assert {k: v for k, v in after.items() if not k.startswith("lr_find.")} == before
    with pytest.raises(config_lib.PopulationError, match="lr_find sweeps"):
      run.run(config, workdir, "lr_find", member=0)


def test_a_population_sweeps_member_0_from_source_member_0():
  """The sweep is member 0's single run: with a population source it takes the
  source's member 0 (the seed-matched one) instead of stopping for want of
  transfer.source_member; a member the user named is kept."""
  config = config_lib.defaults()
  config.training.population = 3
  config.transfer.source = "/some/population/workdir"
  swept = lr_find._sweep_config(config)
  assert swept.training.population == 1 and swept.transfer.source_member == 0
  assert swept.seed == config.seed
  config.transfer.source_member = 2
  assert lr_find._sweep_config(config).transfer.source_member == 2
  config.training.population = 1
  config.transfer.source_member = -1
  assert lr_find._sweep_config(config).transfer.source_member == -1
