"""Gradient clipping: the lecture's example and Keras' clipvalue / clipnorm /
global_clipnorm on an SGD trajectory."""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"

import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

from jaxcnn import optim  # noqa: E402
from jaxcnn.config import ConfigError  # noqa: E402
from jaxcnn.optim import clipping  # noqa: E402


def test_lecture_example():
  """[0.9, 100.0] -> [0.9, 1.0] with clipvalue=1 (the direction turns) and
  -> [0.00899964, 0.9999595] with clipnorm=1 (the direction stays)."""
  g = jnp.array([0.9, 100.0])
  np.testing.assert_allclose(clipping.clip_tree(g, clipvalue=1.0), [0.9, 1.0])
  by_norm = clipping.clip_tree(g, clipnorm=1.0)
  np.testing.assert_allclose(by_norm, [0.00899964, 0.9999595], rtol=1e-6)
  assert float(jnp.linalg.norm(by_norm)) == pytest.approx(1.0, rel=1e-6)


def test_clipnorm_is_per_tensor_and_global_clipnorm_joint():
  grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.0, 0.5]),
           "c": jnp.zeros(3)}
  per = clipping.clip_tree(grads, clipnorm=1.0)
  np.testing.assert_allclose(per["a"], [0.6, 0.8], rtol=1e-6)  # norm 5 -> 1
  np.testing.assert_allclose(per["b"], [0.0, 0.5])  # norm 0.5 kept
  np.testing.assert_array_equal(per["c"], np.zeros(3))  # zero stays zero, no NaN
  joint = clipping.clip_tree(grads, global_clipnorm=1.0)
  scale = 1.0 / np.sqrt(25.0 + 0.25)
  np.testing.assert_allclose(joint["a"], np.array([3.0, 4.0]) * scale, rtol=1e-6)
  np.testing.assert_allclose(joint["b"], np.array([0.0, 0.5]) * scale, rtol=1e-6)


@pytest.mark.parametrize("option,value", [("clipvalue", 0.5), ("clipnorm", 1.0),
                                          ("global_clipnorm", 1.5)])
def test_sgd_trajectory_with_clipping_matches_keras(option, value):
  """Large gradients (steep bowl) so clipping acts at every step."""
  rng = np.random.default_rng(0)
  shapes = [(3, 4), (4,), (2, 2, 3)]
  w0 = [rng.normal(size=s).astype(np.float32) * 3 for s in shapes]
  curv = [rng.uniform(5, 20, s).astype(np.float32) for s in shapes]
  grad = lambda ws: [(c * w).astype(np.float32) for c, w in zip(curv, ws)]
  hp = dict(learning_rate=0.05, momentum=0.5, **{option: value})

  tx = optim.create(dict(name="sgd", **hp), None, steps_per_epoch=1, num_epochs=1)
  params = [jnp.asarray(w) for w in w0]
  state = tx.init(params)
  variables = [keras.Variable(w) for w in w0]
  opt = keras.optimizers.SGD(**hp)
  clipped_steps = 0
  for step in range(20):
    g = grad([np.asarray(p) for p in params])
    clipped_steps += any(np.abs(x).max() > value for x in g)
    updates, state = tx.update([jnp.asarray(x) for x in g], state, params)
    params = optax.apply_updates(params, updates)
    opt.apply(grad([v.numpy() for v in variables]), variables)
    for p, v in zip(params, variables):
      np.testing.assert_allclose(p, v.numpy(), rtol=1e-5, atol=1e-6,
                                 err_msg=f"step {step}")
  assert clipped_steps >= 10  # the test exercised clipping, not a no-op


def test_only_one_clipping_option():
  for pair in [dict(clipnorm=1.0, global_clipnorm=1.0),
               dict(clipvalue=1.0, clipnorm=1.0)]:
    with pytest.raises(ConfigError, match="Only one of clipvalue, clipnorm"):
      optim.create(dict(name="adam", **pair), None, steps_per_epoch=1, num_epochs=1)


def test_negative_threshold_and_off_values():
  with pytest.raises(ConfigError, match="optimizer.clipnorm"):
    optim.create(dict(name="adam", clipnorm=-1.0), None, steps_per_epoch=1,
                 num_epochs=1)
  # None and 0 mean off (ConfigDicts often carry None defaults).
  g = jnp.array([0.9, 100.0])
  np.testing.assert_array_equal(clipping.clip_tree(g, clipnorm=None,
                                                   global_clipnorm=0.0), g)
