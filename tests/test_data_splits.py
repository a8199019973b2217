"""jaxcnn.data.splits and .statistics: the arithmetic, without reading any data.

Four fake CPU devices, one process (conftest).
"""

import pathlib
import re

import numpy as np
import pytest

from jaxcnn import config as config_lib
from jaxcnn.data import splits
from jaxcnn.data import statistics

TOTALS = {"train": 60_000, "test": 10_000}


def _count(split):
  """Examples of a split expression over TOTALS, as a TFDS builder's metadata says."""
  if not isinstance(split, str):
    # tfds.split_for_jax_process's answer; with one process it is the whole split.
    return _count(split.split)
  m = re.fullmatch(r"(\w+)(?:\[(\d*):(\d*)\])?", split)
  name, start, stop = m.group(1), m.group(2) or "0", m.group(3)
  return (int(stop) if stop else TOTALS[name]) - int(start)


def _config(**overrides):
  c = config_lib.defaults().dataset
  for k, v in overrides.items():
    c[k] = v
  return c


def test_validation_is_carved_from_the_end_of_the_used_training_examples():
  parts = splits.plan(_config(num_train_examples=3000, validation_split=0.2,
                              num_test_examples=500), _count)
  assert parts["train"] == splits.Part("train[0:2400]", 2400, 2400, 2400)
  assert parts["validation"].count == parts["validation"].global_count == 600
  assert parts["validation"].split.split == "train[2400:3000]"
  assert parts["test"].global_count == 500 and parts["test"].split.split == "test[0:500]"


def test_whole_splits_stay_unsliced_and_no_validation_is_an_empty_part():
  parts = splits.plan(_config(), _count)
  assert parts["train"] == splits.Part("train", 60_000, 60_000, 60_000)
  assert parts["validation"] == splits.Part(None, 0, 0, 0)
  with pytest.raises(ValueError, match="no validation data.*dataset.validation_split"):
    splits.eval_part(parts, "validation")
  with pytest.raises(ValueError, match="Unknown split 'valid'; valid: train, validation, test"):
    splits.eval_part(parts, "valid")


def test_split_errors_say_what_to_change():
  # ConfigErrors: main prints each as one line.
  with pytest.raises(config_lib.ConfigError, match=(
      r"validation_split=100 leaves no training examples out of 100 "
      r"\(dataset.num_train_examples=100\): use a count below 100 or a fraction "
      r"such as 0.1 \(10 examples\)")):
    splits.plan(_config(num_train_examples=100, validation_split=100), _count)
  with pytest.raises(config_lib.ConfigError, match="out of 60000 \\(split 'train'\\)"):
    splits.plan(_config(validation_split=60_000), _count)
  with pytest.raises(config_lib.ConfigError, match="fraction in \\(0, 1\\), a count"):
    splits.validation_count(1.5, 100)
  with pytest.raises(config_lib.ConfigError, match="already has a slice"):
    splits.sliced("train[:500]", 0, 100, 500)
  assert splits.validation_count(0.1, 1000) == 100
  assert splits.validation_count(250, 1000) == 250


def test_batching_and_steps():
  b = splits.batching(64, None, None)
  assert (b.global_size, b.process_size, b.eval_process_size, b.num_local_devices) == (
      64, 64, 64, 4)
  with pytest.raises(config_lib.ConfigError, match="eval_batch_size=6 .* e.g. 4 or 8"):
    splits.batching(64, 6, None)
  train = splits.Part("train[0:200]", 200, 200, 200)
  assert splits.steps_per_epoch(train, splits.batching(32, None, None), cache=True) == 6
  # A batch larger than the data: the largest that fits, a multiple of the 4 devices.
  for cache in (True, False):
    with pytest.raises(config_lib.ConfigError, match=(
        r"training.batch_size=256 is larger than the 200 training examples: use "
        r"training.batch_size <= 200 \(a multiple of the 4 devices\), or raise "
        r"dataset.num_train_examples")):
      splits.steps_per_epoch(train, splits.batching(256, None, None), cache=cache)
  with pytest.raises(config_lib.ConfigError, match=(
      r"batch_size=8 is larger than the 3 training examples: raise dataset.num_train")):
    splits.steps_per_epoch(splits.Part("train[0:3]", 3, 3, 3), splits.batching(8, None, None),
                           cache=True)
  # 100 test examples in eval batches of 24: 5 steps.
  assert splits.eval_steps(splits.Part("test", 100, 100, 100), 24) == 5


@pytest.mark.parametrize("per_pixel", [False, True])
def test_moments_over_chunks_equal_numpy_over_all(per_pixel):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(50, 4, 3, 2), dtype=np.uint8)
  n, mean, m2 = statistics.moments(iter([images[:7], images[7:30], images[30:]]), per_pixel)
  x = images / 255.0
  axes = (0,) if per_pixel else (0, 1, 2)
  np.testing.assert_allclose(mean, x.mean(axis=axes), rtol=1e-12)
  np.testing.assert_allclose(np.sqrt(m2 / n), x.std(axis=axes), rtol=1e-12)


def test_statistics_modes():
  def chunks():
    return iter([np.zeros((3, 2, 2, 1), np.uint8), np.full((1, 2, 2, 1), 255, np.uint8)])
  mean, std = statistics.compute("rescale", chunks, channels=1, tile=3)
  np.testing.assert_array_equal(mean, np.zeros(3))
  np.testing.assert_array_equal(std, np.ones(3))
  mean, std = statistics.compute("none", chunks, channels=1, tile=1)
  np.testing.assert_allclose(std, [1 / 255])
  mean, std = statistics.compute("standardize", chunks, channels=1, tile=3)
  np.testing.assert_allclose(mean, [0.25] * 3)
  np.testing.assert_allclose(std, [np.sqrt(0.1875)] * 3)
  # A constant pixel (std 0) is divided by 1.
  _, std = statistics.compute(
      "standardize_pixel", lambda: iter([np.full((4, 2, 2, 1), 7, np.uint8)]),
      channels=1, tile=1)
  assert std.shape == (2, 2, 1) and (std == 1).all()


def test_lecture004_validation_is_the_first_5000_as_the_lecture():
  # Lecture 004: X_valid, X_train = X_train_full[:5000], X_train_full[5000:].
  from jaxcnn import experiment_bases  # pylint: disable=g-import-not-at-top
  cfg = experiment_bases.lecture004_mlp("mlp", num_epochs=1).dataset
  parts = splits.plan(cfg, _count)
  assert parts["validation"].split.split == "train[0:5000]"
  assert parts["train"].split == "train[5000:60000]"
  # The default ('end', Keras' validation_split) carves the last 5,000.
  cfg.validation_from = "end"
  parts = splits.plan(cfg, _count)
  assert parts["validation"].split.split == "train[55000:60000]"
  assert parts["train"].split == "train[0:55000]"
  # RESULTS.md says which 5,000 its (earlier) runs held out.
  results = (pathlib.Path(__file__).parents[1] / "RESULTS.md").read_text()
  assert "The runs\nbelow held out the last 5,000" in results


def test_validation_from_is_checked():
  c = config_lib.defaults()
  c.dataset.validation_from = "begin"
  with pytest.raises(config_lib.ConfigError, match="validation_from' must be one of end, start"):
    config_lib.validate(c)
