"""Layers against Keras 3 (TF backend) and against their definitions."""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxcnn import config as config_lib  # noqa: E402
from jaxcnn import models  # noqa: E402
from jaxcnn.models import activations  # noqa: E402
from jaxcnn.models import dropout  # noqa: E402
from jaxcnn.models import layers  # noqa: E402

RNG = np.random.default_rng(0)


def _single(spec, x, **call):
  """Inits and applies a one-layer model; returns (output, variables)."""
  model = models.build([spec])
  variables = model.init({"params": jax.random.key(1)}, x)
  return model.apply(variables, x, **call), variables, model


def _keras_out(layer, x, weights=None, **call):
  keras.backend.clear_session()
  layer.build(x.shape)
  if weights is not None:
    layer.set_weights(weights)
  return np.asarray(layer(x, **call))


@pytest.mark.parametrize("kernel,strides,padding,dilation,shape", [
    (3, 1, "valid", 1, (2, 9, 11, 3)),
    (3, 2, "same", 1, (2, 9, 11, 3)),   # odd size, stride 2: TF's asymmetric pad
    ((5, 3), (2, 1), "same", 1, (1, 10, 7, 2)),
    (3, 1, "same", 2, (1, 12, 12, 2)),
])
def test_conv2d_matches_keras(kernel, strides, padding, dilation, shape):
  x = RNG.normal(size=shape).astype(np.float32)
  spec = {"type": "conv2d", "filters": 4, "kernel_size": kernel, "strides": strides,
          "padding": padding, "dilation_rate": dilation, "activation": "relu"}
  model = models.build([spec])
  w = model.init({"params": jax.random.key(1)}, x)["params"]["conv2d"]["kernel"]
  bias = RNG.normal(size=4).astype(np.float32)  # a nonzero bias, not the zero init
  y = model.apply({"params": {"conv2d": {"kernel": w, "bias": jnp.asarray(bias)}}}, x)
  ref = _keras_out(keras.layers.Conv2D(4, kernel, strides, padding, dilation_rate=dilation,
                                       activation="relu"),
                   x, [np.asarray(w), bias])
  assert y.shape == ref.shape
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_dense_and_flatten_match_keras():
  x = RNG.normal(size=(3, 5, 4, 2)).astype(np.float32)
  model = models.build([{"type": "flatten"}, {"type": "dense", "units": 7, "activation": "tanh"}])
  v = model.init({"params": jax.random.key(0)}, x)
  kernel = np.asarray(v["params"]["dense"]["kernel"])
  keras.backend.clear_session()
  ref_model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Flatten(),
                                keras.layers.Dense(7, activation="tanh")])
  ref_model.layers[-1].set_weights([kernel, np.zeros(7, np.float32)])
  np.testing.assert_allclose(model.apply(v, x), ref_model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 7, 9, 3), (1, 8, 8, 1), (2, 5, 4, 2), (3, 28, 28, 8)])
@pytest.mark.parametrize("window", [(2, 2), (3, 3), (2, 3)])
def test_max_pool_fast_path_equals_flax_and_keras(shape, window):
  """The fused max-pool computes what nn.max_pool does, gradient included.

  After a ReLU many windows tie (all zeros): the gradient must still go to
  the first maximum of each window, exactly as select-and-scatter sends it.
  """
  if shape[1] < window[0] or shape[2] < window[1]:
    pytest.skip("window larger than the image")
  x = RNG.normal(size=shape).astype(np.float32)
  x = jnp.asarray(np.maximum(np.where(RNG.random(shape) < 0.4, 0.0, x), 0.0), jnp.float32)
  fast = layers.max_pool(x, window)
  np.testing.assert_array_equal(fast, nn.max_pool(x, window, window, "VALID"))
  np.testing.assert_array_equal(fast, _keras_out(keras.layers.MaxPooling2D(window), np.asarray(x)))
  cotangent = jnp.asarray(RNG.normal(size=fast.shape), jnp.float32)
  g_fast = jax.jit(jax.grad(lambda x: (layers.max_pool(x, window) * cotangent).sum()))(x)
  g_flax = jax.jit(jax.grad(lambda x: (nn.max_pool(x, window, window) * cotangent).sum()))(x)
  np.testing.assert_array_equal(g_fast, g_flax)
  # One nonzero per window at most: nothing is duplicated onto tied maxima.
  assert int((g_fast != 0).sum()) <= fast.size


@pytest.mark.parametrize("pool,strides,padding", [(3, 2, "valid"), (3, 2, "same"),
                                                   (2, 2, "same"), ((3, 2), 1, "valid")])
def test_pooling_general_paths_match_keras(pool, strides, padding):
  x = RNG.normal(size=(2, 9, 8, 3)).astype(np.float32)
  spec = {"pool_size": pool, "strides": strides, "padding": padding}
  y_max, _, _ = _single({"type": "max_pooling2d", **spec}, x)
  y_avg, _, _ = _single({"type": "average_pooling2d", **spec}, x)
  np.testing.assert_allclose(
      y_max, _keras_out(keras.layers.MaxPooling2D(pool, strides, padding), x))
  np.testing.assert_allclose(
      y_avg, _keras_out(keras.layers.AveragePooling2D(pool, strides, padding), x),
      rtol=1e-5, atol=1e-6)


def test_global_pooling_matches_keras():
  x = RNG.normal(size=(2, 5, 6, 3)).astype(np.float32)
  y, _, _ = _single({"type": "global_average_pooling2d"}, x)
  np.testing.assert_allclose(y, _keras_out(keras.layers.GlobalAveragePooling2D(), x), rtol=1e-6)
  y, _, _ = _single({"type": "global_max_pooling2d"}, x)
  np.testing.assert_allclose(y, _keras_out(keras.layers.GlobalMaxPooling2D(), x))


@pytest.mark.parametrize("spec,reference", [
    ("relu", lambda z: keras.activations.relu(z)),
    ("sigmoid", lambda z: keras.activations.sigmoid(z)),
    ("tanh", lambda z: keras.activations.tanh(z)),
    ("selu", lambda z: keras.activations.selu(z)),
    ("softmax", lambda z: keras.activations.softmax(z)),
    ("elu", lambda z: keras.activations.elu(z)),
    ({"name": "elu", "alpha": 0.5}, lambda z: keras.activations.elu(z, alpha=0.5)),
    ("leaky_relu", lambda z: keras.activations.leaky_relu(z)),
    ({"name": "leaky_relu", "alpha": 0.01}, lambda z: keras.activations.leaky_relu(z, 0.01)),
])
def test_activations_match_keras(spec, reference):
  z = np.linspace(-6, 6, 61, dtype=np.float32).reshape(1, 61)
  np.testing.assert_allclose(activations.parse(spec)(jnp.asarray(z)), reference(z),
                             rtol=1e-5, atol=1e-6)


def test_activation_definitions_from_lecture_004():
  z = jnp.asarray([-2.0, -0.5, 0.0, 1.5])
  np.testing.assert_allclose(activations.leaky_relu(z, 0.2), jnp.maximum(0.2 * z, z))
  np.testing.assert_allclose(activations.elu(z, 1.0), jnp.where(z < 0, jnp.exp(z) - 1, z),
                             rtol=1e-6)
  # ELU_alpha -> -alpha as z -> -inf.
  assert float(activations.elu(jnp.asarray(-50.0), 0.7)) == pytest.approx(-0.7)


def test_leaky_relu_layer_uses_keras_layer_default():
  x = RNG.normal(size=(4, 6)).astype(np.float32)
  y, _, model = _single({"type": "leaky_relu"}, x)
  assert model.layer_names == ("leaky_re_lu",)
  np.testing.assert_allclose(y, _keras_out(keras.layers.LeakyReLU(), x), rtol=1e-6)


def test_bad_activation_names_closest():
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'relu'"):
    activations.parse("reluu")
  with pytest.raises(config_lib.ConfigError, match="takes no alpha"):
    activations.parse({"name": "relu", "alpha": 0.1})


def test_batch_norm_train_and_inference_match_keras():
  x = (RNG.normal(size=(16, 3, 3, 5)) * 3 + 2).astype(np.float32)
  model = models.build([{"type": "batch_normalization"}])
  v = model.init({"params": jax.random.key(0)}, x)
  gamma = RNG.uniform(0.5, 1.5, 5).astype(np.float32)
  beta = RNG.normal(size=5).astype(np.float32)
  v = {"params": {"batch_normalization": {"scale": jnp.asarray(gamma), "bias": jnp.asarray(beta)}},
       "batch_stats": v["batch_stats"]}
  y, updates = model.apply(v, x, train=True, mutable=["batch_stats"])
  keras.backend.clear_session()
  bn = keras.layers.BatchNormalization()  # momentum 0.99, epsilon 1e-3
  bn.build(x.shape)
  bn.set_weights([gamma, beta, np.zeros(5, np.float32), np.ones(5, np.float32)])
  ref = bn(x, training=True)
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
  stats = updates["batch_stats"]["batch_normalization"]
  np.testing.assert_allclose(stats["mean"], bn.moving_mean.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats["var"], bn.moving_variance.numpy(), rtol=1e-5)
  # The update is momentum * old + (1 - momentum) * batch (lecture 004).
  np.testing.assert_allclose(stats["mean"], 0.01 * x.mean((0, 1, 2)), rtol=1e-4)
  # Inference uses the moving statistics.
  v["batch_stats"] = updates["batch_stats"]
  np.testing.assert_allclose(model.apply(v, x), bn(x, training=False), rtol=1e-5, atol=1e-5)


def test_batch_norm_pmap_syncs_statistics_over_devices():
  assert jax.local_device_count() >= 4
  x = (RNG.normal(size=(4, 6, 2, 2, 3)) * np.arange(1, 5)[:, None, None, None, None]
       ).astype(np.float32)  # devices see different distributions
  model = models.build([{"type": "conv2d", "filters": 3, "kernel_size": 1},
                        {"type": "batch_normalization"}], axis_name="batch")
  single = models.build([{"type": "conv2d", "filters": 3, "kernel_size": 1},
                         {"type": "batch_normalization"}])
  v = single.init({"params": jax.random.key(0)}, x[0])

  def step(v, x):
    return model.apply(v, x, train=True, mutable=["batch_stats"])

  y_pmap, upd_pmap = jax.pmap(step, axis_name="batch", in_axes=(None, 0))(v, x)
  y_one, upd_one = single.apply(v, x.reshape(24, 2, 2, 3), train=True, mutable=["batch_stats"])
  for name in ("mean", "var"):
    got = upd_pmap["batch_stats"]["batch_normalization"][name]
    want = upd_one["batch_stats"]["batch_normalization"][name]
    for d in range(4):
      np.testing.assert_allclose(got[d], want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y_pmap.reshape(24, 2, 2, 3), y_one, rtol=1e-5, atol=1e-5)


def test_dropout_switches():
  x = jnp.ones((4, 100))
  key = {"dropout": jax.random.key(0)}
  for kind in ("dropout", "alpha_dropout"):
    model = models.build([{"type": kind, "rate": 0.5}])
    v = model.init({"params": jax.random.key(0)}, x)
    np.testing.assert_array_equal(model.apply(v, x), x)                   # inference
    np.testing.assert_array_equal(model.apply(v, x, train=True, deterministic=True), x)
    assert not np.array_equal(model.apply(v, x, train=True, rngs=key), x)  # training
    assert not np.array_equal(model.apply(v, x, deterministic=False, rngs=key), x)  # MC
  mc = models.build([{"type": "mc_dropout", "rate": 0.5}])
  assert mc.layer_names == ("mc_dropout",)
  assert not np.array_equal(mc.apply({}, x, rngs=key), x)  # on by default
  np.testing.assert_array_equal(mc.apply({}, x, deterministic=True), x)


@pytest.mark.parametrize("impl,rate,bits", [
    ("threefry2x32", 0.2, 8), ("rbg", 0.5, 8), ("unsafe_rbg", 0.3, 16),
    ("threefry2x32", 0.1, 32), ("rbg", 0.2, 8)])
def test_dropout_rate_and_expectation(impl, rate, bits):
  x = jnp.full((200, 1001), 2.0)  # 1001: the mask length is not a multiple of 4
  model = models.build([{"type": "dropout", "rate": rate, "mask_bits": bits}])
  y = model.apply({}, x, train=True, rngs={"dropout": jax.random.key(3, impl=impl)})
  dropped = float((y == 0).mean())
  p = dropout.effective_rate(rate, bits)
  assert abs(p - rate) <= 2.0 ** -(bits + 1)
  assert dropped == pytest.approx(p, abs=0.004)
  # Kept units are scaled by 1 / (1 - p): the expectation is unchanged.
  np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 2.0 / (1 - p)], rtol=1e-6)
  assert float(y.mean()) == pytest.approx(2.0, rel=0.01)


def test_dropout_masks_differ_per_key_and_position():
  model = models.build([{"type": "dropout", "rate": 0.5}])
  x = jnp.ones((64, 64))
  a = model.apply({}, x, train=True, rngs={"dropout": jax.random.key(0)}) > 0
  b = model.apply({}, x, train=True, rngs={"dropout": jax.random.key(1)}) > 0
  # Independent masks agree on about half the units; rows are not copies.
  assert 0.45 < float((a == b).mean()) < 0.55
  assert len({tuple(np.asarray(r)) for r in a}) == 64


def test_drop_threshold_falls_back_to_more_bits():
  assert dropout.drop_threshold(0.2, 8) == (51, 8)
  assert dropout.drop_threshold(0.001, 8)[1] == 16  # 8 bits would round to 0
  assert dropout.drop_threshold(0.999, 8)[1] == 16  # ... or to 1
  assert dropout.drop_threshold(0.0, 8) == (0, 8)


def test_alpha_dropout_keeps_selu_mean_and_variance():
  z = jax.random.normal(jax.random.key(0), (400, 1000))
  x = activations.selu(z)  # self-normalized: mean ~0, variance ~1
  model = models.build([{"type": "alpha_dropout", "rate": 0.2}])
  y = model.apply({}, x, train=True, rngs={"dropout": jax.random.key(1)})
  assert float(x.mean()) == pytest.approx(0.0, abs=0.01)
  assert float(y.mean()) == pytest.approx(float(x.mean()), abs=0.01)
  assert float(y.var()) == pytest.approx(float(x.var()), abs=0.02)
  # Keras' affine correction: dropped units become a * alpha_p + b.
  p = dropout.effective_rate(0.2)
  a = ((1 - p) * (1 + p * dropout.ALPHA_P ** 2)) ** -0.5
  b = -a * dropout.ALPHA_P * p
  assert dropout.ALPHA_P == pytest.approx(-1.7580993408473766)
  dropped = np.isclose(np.asarray(y), a * dropout.ALPHA_P + b, atol=1e-6)
  assert float(dropped.mean()) == pytest.approx(p, abs=0.005)
  np.testing.assert_allclose(np.asarray(y)[~dropped], a * np.asarray(x)[~dropped] + b,
                             rtol=1e-5, atol=1e-6)


def test_alpha_dropout_matches_keras_statistics():
  x = np.asarray(activations.selu(jax.random.normal(jax.random.key(2), (200, 1000))))
  keras.backend.clear_session()
  ref = np.asarray(keras.layers.AlphaDropout(0.25, seed=0)(x, training=True))
  model = models.build([{"type": "alpha_dropout", "rate": 0.25, "mask_bits": 32}])
  y = np.asarray(model.apply({}, x, train=True, rngs={"dropout": jax.random.key(1)}))
  # Same affine map: same set of values for dropped units, same moments.
  assert np.isclose(ref, y.min(), atol=1e-5).mean() == pytest.approx(0.25, abs=0.01)
  assert y.mean() == pytest.approx(ref.mean(), abs=0.01)
  assert y.var() == pytest.approx(ref.var(), abs=0.02)


def test_locally_connected_matches_unshared_convolution():
  x = RNG.normal(size=(2, 6, 5, 3)).astype(np.float32)
  spec = {"type": "locally_connected2d", "filters": 4, "kernel_size": (3, 2),
          "strides": (2, 1)}
  y, v, _ = _single(spec, x)
  kernel = np.asarray(v["params"]["locally_connected2d"]["kernel"])
  oh, ow = (6 - 3) // 2 + 1, (5 - 2) + 1
  assert kernel.shape == (oh, ow, 3, 2, 3, 4)
  ref = np.zeros((2, oh, ow, 4), np.float32)
  for i in range(oh):
    for j in range(ow):
      patch = x[:, 2 * i:2 * i + 3, j:j + 2, :]
      ref[:, i, j] = np.einsum("nabc,abcf->nf", patch, kernel[i, j])
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_locally_connected_parameter_count_from_lecture_000():
  # Lecture 000: 5 unshared 3x3 filters over 32x32 positions = 46,080 weights.
  model = models.build([{"type": "locally_connected2d", "filters": 5, "kernel_size": 3}])
  s = models.summary(model, (34, 34, 1))
  assert s.total == 32 * 32 * 5 * 3 * 3 + 32 * 32 * 5
  assert s.rows[0].output_shape == (None, 32, 32, 5)


def test_vgg_preprocess_matches_keras():
  x = RNG.uniform(0, 255, size=(2, 4, 5, 3)).astype(np.float32)
  ref = keras.applications.vgg16.preprocess_input(x.copy())
  np.testing.assert_allclose(models.preprocess_input(x), ref, rtol=1e-6, atol=1e-4)
  layer = models.build([{"type": "vgg_preprocess", "pixel_scale": 255.0}])
  np.testing.assert_allclose(layer.apply({}, x / 255.0), ref, rtol=1e-5, atol=1e-3)
  with pytest.raises(ValueError, match="last axis 3"):
    models.preprocess_input(np.zeros((2, 4, 4, 1)))
