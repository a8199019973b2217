"""Transfer from a population workdir: seed-matched members, a named member, errors.

Tiny CNNs on scikit-learn's digits (offline) with 4 fake CPU devices
(tests/conftest.py). The source is a population of 2 trained for one epoch;
the targets fine-tune its last convolution and head.
"""

import functools
import jax
import numpy as np
import pytest

from jaxcnn import config as config_lib
from jaxcnn import models
from jaxcnn.models.freezing import TransferError
from jaxcnn import state as state_lib
from jaxcnn import train
from jaxcnn import transfer

import tree_asserts

# A population member and its single run compute the same float32 operations
# in two compiled programs that XLA may fuse differently: after 8 steps they
# agree to rounding error, not bit for bit (tests/test_population_train.py
# holds 'loop' populations to the same bounds, after 16 steps).
RTOL, ATOL = 1e-4, 1e-5


def tiny_config(data_dir, population=1):
  c = config_lib.defaults()
  c.dataset.name = "sklearn_digits"
  c.dataset.data_dir = data_dir
  c.dataset.num_train_examples = 160  # 128 train (8 steps of 16) + 32 validation
  c.dataset.validation_split = 32
  c.dataset.num_test_examples = 100
  c.model.name = "cnn_small_bn"
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.training.batch_size = 16
  c.training.num_epochs = 1
  c.training.progress_bar = False
  c.training.population = population
  c.training.population_mode = "loop"
  return c


def finetune_config(data_dir, source, population=1, source_member=-1):
  """Starts from ``source``; the first convolution (and its BatchNorm) frozen."""
  c = tiny_config(data_dir, population)
  c.seed = 10  # Not the source's seeds: what is copied must come from the source.
  c.transfer.source = source
  c.transfer.source_member = source_member
  c.regularization.freeze = ("conv2d", "batch_normalization")
  c.optimizer.learning_rate = 1e-3
  return c


@pytest.fixture(scope="module")
def population_source(digits_dir, tmp_path_factory):
  """A trained population of 2 (seeds 0 and 1): the source workdir."""
  workdir = str(tmp_path_factory.mktemp("population_source"))
  train.train_and_evaluate(tiny_config(digits_dir, population=2), workdir)
  return workdir


assert_trees_close = functools.partial(tree_asserts.assert_trees_close,
                                       rtol=RTOL, atol=ATOL)


def max_difference(a, b):
  return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_population_from_population_equals_single_runs_from_matching_members(
    digits_dir, population_source, tmp_path):
  sources = [state_lib.load_for_inference(population_source, member=i)[1]
             for i in range(2)]
  assert max_difference(sources[0]["params"], sources[1]["params"]) > 1e-2
  state, _ = train.train_and_evaluate(
      finetune_config(digits_dir, population_source, population=2),
      str(tmp_path / "population"))
  for i in range(2):
    member = state_lib.member(state, i)
    # The frozen layers are the source member's own (seed-matched), bit for bit.
    for name in ("conv2d", "batch_normalization"):
      for a, b in zip(jax.tree.leaves(member.params[name]),
                      jax.tree.leaves(sources[i]["params"][name])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(member.batch_stats["batch_normalization"]["mean"],
                                  sources[i]["batch_stats"]["batch_normalization"]["mean"])
    # And the whole member is the single run started from that source member.
    single_config = config_lib.member_configs(
        finetune_config(digits_dir, population_source, population=2))[i]
    single_config.transfer.source_member = i
    single, _ = train.train_and_evaluate(single_config, str(tmp_path / f"single{i}"))
    assert int(member.step) == int(single.step) == 8
    assert_trees_close(member.params, single.params)
    assert_trees_close(member.batch_stats, single.batch_stats)
    assert_trees_close(member.opt_state, single.opt_state)
  # Each member moved away from its start (the trainable layers trained).
  assert max_difference(state_lib.member(state, 0).params["dense_1"],
                        sources[0]["params"]["dense_1"]) > 1e-4


def _start(config):
  """``from_pretrained`` of a single run or of each member, as ``train.start``."""
  model = models.create(config.model, num_classes=10)
  members = (config_lib.member_configs(config) if config.training.population > 1
             else [config])
  out, cache = [], {}
  for i, c in enumerate(members):
    tx = state_lib.optimizer(c, steps_per_epoch=8)
    fresh = state_lib.create(c, model, tx, (28, 28, 1))
    member_of = (i, len(members)) if len(members) > 1 else None
    out.append(state_lib.from_pretrained(c, model, fresh, tx, verbose=False,
                                         member_of=member_of, sources=cache))
  return out


def test_named_source_member_starts_every_member_from_it(digits_dir, population_source):
  source = state_lib.load_for_inference(population_source, member=1)[1]
  config = finetune_config(digits_dir, population_source, population=3, source_member=1)
  for state in _start(config):
    np.testing.assert_array_equal(state.params["conv2d_1"]["kernel"],
                                  source["params"]["conv2d_1"]["kernel"])


@pytest.fixture(scope="module")
def single_source(digits_dir, tmp_path_factory):
  """A trained single run (2 steps: only its weights matter)."""
  workdir = str(tmp_path_factory.mktemp("single_source"))
  config = tiny_config(digits_dir)
  config.dataset.num_train_examples = 48
  config.dataset.validation_split = 16
  train.train_and_evaluate(config, workdir)
  return workdir


def test_single_run_source_starts_every_member(digits_dir, single_source):
  source = state_lib.load_for_inference(single_source)[1]
  states = _start(finetune_config(digits_dir, single_source, population=3))
  for state in states:
    np.testing.assert_array_equal(state.params["conv2d_1"]["kernel"],
                                  source["params"]["conv2d_1"]["kernel"])
  with pytest.raises(TransferError, match=r"transfer.source_member=2, but transfer.source "
                     r".* holds a single run, not a population"):
    _start(finetune_config(digits_dir, single_source, source_member=2))


def test_population_source_errors_name_the_key_and_the_size(
    digits_dir, population_source, tmp_path):
  # A single run must name the member.
  with pytest.raises(TransferError, match=r"holds a population of 2 members: name the "
                     r"one to start from with transfer.source_member=j \(0 to 1\)"):
    _start(finetune_config(digits_dir, population_source))
  with pytest.raises(TransferError, match=r"transfer.source_member=2 is out of range: "
                     r".* holds a population of 2 members; choose 0 to 1"):
    _start(finetune_config(digits_dir, population_source, source_member=2))
  # A population of another size: what would work, before anything trains.
  with pytest.raises(TransferError, match=r"holds a population of 2 members, but this run "
                     r"trains 3: train training.population=2 .* or start every member "
                     r"from one source member with transfer.source_member=j"):
    train.train_and_evaluate(finetune_config(digits_dir, population_source, population=3),
                             str(tmp_path / "three"))
  assert not (tmp_path / "three" / "history.json").exists()
  # The key itself: a range, and a source to apply to.
  with pytest.raises(config_lib.ConfigError, match=r"'transfer.source_member' must be >= -1"):
    config_lib.validate(finetune_config(digits_dir, population_source, source_member=-2))
  with pytest.raises(config_lib.ConfigError, match=r"transfer.source is empty"):
    config_lib.validate(finetune_config(digits_dir, "", source_member=0))


def feature_config(data_dir, source, population=1, source_member=-1):
  """Feature extraction: the convolutions and BatchNorms frozen, dropout in the head."""
  c = finetune_config(data_dir, source, population, source_member)
  c.model.dropout_rate = 0.3
  c.regularization.freeze = transfer.freeze_before(c.model, "dense")
  c.transfer.feature_extraction = True
  c.training.num_epochs = 2
  return c


def test_population_feature_extraction_equals_single_feature_runs(
    digits_dir, single_source, tmp_path):
  """One base's cached features, each member's own order, dropout keys and head."""
  config = feature_config(digits_dir, single_source, population=2)
  state, history = transfer.train_head_on_features(config, str(tmp_path / "population"))
  assert state_lib.population_size(state) == 2
  for i, member_config in enumerate(config_lib.member_configs(config)):
    single, single_history = transfer.train_head_on_features(
        member_config, str(tmp_path / f"single{i}"))
    member = state_lib.member(state, i)
    assert int(member.step) == int(single.step) == 16
    assert_trees_close(member.params, single.params)
    assert_trees_close(member.batch_stats, single.batch_stats)
    np.testing.assert_allclose(history["members"][i]["loss"], single_history["loss"],
                               rtol=RTOL)
    assert history["members"][i]["test_accuracy"] == pytest.approx(
        single_history["test_accuracy"], abs=0.011)  # one of 100 examples
  # The heads differ (own seeds); the base is the one source's.
  assert max_difference(state_lib.member(state, 0).params["dense"],
                        state_lib.member(state, 1).params["dense"]) > 1e-2
  np.testing.assert_array_equal(state_lib.member(state, 1).params["conv2d_1"]["kernel"],
                                state_lib.load_for_inference(single_source)[1]
                                ["params"]["conv2d_1"]["kernel"])


def test_population_feature_extraction_refuses_one_base_per_member(
    digits_dir, population_source, tmp_path):
  with pytest.raises(TransferError, match=r"caches one base's features for every member, "
                     r"but transfer.source .* holds a population of 2.*"
                     r"transfer.source_member=j, 0 to 1"):
    transfer.train_head_on_features(feature_config(digits_dir, population_source, 2),
                                    str(tmp_path / "a"))
  assert not (tmp_path / "a" / "config.json").exists()
  # Named, one source member serves every member.
  config = feature_config(digits_dir, population_source, 2, source_member=1)
  config.training.num_epochs = 1
  state, _ = transfer.train_head_on_features(config, str(tmp_path / "b"))
  source = state_lib.load_for_inference(population_source, member=1)[1]
  for i in range(2):
    np.testing.assert_array_equal(state_lib.member(state, i).params["conv2d"]["kernel"],
                                  source["params"]["conv2d"]["kernel"])
