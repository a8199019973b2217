"""Presets: the lectures' parameter counts, Keras' counts, names and shapes."""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
from keras import layers as kl  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxcnn import config as config_lib  # noqa: E402
from jaxcnn import models  # noqa: E402
from jaxcnn.optim.regularizers import ParamRule  # noqa: E402

MNIST = (28, 28, 1)
CATS = (150, 150, 3)
CIFAR = (32, 32, 3)

# preset -> (input shape, total, non-trainable): the lectures' numbers.
LECTURE_COUNTS = {
    "cnn": (MNIST, 61_482, 0),
    "cnn_small": (MNIST, 14_178, 0),
    "cnn_small_bn": (MNIST, 14_178 + 64, 32),
    "mnist_cnn": (MNIST, 93_322, 0),
    "cats_dogs_cnn": (CATS, 3_453_121, 0),
    "cats_dogs_cnn_dropout": (CATS, 3_453_121, 0),
    "vgg16": (CATS, 14_714_688, 0),
    "vgg16_transfer": (CATS, 16_812_353, 0),
    "mlp_bn": (MNIST, 271_346, 2_368),
}


def _input_shape(name):
  if name in LECTURE_COUNTS:
    return LECTURE_COUNTS[name][0]
  return CIFAR if name.startswith("cifar") else MNIST


@pytest.mark.parametrize("name", sorted(LECTURE_COUNTS))
def test_lecture_parameter_counts(name):
  shape, total, non_trainable = LECTURE_COUNTS[name]
  s = models.summary(models.create(name), shape)
  assert (s.total, s.non_trainable) == (total, non_trainable)
  assert s.trainable == total - non_trainable


# ---------------------------------------------------------------- Keras twins
# The lectures' own Keras code (softmax/sigmoid outputs do not change counts).


def _lecture_keras_models():
  relu = "relu"
  return {
      "cnn": lambda: keras.Sequential([
          keras.Input(MNIST), kl.Conv2D(32, (3, 3), activation=relu), kl.MaxPooling2D((2, 2)),
          kl.Conv2D(32, (3, 3), activation=relu), kl.MaxPooling2D((2, 2)), kl.Flatten(),
          kl.Dense(64, activation=relu), kl.Dense(10, activation="softmax")]),
      "cnn_small": lambda: keras.Sequential([
          keras.Input(MNIST), kl.Conv2D(8, (3, 3), activation=relu), kl.MaxPooling2D((2, 2)),
          kl.Conv2D(8, (3, 3), activation=relu), kl.MaxPooling2D((2, 2)), kl.Flatten(),
          kl.Dense(64, activation=relu), kl.Dense(10, activation="softmax")]),
      "cnn_small_bn": lambda: keras.Sequential([
          keras.Input(MNIST), kl.Conv2D(8, (3, 3)), kl.Activation(relu),
          kl.BatchNormalization(), kl.MaxPooling2D((2, 2)), kl.Conv2D(8, (3, 3)),
          kl.Activation(relu), kl.BatchNormalization(), kl.MaxPooling2D((2, 2)),
          kl.Flatten(), kl.Dense(64, activation=relu), kl.Dense(10, activation="softmax")]),
      "mnist_cnn": lambda: keras.Sequential([
          keras.Input(MNIST), kl.Conv2D(32, (3, 3), activation=relu), kl.MaxPooling2D((2, 2)),
          kl.Conv2D(64, (3, 3), activation=relu), kl.MaxPooling2D((2, 2)),
          kl.Conv2D(64, (3, 3), activation=relu), kl.Flatten(),
          kl.Dense(64, activation=relu), kl.Dense(10, activation="softmax")]),
      "cats_dogs_cnn_dropout": lambda: keras.Sequential([
          keras.Input(CATS), kl.Conv2D(32, (3, 3), activation=relu), kl.MaxPooling2D((2, 2)),
          kl.Conv2D(64, (3, 3), activation=relu), kl.MaxPooling2D((2, 2)),
          kl.Conv2D(128, (3, 3), activation=relu), kl.MaxPooling2D((2, 2)),
          kl.Conv2D(128, (3, 3), activation=relu), kl.MaxPooling2D((2, 2)),
          kl.Flatten(), kl.Dropout(0.5), kl.Dense(512, activation=relu),
          kl.Dense(1, activation="sigmoid")]),
      "mlp_bn": lambda: keras.Sequential([
          keras.Input(MNIST), kl.Flatten(), kl.BatchNormalization(),
          kl.Dense(300, activation="elu", kernel_initializer="he_normal"),
          kl.BatchNormalization(),
          kl.Dense(100, activation="elu", kernel_initializer="he_normal"),
          kl.BatchNormalization(), kl.Dense(10, activation="softmax")]),
      "mlp_dropout": lambda: keras.Sequential([
          keras.Input(MNIST), kl.Flatten(), kl.Dropout(rate=0.2),
          kl.Dense(300, activation="elu", kernel_initializer="he_normal"),
          kl.Dropout(rate=0.2),
          kl.Dense(100, activation="elu", kernel_initializer="he_normal"),
          kl.Dropout(rate=0.2), kl.Dense(10, activation="softmax")]),
      "vgg16": lambda: keras.applications.VGG16(weights=None, include_top=False,
                                                input_shape=CATS),
  }


def _keras_layer(spec):
  """Our spec as the Keras layer it stands for (names left to Keras)."""
  o = spec.kwargs
  act = o.get("activation")
  act = None if act is None else (act.name if act.alpha is None else "linear")
  name = {"name": spec.name} if spec.name.startswith("block") else {}
  t = spec.type
  if t == "conv2d":
    return kl.Conv2D(o["filters"], o.get("kernel_size", (3, 3)), o.get("strides", (1, 1)),
                     o.get("padding", "valid"), activation=act, **name)
  if t == "dense":
    return kl.Dense(o["units"], activation=act)
  if t == "max_pooling2d":
    return kl.MaxPooling2D(o.get("pool_size", (2, 2)), o.get("strides"),
                           o.get("padding", "valid"), **name)
  if t == "flatten":
    return kl.Flatten()
  if t == "activation":
    return kl.Activation(act or "linear")
  if t == "batch_normalization":
    return kl.BatchNormalization()
  if t == "dropout":
    return kl.Dropout(o["rate"])
  if t == "alpha_dropout":
    return kl.AlphaDropout(o["rate"])
  raise NotImplementedError(t)


def _keras_twin(model, shape):
  keras.backend.clear_session()
  return keras.Sequential([keras.Input(shape)] + [_keras_layer(s) for s in model.layers])


def _assert_same_as_keras(model, keras_model, shape):
  s = models.summary(model, shape)
  keras_layers = [l for l in keras_model.layers if not isinstance(l, kl.InputLayer)]
  assert [r.name for r in s.rows] == [l.name for l in keras_layers]
  assert [r.output_shape for r in s.rows] == [tuple(l.output.shape) for l in keras_layers]
  assert [r.params for r in s.rows] == [l.count_params() for l in keras_layers]
  assert s.total == keras_model.count_params()
  non_trainable = sum(int(np.prod(w.shape)) for w in keras_model.non_trainable_weights)
  assert s.non_trainable == non_trainable


@pytest.mark.parametrize("name", sorted(_lecture_keras_models()))
def test_presets_equal_the_lectures_keras_code(name):
  keras.backend.clear_session()
  keras_model = _lecture_keras_models()[name]()
  _assert_same_as_keras(models.create(name), keras_model, _input_shape(name))


def test_vgg16_transfer_equals_keras_base_plus_head():
  keras.backend.clear_session()
  base = keras.applications.VGG16(weights=None, include_top=False, input_shape=CATS)
  head = keras.Sequential([keras.Input(base.output.shape[1:]), kl.Flatten(),
                           kl.Dense(256, activation="relu"), kl.Dense(1, activation="sigmoid")])
  s = models.summary(models.create("vgg16_transfer"), CATS)
  assert s.total == base.count_params() + head.count_params() == 16_812_353
  assert s.rows[17].name == "block5_pool" and s.rows[17].output_shape == (None, 4, 4, 512)
  assert [r.name for r in s.rows[18:]] == [l.name for l in head.layers]


@pytest.mark.parametrize("name", sorted(set(models.PRESETS) - {"sequential"}))
def test_every_preset_equals_its_keras_twin(name):
  model = models.create(name)
  shape = _input_shape(name)
  _assert_same_as_keras(model, _keras_twin(model, shape), shape)


@pytest.mark.parametrize("name,shape", [("cnn_small_bn", MNIST), ("mlp_bn", MNIST),
                                        ("cifar_cnn_bn", (9, 11, 3)),
                                        ("cifar_cnn_dropout_maxnorm_strides", (9, 11, 3))])
def test_preset_outputs_equal_keras_with_the_same_weights(name, shape):
  model = models.create(name)
  x = np.random.default_rng(1).normal(size=(3, *shape)).astype(np.float32)
  v = model.init({"params": jax.random.key(0)}, x)
  # Moving statistics away from 0/1, so inference BatchNorm is exercised.
  rng = np.random.default_rng(2)
  if "batch_stats" in v:
    v = {**v, "batch_stats": jax.tree.map(
        lambda a: a + rng.uniform(0.1, 0.5, a.shape).astype(np.float32), v["batch_stats"])}
  keras_model = _keras_twin(model, shape)
  for spec, layer in zip(model.layers, [l for l in keras_model.layers]):
    p, s = v["params"].get(spec.name, {}), v.get("batch_stats", {}).get(spec.name, {})
    if spec.type in ("conv2d", "dense"):
      layer.set_weights([np.asarray(p["kernel"]), np.asarray(p["bias"])])
    elif spec.type == "batch_normalization":
      layer.set_weights([np.asarray(a) for a in (p["scale"], p["bias"], s["mean"], s["var"])])
  np.testing.assert_allclose(model.apply(v, x), keras_model(x, training=False),
                             rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- create()


def test_overrides_and_num_classes():
  m = models.create("mnist_cnn", num_classes=5, dropout_rate=0.3, activation="elu",
                    kernel_initializer="he_normal")
  assert m.layer_names[-4:] == ("flatten", "dropout", "dense", "dense_1")
  assert m.layers[0].kwargs["activation"].name == "elu"
  assert m.layers[0].kwargs["kernel_initializer"] == models.initializers.he_normal()
  out = models.summary(m, MNIST).rows[-1].output_shape
  assert out == (None, 5)
  # A 1-sigmoid-unit preset stays binary for 2 classes, grows for more.
  def out(name, n):
    return models.summary(models.create(name, num_classes=n), CATS).rows[-1].output_shape

  assert out("cats_dogs_cnn", 2) == (None, 1)
  assert out("vgg16_transfer", 5) == (None, 5)


def test_create_from_config_dict():
  cfg = ml_collections.ConfigDict({"name": "mlp", "activation": "tanh",
                                   "kernel_initializer": "glorot_normal",
                                   "hidden_units": (50,)})
  m = models.create(cfg, num_classes=3, axis_name="batch")
  assert m.axis_name == "batch" and m.preset == "mlp"
  assert m.layer_names == ("flatten", "dense", "dense_1")
  assert models.summary(m, MNIST).total == 784 * 50 + 50 + 50 * 3 + 3
  leaky = ml_collections.ConfigDict({"name": "mlp_leaky_relu",
                                     "activation": {"name": "leaky_relu", "alpha": 0.1}})
  assert models.create(leaky).layers[1].kwargs["activation"].alpha == 0.1


def test_unknown_preset_and_override_name_the_valid_ones():
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'mnist_cnn'.*Valid models"):
    models.create("mnist_cn")
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'dropout_rate'"):
    models.create("mnist_cnn", dropot_rate=0.3)
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'dense_units'"):
    models.create(ml_collections.ConfigDict({"name": "cnn", "dense_unit": 32}))
  with pytest.raises(config_lib.ConfigError, match="Unknown activation 'rellu'"):
    models.create("cnn", activation="rellu")
  with pytest.raises(config_lib.ConfigError, match="disagrees"):
    models.create({"name": "cnn", "num_classes": 3}, num_classes=10)


def test_custom_sequential_model_and_layer_errors():
  layers = ({"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same"},
            {"type": "MaxPooling2D"}, {"type": "flatten"},
            {"type": "dense", "units": 2, "name": "logits"})
  m = models.create({"name": "sequential", "layers": layers})
  assert m.layer_names == ("conv2d", "max_pooling2d", "flatten", "logits")
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'kernel_size'"):
    models.build([{"type": "conv2d", "filters": 4, "kernal_size": 3}])
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'dense'"):
    models.build([{"type": "dence", "units": 3}])
  with pytest.raises(config_lib.ConfigError, match="needs filters"):
    models.build([{"type": "conv2d"}])
  with pytest.raises(config_lib.ConfigError, match="must be in \\[0, 1\\)"):
    models.build([{"type": "dropout", "rate": 1.0}])
  with pytest.raises(config_lib.ConfigError, match="repeated: x"):
    models.build([{"type": "flatten", "name": "x"}, {"type": "dense", "units": 1, "name": "x"}])


def test_keras_auto_names_skip_explicit_ones():
  m = models.build([{"type": "dense", "units": 2, "name": "dense_1"},
                    {"type": "dense", "units": 2}, {"type": "dense", "units": 2}])
  assert m.layer_names == ("dense_1", "dense", "dense_2")


def test_param_rules_from_layer_specs():
  m = models.create("cifar_cnn_dropout_maxnorm", kernel_regularizer={"l2": 0.01})
  rules = models.param_rules(m)
  kernels = [f"{s.name}/kernel" for s in m.layers if s.type in ("conv2d", "dense")]
  assert sorted(rules) == sorted(kernels)
  assert rules["dense_1/kernel"] == ParamRule(l1=0.0, l2=0.01, max_norm=3.0)
  custom = models.build([{"type": "dense", "units": 3, "bias_constraint": {"max_norm": 1.0},
                          "kernel_regularizer": {"l1": 0.1}}])
  assert models.param_rules(custom) == {"dense/kernel": ParamRule(l1=0.1),
                                        "dense/bias": ParamRule(max_norm=1.0)}
  assert models.param_rules(models.create("cnn")) == {}
  v = custom.init({"params": jax.random.key(0)}, jnp.zeros((1, 4)))
  assert all(path.split("/")[1] in v["params"][path.split("/")[0]]
             for path in models.param_rules(custom))
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'max_norm'"):
    models.build([{"type": "dense", "units": 3, "kernel_constraint": {"maxnorm": 1.0}}])


def test_summary_table_looks_like_keras():
  text = str(models.summary(models.create("mlp_bn"), MNIST))
  assert 'Model: "mlp_bn"' in text
  assert "batch_normalization (BatchNormalization)" in text
  assert "(None, 784)" in text and "3,136" in text
  assert text.endswith("Total params: 271,346\nTrainable params: 268,978\n"
                       "Non-trainable params: 2,368")


def test_slices_compose_and_first_stochastic_layer():
  m = models.create("cnn_small_bn", dropout_rate=0.5)
  k = models.first_stochastic_layer(m)
  assert m.layer_names[k] == "dropout" and m.layer_names[k - 1] == "flatten"
  assert models.first_stochastic_layer(models.create("cnn")) == len(models.create("cnn").layers)
  x = jax.random.normal(jax.random.key(0), (4, *MNIST))
  v = m.init({"params": jax.random.key(1)}, x)
  rngs = {"dropout": jax.random.key(2)}
  full = m.apply(v, x, deterministic=False, rngs=rngs)
  cached = m.apply(v, x, stop=k)
  np.testing.assert_allclose(m.apply(v, cached, start=k, deterministic=False, rngs=rngs), full,
                             rtol=1e-6)
  np.testing.assert_allclose(m.apply(v, m.apply(v, x, stop=-3), start=-3), m.apply(v, x),
                             rtol=1e-6)


def test_mc_dropout_keeps_batch_norm_frozen():
  m = models.create("mlp_bn", dropout_rate=0.3)
  x = jax.random.normal(jax.random.key(0), (16, *MNIST))
  v = m.init({"params": jax.random.key(1)}, x)
  a, state = m.apply(v, x, deterministic=False, rngs={"dropout": jax.random.key(2)},
                     mutable=["batch_stats"])
  b = m.apply(v, x, deterministic=False, rngs={"dropout": jax.random.key(3)})
  assert not np.allclose(a, b)  # dropout on
  jax.tree.map(np.testing.assert_array_equal, state["batch_stats"], v["batch_stats"])
  # Inference is deterministic and needs no rng.
  np.testing.assert_array_equal(m.apply(v, x), m.apply(v, x))


def test_model_is_hashable_for_jit():
  m = models.create("mlp_selu")
  assert hash(m) == hash(models.create("mlp_selu"))
  x = jnp.zeros((2, *MNIST))
  v = m.init({"params": jax.random.key(0)}, x)
  apply = jax.jit(m.apply, static_argnames=("train", "deterministic"))
  assert apply(v, x).shape == (2, 10)


@pytest.mark.parametrize("name,overrides", [
    ("mlp_selu", {}), ("mlp_leaky_relu", {}), ("vgg16_transfer", {"preprocess": True}),
    ("cifar_cnn_dropout_maxnorm", {"kernel_regularizer": {"l1": 0.5}})])
def test_layer_specs_round_trip_through_plain_dicts(name, overrides):
  model = models.create(name, **overrides)
  plain = [models.specs.to_config(s) for s in model.layers]
  assert models.build(plain).layers == model.layers
