"""VGG16 weights written by Keras (both file layouts) give Keras' outputs."""

import os

os.environ["KERAS_BACKEND"] = "tensorflow"

import h5py  # noqa: E402
import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxcnn import models  # noqa: E402
from jaxcnn.models import keras_import  # noqa: E402

SHAPE = (32, 32, 3)


@pytest.fixture(scope="module")
def keras_vgg(tmp_path_factory):
  """A random-weight Keras VGG16 base, saved in both layouts, and its outputs."""
  keras.backend.clear_session()
  vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=SHAPE)
  # Nonzero biases, so a kernel/bias mix-up cannot pass.
  for layer in vgg.layers:
    if layer.weights:
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, np.random.default_rng(len(layer.name)).normal(
          scale=0.1, size=bias.shape).astype(np.float32)])
  tmp = tmp_path_factory.mktemp("vgg")
  keras3_path = str(tmp / "vgg16.weights.h5")
  vgg.save_weights(keras3_path)
  legacy_path = str(tmp / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
  _write_legacy_notop(vgg, legacy_path)
  x = np.random.default_rng(0).uniform(0, 255, size=(2, *SHAPE)).astype(np.float32)
  x = keras.applications.vgg16.preprocess_input(x)
  return {"model": vgg, "keras3": keras3_path, "legacy": legacy_path, "x": x,
          "y": np.asarray(vgg(x))}


def _write_legacy_notop(vgg, path):
  """The layout of Keras' published notop file (Keras 1 era names)."""
  with h5py.File(path, "w") as f:
    names = ["input_1"] + [l.name for l in vgg.layers[1:]]
    f.attrs["layer_names"] = np.array([n.encode() for n in names])
    f.attrs["backend"] = b"tensorflow"
    f.attrs["keras_version"] = b"1.2.2"
    for name in names:
      group = f.create_group(name)
      weights = vgg.get_layer(name).get_weights() if name != "input_1" else []
      weight_names = [f"{name}_W_1:0", f"{name}_b_1:0"][:len(weights)]
      group.attrs["weight_names"] = np.array([n.encode() for n in weight_names], dtype="S")
      for weight_name, value in zip(weight_names, weights):
        group.create_dataset(weight_name, data=value)


def _init(model, x):
  return model.init({"params": jax.random.key(0)}, x)


@pytest.mark.parametrize("layout", ["legacy", "keras3"])
def test_vgg16_import_reproduces_keras_outputs(keras_vgg, layout):
  model = models.create("vgg16", weights_path=keras_vgg[layout])
  x = keras_vgg["x"]
  variables = models.load_pretrained(model, _init(model, x))
  np.testing.assert_allclose(model.apply(variables, x), keras_vgg["y"], rtol=1e-4, atol=1e-3)


def test_legacy_file_is_what_keras_reads(keras_vgg):
  # Keras itself loads our hand-written legacy file into a fresh VGG16.
  keras.backend.clear_session()
  fresh = keras.applications.VGG16(weights=None, include_top=False, input_shape=SHAPE)
  fresh.load_weights(keras_vgg["legacy"])
  np.testing.assert_allclose(fresh(keras_vgg["x"]), keras_vgg["y"], rtol=1e-5, atol=1e-4)


def test_preprocess_layer_and_transfer_head(keras_vgg):
  # Images in [0, 1] (the 'rescale' pipeline) through preprocess=True.
  raw = np.random.default_rng(1).uniform(0, 1, size=(2, *SHAPE)).astype(np.float32)
  model = models.create("vgg16_transfer", num_classes=1, preprocess=True,
                        weights_path=keras_vgg["keras3"])
  assert model.layer_names[0] == "preprocess_input"
  variables = models.load_pretrained(model, _init(model, raw))
  base_out = model.apply(variables, raw, stop=model.layer_names.index("block5_pool") + 1)
  want = keras_vgg["model"](keras.applications.vgg16.preprocess_input(raw * 255.0))
  np.testing.assert_allclose(base_out, want, rtol=1e-4, atol=1e-3)
  # The new head keeps its fresh initialization.
  fresh = _init(model, raw)
  np.testing.assert_array_equal(variables["params"]["dense"]["kernel"],
                                fresh["params"]["dense"]["kernel"])


def test_keras3_sequential_with_nested_base_and_head(tmp_path):
  keras.backend.clear_session()
  base = keras.applications.VGG16(weights=None, include_top=False, input_shape=SHAPE)
  head_model = keras.Sequential([keras.Input(SHAPE), base, keras.layers.Flatten(),
                                 keras.layers.Dense(256, activation="relu"),
                                 keras.layers.Dense(1)])
  path = str(tmp_path / "transfer.weights.h5")
  head_model.save_weights(path)
  x = np.random.default_rng(2).normal(size=(2, *SHAPE)).astype(np.float32) * 50
  model = models.create("vgg16_transfer")
  variables = keras_import.load_keras_weights(path, model, _init(model, x),
                                              allow_unused=True)  # 'vgg16' group
  np.testing.assert_allclose(model.apply(variables, x), head_model(x), rtol=1e-4, atol=1e-3)


def test_batch_norm_weights_load_in_keras_order(tmp_path):
  keras.backend.clear_session()
  k = keras.Sequential([keras.Input((6,)), keras.layers.BatchNormalization(),
                        keras.layers.Dense(3)])
  k.layers[0].set_weights([np.full(6, 2.0, np.float32), np.full(6, 0.5, np.float32),
                           np.arange(6, dtype=np.float32), np.full(6, 4.0, np.float32)])
  path = str(tmp_path / "bn.weights.h5")
  k.save_weights(path)
  model = models.build([{"type": "batch_normalization"}, {"type": "dense", "units": 3}])
  x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
  v = keras_import.load_keras_weights(path, model, _init(model, x))
  np.testing.assert_array_equal(v["batch_stats"]["batch_normalization"]["mean"], np.arange(6))
  np.testing.assert_allclose(model.apply(v, x), k(x, training=False), rtol=1e-5, atol=1e-5)


def test_missing_file_is_a_clear_error(tmp_path):
  model = models.create("vgg16", weights_path=str(tmp_path / "nope.h5"))
  with pytest.raises(FileNotFoundError, match="nope.h5.*nothing is downloaded"):
    models.load_pretrained(model, {})


def test_mismatched_layers_and_shapes_are_named(keras_vgg):
  x = np.zeros((1, *SHAPE), np.float32)
  cnn = models.create("mnist_cnn")
  with pytest.raises(models.KerasWeightsError, match="layers the model lacks: block1_conv1"):
    keras_import.load_keras_weights(keras_vgg["legacy"], cnn, _init(cnn, x))
  narrow = models.build([{"type": "conv2d", "name": "block1_conv1", "filters": 32,
                          "kernel_size": 3, "padding": "same"}])
  with pytest.raises(models.KerasWeightsError,
                     match=r"'block1_conv1' kernel: .*\(3, 3, 3, 64\).*\(3, 3, 3, 32\)"):
    keras_import.load_keras_weights(keras_vgg["keras3"], narrow, _init(narrow, x),
                                    allow_unused=True)


def test_no_weights_path_is_a_no_op():
  model = models.create("cnn_small")
  variables = {"params": {}}
  assert models.load_pretrained(model, variables) is variables


def test_not_a_keras_file(tmp_path):
  path = str(tmp_path / "other.h5")
  with h5py.File(path, "w") as f:
    f.create_dataset("x", data=np.zeros(3))
  with pytest.raises(models.KerasWeightsError, match="not a Keras weights file"):
    keras_import.read_keras_weights(path)
