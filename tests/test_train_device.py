"""Training data on the device and K steps per call: the plain path's training.

``dataset.device_cache`` gathers each batch inside the compiled step from the
uploaded uint8 training part; ``training.steps_per_call`` runs K steps per
compiled call (``lax.scan``). Both must train exactly what the tf.data path
with one step per call trains. Tiny CNNs with BatchNorm and dropout on
scikit-learn's digits (offline), 4 fake CPU devices (tests/conftest.py) and
1 device.
"""

import functools
import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from jaxcnn import checkpoint as checkpoint_lib
from jaxcnn import config as config_lib
from jaxcnn import data as data_lib
from jaxcnn import models
from jaxcnn import optim
from jaxcnn import parallel
from jaxcnn import state as state_lib
from jaxcnn import train
from jaxcnn.data import device as device_lib

import tree_asserts

# The paths compute the same float32 operations in differently compiled
# programs: the gathered images differ from tf.data's by a float32 rounding
# or two (XLA may divide by 255 or by std as a multiplication by the
# reciprocal: IMAGE_TOL, relative, absolute near 0), and a scan body may fuse differently from the lone step. So
# after 16 steps of Adam the parameters agree to rounding, not bit for bit:
# RTOL/ATOL, as for populations against their single runs
# (tests/test_population_train.py). Far below what one step changes (checked).
IMAGE_TOL = 1e-6
RTOL, ATOL = 1e-4, 1e-5


def tiny_config(data_dir, device_cache="off", steps_per_call=1, population=1):
  """cnn_small_bn + dropout: 8 steps of 16 per epoch, 2 epochs."""
  c = config_lib.defaults()
  c.dataset.name = "sklearn_digits"
  c.dataset.data_dir = data_dir
  c.dataset.num_train_examples = 160  # 128 train + 32 validation
  c.dataset.validation_split = 32
  c.dataset.num_test_examples = 100
  c.dataset.normalization = "standardize"
  c.dataset.device_cache = device_cache
  c.model.name = "cnn_small_bn"
  c.model.dropout_rate = 0.3
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.training.batch_size = 16
  c.training.num_epochs = 2
  c.training.progress_bar = False
  c.training.steps_per_call = steps_per_call
  c.training.population = population
  return c


assert_trees_close = functools.partial(tree_asserts.assert_trees_close,
                                       rtol=RTOL, atol=ATOL)


def assert_same_training(a, b):
  (state_a, history_a), (state_b, history_b) = a, b
  assert int(np.ravel(state_a.step)[0]) == int(np.ravel(state_b.step)[0])
  assert_trees_close(state_a.params, state_b.params)
  assert_trees_close(state_a.batch_stats, state_b.batch_stats)
  for key in ("loss", "accuracy", "val_loss", "val_accuracy", "test_loss"):
    np.testing.assert_allclose(history_a[key], history_b[key], rtol=RTOL, atol=ATOL,
                               err_msg=key)


@pytest.fixture(scope="module")
def plain_run(digits_dir, tmp_path_factory):
  """The reference: tf.data batches, one step per call."""
  return train.train_and_evaluate(tiny_config(digits_dir),
                                  str(tmp_path_factory.mktemp("plain")))


@pytest.mark.parametrize("num_devices", [4, 1])
@pytest.mark.parametrize("normalization,rgb", [("standardize", True), ("rescale", False),
                                               ("standardize_pixel", False)])
def test_gathered_batches_are_the_tf_data_batches(digits_dir, num_devices,
                                                  normalization, rgb):
  cfg = tiny_config(digits_dir).dataset
  cfg.normalization, cfg.grayscale_to_rgb = normalization, rgb
  data = data_lib.create(cfg, global_batch_size=16, seed=5, num_local_devices=num_devices)
  train_set = device_lib.DeviceTrainSet(data, jax.local_devices()[:num_devices])
  gather = jax.jit(train_set.gather)
  batches = list(data.train_epoch(1, start_step=3))
  rows = data.train_indices(1, start_step=3)
  assert rows.shape == (data.steps_per_epoch - 3, num_devices, 16 // num_devices)
  assert len(batches) == len(rows)
  for batch, r in zip(batches, rows):
    got = gather(train_set.arrays, r)
    assert got["image"].shape == batch["image"].shape
    np.testing.assert_array_equal(np.asarray(got["label"]), batch["label"])
    np.testing.assert_allclose(np.asarray(got["image"]), batch["image"],
                               rtol=IMAGE_TOL, atol=IMAGE_TOL)
  # Another epoch is another order: the rows follow (seed, epoch).
  assert not np.array_equal(data.train_indices(0), data.train_indices(1))


@pytest.mark.parametrize("model_name,num_devices,pmap", [
    ("cnn_small_bn", 4, True), ("cnn_small_bn", 1, True), ("mlp_dropout", 4, True),
    ("mlp_dropout", 1, True), ("cnn_small_bn", 4, False)])
def test_gathered_k_step_calls_equal_one_step_calls(digits_dir, model_name, num_devices,
                                                    pmap):
  """parallel.make_train_step: gather and scan against host batches, step by step.

  ``pmap=False`` (``--debug_nans``) runs the 4-device batches on one device,
  the training part held on that device (as ``train._feed_args`` does).
  """
  data = data_lib.create(tiny_config(digits_dir).dataset, global_batch_size=16, seed=0,
                         num_local_devices=num_devices)
  config = config_lib.defaults()
  config.model.name = model_name
  shape = data.info.image_shape
  model = models.create(config.model, num_classes=10)
  train_model = models.create(config.model, num_classes=10, axis_name=parallel.AXIS)
  tx = optim.create({"name": "adam", "learning_rate": 3e-3}, {"name": "constant"},
                    steps_per_epoch=8, num_epochs=1)
  start = state_lib.create(config, model, tx, shape)
  devices = jax.local_devices()[:num_devices if pmap else 1]
  train_set = device_lib.DeviceTrainSet(data, devices)
  plain = parallel.make_train_step(train_model, tx, donate_state=False)
  gathered = parallel.make_train_step(train_model, tx, donate_state=False, stacked=True,
                                      pmap=pmap, gather=train_set.gather,
                                      arrays=train_set.arrays)
  batches = list(data.train_epoch(0))
  rows = data.train_indices(0)
  a, b = start, start
  losses = []
  for batch in batches:
    a, m = plain(a, batch)
    losses.append(float(m["loss"]))
  k_losses = []
  for i in (0, 3, 6):  # 3 + 3 + 2 steps: K=3 does not divide the 8 steps
    b, m = gathered(b, rows[i:i + 3])
    k_losses.extend(np.asarray(m["loss"]).tolist())
  assert int(a.step) == int(b.step) == 8
  assert_trees_close(a.params, b.params)
  assert_trees_close(a.batch_stats, b.batch_stats)
  np.testing.assert_allclose(k_losses, losses, rtol=RTOL, atol=ATOL)
  moved = max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
              for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(start.params)))
  assert moved > 100 * ATOL  # The test cannot pass on a no-op step.


@pytest.mark.parametrize("device_cache,steps_per_call", [
    ("on", 0), ("off", 3), ("on", 3), ("on", 8)])
def test_loop_trains_as_the_plain_path(digits_dir, tmp_path, plain_run, device_cache,
                                       steps_per_call, capsys):
  """The whole loop (4 devices): the same parameters, history and test scores."""
  config = tiny_config(digits_dir, device_cache, steps_per_call)
  setup = train.build(config, str(tmp_path))
  assert setup.feed == device_lib.Feed(device=device_cache == "on",
                                       steps_per_call=steps_per_call or 1)
  assert_same_training(train.train_and_evaluate(config, str(tmp_path)), plain_run)
  feed_line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("Feed: ")]
  assert bool(feed_line) == (setup.feed != device_lib.Feed())
  if steps_per_call > 1:
    assert f"{steps_per_call} steps per call" in feed_line[0]


def test_population_with_device_data_and_k_steps(digits_dir, tmp_path):
  plain = train.train_and_evaluate(tiny_config(digits_dir, population=2),
                                   str(tmp_path / "plain"))
  fast = train.train_and_evaluate(tiny_config(digits_dir, "on", 3, population=2),
                                  str(tmp_path / "fast"))
  assert_same_training(fast, plain)
  for a, b in zip(fast[1]["members"], plain[1]["members"]):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=RTOL, atol=ATOL)
  # The members differ (their own orders and keys): not one run twice.
  assert abs(fast[1]["members"][0]["loss"][0] - fast[1]["members"][1]["loss"][0]) > 1e-3


def test_sigterm_mid_epoch_then_resume_is_exact(digits_dir, tmp_path, plain_run,
                                                signal_at_step):
  """Calls of 3, 3, 2 steps per epoch; SIGTERM before call 5 saves at step 14."""
  config = tiny_config(digits_dir, "on", 3)
  workdir = str(tmp_path / "interrupted")
  disarm = signal_at_step(5)
  with pytest.raises(train.Preempted):
    train.train_and_evaluate(config, workdir)
  steps = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints")).all_steps()
  assert steps == [8, 14]
  disarm()
  # Resumed on the other path with another K: still the same training.
  config = tiny_config(digits_dir, "off", 4)
  assert_same_training(train.train_and_evaluate(config, workdir), plain_run)
  changes = [json.loads(line) for line in
             open(os.path.join(workdir, "config_history.jsonl"))]
  assert set(changes[-1]["changes"]) == {"dataset.device_cache", "training.steps_per_call"}


def test_nan_stop_names_the_same_step_with_k_steps_per_call(digits_dir, tmp_path):
  messages = []
  for k in (1, 3):
    config = tiny_config(digits_dir, "on" if k > 1 else "off", k)
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 1e30
    with pytest.raises(train.NonFiniteLossError) as e:
      train.train_and_evaluate(config, str(tmp_path / str(k)))
    messages.append(str(e.value).split(" (epoch")[0])
  assert messages[0] == messages[1]
  assert messages[0].startswith("Non-finite loss at step ")


def test_settings_checked_before_anything_compiles(digits_dir, tmp_path, monkeypatch):
  config = tiny_config(digits_dir)
  config.dataset.device_cache = "yes"
  with pytest.raises(config_lib.ConfigError, match="device_cache' must be one of auto, on, off"):
    config_lib.validate(config)
  config = tiny_config(digits_dir, steps_per_call=-1)
  with pytest.raises(config_lib.ConfigError, match=r"steps_per_call' must be >= 0 \(0 = auto\)"):
    config_lib.validate(config)
  config = tiny_config(digits_dir, "on")
  config.dataset.augmentation.horizontal_flip = True
  config_lib.validate(config)  # Augmentation runs on the device too.
  config = tiny_config(digits_dir, "on")
  config.dataset.cache = False
  with pytest.raises(config_lib.ConfigError, match="needs dataset.cache=True"):
    config_lib.validate(config)
  monkeypatch.setattr(device_lib, "DEVICE_MEMORY_FRACTION", 1e-9)
  with pytest.raises(config_lib.ConfigError, match=r"cannot be honoured: the uint8 "
                     r"training part takes \d+ MiB, more than 0% of one device's"):
    train.build(tiny_config(digits_dir, "on"), str(tmp_path))
  # 'auto' then quietly takes the host path.
  assert train.build(tiny_config(digits_dir, "auto"), str(tmp_path)).feed.device is False


def test_auto_rules(digits_dir):
  config = tiny_config(digits_dir, "auto", 0)
  data = data_lib.create(config.dataset, global_batch_size=16, seed=0)
  assert device_lib.plan(config, data, "cpu") == device_lib.Feed(False, 1)
  assert device_lib.plan(config, data, "gpu") == device_lib.Feed(
      True, device_lib.ACCELERATOR_STEPS_PER_CALL)
  config.training.steps_per_call = 5
  assert device_lib.plan(config, data, "gpu").steps_per_call == 5
  config.dataset.augmentation.horizontal_flip = True
  augmented = data_lib.create(config.dataset, global_batch_size=16, seed=0)
  # Augmented runs too: augment_jax runs in the step (GPU/TPU), not on CPU.
  assert device_lib.plan(config, augmented, "gpu").device is True
  assert device_lib.plan(config, augmented, "cpu").device is False
  config.dataset.augmentation = ml_collections.ConfigDict()
  config.transfer.feature_extraction = True
  assert device_lib.plan(config, data, "gpu").device is False
