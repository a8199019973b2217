"""Initializers against their definitions (lecture 004) and Keras."""

import math
import os

os.environ["KERAS_BACKEND"] = "tensorflow"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import scipy.stats  # noqa: E402

from jaxcnn import config as config_lib  # noqa: E402
from jaxcnn import models  # noqa: E402
from jaxcnn.models import initializers  # noqa: E402

# name -> (scale, mode, distribution), lecture 004's table / Keras' definitions.
DEFINITIONS = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}
SHAPES = [(784, 300), (3, 3, 32, 64)]  # Dense: fans 784/300; Conv: 288/576


def _fan(shape, mode):
  receptive = math.prod(shape[:-2])
  fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
  return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_named_initializer_statistics(name, shape):
  scale, mode, distribution = DEFINITIONS[name]
  variance = scale / _fan(shape, mode)
  w = np.asarray(initializers.parse(name)(jax.random.key(0), shape))
  assert w.shape == shape and w.dtype == np.float32
  assert w.mean() == pytest.approx(0.0, abs=4 * math.sqrt(variance / w.size))
  assert w.var() == pytest.approx(variance, rel=0.03)
  if distribution == "uniform":
    limit = math.sqrt(3 * variance)  # Glorot uniform: r = sqrt(3 / fan_avg)
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit
  else:
    # Normal cut at two stddevs of the underlying (pre-truncation) normal.
    bound = 2 * math.sqrt(variance) / 0.87962566103423978
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.98 * bound


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_named_initializers_match_keras_distribution(name):
  shape = (3, 3, 32, 64)
  ours = np.asarray(initializers.parse(name)(jax.random.key(1), shape)).ravel()
  theirs = np.asarray(keras.initializers.get(
      {"class_name": name, "config": {"seed": 7}})(shape)).ravel()
  # Same distribution: a two-sample Kolmogorov-Smirnov test (18k draws each)
  # does not tell them apart, while a 15% wider scale is caught.
  assert scipy.stats.ks_2samp(ours, theirs).pvalue > 1e-3
  assert scipy.stats.ks_2samp(ours * 1.15, theirs).pvalue < 1e-3


def test_variance_scaling_he_avg_init_from_lecture_004():
  spec = {"name": "variance_scaling", "scale": 2.0, "mode": "fan_avg",
          "distribution": "uniform"}
  init = initializers.parse(spec)
  assert init == initializers.VarianceScaling(2.0, "fan_avg", "uniform")
  w = np.asarray(init(jax.random.key(0), (784, 300)))
  limit = math.sqrt(3 * 2.0 / ((784 + 300) / 2))
  assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
  assert w.var() == pytest.approx(2.0 / 542, rel=0.03)


def test_untruncated_normal_and_keras2_alias():
  w = np.asarray(initializers.VarianceScaling(1.0, "fan_out", "untruncated_normal")(
      jax.random.key(0), (200, 500)))
  assert w.var() == pytest.approx(1 / 500, rel=0.03)
  assert np.abs(w).max() > 3 * math.sqrt(1 / 500)  # tails not cut
  assert initializers.VarianceScaling(distribution="normal").distribution == "truncated_normal"


def test_layers_default_to_glorot_uniform_and_zero_bias():
  model = models.build([{"type": "flatten"}, {"type": "dense", "units": 300}])
  v = model.init({"params": jax.random.key(0)}, np.zeros((1, 28, 28, 1), np.float32))
  kernel, bias = v["params"]["dense"]["kernel"], v["params"]["dense"]["bias"]
  limit = math.sqrt(6 / (784 + 300))
  assert float(np.abs(kernel).max()) <= limit and float(np.abs(kernel).max()) > 0.99 * limit
  np.testing.assert_array_equal(bias, 0.0)


def test_per_layer_initializer_override():
  model = models.build([{"type": "conv2d", "filters": 64, "kernel_size": 3,
                         "kernel_initializer": "he_normal", "bias_initializer": "ones"}])
  v = model.init({"params": jax.random.key(0)}, np.zeros((1, 8, 8, 32), np.float32))
  kernel = np.asarray(v["params"]["conv2d"]["kernel"])
  assert kernel.var() == pytest.approx(2 / (3 * 3 * 32), rel=0.05)
  np.testing.assert_array_equal(v["params"]["conv2d"]["bias"], 1.0)


def test_locally_connected_fans_are_per_position():
  model = models.build([{"type": "locally_connected2d", "filters": 8, "kernel_size": 3,
                         "kernel_initializer": "he_normal"}])
  v = model.init({"params": jax.random.key(0)}, np.zeros((1, 12, 12, 4), np.float32))
  kernel = np.asarray(v["params"]["locally_connected2d"]["kernel"])
  assert kernel.var() == pytest.approx(2 / (3 * 3 * 4), rel=0.05)


def test_bad_initializer_specs():
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'he_normal'"):
    initializers.parse("he_norml")
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'mode'"):
    initializers.parse({"name": "variance_scaling", "mood": "fan_in"})
  with pytest.raises(config_lib.ConfigError, match="fan_in, fan_out, fan_avg"):
    initializers.parse({"name": "variance_scaling", "mode": "fan_sum"})
  with pytest.raises(config_lib.ConfigError, match="takes no parameters"):
    initializers.parse({"name": "he_normal", "scale": 3.0})
