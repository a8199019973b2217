"""The device-mapped steps: the same program as jax.pmap, no one-device collectives."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import collectives
from jaxcnn import config as config_lib
from jaxcnn import models
from jaxcnn import optim
from jaxcnn import parallel
from jaxcnn import state as state_lib


def _per_device(state, batch):
  """Uses what the train step uses: a mean over devices, a sum, the axis index."""
  x = batch["x"]
  key = jax.random.fold_in(jax.random.key(0), jax.lax.axis_index(parallel.AXIS))
  noisy = x + 0.01 * jax.random.normal(key, x.shape)
  grad = collectives.pmean((noisy * state["w"]).sum(0), parallel.AXIS)
  count = collectives.psum(jnp.float32(x.shape[0]), parallel.AXIS)
  return {"w": state["w"] - 0.1 * grad}, {"count": count}


@pytest.mark.parametrize("devices", [4, 2, 1])
def test_data_parallel_equals_jax_pmap(devices):
  """Bit for bit the numbers of jax.pmap, on as many devices as the batch spans."""
  rng = np.random.default_rng(0)
  state = {"w": jnp.asarray(rng.normal(size=(3,)), jnp.float32)}
  batch = {"x": rng.normal(size=(devices, 5, 3)).astype(np.float32)}
  ours = parallel._data_parallel(_per_device)
  reference = jax.pmap(_per_device, axis_name=parallel.AXIS, in_axes=(None, 0),
                       out_axes=None)
  (s1, m1), (s2, m2) = ours(state, batch), reference(state, batch)
  np.testing.assert_array_equal(np.asarray(s1["w"]), np.asarray(s2["w"]))
  assert float(m1["count"]) == float(m2["count"]) == 5 * devices
  # The state changed: the comparison is not between two no-ops.
  assert np.abs(np.asarray(s1["w"]) - np.asarray(state["w"])).max() > 1e-3


def test_data_parallel_rejects_more_shards_than_devices():
  step = parallel._data_parallel(_per_device)
  state = {"w": jnp.ones((3,))}
  with pytest.raises(ValueError, match=r"leading \(device\) axis has size 5, but there are 4"):
    step(state, {"x": np.ones((5, 2, 3), np.float32)})


def _train_step_and_inputs(devices):
  config = config_lib.defaults()
  config.model.name = "cnn_small_bn"
  model = models.create(config.model, num_classes=10)
  train_model = models.create(config.model, num_classes=10, axis_name=parallel.AXIS)
  tx = optim.create({"name": "adam", "learning_rate": 1e-3}, {"name": "constant"},
                    steps_per_epoch=10, num_epochs=1)
  state = state_lib.create(config, model, tx, (28, 28, 1))
  rng = np.random.default_rng(2)
  batch = {"image": rng.normal(size=(devices, 32 // devices, 28, 28, 1)).astype(np.float32),
           "label": rng.integers(0, 10, size=(devices, 32 // devices)).astype(np.int32)}
  return parallel.make_train_step(train_model, tx, donate_state=False), state, batch


def test_one_device_step_compiles_no_all_reduce_and_matches_four():
  """One device: no collective in the program (XLA:CPU runs even a one-member
  all-reduce as a rendezvous); same update as the 4-device step."""
  step1, state, batch1 = _train_step_and_inputs(1)
  step4, _, _ = _train_step_and_inputs(4)
  batch4 = jax.tree.map(lambda x: x.reshape((4, -1) + x.shape[2:]), batch1)
  hlo1 = step1.lower(state, batch1).compile().as_text()
  hlo4 = step4.lower(state, batch4).compile().as_text()
  assert "all-reduce" not in hlo1
  assert "all-reduce" in hlo4
  s1, m1 = step1(state, batch1)
  s4, m4 = step4(state, batch4)
  for a, b in zip(jax.tree.leaves((s1.params, s1.batch_stats)),
                  jax.tree.leaves((s4.params, s4.batch_stats))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(float(m1["loss"]), float(m4["loss"]), rtol=1e-5)


@pytest.mark.parametrize("devices", [4, 1])
def test_a_replicated_state_compiles_the_step_once(devices):
  """The step's outputs carry the batch mesh in their types: a state fresh from
  init (no mesh) compiles the step a second time for the state the first call
  returns, unless ``parallel.replicate`` placed it first."""
  step, state, batch = _train_step_and_inputs(4)
  batch = jax.tree.map(lambda x: x.reshape((devices, -1) + x.shape[2:]), batch)
  fresh = step.compiled_for_batch(batch)
  s = state
  for _ in range(2):
    s, _ = step(s, batch)
  assert fresh._cache_size() == 2  # What replicate avoids.

  step, state, _ = _train_step_and_inputs(4)
  compiled = step.compiled_for_batch(batch)
  s = parallel.replicate(state, devices)
  for _ in range(3):
    s, _ = step(s, batch)
  assert compiled._cache_size() == 1
  # Placement changes no number.
  again, _ = step(state, batch)
  placed, _ = step(parallel.replicate(state, devices), batch)
  for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(placed.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
