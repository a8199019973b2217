"""jaxcnn.visualize.plot_workdir: every figure of a trained workdir.

A tiny cnn_small (lecture 002) and a tiny MLP are trained for one epoch on
real Fashion-MNIST; the figures are checked by their pixel sizes (each plot
function promises ``figsize * dpi``) and their content (not blank).
"""

import os
import shutil
import struct

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from matplotlib import image as mpl_image

from jaxcnn import state
from jaxcnn import config as config_lib
from jaxcnn import run
from jaxcnn import train
from jaxcnn.visualize import workdir as workdir_lib
from jaxcnn.visualize import plot_workdir

NUM_IMAGES = 2


def _tiny_config(data_dir: str, model: str, **model_overrides) -> ml_collections.ConfigDict:
  config = config_lib.defaults()
  config.dataset.data_dir = data_dir
  config.dataset.num_train_examples = 512
  config.dataset.validation_split = 64
  config.dataset.num_test_examples = 64
  config.model.name = model
  for key, value in model_overrides.items():
    config.model[key] = value
  config.optimizer.name = "adam"
  config.training.batch_size = 64
  config.training.num_epochs = 1
  config.training.progress_bar = False
  return config


def _png_size(path: str) -> tuple[int, int]:
  """(width, height) from the PNG's IHDR chunk."""
  with open(path, "rb") as f:
    header = f.read(24)
  assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
  return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def cnn_run(fashion_mnist_data_dir, tmp_path_factory):
  """A cnn_small workdir trained 1 epoch, and plot_workdir's result on it."""
  workdir = str(tmp_path_factory.mktemp("cnn_small"))
  config = _tiny_config(fashion_mnist_data_dir, "cnn_small")
  train.train_and_evaluate(config, workdir)
  # The config --mode=visualize resolves for the workdir.
  paths = plot_workdir(run.workdir_config(workdir, config), workdir, num_images=NUM_IMAGES)
  return workdir, paths


def test_writes_every_figure_of_a_cnn(cnn_run):
  workdir, paths = cnn_run
  plots = os.path.join(workdir, "plots")
  names = [os.path.relpath(p, plots) for p in paths]
  assert all(os.path.dirname(p) == plots for p in paths)
  # cnn_small's conv layers are conv2d and conv2d_1: both get filter and
  # pattern figures.
  assert names[:4] == ["history.png", "filters_conv2d.png", "filters_conv2d_1.png",
                       "test_images.png"]
  maps = names[4:4 + NUM_IMAGES]
  assert [m.split("_")[2] for m in maps] == [str(i) for i in range(NUM_IMAGES)]
  assert all(m.startswith("feature_maps_") for m in maps)
  assert names[4 + NUM_IMAGES:] == ["class_heatmaps_conv2d_1.png", "filter_patterns_conv2d.png",
                                    "filter_patterns_conv2d_1.png", "classic_kernels.png"]
  assert sorted(os.listdir(plots)) == sorted(names)
  for path in paths:
    assert os.path.getsize(path) > 2_000, path


def test_feature_map_files_name_the_true_class(cnn_run, fashion_mnist_data_dir):
  workdir, paths = cnn_run
  config = state.read_config(workdir)
  config.dataset.num_test_examples = NUM_IMAGES
  from jaxcnn import data as data_lib
  data = data_lib.create(config.dataset, global_batch_size=jax.device_count(), seed=0)
  _, labels = data.as_numpy("test")
  names = [os.path.basename(p) for p in paths if "feature_maps_" in p]
  expected = [f"feature_maps_{i}_{workdir_lib._slug(data.info.class_names[y])}.png"
              for i, y in enumerate(labels[:NUM_IMAGES])]
  assert names == expected


def test_figure_sizes_follow_the_layers(cnn_run):
  workdir, _ = cnn_run
  plots = os.path.join(workdir, "plots")
  size = lambda name: _png_size(os.path.join(plots, name))  # noqa: E731
  # Constant learning rate: the two lecture-003 panels, 12 x 4.5 inches.
  assert size("history.png") == (1200, 450)
  # 8 filters of 1 input channel: one row of 8 tiles of 0.45 in (+ margins).
  assert size("filters_conv2d.png") == (round(100 * (0.45 * 8 + 1.4)),
                                        round(100 * (0.45 * 1 + 1.0)))
  # conv2d_1 is 3x3x8x8: 8 input rows by 8 output columns.
  assert size("filters_conv2d_1.png") == (round(100 * (0.45 * 8 + 1.4)),
                                          round(100 * (0.45 * 8 + 1.0)))
  assert size("test_images.png") == (round(220 * NUM_IMAGES), 260)
  assert size("class_heatmaps_conv2d_1.png") == (round(220 * NUM_IMAGES), 690)
  # Feature maps: 12 in wide, one panel per conv/pool layer, each as tall as
  # its grid of 8 tiles (1-pixel margins) plus a 0.35 in title.
  outputs = [26, 13, 11, 5]  # conv2d, max_pooling2d, conv2d_1, max_pooling2d_1
  height = round(100 * sum(12 * h / (8 * (h + 1) - 1) + 0.35 for h in outputs))
  maps = [n for n in os.listdir(plots) if n.startswith("feature_maps_")]
  assert len(maps) == NUM_IMAGES
  for name in maps:
    assert size(name) == (1200, height), name
  # 8 patterns of 28x28 with 5-pixel margins, 8 to a row: one row, 8 in wide.
  for layer in ("conv2d", "conv2d_1"):
    assert size(f"filter_patterns_{layer}.png") == (
        800, round(100 * (8 * 28 / (8 * 33 - 5) + 0.4)))


def test_figures_are_not_blank(cnn_run):
  _, paths = cnn_run
  for path in paths:
    pixels = mpl_image.imread(path)[..., :3]
    # Several distinct colours: something was drawn besides the background.
    assert pixels.std() > 0.05, path
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, path


def test_unknown_pattern_layer_names_the_conv_layers(cnn_run):
  workdir, _ = cnn_run
  with pytest.raises(ValueError, match=r"\['dense'\].*valid: \['conv2d', 'conv2d_1'\]"):
    plot_workdir(None, workdir, pattern_layers=["conv2d", "dense"])


def test_bad_num_images(cnn_run):
  workdir, _ = cnn_run
  with pytest.raises(ValueError, match="num_images"):
    plot_workdir(None, workdir, num_images=0)


def test_mlp_gets_curves_only(fashion_mnist_data_dir, tmp_path, capsys):
  workdir = str(tmp_path / "mlp")
  config = _tiny_config(fashion_mnist_data_dir, "mlp", hidden_units=(32,))
  train.train_and_evaluate(config, workdir)
  capsys.readouterr()
  paths = plot_workdir(config, workdir)
  assert paths == [os.path.join(workdir, "plots", "history.png")]
  assert os.path.getsize(paths[0]) > 2_000
  assert "no conv layers" in capsys.readouterr().out


def test_missing_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    plot_workdir(None, str(tmp_path))


def test_plot_workdir_uses_the_config_as_given(cnn_run, tmp_path, monkeypatch):
  """No merging inside: the config given is the one that reads the test images."""
  workdir = str(tmp_path / "copy")
  shutil.copytree(cnn_run[0], workdir)
  given = run.workdir_config(workdir)
  seen = []
  real = workdir_lib._dataset_config
  monkeypatch.setattr(workdir_lib, "_dataset_config",
                      lambda config, n: seen.append(config) or real(config, n))
  paths = plot_workdir(given, workdir, num_images=1, pattern_layers=(),
                       classic_kernels=False)
  assert len(seen) == 1 and seen[0] is given
  assert [os.path.basename(p) for p in paths][:4] == [
      "history.png", "filters_conv2d.png", "filters_conv2d_1.png", "test_images.png"]


def test_dataset_section_is_the_given_one_reading_few_images():
  """The given dataset section as is, but for the test-image count and augmentation."""
  given = config_lib.defaults()
  given.dataset.normalization = "standardize_pixel"
  given.dataset.num_train_examples = 6400
  given.dataset.validation_split = 640
  given.dataset.data_dir = "/data/here"
  given.dataset.augmentation = ml_collections.ConfigDict({"horizontal_flip": True})
  dataset = workdir_lib._dataset_config(given, 3)
  assert dataset.normalization == "standardize_pixel"
  assert (dataset.num_train_examples, dataset.validation_split) == (6400, 640)
  assert dataset.data_dir == "/data/here"
  assert dataset.num_test_examples == 3
  assert not dataset.augmentation
  # A copy: the caller's config is unchanged.
  assert given.dataset.num_test_examples != 3 and given.dataset.augmentation


def test_pattern_noise_is_the_lectures_noise_normalized_like_the_data():
  """Gray noise 128 + 20 * U(0, 1) in pixels, then (x / 255 - mean) / std."""
  shape = (4, 4, 1)
  variables = {"params": {"conv2d": {"kernel": np.zeros((3, 3, 1, 5), np.float32)}}}
  mean = np.full(shape, 0.25, np.float32)
  std = np.full(shape, 0.5, np.float32)
  init, value_range = workdir_lib._pattern_inputs("conv2d", variables, 64, shape,
                                                  mean, std, seed=0)
  assert init.shape == (5, *shape)  # all 5 filters (fewer than 64)
  pixels = (init * 0.5 + 0.25) * 255
  assert pixels.min() >= 128 - 1e-3 and pixels.max() <= 148 + 1e-3
  assert pixels.std() > 3  # noise, not a constant
  # Pixel 0 and pixel 255 in the model's input scale.
  np.testing.assert_allclose(value_range, (-0.5, 1.5), rtol=1e-6)
  # Rescaled inputs: (0, 1); raw pixels ('none': std 1/255): (0, 255).
  _, rescaled = workdir_lib._pattern_inputs("conv2d", variables, 2, shape, np.zeros(1),
                                            np.ones(1), seed=0)
  np.testing.assert_allclose(rescaled, (0.0, 1.0))
  _, raw = workdir_lib._pattern_inputs("conv2d", variables, 2, shape, np.zeros(1),
                                       np.full(1, 1 / 255), seed=0)
  np.testing.assert_allclose(raw, (0.0, 255.0), rtol=1e-6)


class _TwoConvs(nn.Module):
  """Not a Sequential: conv layers are found from the parameters."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Conv(4, (3, 3), name="stem")(x))
    x = nn.Dense(3, name="head")(x.reshape((x.shape[0], -1)))
    return x


def test_conv_layers_of_any_linen_module():
  model = _TwoConvs()
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
  assert workdir_lib.conv_layer_names(model, variables) == ["stem"]
  assert workdir_lib.feature_map_layer_names(model, variables) == ["stem"]


def test_conv_and_pool_layers_of_a_sequential():
  from jaxcnn import models
  model = models.create("mnist_cnn", num_classes=10)
  assert workdir_lib.conv_layer_names(model, {}) == ["conv2d", "conv2d_1", "conv2d_2"]
  assert workdir_lib.feature_map_layer_names(model, {}) == [
      "conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "conv2d_2"]
