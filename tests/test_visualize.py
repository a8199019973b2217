"""jaxcnn.visualize: histories, filters, feature maps, filter patterns, figures.

Built on a tiny Keras-named linen CNN defined here, and checked against the
same network built in Keras (the lectures' activation model and
``generate_pattern``) with the same weights.
"""

import json
import struct

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from jaxcnn import kernels
from jaxcnn import visualize as vis

INPUT_SHAPE = (28, 28, 1)
LAYERS = ["conv2d", "batch_normalization", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "dense"]


class Conv2D(nn.Module):
  """Keras' Conv2D(activation='relu'), 'valid': the layer's output is post-ReLU."""
  features: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.normal(0.1), (self.features,))
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return nn.relu(y + bias)


class MaxPooling2D(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.max_pool(x, (2, 2), (2, 2))


class TinyCNN(nn.Module):
  """Lecture 002's cnn_small with BatchNorm and dropout, named as Keras names them."""

  @nn.compact
  def __call__(self, x, train=False, deterministic=None):
    deterministic = not train if deterministic is None else deterministic
    x = Conv2D(8, name="conv2d")(x)
    x = nn.BatchNorm(use_running_average=not train, epsilon=1e-3, name="batch_normalization")(x)
    x = MaxPooling2D(name="max_pooling2d")(x)
    x = Conv2D(16, name="conv2d_1")(x)
    x = MaxPooling2D(name="max_pooling2d_1")(x)
    x = x.reshape((x.shape[0], -1))
    x = nn.Dropout(0.5, deterministic=deterministic, name="dropout")(x)
    return nn.Dense(10, name="dense")(x)


def _random_variables(model):
  """Random variables of the right shapes, without compiling ``model.init``.

  Eager or jitted init compiles every initializer (seconds to tens of seconds
  on a busy 2-core machine); the shapes alone trace in milliseconds.
  """
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *INPUT_SHAPE)))
  rng = np.random.RandomState(0)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if "'kernel'" in name:  # LeCun normal: std 1/sqrt(fan_in)
      value = rng.normal(0, 1 / np.sqrt(np.prod(leaf.shape[:-1])), leaf.shape)
    elif "'scale'" in name:
      value = 1 + 0.1 * rng.normal(size=leaf.shape)
    # Moving statistics far from (0, 1), so a model run in train mode would differ.
    elif "'mean'" in name:
      value = rng.uniform(0.2, 0.6, leaf.shape)
    elif "'var'" in name:
      value = rng.uniform(0.5, 2.0, leaf.shape)
    else:  # biases
      value = 0.1 * rng.normal(size=leaf.shape)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def tiny():
  model = TinyCNN()
  return model, _random_variables(model)


@pytest.fixture(scope="module")
def images():
  """Real handwritten digits (scikit-learn's 8x8, upsampled to 28x28), in [0, 1]."""
  from sklearn.datasets import load_digits
  digits = load_digits().images[:4] / 16.0
  big = np.kron(digits, np.ones((3, 3)))  # 24x24
  return np.pad(big, ((0, 0), (2, 2), (2, 2)))[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def keras_twin(tiny):
  """The same network in Keras, with the linen weights copied in."""
  import keras
  _, variables = tiny
  p, bs = variables["params"], variables["batch_stats"]["batch_normalization"]
  inputs = keras.Input(INPUT_SHAPE)
  x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2d")(inputs)
  x = keras.layers.BatchNormalization(epsilon=1e-3, name="batch_normalization")(x)
  x = keras.layers.MaxPooling2D(name="max_pooling2d")(x)
  x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2d_1")(x)
  x = keras.layers.MaxPooling2D(name="max_pooling2d_1")(x)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dropout(0.5)(x)
  outputs = keras.layers.Dense(10, name="dense")(x)
  model = keras.Model(inputs, outputs)
  np_ = lambda a: np.asarray(a, np.float32)  # noqa: E731
  for name in ("conv2d", "conv2d_1", "dense"):
    model.get_layer(name).set_weights([np_(p[name]["kernel"]), np_(p[name]["bias"])])
  model.get_layer("batch_normalization").set_weights(
      [np_(p["batch_normalization"]["scale"]), np_(p["batch_normalization"]["bias"]),
       np_(bs["mean"]), np_(bs["var"])])
  return model


def png_size(path):
  """(width, height) from a PNG's IHDR chunk."""
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
  return struct.unpack(">II", head[16:24])


# ---------------------------------------------------------------- feature maps


def test_feature_maps_have_the_layer_shapes(tiny, images):
  model, variables = tiny
  maps = vis.feature_maps(model, variables, images, LAYERS)
  assert list(maps) == LAYERS
  assert maps["conv2d"].shape == (4, 26, 26, 8)
  assert maps["batch_normalization"].shape == (4, 26, 26, 8)
  assert maps["max_pooling2d"].shape == (4, 13, 13, 8)
  assert maps["conv2d_1"].shape == (4, 11, 11, 16)
  assert maps["max_pooling2d_1"].shape == (4, 5, 5, 16)
  assert maps["dense"].shape == (4, 10)
  # The last captured layer is the model's output, in inference mode.
  logits = model.apply(variables, images, train=False)
  np.testing.assert_allclose(maps["dense"], logits, rtol=1e-5, atol=1e-5)
  # One image (H, W, C) is a batch of one.
  single = vis.feature_maps(model, variables, images[0], "conv2d")
  np.testing.assert_allclose(single["conv2d"], maps["conv2d"][:1], atol=1e-6)


def test_feature_maps_equal_keras_activation_model(tiny, keras_twin, images):
  """Lecture 003's ``models.Model(inputs=model.input, outputs=layer_outputs)``."""
  import keras
  model, variables = tiny
  names = ["conv2d", "batch_normalization", "max_pooling2d", "conv2d_1"]
  activation_model = keras.Model(keras_twin.inputs,
                                 [keras_twin.get_layer(n).output for n in names])
  expected = activation_model.predict(images, verbose=0)
  maps = vis.feature_maps(model, variables, images, names)
  for name, want in zip(names, expected):
    np.testing.assert_allclose(maps[name], want, rtol=1e-4, atol=1e-4, err_msg=name)


def test_feature_maps_unknown_layer_names_the_valid_ones(tiny, images):
  model, variables = tiny
  with pytest.raises(ValueError, match=r"conv2d_7.*valid names.*'conv2d_1'"):
    vis.feature_maps(model, variables, images, ["conv2d_7"])
  with pytest.raises(ValueError, match="images must be"):
    vis.feature_maps(model, variables, images[0, :, :, 0], ["conv2d"])


def test_display_normalization_is_lecture_003s():
  rng = np.random.RandomState(0)
  channel = rng.normal(3.0, 2.0, size=(20, 20))
  out = vis.normalize_feature_map(channel)
  x = (channel - channel.mean()) / channel.std() * 64 + 128
  np.testing.assert_array_equal(out, np.clip(x, 0, 255).astype(np.uint8))
  assert out.dtype == np.uint8
  assert 120 < out.mean() < 136  # centred on 128
  # A filter that saw nothing: no NaNs, the colormap's bottom.
  np.testing.assert_array_equal(vis.normalize_feature_map(np.zeros((5, 5))), 0)


def test_tiling_puts_16_channels_per_row():
  act = np.random.RandomState(0).normal(size=(6, 7, 20))
  grid = vis.tile_feature_maps(act, images_per_row=16, margin=0)
  assert grid.shape == (2 * 6, 16 * 7)
  np.testing.assert_array_equal(grid[6:12, 7:14], vis.normalize_feature_map(act[:, :, 17]))
  np.testing.assert_array_equal(grid[6:, 4 * 7:], 0)  # empty tiles after the 20th
  assert vis.tile_feature_maps(act[:, :, :8], margin=1).shape == (6, 8 * 8 - 1)


# ---------------------------------------------------------------- filters


def test_conv_kernel_by_name(tiny):
  _, variables = tiny
  assert vis.conv_kernel(variables, "conv2d").shape == (3, 3, 1, 8)
  assert vis.conv_kernel(variables, "conv2d_1").shape == (3, 3, 8, 16)
  np.testing.assert_array_equal(vis.conv_kernel(variables["params"], "conv2d_1"),
                                variables["params"]["conv2d_1"]["kernel"])
  with pytest.raises(ValueError, match=r"valid names: \['conv2d', 'conv2d_1'\]"):
    vis.conv_kernel(variables, "dense")


def test_nested_layers_are_found_by_name_or_path():
  params = {"vgg16": {"block1_conv1": {"kernel": np.ones((3, 3, 3, 4))}},
            "head": {"block1_conv1": {"kernel": np.zeros((3, 3, 3, 2))}}}
  assert vis.conv_kernel({"params": params}, "vgg16/block1_conv1").shape == (3, 3, 3, 4)
  with pytest.raises(ValueError, match="ambiguous"):
    vis.conv_kernel({"params": params}, "block1_conv1")


# ---------------------------------------------------------------- filter patterns


def test_gradient_ascent_increases_the_filters_activation(tiny):
  model, variables = tiny
  # The lecture's setting: pixels 0..255, gray noise, 40 steps of 1.
  result = vis.filter_patterns(model, variables, "conv2d_1", input_shape=INPUT_SHAPE)
  assert result.images.shape == (16, *INPUT_SHAPE)
  np.testing.assert_array_equal(result.filters, np.arange(16))
  alive = result.initial > 0  # a ReLU filter silent on the noise gets no gradient
  assert alive.sum() >= 4  # so the check below is not vacuous
  assert np.all(result.final[alive] > 1.4 * result.initial[alive]), (result.initial, result.final)
  np.testing.assert_array_equal(result.final[~alive], 0.0)
  # The reported activations are the layer's, on the returned images.
  maps = vis.feature_maps(model, variables, result.images, "conv2d_1")["conv2d_1"]
  np.testing.assert_allclose(maps[np.arange(16), ..., np.arange(16)].mean(axis=(1, 2)),
                             result.final, rtol=1e-4, atol=1e-3)


def test_gradient_ascent_equals_keras_generate_pattern(tiny, keras_twin):
  """Lecture 003's loop (K.gradients -> GradientTape), from the same start."""
  import tensorflow as tf
  import keras
  model, variables = tiny
  start = np.random.RandomState(0).random_sample((1, *INPUT_SHAPE)) * 20 + 128.0
  layer = keras.Model(keras_twin.inputs, keras_twin.get_layer("conv2d_1").output)
  # The filter most active on the start: a silent one would not move at all.
  start_maps = vis.feature_maps(model, variables, start, "conv2d_1")["conv2d_1"]
  filter_index = int(start_maps.mean(axis=(0, 1, 2)).argmax())
  x = tf.constant(start, tf.float32)
  for _ in range(40):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_mean(layer(x)[:, :, :, filter_index])
    grads = tape.gradient(loss, x)
    grads /= tf.sqrt(tf.reduce_mean(tf.square(grads))) + 1e-5
    x += grads * 1.0
  result = vis.filter_patterns(model, variables, "conv2d_1", [filter_index],
                               input_shape=INPUT_SHAPE, init=start[0])
  assert float(loss) > 0
  np.testing.assert_allclose(result.images[0], x.numpy()[0], rtol=1e-3, atol=2e-2)
  np.testing.assert_allclose(vis.deprocess_image(result.images[0]),
                             vis.deprocess_image(x.numpy()[0]), atol=2)


def test_noise_and_steps_follow_the_value_range(tiny):
  model, variables = tiny
  low, high = -0.5, 2.0
  result = vis.filter_patterns(model, variables, "conv2d", [0, 1], input_shape=INPUT_SHAPE,
                               steps=0, value_range=(low, high))
  pixels = (result.images - low) / (high - low) * 255  # back to the lecture's 0..255
  assert pixels.min() >= 128 - 1e-3 and pixels.max() <= 148 + 1e-3
  assert pixels.std() > 3  # noise, not a constant
  with pytest.raises(ValueError, match=r"\[0, 8\)"):
    vis.filter_patterns(model, variables, "conv2d", [8], input_shape=INPUT_SHAPE)
  # Chunked (lax.map) and all-at-once (vmap) ascents are the same computation.
  chunked, together = (vis.filter_patterns(model, variables, "conv2d", [0, 2, 5], steps=2,
                                           input_shape=INPUT_SHAPE, batch_size=b)
                       for b in (2, None))
  np.testing.assert_allclose(chunked.images, together.images, rtol=1e-5, atol=1e-3)


def test_deprocess_image_is_lecture_003s():
  x = np.random.RandomState(0).normal(5.0, 3.0, size=(30, 30, 3))
  out = vis.deprocess_image(x)
  assert out.dtype == np.uint8 and out.shape == x.shape
  expected = np.clip(((x - x.mean()) / (x.std() + 1e-5) * 0.1 + 0.5), 0, 1) * 255
  np.testing.assert_array_equal(out, np.clip(expected, 0, 255).astype(np.uint8))
  assert out.std() == pytest.approx(25.5, rel=0.05)  # std 0.1 of the 0..1 range


def test_pattern_grid_is_8_by_8_with_margins():
  patterns = np.random.RandomState(0).normal(size=(64, 10, 10, 3))
  grid = vis.pattern_grid(patterns, ncols=8, margin=5)
  assert grid.shape == (8 * 10 + 7 * 5, 8 * 10 + 7 * 5, 3)
  np.testing.assert_array_equal(grid[15:25, 30:40], vis.deprocess_image(patterns[8 + 2]))
  assert vis.pattern_grid(patterns[:5], ncols=8, margin=5).shape == (10, 5 * 15 - 5, 3)


# ---------------------------------------------------------------- histories


HISTORY = {"loss": [1.0, 0.6, 0.4], "accuracy": [0.6, 0.8, 0.9],
           "val_loss": [0.8, 0.5, 0.55], "val_accuracy": [0.7, 0.82, 0.81],
           "lr": [1e-3, 1e-3, 5e-4]}


class FakeKerasHistory:  # the one attribute plot_history reads from keras' History
  history = {"loss": [1.0, 0.5], "acc": [0.5, 0.7], "val_loss": [0.9, 0.6], "val_acc": [0.6, 0.65]}


def test_load_history_from_dict_workdir_file_and_keras(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  stored = dict(HISTORY, test_loss=0.5, test_accuracy=0.8)
  (workdir / "history.json").write_text(json.dumps(stored))
  assert vis.load_history(workdir) == stored
  assert vis.load_history(str(workdir / "history.json")) == stored
  assert vis.load_history(HISTORY) == HISTORY
  renamed = vis.load_history(FakeKerasHistory())
  assert renamed["accuracy"] == [0.5, 0.7] and renamed["val_accuracy"] == [0.6, 0.65]
  assert np.isnan(vis.load_history({"loss": [1.0, None]})["loss"][1])
  with pytest.raises(FileNotFoundError, match="history.json"):
    vis.load_history(tmp_path / "missing")
  with pytest.raises(ValueError, match="per-epoch list of"):
    vis.load_history({"epoch_time": [1.0]})


def test_history_plots_draw_each_series(tmp_path):
  fig = vis.plot_history(HISTORY)
  ax, twin = fig.axes
  assert [line.get_label() for line in ax.lines] == ["accuracy", "val_accuracy"]
  assert [line.get_label() for line in twin.lines] == ["loss", "val_loss"]
  assert all(line.get_linestyle() == "--" for line in twin.lines)
  np.testing.assert_array_equal(ax.lines[1].get_xdata(), [1, 2, 3])
  np.testing.assert_array_equal(ax.lines[1].get_ydata(), HISTORY["val_accuracy"])
  runs = vis.plot_histories({"bn": HISTORY, "plain": FakeKerasHistory()})
  acc = runs.axes[0]
  assert [line.get_label() for line in acc.lines] == [
      "bn validation", "bn train", "plain validation", "plain train"]
  assert acc.lines[0].get_color() == acc.lines[1].get_color() != acc.lines[2].get_color()
  with pytest.raises(ValueError, match="available metrics"):
    vis.plot_histories({"bn": HISTORY}, metrics=("top5",))
  with pytest.raises(ValueError, match="valid styles"):
    vis.plot_history(HISTORY, style="pandas")



def test_smooth_curve_is_lecture_003s_moving_average():
  points = [0.5, 0.7, 0.6, 0.9, 0.8]
  # The lecture's formula, written out: the first point, then 0.8 old + 0.2 new.
  expected = [0.5]
  for p in points[1:]:
    expected.append(expected[-1] * 0.8 + p * 0.2)
  np.testing.assert_allclose(vis.smooth_curve(points), expected, rtol=1e-12)
  np.testing.assert_allclose(vis.smooth_curve(points)[:3],
                             [0.5, 0.54, 0.54 * 0.8 + 0.6 * 0.2], rtol=1e-12)
  assert vis.smooth_curve(points, 0.0) == points
  # A missing epoch stays a gap and does not reset or poison the average.
  gap = vis.smooth_curve([1.0, float("nan"), 2.0])
  assert gap[0] == 1.0 and np.isnan(gap[1]) and gap[2] == pytest.approx(1.2)
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    vis.smooth_curve(points, 1.0)


def test_history_plots_draw_smoothed_curves():
  assert vis.smooth_curve(HISTORY["val_loss"]) != HISTORY["val_loss"]  # smoothing shows
  fig = vis.plot_history(HISTORY, style="panels", smooth=0.8)
  for ax, metric in zip(fig.axes, ("accuracy", "loss")):
    np.testing.assert_allclose(ax.lines[1].get_ydata(),
                               vis.smooth_curve(HISTORY[f"val_{metric}"], 0.8))
  runs = vis.plot_histories({"a": HISTORY}, metrics=("accuracy", "lr"), smooth=0.8)
  np.testing.assert_allclose(runs.axes[0].lines[0].get_ydata(),
                             vis.smooth_curve(HISTORY["val_accuracy"], 0.8))
  # The learning rate is a schedule, drawn as it is.
  np.testing.assert_allclose(runs.axes[1].lines[0].get_ydata(), HISTORY["lr"])


# ---------------------------------------------------------------- every figure as a PNG


def _figures(tiny, images, workdir):
  model, variables = tiny
  small_photo = kernels.sample_image()[::4, ::4]
  return {
      "history_twin": lambda p: vis.plot_history(HISTORY, path=p),
      "history_panels": lambda p: vis.plot_history(HISTORY, style="panels", show_lr=True, path=p),
      "histories": lambda p: vis.plot_histories({"a": HISTORY, "b": workdir}, path=p),
      "filters_first": lambda p: vis.plot_filters(variables, "conv2d", path=p),
      "filters_pairs": lambda p: vis.plot_filters(variables, "conv2d_1", path=p),
      "feature_maps": lambda p: vis.plot_feature_maps(
          vis.feature_maps(model, variables, images, ["conv2d", "max_pooling2d", "conv2d_1"]),
          path=p),
      "filter_patterns": lambda p: vis.plot_filter_patterns(
          model, variables, "conv2d_1", input_shape=INPUT_SHAPE, value_range=(0, 1), path=p),
      "smoothing": lambda p: vis.plot_smoothing(path=p),
      "classic_kernels": lambda p: vis.plot_classic_kernels(small_photo, path=p),
      "classic_kernels_gray": lambda p: vis.plot_classic_kernels(small_photo, gray=True, path=p),
      "pattern_detection": lambda p: vis.plot_pattern_detection(path=p),
  }


def test_every_plot_writes_a_png_of_its_figure_size(tiny, images, tmp_path):
  import matplotlib.image
  workdir = tmp_path / "run_b"
  workdir.mkdir()
  (workdir / "history.json").write_text(json.dumps(HISTORY))
  for name, draw in _figures(tiny, images, workdir).items():
    path = tmp_path / "out" / f"{name}.png"  # parent made on save
    fig = draw(path)
    assert isinstance(fig.canvas, FigureCanvasAgg), name
    width, height = fig.get_size_inches() * fig.dpi
    assert png_size(path) == (round(width), round(height)), name
    pixels = matplotlib.image.imread(path)
    assert pixels[..., :3].std() > 0.05, f"{name} is blank"
  assert png_size(tmp_path / "out" / "history_twin.png") == (800, 500)
  assert png_size(tmp_path / "out" / "histories.png") == (1000, 450)


def test_filter_grid_rows_are_inputs_and_columns_outputs(tiny):
  _, variables = tiny
  kernel = np.asarray(variables["params"]["conv2d_1"]["kernel"])
  fig = vis.plot_filters(variables, "conv2d_1", max_inputs=4, max_outputs=5)
  (image,) = fig.axes[0].images
  grid = image.get_array()
  assert grid.shape == (4 * 4 - 1, 5 * 4 - 1)  # 3x3 tiles, 1-pixel gaps
  np.testing.assert_allclose(grid[2 * 4:2 * 4 + 3, 3 * 4:3 * 4 + 3], kernel[:, :, 2, 3])
  assert np.ma.getmaskarray(grid)[3, :].all()  # the gap between rows is blank
  # One colour scale for the whole shown layer, as lecture 002 draws it.
  assert image.get_clim() == (kernel[:, :, :4, :5].min(), kernel[:, :, :4, :5].max())
  first = vis.plot_filters(variables, "conv2d").axes[0].images[0].get_array()
  assert first.shape == (3, 8 * 4 - 1)  # one row of the 8 output channels
  with pytest.raises(ValueError, match="use mode='pairs'"):
    vis.plot_filters(variables, "conv2d_1", mode="channels")


# ---------------------------------------------------------------- the real presets


def test_with_the_cnn_small_preset(images, tmp_path):
  """Lecture 002's cnn_small from jaxcnn.models: names, shapes, post-ReLU maps."""
  from jaxcnn import models
  model = models.create("cnn_small", num_classes=10)
  variables = _random_variables(model)
  maps = vis.feature_maps(model, variables, images, model.layer_names)
  assert {name: m.shape[1:] for name, m in maps.items()} == {
      "conv2d": (26, 26, 8), "max_pooling2d": (13, 13, 8), "conv2d_1": (11, 11, 8),
      "max_pooling2d_1": (5, 5, 8), "flatten": (200,), "dense": (64,), "dense_1": (10,)}
  np.testing.assert_allclose(maps["max_pooling2d"][..., :2, :2, :],  # 2x2 max of conv2d
                             maps["conv2d"][..., :4, :4, :].reshape(4, 2, 2, 2, 2, 8).max((2, 4)),
                             atol=1e-6)
  # Keras' Conv2D(activation='relu') outputs after the ReLU, as lecture 003 draws them.
  assert maps["conv2d"].min() >= 0 and maps["conv2d"].max() > 0
  assert vis.conv_kernel(variables, "conv2d_1").shape == (3, 3, 8, 8)
  result = vis.filter_patterns(model, variables, "conv2d_1", input_shape=INPUT_SHAPE)
  alive = result.initial > 0
  assert alive.sum() >= 3
  assert np.all(result.final[alive] > 1.4 * result.initial[alive]), (result.initial, result.final)
  fig = vis.plot_feature_maps({k: maps[k] for k in ("conv2d", "conv2d_1")},
                              path=tmp_path / "maps.png")
  assert [ax.get_title() for ax in fig.axes] == ["conv2d (26, 26, 8)", "conv2d_1 (11, 11, 8)"]
