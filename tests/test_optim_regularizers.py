"""l1 / l2 penalties against keras.regularizers, max-norm against
keras.constraints.MaxNorm, and how global and per-layer rules merge."""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from jaxcnn import optim  # noqa: E402
from jaxcnn.config import ConfigError  # noqa: E402
from jaxcnn.optim import ParamRule, build_rules, penalty, project  # noqa: E402


def _params(seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  n = lambda *s: jnp.asarray(rng.normal(size=s).astype(np.float32) * scale)
  return {
      "conv2d": {"kernel": n(3, 3, 2, 4), "bias": n(4)},
      "batch_normalization": {"scale": n(4), "bias": n(4)},
      "dense": {"kernel": n(36, 8), "bias": n(8)},
      "dense_1": {"kernel": n(8, 3), "bias": n(3)},
  }


@pytest.mark.parametrize("rule,keras_reg", [
    (ParamRule(l2=0.01), keras.regularizers.L2(0.01)),
    (ParamRule(l1=0.003), keras.regularizers.L1(0.003)),
    (ParamRule(l1=0.002, l2=0.05), keras.regularizers.L1L2(l1=0.002, l2=0.05)),
])
def test_penalty_and_gradient_match_keras(rule, keras_reg):
  params = _params()
  rules = {"dense/kernel": rule, "conv2d/kernel": rule}
  value, grads = jax.value_and_grad(lambda p: penalty(p, rules))(params)
  expected, expected_grads = 0.0, {}
  for path in rules:
    layer, name = path.split("/")
    var = tf.Variable(np.asarray(params[layer][name]))
    with tf.GradientTape() as tape:
      loss = keras_reg(var)
    expected += float(loss)
    expected_grads[path] = tape.gradient(loss, var).numpy()
  assert float(value) == pytest.approx(expected, rel=1e-6)
  for path, g in expected_grads.items():
    layer, name = path.split("/")
    np.testing.assert_allclose(grads[layer][name], g, rtol=1e-6, atol=1e-9)
  # Parameters without a rule get no gradient from the penalty.
  np.testing.assert_array_equal(grads["dense_1"]["kernel"], 0.0)
  np.testing.assert_array_equal(grads["dense"]["bias"], 0.0)


def test_keras_meaning_not_half_lambda():
  """Keras' l2(λ) adds λ Σ w² (gradient 2λw), not lecture 000's ½ λ w²."""
  params = {"dense": {"kernel": jnp.array([[1.0, 2.0], [3.0, -4.0]])}}
  rules = {"dense/kernel": ParamRule(l2=0.1)}
  assert float(penalty(params, rules)) == pytest.approx(0.1 * 30)
  grads = jax.grad(lambda p: penalty(p, rules))(params)
  np.testing.assert_allclose(grads["dense"]["kernel"],
                             0.2 * np.array([[1.0, 2.0], [3.0, -4.0]]), rtol=1e-6)
  assert float(penalty(params, {})) == 0.0


def test_build_rules_merges_global_and_per_layer():
  params = _params()
  reg = ml_collections.ConfigDict(dict(l1=0.0, l2=1e-4, max_norm=3.0, freeze=()))
  per_layer = {"dense_1/kernel": ParamRule(l1=0.01),
               "dense/bias": ParamRule(max_norm=2.0)}
  rules = build_rules(per_layer, params, reg)
  assert rules == {
      "conv2d/kernel": ParamRule(l2=1e-4, max_norm=3.0),
      "dense/kernel": ParamRule(l2=1e-4, max_norm=3.0),
      "dense_1/kernel": ParamRule(l1=0.01),  # the layer's own rule wins
      "dense/bias": ParamRule(max_norm=2.0),
  }  # biases and BatchNorm scale/bias get nothing from the global rule
  assert build_rules({}, params, dict(l1=0.0, l2=0.0, max_norm=0.0)) == {}
  assert build_rules(None, params, None) == {}


def test_build_rules_skips_frozen_parameters():
  """Keras neither regularizes nor constrains non-trainable weights."""
  rules = build_rules({"conv2d/bias": ParamRule(max_norm=1.0)}, _params(),
                      dict(l2=0.01, freeze=("conv2d",)))
  assert set(rules) == {"dense/kernel", "dense_1/kernel"}


def test_build_rules_errors():
  params = _params()
  with pytest.raises(ConfigError, match="'dense_2/kernel', which is not a "
                     "parameter. Did you mean 'dense_1/kernel'.*conv2d/kernel"):
    build_rules({"dense_2/kernel": ParamRule(l2=0.1)}, params, None)
  with pytest.raises(ConfigError, match="regularization.l3.*Did you mean 'l2'"):
    build_rules({}, params, dict(l3=0.1))
  with pytest.raises(ConfigError, match="ParamRule.l2' must be >= 0"):
    ParamRule(l2=-0.1)
  with pytest.raises(ConfigError, match="matches no parameter"):
    build_rules({}, params, dict(l2=0.1, freeze=("dense_9",)))


@pytest.mark.parametrize("path,keras_axis", [
    ("dense/kernel", 0),  # Dense: each unit's incoming weights
    ("conv2d/kernel", [0, 1, 2]),  # Conv: each filter's h, w, in weights
    ("dense/bias", 0),  # a bias: the whole vector
])
def test_project_equals_keras_max_norm(path, keras_axis):
  params = _params(scale=2.0)
  rules = {path: ParamRule(max_norm=1.5)}
  projected = jax.jit(lambda p: project(p, rules))(params)
  layer, name = path.split("/")
  expected = keras.constraints.MaxNorm(1.5, axis=keras_axis)(
      np.asarray(params[layer][name]))
  np.testing.assert_allclose(projected[layer][name], np.asarray(expected),
                             rtol=1e-6, atol=1e-7)
  for other_layer, group in params.items():  # nothing else moves
    for other_name, value in group.items():
      if (other_layer, other_name) != (layer, name):
        np.testing.assert_array_equal(projected[other_layer][other_name], value)


def test_norms_are_bounded_after_every_update():
  """The lecture's max-norm: after each step, ||w||_2 <= r for every unit
  (Dense) and filter (Conv), with large steps pushing the weights out."""
  params = _params(1)
  rules = build_rules({}, params, dict(max_norm=2.0))
  tx = optim.create(dict(name="sgd", learning_rate=0.5, momentum=0.9), None,
                    steps_per_epoch=1, num_epochs=1)
  state = tx.init(params)
  loss = lambda p: -sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(p))  # grow

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    free = optax.apply_updates(params, updates)
    return free, project(free, rules), state

  for _ in range(8):
    free, params, state = step(params, state)
    dense = np.linalg.norm(np.asarray(params["dense"]["kernel"]), axis=0)
    conv = np.sqrt((np.asarray(params["conv2d"]["kernel"]) ** 2).sum(axis=(0, 1, 2)))
    assert dense.shape == (8,) and conv.shape == (4,)
    assert dense.max() <= 2.0 * (1 + 1e-6) and conv.max() <= 2.0 * (1 + 1e-6)
    for layer, axis in (("dense", 0), ("conv2d", [0, 1, 2])):
      expected = keras.constraints.MaxNorm(2.0, axis=axis)(
          np.asarray(free[layer]["kernel"]))
      np.testing.assert_allclose(params[layer]["kernel"], np.asarray(expected),
                                 rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(dense, 2.0, rtol=1e-5)  # pushed to the bound
  # Biases have no rule here and grew freely.
  assert float(jnp.abs(params["dense"]["bias"]).max()) > 2.0
