"""jaxcnn.data.create: splits, order, resume, normalization, exact evaluation.

Real Fashion-MNIST (prepared once per session from the offline mirror) for
the numbers; ``tfds.testing.mock_data`` for MNIST and CIFAR-10, which cannot
be downloaded here. Four fake CPU devices (conftest).
"""

import collections

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxcnn import config as config_lib
from jaxcnn import data as data_lib


def _config(data_dir="", **overrides):
  c = config_lib.defaults().dataset
  c.data_dir = data_dir
  for k, v in overrides.items():
    c[k] = v
  return c


def _raw(data_dir, split):
  """uint8 images and labels of a Fashion-MNIST split, straight from TFDS."""
  images, labels = tfds.as_numpy(tfds.load(
      "fashion_mnist", split=split, data_dir=data_dir, batch_size=-1,
      as_supervised=True))
  return images, labels.astype(np.int32)


def _unshard(batch, key):
  x = batch[key]
  return x.reshape(-1, *x.shape[2:])


@pytest.mark.parametrize("batch,message", [(30, "28 or 32"), (2, "4")])
def test_batch_not_divisible_by_devices_says_what_works(batch, message):
  # One rule (parallel.check_global_batch) for the training and eval batches.
  with pytest.raises(config_lib.ConfigError, match="does not divide across 4 devices") as e:
    data_lib.create(_config(), global_batch_size=batch, seed=0)
  assert f"e.g. {message}." in str(e.value)
  with pytest.raises(config_lib.ConfigError, match="eval_batch_size=10 .* e.g. 8 or 12"):
    data_lib.create(_config(), global_batch_size=32, seed=0, eval_batch_size=10)


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_mock_mnist_and_cifar10_through_create(name, shape):
  n = 100
  with tfds.testing.mock_data(num_examples=n):
    data = data_lib.create(_config(name=name), global_batch_size=32, seed=0,
                           eval_batch_size=24)
    # (batch_size=-1 needs split sizes, which the mock does not have.)
    raw = list(tfds.as_numpy(tfds.load(name, split="test", as_supervised=True)))
    raw_images = np.stack([x for x, _ in raw])
    raw_labels = np.array([y for _, y in raw])
    batches = list(data.train_epoch(0))
    evals = list(data.eval_batches("test"))
  assert data.info.num_classes == 10 and data.info.image_shape == shape
  assert data.steps_per_epoch == n // 32 == len(batches)
  for b in batches:
    assert b["image"].shape == (4, 8, *shape) and b["image"].dtype == np.float32
    assert b["label"].shape == (4, 8) and b["label"].dtype == np.int32
    assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0  # 'rescale'
  # 100 test examples in batches of 24: 5 steps, the last with 4 real ones.
  assert data.eval_steps("test") == len(evals) == 5
  mask = np.concatenate([_unshard(b, "mask") for b in evals])
  assert mask.sum() == n and mask[:n].all()
  images = np.concatenate([_unshard(b, "image") for b in evals])[mask]
  labels = np.concatenate([_unshard(b, "label") for b in evals])[mask]
  np.testing.assert_allclose(images, raw_images / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(labels, raw_labels)


@pytest.mark.parametrize("cache", [True, False])
@pytest.mark.parametrize("n", [96, 100])
def test_eval_counts_every_example_exactly_once(fashion_mnist_data_dir, n, cache):
  data = data_lib.create(
      _config(fashion_mnist_data_dir, num_train_examples=256, num_test_examples=n,
              cache=cache),
      global_batch_size=64, seed=0, eval_batch_size=32)
  batches = list(data.eval_batches("test"))
  assert len(batches) == data.eval_steps("test") == -(-n // 32)
  for b in batches:
    assert b["image"].shape == (4, 8, 28, 28, 1) and b["mask"].shape == (4, 8)
  mask = np.concatenate([_unshard(b, "mask") for b in batches])
  images = np.concatenate([_unshard(b, "image") for b in batches])
  labels = np.concatenate([_unshard(b, "label") for b in batches])
  assert mask.sum() == n == data.info.num_test
  raw_images, raw_labels = _raw(fashion_mnist_data_dir, f"test[:{n}]")
  # Same examples, same order, each once; the padding is zeros.
  np.testing.assert_array_equal(labels[mask], raw_labels)
  np.testing.assert_allclose(images[mask], raw_images / 255.0, rtol=1e-6)
  assert not images[~mask].any() and not labels[~mask].any()
  as_images, as_labels = data.as_numpy("test")
  np.testing.assert_array_equal(as_labels, raw_labels)
  np.testing.assert_array_equal(as_images, images[mask])


@pytest.mark.parametrize("cache", [True, False])
def test_shuffle_is_deterministic_per_seed_and_epoch(fashion_mnist_data_dir, cache):
  cfg = _config(fashion_mnist_data_dir, num_train_examples=200, cache=cache)
  a = data_lib.create(cfg, global_batch_size=32, seed=7)
  b = data_lib.create(cfg, global_batch_size=32, seed=7)
  other_seed = data_lib.create(cfg, global_batch_size=32, seed=8)
  assert a.steps_per_epoch == 200 // 32 == 6  # the remainder (8) is dropped

  def images(data, epoch):
    return np.concatenate([_unshard(x, "image") for x in data.train_epoch(epoch)])

  e0, e1 = images(a, 0), images(a, 1)
  np.testing.assert_array_equal(e0, images(b, 0))  # a fresh run: the same order
  np.testing.assert_array_equal(e1, images(b, 1))
  assert not np.array_equal(e0, e1)  # another epoch, another order
  assert not np.array_equal(e0, images(other_seed, 0))
  # Each epoch draws 192 distinct examples of the 200, without repeats.
  raw, _ = _raw(fashion_mnist_data_dir, "train[:200]")
  pool = collections.Counter(map(bytes, raw.reshape(200, -1)))
  for epoch in (e0, e1):
    drawn = collections.Counter(map(bytes, np.rint(epoch * 255).astype(np.uint8).reshape(192, -1)))
    assert len(epoch) == 192 and not drawn - pool


def test_train_batches_are_the_examples_in_epoch_order(fashion_mnist_data_dir):
  # With no augmentation configured, the images reach the model untouched.
  data = data_lib.create(_config(fashion_mnist_data_dir, num_train_examples=128),
                         global_batch_size=32, seed=3)
  assert data._augment is None  # pylint: disable=protected-access
  raw_images, raw_labels = _raw(fashion_mnist_data_dir, "train[:128]")
  order = data.epoch_order(2)
  batches = list(data.train_epoch(2))
  np.testing.assert_array_equal(np.concatenate([_unshard(b, "label") for b in batches]),
                                raw_labels[order])
  np.testing.assert_allclose(np.concatenate([_unshard(b, "image") for b in batches]),
                             raw_images[order] / 255.0, rtol=1e-6)


@pytest.mark.parametrize("cache", [True, False])
def test_start_step_gives_the_tail_of_the_epoch(fashion_mnist_data_dir, cache):
  data = data_lib.create(
      _config(fashion_mnist_data_dir, num_train_examples=320, cache=cache),
      global_batch_size=32, seed=1)
  full = list(data.train_epoch(4))
  tail = list(data.train_epoch(4, start_step=7))
  assert len(full) == 10 and len(tail) == 3
  for x, y in zip(full[7:], tail):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])
  assert list(data.train_epoch(4, start_step=10)) == []
  with pytest.raises(ValueError, match=r"start_step must be in \[0, 10\]"):
    data.train_epoch(4, start_step=11)  # at the call, not at the first batch


def test_validation_is_the_end_of_train_and_stats_come_from_train_only(
    fashion_mnist_data_dir):
  data = data_lib.create(
      _config(fashion_mnist_data_dir, num_train_examples=3000, validation_split=0.2,
              normalization="standardize", num_test_examples=500),
      global_batch_size=64, seed=0)
  assert (data.info.num_train, data.info.num_validation, data.info.num_test) == (2400, 600, 500)
  images, labels = _raw(fashion_mnist_data_dir, "train[:3000]")
  x = images / 255.0
  mean, std = x[:2400].mean(), x[:2400].std()  # lecture 000: training part only
  np.testing.assert_allclose(data.info.mean, [mean], rtol=1e-6)
  np.testing.assert_allclose(data.info.std, [std], rtol=1e-6)
  # The check can tell: statistics with the validation part differ.
  assert abs(x.mean() - mean) > 1e-4
  val_images, val_labels = data.as_numpy("validation")
  np.testing.assert_array_equal(val_labels, labels[2400:])
  np.testing.assert_allclose(val_images, (x[2400:] - mean) / std, rtol=1e-5, atol=1e-5)
  train_images, _ = data.as_numpy("train")
  assert abs(train_images.mean()) < 1e-5 and abs(train_images.std() - 1) < 1e-5


def test_standardize_pixel_is_lecture_004(fashion_mnist_data_dir):
  data = data_lib.create(
      _config(fashion_mnist_data_dir, num_train_examples=2000, validation_split=500,
              normalization="standardize_pixel", num_test_examples=300),
      global_batch_size=64, seed=0)
  assert data.info.num_validation == 500 and data.info.mean.shape == (28, 28, 1)
  x_train = _raw(fashion_mnist_data_dir, "train[:1500]")[0] / 255.0
  x_test = _raw(fashion_mnist_data_dir, "test[:300]")[0] / 255.0
  pixel_means = x_train.mean(axis=0)
  pixel_stds = x_train.std(axis=0)
  assert (pixel_stds == 0).any()  # a few always-black pixels: the guard matters
  expected = (x_test - pixel_means) / np.where(pixel_stds == 0, 1, pixel_stds)
  test_images, _ = data.as_numpy("test")
  assert np.isfinite(test_images).all()
  np.testing.assert_allclose(test_images, expected, rtol=1e-5, atol=1e-5)


def test_no_validation_split_is_a_clear_error(fashion_mnist_data_dir):
  data = data_lib.create(_config(fashion_mnist_data_dir, num_train_examples=64),
                         global_batch_size=64, seed=0)
  assert data.info.num_validation == 0
  with pytest.raises(ValueError, match="no validation data.*dataset.validation_split"):
    data.eval_steps("validation")
  with pytest.raises(ValueError, match="Unknown split 'valid'; valid: train, validation, test"):
    data.eval_batches("valid")


def test_image_size_resizes_as_keras_and_tiles_gray_to_rgb(fashion_mnist_data_dir):
  data = data_lib.create(
      _config(fashion_mnist_data_dir, num_train_examples=64, num_test_examples=40,
              image_size=(48, 40), grayscale_to_rgb=True, normalization="none"),
      global_batch_size=64, seed=0)
  assert data.info.image_shape == (48, 40, 3)
  images, _ = data.as_numpy("test")
  raw, _ = _raw(fashion_mnist_data_dir, "test[:40]")
  expected = keras.ops.convert_to_numpy(keras.ops.image.resize(
      raw.astype(np.float32), (48, 40), interpolation="bilinear"))
  # Rounded to uint8 once, before caching: within half a grey level.
  assert np.abs(images[..., :1] - expected).max() <= 0.5 + 1e-4
  np.testing.assert_array_equal(images[..., 0], images[..., 2])
  batch = next(data.train_epoch(0))
  assert batch["image"].shape == (4, 16, 48, 40, 3)


def test_mock_cats_vs_dogs_varying_sizes_are_resized():
  with tfds.testing.mock_data(num_examples=20):
    with pytest.raises(ValueError, match=r"varying size.*dataset.image_size"):
      data_lib.create(_config(name="cats_vs_dogs"), global_batch_size=8, seed=0)
    data = data_lib.create(
        _config(name="cats_vs_dogs", image_size=(150, 150), normalization="standardize"),
        global_batch_size=8, seed=0)
    batch = next(data.train_epoch(0))
  assert data.info.num_classes == 2 and data.info.class_names == ("cat", "dog")
  assert batch["image"].shape == (4, 2, 150, 150, 3)
  assert data.info.mean.shape == (3,) and np.isfinite(batch["image"]).all()


@pytest.mark.parametrize("cache", [True, False])
def test_corrupt_prepared_file_names_the_folder_to_delete(fashion_mnist_data_dir, tmp_path, cache):
  import shutil
  data_dir = tmp_path / "tfds"
  shutil.copytree(fashion_mnist_data_dir, data_dir)
  prepared = data_dir / "fashion_mnist" / "3.0.1"
  (record,) = [p for p in prepared.iterdir() if "test.tfrecord" in p.name]
  with open(record, "r+b") as f:  # a flipped byte: the record's CRC no longer matches
    f.seek(1000)
    byte = f.read(1)[0]
    f.seek(1000)
    f.write(bytes([byte ^ 0xFF]))
  data = data_lib.create(_config(str(data_dir), num_train_examples=64, num_test_examples=64,
                                 cache=cache), global_batch_size=32, seed=0)
  with pytest.raises(data_lib.PreparedDataError) as e:
    data.as_numpy("test")
  msg = str(e.value)
  assert f"The prepared dataset in {prepared} is corrupt (corrupted record at" in msg
  assert f"delete {prepared} and run again" in msg and "\n" not in msg
  assert isinstance(e.value, FileNotFoundError)  # main prints it as one line


def test_minmax_pixel_maps_the_training_parts_extremes_to_minus_one_and_one(
    fashion_mnist_data_dir):
  # Lecture 000: "the minimum and maximum of each dimension become -1 and 1",
  # computed on the training part only.
  data = data_lib.create(
      _config(fashion_mnist_data_dir, num_train_examples=2000, validation_split=500,
              normalization="minmax_pixel", num_test_examples=300),
      global_batch_size=64, seed=0)
  x = _raw(fashion_mnist_data_dir, "train[:2000]")[0] / 255.0
  low, high = x[:1500].min(axis=0), x[:1500].max(axis=0)
  # The check can tell: the validation part's extremes differ somewhere.
  assert (x.max(axis=0) != high).any() or (x.min(axis=0) != low).any()
  half = (high - low) / 2
  expected = (x[1500:] - (high + low) / 2) / np.where(half == 0, 1, half)
  val_images, _ = data.as_numpy("validation")
  np.testing.assert_allclose(val_images, expected, rtol=1e-5, atol=1e-5)
  train_images, _ = data.as_numpy("train")
  varying = (high > low)
  np.testing.assert_allclose(train_images.min(axis=0)[varying], -1, atol=1e-5)
  np.testing.assert_allclose(train_images.max(axis=0)[varying], 1, atol=1e-5)
  assert (train_images[:, ~varying] == 0).all()  # a constant pixel maps to 0


def test_minmax_per_channel_statistics_on_known_chunks():
  from jaxcnn.data import statistics
  rng = np.random.default_rng(0)
  images = rng.integers(10, 200, size=(50, 4, 4, 3), dtype=np.uint8)
  images[3, 1, 1, 0], images[7, 2, 2, 2] = 0, 255
  chunks = lambda: iter([images[:20], images[20:], images[:0]])
  mean, std = statistics.compute("minmax", chunks, channels=3, tile=1)
  low = images.min(axis=(0, 1, 2)) / 255.0
  high = images.max(axis=(0, 1, 2)) / 255.0
  np.testing.assert_allclose(mean, (low + high) / 2, rtol=1e-6)
  np.testing.assert_allclose(std, (high - low) / 2, rtol=1e-6)
  scaled = (images / 255.0 - mean) / std
  np.testing.assert_allclose(scaled.min(axis=(0, 1, 2)), -1, atol=1e-6)
  np.testing.assert_allclose(scaled.max(axis=(0, 1, 2)), 1, atol=1e-6)


def test_validation_from_start_holds_out_the_first_rows_of_the_images(
    fashion_mnist_data_dir):
  # Compared against the images TFDS itself reads. (Mock data cannot show it:
  # it ignores split slices.)
  images, labels = _raw(fashion_mnist_data_dir, "train[:300]")
  x = images / 255.0
  for where, val_rows, train_rows in (("start", slice(0, 50), slice(50, 300)),
                                      ("end", slice(250, 300), slice(0, 250))):
    data = data_lib.create(
        _config(fashion_mnist_data_dir, num_train_examples=300, validation_split=50,
                validation_from=where, num_test_examples=64),
        global_batch_size=64, seed=0)
    assert (data.info.num_train, data.info.num_validation) == (250, 50)
    val, val_labels = data.as_numpy("validation")
    train, train_labels = data.as_numpy("train")
    np.testing.assert_allclose(val, x[val_rows], rtol=1e-6)
    np.testing.assert_array_equal(val_labels, labels[val_rows])
    np.testing.assert_allclose(train, x[train_rows], rtol=1e-6)
    np.testing.assert_array_equal(train_labels, labels[train_rows])
