"""Transfer learning: sources, freezing, feature extraction, the digits builder."""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from jaxcnn import config as config_lib  # noqa: E402
from jaxcnn.data import digits  # noqa: E402
from jaxcnn import models  # noqa: E402
from jaxcnn.models import freezing  # noqa: E402
from jaxcnn import state as state_lib  # noqa: E402
from jaxcnn import train  # noqa: E402
from jaxcnn import transfer  # noqa: E402


def digits_config(data_dir, model="cnn_small_bn", **model_overrides):
  c = config_lib.defaults()
  c.dataset.name = "sklearn_digits"
  c.dataset.data_dir = data_dir
  c.dataset.num_train_examples = 160  # 128 train (8 steps of 16) + 32 validation
  c.dataset.validation_split = 32
  c.dataset.num_test_examples = 100
  c.model.name = model
  c.model.update(model_overrides)
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.training.batch_size = 16
  c.training.num_epochs = 1
  c.training.progress_bar = False
  return c


@pytest.fixture(scope="module")
def source_workdir(digits_dir, tmp_path_factory):
  """A trained jaxcnn workdir (cnn_small_bn, so BatchNorm has real statistics)."""
  workdir = str(tmp_path_factory.mktemp("source"))
  train.train_and_evaluate(digits_config(digits_dir), workdir)
  return workdir


def init_state(config, num_classes=10, shape=(28, 28, 1)):
  model = models.create(config.model, num_classes=num_classes)
  tx = state_lib.optimizer(config, steps_per_epoch=8)
  return model, tx, state_lib.create(config, model, tx, shape)


def start_from_pretrained(config, state, tx, model, verbose=True):
  """What ``train.start`` does for a new run: pretrained weights, then freezing."""
  state = state_lib.from_pretrained(config, model, state, tx, verbose=verbose)
  patterns = config.regularization.freeze
  if verbose:
    print(freezing.describe(model, state.params, patterns))
  return state, freezing.train_model_for(model, state.params, patterns)


# ------------------------------------------------------------- digits builder


def test_digits_builder_is_sklearn_digits_with_fixed_balanced_splits(digits_dir):
  builder = tfds.builder("sklearn_digits", data_dir=digits_dir)
  assert builder.info.splits["train"].num_examples == 500
  assert builder.info.splits["test"].num_examples == 1297
  images, labels = digits.load_arrays()
  assert images.shape == (1797, 28, 28, 1) and images.dtype == np.uint8
  # Every stored example is one of scikit-learn's, with its label, and the
  # train split is exactly the documented indices (50 of each digit).
  lookup = {images[i].tobytes(): i for i in range(len(images))}
  expected = digits.split_indices(labels)
  for split in ("train", "test"):
    x, y = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1,
                                            as_supervised=True))
    found = np.array([lookup[img.tobytes()] for img in x])
    np.testing.assert_array_equal(np.sort(found), expected[split])
    np.testing.assert_array_equal(y, labels[found])
  np.testing.assert_array_equal(np.bincount(labels[expected["train"]]), [50] * 10)
  # The 28x28 image is the 8x8 one scaled to 0..255 and upsampled bilinearly
  # with half-pixel centers (Keras / TF resize), computed here in numpy.
  from sklearn.datasets import load_digits
  raw = load_digits().images * 255 / 16
  src = np.clip((np.arange(28) + 0.5) * 8 / 28 - 0.5, 0, 7)
  lo = np.floor(src).astype(int)
  hi = np.minimum(lo + 1, 7)
  w = src - lo
  rows = raw[:, lo, :] * (1 - w)[None, :, None] + raw[:, hi, :] * w[None, :, None]
  expected_images = rows[:, :, lo] * (1 - w) + rows[:, :, hi] * w
  assert np.abs(images[..., 0] - expected_images).max() <= 0.5 + 1e-6


# ------------------------------------------------------------- freezing helpers


def test_freeze_before_block5_conv1_freezes_vgg_blocks_1_to_4():
  patterns = transfer.freeze_before("vgg16_transfer", "block5_conv1")
  assert patterns == ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2",
                      "block3_conv1", "block3_conv2", "block3_conv3",
                      "block4_conv1", "block4_conv2", "block4_conv3")
  assert transfer.freeze_before("vgg16_transfer", "flatten")[-1] == "block5_conv3"


def test_freeze_before_unknown_layer_lists_the_valid_names():
  with pytest.raises(config_lib.ConfigError) as e:
    transfer.freeze_before("vgg16_transfer", "block5_cnv1")
  message = str(e.value)
  assert "Did you mean 'block5_conv1'?" in message
  assert "block1_conv1, block1_conv2, block1_pool" in message and "dense_1" in message


def test_frozen_batch_norm_uses_moving_statistics_while_training(digits_dir):
  config = digits_config(digits_dir)
  model, _, state = init_state(config)
  stats = jax.tree.map(lambda s: s + 0.5, state.batch_stats)  # not the init 0/1
  variables = {"params": state.params, "batch_stats": stats}
  frozen = freezing.train_model_for(model, state.params, ("conv2d", "batch_normalization"))
  assert frozen.frozen_batch_norm == ("batch_normalization",)
  assert frozen.frozen_prefix == model.layer_names.index("conv2d_1")
  x = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1))
  k = model.layer_names.index("batch_normalization") + 1
  run = jax.jit(lambda m, v, train, stop: m.apply(v, x, train=train, stop=stop,
                                                  mutable=["batch_stats"]),
                static_argnums=(0, 2, 3))
  out, updates = run(frozen, variables, True, k)
  np.testing.assert_allclose(out, run(model, variables, False, k)[0],
                             rtol=1e-6, atol=1e-6)
  # ...and the trainable BN layer does use the batch and update its statistics.
  np.testing.assert_array_equal(updates["batch_stats"]["batch_normalization"]["mean"],
                                stats["batch_normalization"]["mean"])
  _, updates = run(frozen, variables, True, None)
  assert not np.allclose(updates["batch_stats"]["batch_normalization_1"]["mean"],
                         stats["batch_normalization_1"]["mean"])
  # No gradient reaches the frozen base: its backward pass is not computed.
  def loss(params):
    y, _ = frozen.apply({"params": params, "batch_stats": stats}, x, train=True,
                        mutable=["batch_stats"])
    return jnp.sum(y ** 2)
  grads = jax.jit(jax.grad(loss))(state.params)
  assert float(jnp.abs(grads["conv2d"]["kernel"]).max()) == 0.0
  assert float(jnp.abs(grads["conv2d_1"]["kernel"]).max()) > 0.0


def test_param_counts_split_trainable_and_frozen():
  model = models.create("vgg16_transfer", num_classes=2)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                             jnp.zeros((1, 150, 150, 3))))["params"]
  trainable, frozen = freezing.param_counts(
      params, transfer.freeze_before(model, "flatten"))
  assert (trainable, frozen) == (2_097_665, 14_714_688)  # the lecture's table
  trainable, frozen = freezing.param_counts(
      params, transfer.freeze_before(model, "block5_conv1"))
  assert frozen == 14_714_688 - 3 * 2_359_808


# ------------------------------------------------------------- from a checkpoint


def test_transfer_from_checkpoint_copies_selected_layers_and_freezes(
    digits_dir, source_workdir, tmp_path, capsys):
  _, source_vars, _ = state_lib.load_for_inference(source_workdir)
  config = digits_config(digits_dir)
  config.transfer.source = source_workdir
  config.transfer.layers = ("conv2d*", "batch_normalization*")
  config.regularization.freeze = ("conv2d", "batch_normalization")
  model, tx, fresh = init_state(config)
  state, train_model = start_from_pretrained(config, fresh, tx, model)
  out = capsys.readouterr().out
  assert "copied 4 layer(s): conv2d, batch_normalization, conv2d_1, batch_normalization_1" in out
  assert "Initialized here: dense, dense_1" in out
  assert "Trainable params: 14,114; frozen params: 96 (conv2d, batch_normalization)" in out
  for name in ("conv2d", "conv2d_1", "batch_normalization", "batch_normalization_1"):
    for a, b in zip(jax.tree.leaves(state.params[name]),
                    jax.tree.leaves(source_vars["params"][name])):
      np.testing.assert_array_equal(a, b)
  for name in ("batch_normalization", "batch_normalization_1"):
    np.testing.assert_array_equal(state.batch_stats[name]["var"],
                                  source_vars["batch_stats"][name]["var"])
  np.testing.assert_array_equal(state.params["dense"]["kernel"],
                                fresh.params["dense"]["kernel"])
  assert not np.allclose(state.params["dense"]["kernel"],
                         source_vars["params"]["dense"]["kernel"])
  assert isinstance(train_model, freezing.FrozenBaseSequential)

  # Train through the real loop: frozen layers (and the frozen BN's moving
  # statistics) do not change, the rest does; frozen params have no
  # optimizer state (Adam keeps 2 moments of the trainable ones only).
  trained, _ = train.train_and_evaluate(config, str(tmp_path))
  for name in ("conv2d", "batch_normalization"):
    for a, b in zip(jax.tree.leaves(trained.params[name]),
                    jax.tree.leaves(source_vars["params"][name])):
      np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(trained.batch_stats["batch_normalization"]["mean"],
                                source_vars["batch_stats"]["batch_normalization"]["mean"])
  assert not np.allclose(trained.batch_stats["batch_normalization_1"]["mean"],
                         source_vars["batch_stats"]["batch_normalization_1"]["mean"])
  assert not np.allclose(trained.params["conv2d_1"]["kernel"],
                         source_vars["params"]["conv2d_1"]["kernel"])
  trainable, frozen = freezing.param_counts(trained.params, config.regularization.freeze)
  opt_sizes = sum(x.size for x in jax.tree.leaves(trained.opt_state) if x.ndim > 0)
  assert opt_sizes == 2 * trainable


def test_shape_mismatch_lists_every_layer_before_training(digits_dir, source_workdir,
                                                          tmp_path):
  config = digits_config(digits_dir, model="cnn")  # 32 filters; the source has 8
  config.transfer.source = source_workdir
  config.transfer.layers = ("conv2d*",)
  with pytest.raises(transfer.TransferError) as e:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(e.value)
  assert "conv2d: bias: source (8,) vs model (32,); kernel: source (3, 3, 1, 8) " \
         "vs model (3, 3, 1, 32)" in message
  assert "conv2d_1: bias: source (8,) vs model (32,); kernel: source (3, 3, 8, 8) vs " \
         "model (3, 3, 32, 32)" in message
  assert not os.path.exists(tmp_path / "history.json")  # nothing trained
  # Default selection: only dense_1 (64 -> 10) would fit, behind layers that
  # do not: another architecture, not a new head.
  config.transfer.layers = ()
  with pytest.raises(transfer.TransferError,
                     match=r"(?s)layers before 'dense_1' \(which fits\) have other shapes:"
                           r".*conv2d: bias.*conv2d_1: .*\n  dense: kernel: source \(200, 64\) "
                           r"vs model \(800, 64\)\n"):
    train.train_and_evaluate(config, str(tmp_path))


def test_frozen_layer_the_source_cannot_fill_is_an_error(digits_dir, source_workdir):
  config = digits_config(digits_dir, model="cnn_small_bn", dense_units=(32,))
  config.transfer.source = source_workdir
  config.regularization.freeze = ("dense",)  # 32 units here, 64 in the source
  model, tx, state = init_state(config)
  with pytest.raises(transfer.TransferError,
                     match=r"(?s)would train nothing from random weights: dense\..*"
                           r"dense: bias: source \(64,\) vs model \(32,\)"):
    start_from_pretrained(config, state, tx, model)


def test_missing_source_and_bad_layer_pattern(digits_dir, source_workdir, tmp_path):
  config = digits_config(digits_dir)
  model, tx, state = init_state(config)
  config.transfer.source = str(tmp_path / "nope.h5")
  with pytest.raises(FileNotFoundError, match="jaxcnn workdir .* or a Keras weights file"):
    start_from_pretrained(config, state, tx, model)
  config.transfer.source = source_workdir
  config.transfer.layers = ("block1_*",)
  with pytest.raises(transfer.TransferError, match="matches no layer with weights. "
                     "Layers with weights: conv2d, batch_normalization"):
    start_from_pretrained(config, state, tx, model)


# ------------------------------------------------------------- Keras .h5 sources


def _keras_cnn_small(channels):
  keras.backend.clear_session()
  m = keras.Sequential([
      keras.Input((28, 28, channels)),
      keras.layers.Conv2D(8, 3, activation="relu", name="conv2d"),
      keras.layers.MaxPooling2D(2, name="max_pooling2d"),
      keras.layers.Conv2D(8, 3, activation="relu", name="conv2d_1"),
      keras.layers.MaxPooling2D(2, name="max_pooling2d_1"),
      keras.layers.Flatten(name="flatten"),
      keras.layers.Dense(64, activation="relu", name="dense"),
      keras.layers.Dense(10, name="dense_1")])
  rng = np.random.default_rng(channels)
  for layer in m.layers:
    if layer.weights:  # nonzero biases: a kernel/bias mix-up cannot pass
      layer.set_weights([w + rng.normal(scale=0.05, size=w.shape).astype(np.float32)
                         for w in layer.get_weights()])
  return m


def test_keras_h5_source_gives_keras_outputs(digits_dir, tmp_path):
  keras_model = _keras_cnn_small(1)
  path = str(tmp_path / "small.weights.h5")
  keras_model.save_weights(path)
  config = digits_config(digits_dir, model="cnn_small")
  config.transfer.source = path
  model, tx, state = init_state(config)
  state, _ = start_from_pretrained(config, state, tx, model, verbose=False)
  x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype(np.float32)
  np.testing.assert_allclose(model.apply({"params": state.params}, x),
                             np.asarray(keras_model(x)), rtol=1e-4, atol=1e-5)


def test_grayscale_into_rgb_base_needs_the_conversion_switch(digits_dir, tmp_path):
  path = str(tmp_path / "rgb.weights.h5")
  _keras_cnn_small(3).save_weights(path)
  config = digits_config(digits_dir, model="cnn_small")
  config.transfer.source = path
  config.regularization.freeze = ("conv2d",)
  with pytest.raises(transfer.TransferError) as e:
    train.train_and_evaluate(config, str(tmp_path / "gray"))
  assert str(e.value) == (
      "The source's first layer 'conv2d' expects 3 input channel(s) (kernel "
      "(3, 3, 3, 8)) but the data has 1 (kernel (3, 3, 1, 8)): set "
      "dataset.grayscale_to_rgb = True to repeat the gray channel.")
  config.dataset.grayscale_to_rgb = True
  model, tx, state = init_state(config, shape=(28, 28, 3))
  state, _ = start_from_pretrained(config, state, tx, model, verbose=False)
  assert state.params["conv2d"]["kernel"].shape == (3, 3, 3, 8)


# ------------------------------------------------------------- feature extraction


def keras_feature_config(digits_dir, tmp_path, *, num_epochs):
  """Feature extraction from a Keras .h5 base into cnn_small with dropout in the head."""
  config = digits_config(digits_dir, model="cnn_small", dropout_rate=0.3)
  config.transfer.source = str(tmp_path / "src.weights.h5")
  _keras_cnn_small(1).save_weights(config.transfer.source)
  config.transfer.layers = ("conv2d*",)
  config.regularization.freeze = transfer.freeze_before(config.model, "dense")
  config.training.num_epochs = num_epochs
  config.transfer.feature_extraction = True
  return config


def test_feature_extraction_equals_training_with_the_frozen_base_inside(
    digits_dir, source_workdir, tmp_path):
  """Cached base outputs + head = the whole model with a frozen base, step by step."""
  config = keras_feature_config(digits_dir, tmp_path, num_epochs=2)
  feat_state, feat_history = transfer.train_head_on_features(config, str(tmp_path / "f"))
  config.transfer.feature_extraction = False
  full_state, full_history = train.train_and_evaluate(config, str(tmp_path / "e2e"))
  # Dropout (after Flatten) is in the head: same batches, same dropout keys.
  for name in ("dense", "dense_1", "conv2d", "conv2d_1"):
    for a, b in zip(jax.tree.leaves(feat_state.params[name]),
                    jax.tree.leaves(full_state.params[name])):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
  for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
    np.testing.assert_allclose(feat_history[key], full_history[key], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(feat_history["test_accuracy"], full_history["test_accuracy"])
  # The saved whole model (run on images) scores what the head scored on features.
  results = json.loads((tmp_path / "f" / "results.json").read_text())
  result = train.evaluate_workdir(config, str(tmp_path / "f"))
  assert result["accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-6)
  # A second run in the same workdir evaluates instead of training again.
  config.transfer.feature_extraction = True
  _, again = transfer.train_head_on_features(config, str(tmp_path / "f"))
  assert again["loss"] == feat_history["loss"]
  assert again["test_accuracy"] == pytest.approx(feat_history["test_accuracy"], abs=1e-6)


def test_feature_extraction_bad_configs(digits_dir, source_workdir, tmp_path):
  config = digits_config(digits_dir)
  config.transfer.source = source_workdir
  config.transfer.feature_extraction = True
  with pytest.raises(transfer.TransferError, match="needs a frozen base"):
    transfer.train_head_on_features(config, str(tmp_path / "a"))
  config.regularization.freeze = ("conv2d",)
  config.dataset.augmentation.update({"rotation_range": 10})
  with pytest.raises(transfer.TransferError, match="cannot see augmented ones"):
    transfer.train_head_on_features(config, str(tmp_path / "b"))


_KILLING_DRIVER = r'''
"""Runs a feature-extraction config and SIGKILLs itself mid-epoch 2."""
import json, os, signal, sys, time
import ml_collections
from jaxcnn import parallel, transfer

config = ml_collections.ConfigDict(json.load(open(sys.argv[1])))
workdir, kill_at, saved_step = sys.argv[2], int(sys.argv[3]), sys.argv[4]
make = parallel.make_train_step
calls = {"n": 0}


def make_killing(*args, **kwargs):
  step = make(*args, **kwargs)

  def wrapped(state, batch):
    calls["n"] += 1
    if calls["n"] == kill_at:
      # Orbax renames a step's folder to its number once the save is complete.
      deadline = time.time() + 60
      while not os.path.isdir(os.path.join(workdir, "checkpoints", saved_step)):
        assert time.time() < deadline, "the epoch checkpoint never completed"
        time.sleep(0.05)
      os.kill(os.getpid(), signal.SIGKILL)
    return step(state, batch)
  return wrapped


parallel.make_train_step = make_killing
transfer.train_head_on_features(config, workdir)
'''


def test_feature_extraction_killed_mid_run_resumes_to_the_same_result(
    digits_dir, tmp_path, capsys):
  """SIGKILL mid-epoch 2, rerun: the head ends as if never stopped.

  The rerun needs neither the killed process nor the source .h5 (deleted
  before it): the pretrained base comes back from the checkpoint.
  """
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  config = keras_feature_config(digits_dir, tmp_path, num_epochs=3)
  full_state, full_history = transfer.train_head_on_features(config, str(tmp_path / "full"))

  workdir = tmp_path / "killed"
  (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
  (tmp_path / "driver.py").write_text(_KILLING_DRIVER)
  # The same four devices as this process: the same reductions, the same floats.
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
  steps_per_epoch = 8  # 128 training images in batches of 16.
  killed = subprocess.run(
      [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "config.json"),
       str(workdir), str(steps_per_epoch + 5), str(steps_per_epoch)],
      env=env, capture_output=True, text=True, timeout=300)
  assert killed.returncode == -9, killed.stderr[-2000:]
  assert not (workdir / "results.json").exists()

  os.remove(config.transfer.source)
  capsys.readouterr()
  resumed_state, resumed_history = transfer.train_head_on_features(config, str(workdir))
  assert f"Resumed from {workdir / 'checkpoints'} at step {steps_per_epoch}" in \
      capsys.readouterr().out
  assert int(resumed_state.step) == int(full_state.step) == 3 * steps_per_epoch
  for a, b in zip(jax.tree.leaves(resumed_state.params), jax.tree.leaves(full_state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(resumed_history["loss"], full_history["loss"], rtol=1e-5)
  assert resumed_history["test_accuracy"] == pytest.approx(full_history["test_accuracy"])
