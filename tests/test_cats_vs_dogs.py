"""Lecture 003's cats-vs-dogs experiments, end to end on TFDS mock data.

cats_vs_dogs cannot be downloaded here: ``tfds.testing.mock_data`` makes
random images of varying size through the real builder, and a VGG16 base
written by Keras itself (random weights) stands in for the ImageNet file.
Sizes are shrunk (images, counts, epochs); everything else is the
experiment files' own config.
"""

import importlib.util
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from jaxcnn import config as config_lib  # noqa: E402
from jaxcnn import data as data_lib  # noqa: E402
from jaxcnn import models  # noqa: E402
from jaxcnn import train  # noqa: E402
from jaxcnn import transfer  # noqa: E402

EXPERIMENTS = os.path.join(os.path.dirname(__file__), os.pardir, "experiments")
MOCK_EXAMPLES = 16


def experiment(name, arg=""):
  """``get_config(arg)`` of experiments/<name>.py, unlocked for the shrinking."""
  spec = importlib.util.spec_from_file_location(name, os.path.join(EXPERIMENTS, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  config.unlock()
  return config


def shrink(config, image_size):
  """Mock splits hold MOCK_EXAMPLES each: 8 train steps' worth, 1 epoch."""
  config.dataset.validation_split = 8
  config.dataset.image_size = image_size
  config.training.batch_size = 8
  config.training.num_epochs = 1
  config.training.progress_bar = False
  return config


@pytest.fixture(autouse=True)
def synchronous_checkpoints(synchronous_saves):
  """Saves finish before the next TFDS read.

  ``mock_data`` swaps in a fake file system while a dataset is opened; an
  asynchronous Orbax save running at that moment would write into it.
  """
  del synchronous_saves  # tests/conftest.py


def test_configs_cut_the_lecture_split_from_the_one_train_split():
  for name in ("cats_vs_dogs_small", "cats_vs_dogs_augment",
               "cats_vs_dogs_vgg16_frozen_augment"):
    d = experiment(name).dataset
    assert (d.train_split, d.num_train_examples, d.validation_split, d.test_split) == (
        "train", 3000, 1000, "train[3000:4000]")
    assert tuple(d.image_size) == (150, 150)
  assert experiment("cats_vs_dogs_augment").dataset.augmentation.rotation_range == 40


VGG_CONFIGS = ("cats_vs_dogs_vgg16_features", "cats_vs_dogs_vgg16_frozen_augment",
               "cats_vs_dogs_vgg16_finetune")


@pytest.mark.parametrize("preprocess", [True, False], ids=["caffe", "lecture"])
def test_vgg16_configs_offer_caffe_or_the_lectures_inputs(preprocess):
  # The pipeline hands the model x / 255 ('rescale'); what reaches block1_conv1
  # is caffe preprocess_input(x / 255 * 255) or, as in the lecture, x / 255 itself.
  x = np.random.default_rng(0).uniform(0, 1, size=(2, 32, 32, 3)).astype(np.float32)
  for name in VGG_CONFIGS:
    config = experiment(name)
    assert config.dataset.normalization == "rescale"
    assert config.model.preprocess is True, name  # the default stays caffe
    assert "preprocess=False" in config_doc(name) and "rescale=1./255" in config_doc(name)
    config.model.preprocess = preprocess
    config_lib.validate(config)
    # Frozen layers are named, so the choice does not move what is frozen.
    assert "block1_conv1" in config.regularization.freeze
  model = models.create(config.model, num_classes=1)
  assert (model.layer_names[0] == "preprocess_input") == preprocess
  conv1 = model.layer_names.index("block1_conv1")
  variables = model.init(jax.random.PRNGKey(0), x)
  out = model.apply(variables, x, stop=conv1 + 1)
  seen = models.preprocess_input(x * 255.0) if preprocess else x
  kernel = variables["params"]["block1_conv1"]
  want = jax.nn.relu(jax.lax.conv_general_dilated(
      seen, kernel["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST) + kernel["bias"])
  np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)


def config_doc(name):
  with open(os.path.join(EXPERIMENTS, f"{name}.py")) as f:
    return f.read().split('"""')[1]


def test_split_arithmetic_on_real_data(tmp_path):
  """The same split expressions on real data: 200 / 100 / 100, disjoint."""
  data_dir = str(tmp_path)
  data_lib.prepare("sklearn_digits", data_dir=data_dir)
  config = experiment("cats_vs_dogs_small")
  config.dataset.name = "sklearn_digits"
  config.dataset.data_dir = data_dir
  config.dataset.image_size = ()
  config.dataset.num_train_examples = 300
  config.dataset.validation_split = 100
  config.dataset.test_split = "train[300:400]"
  data = data_lib.create(config.dataset, global_batch_size=20, seed=0)
  assert (data.info.num_train, data.info.num_validation, data.info.num_test) == (200, 100, 100)
  x, _ = tfds.as_numpy(tfds.builder("sklearn_digits", data_dir=data_dir).as_dataset(
      split="train[:400]", batch_size=-1, as_supervised=True))
  for split, rows in (("validation", slice(200, 300)), ("test", slice(300, 400))):
    images, _ = data.as_numpy(split)
    np.testing.assert_allclose(images, x[rows] / 255.0, atol=1e-6)


@pytest.mark.parametrize("name", ["cats_vs_dogs_small", "cats_vs_dogs_augment"])
def test_small_cnn_configs_train_end_to_end(name, tmp_path):
  config = shrink(experiment(name), (48, 48))  # the 4 conv/pool blocks need >= 46
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
    state, history = train.train_and_evaluate(config, str(tmp_path))
  assert state.params["dense_1"]["kernel"].shape == (512, 1)  # one sigmoid unit
  assert np.isfinite(history["loss"][0]) and 0 <= history["test_accuracy"] <= 1


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
  """A VGG16 base saved by Keras (random weights, nonzero biases)."""
  keras.backend.clear_session()
  vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
  rng = np.random.default_rng(0)
  for layer in vgg.layers:
    if layer.weights:
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, rng.normal(scale=0.05, size=bias.shape).astype(np.float32)])
  path = str(tmp_path_factory.mktemp("vgg") / "vgg16_notop.weights.h5")
  vgg.save_weights(path)
  return path, {layer.name: layer.get_weights() for layer in vgg.layers if layer.weights}


def test_vgg16_feature_extraction_frozen_augment_and_finetune(vgg_weights, tmp_path):
  path, keras_weights = vgg_weights
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
    # 1. Feature extraction: the base from the file, once; the head trains.
    features = shrink(experiment("cats_vs_dogs_vgg16_features", path), (32, 32))
    state, history = transfer.train_head_on_features(features, str(tmp_path / "features"))
    for name, (kernel, bias) in keras_weights.items():
      np.testing.assert_array_equal(state.params[name]["kernel"], kernel)
      np.testing.assert_array_equal(state.params[name]["bias"], bias)
    assert state.params["dense"]["kernel"].shape == (512, 256)  # 1x1x512 features
    assert "test_accuracy" in history

    # 2. The frozen base inside the model, with augmentation, end to end.
    frozen = shrink(experiment("cats_vs_dogs_vgg16_frozen_augment", path), (32, 32))
    frozen_dir = str(tmp_path / "frozen")
    source, _ = train.train_and_evaluate(frozen, frozen_dir)
    np.testing.assert_array_equal(source.params["block5_conv3"]["kernel"],
                                  keras_weights["block5_conv3"][0])

    # 3. Fine-tuning from block5_conv1, starting from run 2's workdir.
    finetune = shrink(experiment("cats_vs_dogs_vgg16_finetune", frozen_dir), (32, 32))
    finetune.optimizer.learning_rate = 1e-3  # big enough to see block 5 move
    tuned, _ = train.train_and_evaluate(finetune, str(tmp_path / "finetune"))
  # Blocks 1-4 stay as run 2 left them (its checkpoint is the source); block 5
  # and the head, trained by run 2 too, move on.
  for name in ("block1_conv1", "block4_conv3"):
    np.testing.assert_array_equal(tuned.params[name]["kernel"], source.params[name]["kernel"])
  for name in ("block5_conv1", "dense"):
    assert not np.allclose(tuned.params[name]["kernel"], source.params[name]["kernel"])


def test_vgg16_with_grayscale_images_asks_for_the_rgb_switch(vgg_weights):
  path, _ = vgg_weights
  model = models.create("vgg16_transfer", num_classes=2)
  # Shapes are all matching needs: 28x28 grayscale digits resized to 32x32.
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
  source = models.pretrained.keras_source(path, model, variables)
  with pytest.raises(transfer.TransferError,
                     match=r"'block1_conv1' expects 3 input channel\(s\) \(kernel "
                           r"\(3, 3, 3, 64\)\) but the data has 1 \(kernel \(3, 3, 1, 64\)\): "
                           r"set dataset.grayscale_to_rgb = True"):
    models.pretrained.match(source, model, variables)
