"""Augmentation on the device path: ``dataset.device_cache='on'`` with
``dataset.augmentation``.

The device path augments with ``augment_jax`` inside the compiled step,
each image keyed by ``(seed, epoch, position in the epoch)``. Its draws are
not tf.data's (other generators), so these tests check it against
``augment_jax`` applied by hand, and against itself: resumed, with K steps
per call, without pmap. Tiny CNN on scikit-learn's digits (offline), 4 fake
CPU devices (tests/conftest.py) and 1.
"""

import functools
import os

import jax
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
from jaxcnn.data import augment_jax
from jaxcnn.data import device as device_lib

import tree_asserts

# Same program pieces compiled differently (the gather inside jit against
# augment_jax run eagerly; a scan body against the lone step): float32
# roundings, not bits. Images are compared in pixel units ([0, 255], the
# normalization undone): PIXEL_TOL is ~8e-6 of the range, a few float32 ulps
# of the bilinear sums (standardize_pixel divides by per-pixel stds that can
# be small, which would magnify them). Trained parameters: RTOL as in
# tests/test_train_device.py, ATOL 5x its: the augmented images of two
# programs differ by those pixel roundings, not by one or two (measured 1.4e-5
# after 8 Adam steps without pmap, against a 2.4e-2 move of the parameters).
PIXEL_TOL = 2e-3
RTOL, ATOL = 1e-4, 5e-5

AUGMENTATION = {"rotation_range": 15.0, "width_shift_range": 0.1,
                "height_shift_range": 0.1, "zoom_range": 0.1,
                "horizontal_flip": True}


def tiny_config(data_dir, steps_per_call=1, population=1, epochs=2):
  """cnn_small_bn + dropout, augmented on the device: 8 steps of 16 per epoch."""
  c = config_lib.defaults()
  c.dataset.name = "sklearn_digits"
  c.dataset.data_dir = data_dir
  c.dataset.num_train_examples = 160  # 128 train + 32 validation
  c.dataset.validation_split = 32
  c.dataset.num_test_examples = 100
  c.dataset.normalization = "standardize"
  c.dataset.device_cache = "on"
  c.dataset.augmentation.update(AUGMENTATION)
  c.model.name = "cnn_small_bn"
  c.model.dropout_rate = 0.3
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.training.batch_size = 16
  c.training.num_epochs = epochs
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


def create(data_dir, num_devices=4, seed=5, normalization="standardize", rgb=False):
  cfg = tiny_config(data_dir).dataset
  cfg.normalization, cfg.grayscale_to_rgb = normalization, rgb
  return data_lib.create(cfg, global_batch_size=16, seed=seed,
                         num_local_devices=num_devices)


@pytest.mark.parametrize("num_devices,normalization,rgb", [
    (4, "standardize", True), (1, "rescale", False), (4, "standardize_pixel", False)])
def test_gathered_batch_is_augment_jax_then_the_normalization(digits_dir, num_devices,
                                                              normalization, rgb):
  """Step i's batch: the rows' images, augment_jax with (seed, epoch, i * 16 + j) keys,
  tiled, normalized as Data._normalize does (computed here in numpy)."""
  data = create(digits_dir, num_devices, normalization=normalization, rgb=rgb)
  train_set = device_lib.DeviceTrainSet(data, jax.local_devices()[:num_devices])
  gather = jax.jit(train_set.gather)
  images, labels = data.train_arrays()
  augment = augment_jax.build(AUGMENTATION)
  mean, std = np.asarray(data.info.mean), np.asarray(data.info.std)
  epoch, start = 1, 3
  inputs = device_lib.device_inputs(data, epoch, start)
  rows = data.train_indices(epoch, start)
  np.testing.assert_array_equal(inputs["rows"], rows)
  for i in range(len(rows)):
    step = start + i
    positions = step * 16 + np.arange(16)  # the global batch's rows, in order
    keys = augment_jax.example_keys(5, epoch, positions)
    x = np.asarray(augment(images[rows[i].reshape(-1)], keys))
    if rgb:
      x = np.tile(x, (1, 1, 1, 3))
    got = gather(train_set.arrays, jax.tree.map(lambda a, i=i: a[i], inputs))
    assert got["image"].shape == (num_devices, 16 // num_devices) + data.info.image_shape
    pixels = np.asarray(got["image"], np.float64).reshape(x.shape)
    # Undo the normalization (float64) and compare pixels.
    pixels = pixels * 255.0 if normalization == "rescale" else (pixels * std + mean) * 255.0
    np.testing.assert_allclose(pixels, x, rtol=0, atol=PIXEL_TOL)
    np.testing.assert_array_equal(np.asarray(got["label"]).reshape(-1),
                                  labels[rows[i].reshape(-1)])
    # Augmented: not the plain images.
    plain = images[rows[i].reshape(-1)].astype(np.float32)
    assert np.abs(np.asarray(augment(plain, keys)) - plain).max() > 1.0


def test_epochs_draw_other_augmentations_and_an_epoch_twice_the_same(digits_dir):
  data = create(digits_dir)
  train_set = device_lib.DeviceTrainSet(data)
  gather = jax.jit(train_set.gather)
  first = device_lib.device_inputs(data, 0)
  again = device_lib.device_inputs(data, 0)
  step0 = lambda inputs: jax.tree.map(lambda a: a[0], inputs)
  a = np.asarray(gather(train_set.arrays, step0(first))["image"])
  b = np.asarray(gather(train_set.arrays, step0(again))["image"])
  np.testing.assert_array_equal(a, b)
  # The same rows and positions keyed by epoch 1: other draws.
  other = dict(step0(first), epoch=np.ones_like(first["epoch"][0]))
  c = np.asarray(gather(train_set.arrays, other)["image"])
  assert np.abs(a - c).max() > 0.1
  # Another seed: other draws too.
  reseeded = dict(step0(first), seed=np.full_like(first["seed"][0], 6))
  assert np.abs(a - np.asarray(gather(train_set.arrays, reseeded)["image"])).max() > 0.1
  # The loop's inputs: each call's chunk of the epoch, keyed by its epoch.
  calls = list(device_lib.calls(data, 1, 2, device_lib.Feed(True, 3)))
  assert [n for n, _ in calls] == [3, 3]
  assert (calls[0][1]["epoch"] == 1).all()
  np.testing.assert_array_equal(calls[1][1]["position"][0].reshape(-1),
                                5 * 16 + np.arange(16))


def test_k_steps_and_no_pmap_equal_one_step_calls(digits_dir):
  """make_train_step, augmented gather: K=3 under pmap (4 devices) and K=1
  without pmap (--debug_nans) train what K=1 under pmap trains."""
  data = create(digits_dir, seed=0)
  config = config_lib.defaults()
  config.model.name = "cnn_small_bn"
  model = models.create(config.model, num_classes=10)
  train_model = models.create(config.model, num_classes=10, axis_name=parallel.AXIS)
  tx = optim.create({"name": "adam", "learning_rate": 3e-3}, {"name": "constant"},
                    steps_per_epoch=8, num_epochs=1)
  start = state_lib.create(config, model, tx, data.info.image_shape)
  inputs = device_lib.device_inputs(data, 0)
  results = []
  for k, pmap in ((1, True), (3, True), (1, False)):
    devices = jax.local_devices()[:4 if pmap else 1]
    train_set = device_lib.DeviceTrainSet(data, devices)
    step = parallel.make_train_step(train_model, tx, donate_state=False, stacked=k > 1,
                                    pmap=pmap, gather=train_set.gather,
                                    arrays=train_set.arrays)
    state, losses = start, []
    for i in range(0, 8, k):  # K=3: 3 + 3 + 2 steps
      chunk = jax.tree.map(lambda a, i=i: a[i:i + k] if k > 1 else a[i], inputs)
      state, m = step(state, chunk)
      losses.extend(np.ravel(m["loss"]).tolist())
    results.append((state, losses))
  (a, la), *others = results
  for b, lb in others:
    assert int(b.step) == 8
    assert_trees_close(a.params, b.params)
    assert_trees_close(a.batch_stats, b.batch_stats)
    np.testing.assert_allclose(lb, la, rtol=RTOL, atol=ATOL)
  moved = max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
              for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(start.params)))
  assert moved > 100 * ATOL  # The test cannot pass on a no-op step.


@pytest.fixture(scope="module")
def one_step_run(digits_dir, tmp_path_factory):
  """The reference: augmented on the device, one step per call, 2 epochs."""
  return train.train_and_evaluate(tiny_config(digits_dir),
                                  str(tmp_path_factory.mktemp("k1")))


def test_k3_loop_and_sigterm_resume_equal_the_uninterrupted_run(
    digits_dir, tmp_path, one_step_run, signal_at_step, capsys):
  """Calls of 3, 3, 2 steps; SIGTERM before call 5 saves at step 14 (mid epoch 2);
  resumed with K=1: the same training as K=1 uninterrupted."""
  workdir = str(tmp_path / "interrupted")
  disarm = signal_at_step(5)
  with pytest.raises(train.Preempted):
    train.train_and_evaluate(tiny_config(digits_dir, 3), workdir)
  assert "batches gathered and augmented in the step" in capsys.readouterr().out
  steps = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints")).all_steps()
  assert steps == [8, 14]
  disarm()
  assert_same_training(train.train_and_evaluate(tiny_config(digits_dir, 1), workdir),
                       one_step_run)
  # And K=3 uninterrupted.
  assert_same_training(train.train_and_evaluate(tiny_config(digits_dir, 3),
                                                str(tmp_path / "k3")), one_step_run)


def test_population_members_take_their_own_seeds(digits_dir, tmp_path, one_step_run):
  """Population of 2 (seeds 0 and 1), K=3: member 0 trains as the single run of seed 0."""
  state, history = train.train_and_evaluate(tiny_config(digits_dir, 3, population=2),
                                            str(tmp_path))
  member0 = history["members"][0]
  np.testing.assert_allclose(member0["loss"], one_step_run[1]["loss"], rtol=RTOL, atol=ATOL)
  assert_trees_close(jax.tree.map(lambda x: x[0], state.params), one_step_run[0].params)
  assert abs(member0["loss"][0] - history["members"][1]["loss"][0]) > 1e-3


def test_augmented_device_run_learns(digits_dir, tmp_path):
  """5 epochs with K=4: the training loss falls, validation beats chance."""
  state, history = train.train_and_evaluate(tiny_config(digits_dir, 4, epochs=5),
                                            str(tmp_path))
  assert history["loss"][-1] < 0.7 * history["loss"][0]
  # 40 steps on 128 augmented digits: measured 2.8 -> 1.5 and 41% of the 32
  # validation digits (chance: 10%).
  assert history["val_accuracy"][-1] > 0.25
