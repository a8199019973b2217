"""Populations through the real loop: members equal their single runs, resume, logs.

Each test trains tiny CNNs on scikit-learn's digits (offline, every machine)
with 4 fake CPU devices (tests/conftest.py).
"""

import functools
import json
import os

import jax
import numpy as np
import pytest

from jaxcnn import checkpoint as checkpoint_lib
from jaxcnn import config as config_lib
from jaxcnn import models
from jaxcnn.data import digits
from jaxcnn import parallel
from jaxcnn import state as state_lib
from jaxcnn import train

import tree_asserts

# A member and its single run compute the same float32 operations in two
# compiled programs that XLA may fuse differently: after 16 steps they agree
# to rounding error, not bit for bit. Under 'vmap' the members' convolutions
# become one grouped convolution that sums in another order; Adam divides
# by the root of the squared gradients, which turns rounding differences in
# near-zero gradients into visible ones, and BatchNorm divides a nearly
# constant channel by its tiny spread, so 'vmap' is held to a looser bound
# (still far below the differences between members: the tests check those),
# looser again for Adam's moments, which sum those gradients.
RTOL, ATOL = 1e-4, 1e-5
TOLERANCE = {"loop": (RTOL, ATOL), "vmap": (1e-3, 3e-4)}
OPT_STATE_TOLERANCE = {"loop": (RTOL, ATOL), "vmap": (3e-2, 3e-3)}


def tiny_config(data_dir, population=3, vary="", mode="auto"):
  """cnn_small_bn + dropout: BatchNorm statistics and dropout keys both count."""
  c = config_lib.defaults()
  c.dataset.name = "sklearn_digits"
  c.dataset.data_dir = data_dir
  c.dataset.num_train_examples = 160  # 128 train (8 steps of 16) + 32 validation
  c.dataset.validation_split = 32
  c.dataset.num_test_examples = 100
  c.model.name = "cnn_small_bn"
  c.model.dropout_rate = 0.3
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.training.batch_size = 16
  c.training.num_epochs = 2
  c.training.progress_bar = False
  c.training.population = population
  c.population.vary = vary
  c.training.population_mode = mode
  return c


assert_trees_close = functools.partial(tree_asserts.assert_trees_close,
                                       rtol=RTOL, atol=ATOL)


# Through the whole loop, one case per mode and per kind of varied value; the
# step-level tests (tests/test_population.py) cover each mode with seeds and
# learning rates on 4 devices and on one.
@pytest.mark.parametrize("vary, mode", [
    ("", "loop"),
    ("optimizer.learning_rate=1e-3,3e-3,1e-2", "vmap"),
    ("regularization.l2=0,1e-3,0;training.label_smoothing=0,0,0.1;"
     "regularization.l1=0,0,1e-4", "vmap"),
], ids=["seeds-loop", "learning_rates-vmap", "l1_l2_label_smoothing-vmap"])
def test_each_member_ends_as_its_single_run(digits_dir, tmp_path, vary, mode):
  config = tiny_config(digits_dir, vary=vary, mode=mode)
  state, history = train.train_and_evaluate(config, str(tmp_path / "population"))
  assert state_lib.population_size(state) == 3
  for i, member_config in enumerate(config_lib.member_configs(config)):
    single, single_history = train.train_and_evaluate(member_config, str(tmp_path / f"m{i}"))
    got = state_lib.member(state, i)
    rtol, atol = TOLERANCE[mode]
    assert int(got.step) == int(single.step) == 16
    assert_trees_close(got.params, single.params, rtol=rtol, atol=atol)
    assert_trees_close(got.batch_stats, single.batch_stats, rtol=rtol, atol=atol)
    opt_rtol, opt_atol = OPT_STATE_TOLERANCE[mode]
    assert_trees_close(got.opt_state, single.opt_state, rtol=opt_rtol, atol=opt_atol)
    np.testing.assert_allclose(history["members"][i]["loss"], single_history["loss"],
                               rtol=rtol)
    assert history["members"][i]["test_accuracy"] == pytest.approx(
        single_history["test_accuracy"], abs=0.011)  # one of 100 examples
  # The members differ far more than the tolerance.
  a, b = (state_lib.member(state, i).params for i in (0, 2))
  assert max(float(np.abs(x - y).max())
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))) > 1e-2


def test_history_results_and_tensorboard_know_members(digits_dir, tmp_path, capsys):
  config = tiny_config(digits_dir, population=2)
  _, history = train.train_and_evaluate(config, str(tmp_path))
  out = capsys.readouterr().out
  assert "Population: 2 members" in out and "(mean ± std of 2 members" in out
  saved = json.loads((tmp_path / "history.json").read_text())
  assert len(saved["members"]) == 2 and len(saved["loss"]) == 2
  losses = np.asarray([m["loss"] for m in saved["members"]])
  np.testing.assert_allclose(saved["loss"], losses.mean(0), rtol=1e-6)
  np.testing.assert_allclose(saved["loss_std"], losses.std(0, ddof=1), rtol=1e-6)
  results = json.loads((tmp_path / "results.json").read_text())
  accs = results["test_accuracy_members"]
  assert results["population"] == 2 and results["seeds"] == [0, 1]
  assert results["test_accuracy"] == pytest.approx(np.mean(accs))
  assert results["test_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
  assert history["test_accuracy"] == pytest.approx(np.mean(accs))
  from tensorboard.backend.event_processing import event_accumulator
  events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
  events.Reload()
  tags = set(events.Tags()["tensors"]) | set(events.Tags()["scalars"])
  assert {"epoch/loss", "epoch/loss/member_0", "epoch/loss/member_1",
          "epoch/loss_std", "test/accuracy/member_1"} <= tags


def test_sigterm_then_rerun_equals_uninterrupted(digits_dir, tmp_path, signal_at_step):
  config = tiny_config(digits_dir, population=2)
  full, full_history = train.train_and_evaluate(config, str(tmp_path / "full"))
  disarm = signal_at_step(11, factory="make_population_step")  # Mid-epoch 2 of 8 steps.
  workdir = str(tmp_path / "interrupted")
  with pytest.raises(train.Preempted):
    train.train_and_evaluate(config, workdir)
  steps = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints")).all_steps()
  assert steps == [8, 11]
  disarm()
  resumed, resumed_history = train.train_and_evaluate(config, workdir)
  assert_trees_close(resumed.params, full.params)
  assert_trees_close(resumed.opt_state, full.opt_state)
  np.testing.assert_allclose(resumed_history["loss"], full_history["loss"], rtol=1e-5)
  for a, b in zip(resumed_history["members"], full_history["members"]):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)

  config.training.population = 3
  with pytest.raises(config_lib.PopulationError,
                     match=r"population of 2 member.*this command asks for 3"):
    train.train_and_evaluate(config, workdir)


@pytest.fixture(scope="module")
def population_workdir(digits_dir, tmp_path_factory):
  """A finished 2-member population: (config, workdir)."""
  config = tiny_config(digits_dir, population=2)
  config.training.num_epochs = 1
  workdir = str(tmp_path_factory.mktemp("population"))
  train.train_and_evaluate(config, workdir)
  return config, workdir


def test_eval_mode_scores_every_member_or_the_one_named(population_workdir):
  from jaxcnn import run as run_lib
  config, workdir = population_workdir
  results = json.loads(open(os.path.join(workdir, "results.json")).read())
  everyone = run_lib.run(config, workdir, "eval")
  assert [m["accuracy"] for m in everyone["members"]] == pytest.approx(
      results["test_accuracy_members"])
  assert everyone["accuracy"] == pytest.approx(results["test_accuracy"])
  assert everyone["accuracy_std"] == pytest.approx(results["test_accuracy_std"])
  one = run_lib.run(config, workdir, "eval", member=1)
  assert one["accuracy"] == pytest.approx(results["test_accuracy_members"][1])
  with pytest.raises(config_lib.PopulationError, match=r"population of 2 members.*0 to 1"):
    run_lib.run(config, workdir, "predict_mc")
  with pytest.raises(config_lib.PopulationError, match=r"\(got 2\)"):
    run_lib.run(config, workdir, "eval", member=2)
  with pytest.raises(config_lib.PopulationError, match="training trains every member"):
    run_lib.run(config, workdir, "train", member=0)


def test_member_variables_are_the_members_and_other_modes_write_per_member(
    population_workdir):
  from jaxcnn import inference
  from jaxcnn import run as run_lib
  from jaxcnn import visualize
  config, workdir = population_workdir
  _, v1, member_config = state_lib.load_for_inference(workdir, member=1)
  assert member_config.seed == 1 and member_config.training.population == 1
  _, v0, _ = state_lib.load_for_inference(workdir, member=0)
  assert not np.allclose(v0["params"]["dense"]["kernel"], v1["params"]["dense"]["kernel"])
  resolved = run_lib.workdir_config(workdir, config)
  resolved.inference.num_samples = 3
  inference.report(resolved, workdir, member=1)
  assert os.listdir(os.path.join(workdir, "mc_dropout", "member_1"))
  paths = visualize.plot_workdir(resolved, workdir, member=0, num_images=1,
                                 num_patterns=2, pattern_steps=1, classic_kernels=False)
  assert paths and all(os.sep + os.path.join("plots", "member_0") + os.sep in p
                       for p in paths)


def test_a_diverging_population_stops_naming_every_members_loss(digits_dir, tmp_path):
  config = tiny_config(digits_dir, population=2)
  config.optimizer.name = "sgd"
  config.population.vary = "optimizer.learning_rate=1e-2,1e30"
  with pytest.raises(train.NonFiniteLossError,
                     match=r"Non-finite loss at step \d+ .*loss=\[.*\].*learning rate=\["):
    train.train_and_evaluate(config, str(tmp_path))


def test_progress_bar_shows_mean_and_spread():
  assert train._spread(0.25, ".3f") == "0.250"
  assert train._spread(np.array([0.2, 0.4]), ".3f") == "0.300±0.141"


def test_a_vary_that_changes_the_optimizer_state_fails_before_training(digits_dir, tmp_path):
  config = tiny_config(digits_dir, population=2, vary="optimizer.weight_decay=0,0.01")
  with pytest.raises(config_lib.PopulationError,
                     match=r"member 1's train state differs.*optimizer.weight_decay=0,0.01"):
    train.build(config, str(tmp_path))


def test_a_population_too_large_for_memory_fails_before_training_with_the_largest_n(
    digits_dir, tmp_path, monkeypatch):
  config = tiny_config(digits_dir, population=8)
  shape = (digits.IMAGE_SIZE, digits.IMAGE_SIZE, 1)
  model = models.create(config.model, num_classes=10)
  abstract = jax.eval_shape(lambda: state_lib.create(
      config, models.create(config.model, num_classes=10),
      state_lib.optimizer(config, 8), shape))
  per_member = jax.local_device_count() * state_lib.train_step_bytes(
      model, abstract, (config.training.batch_size // jax.device_count(),) + shape)
  # Room for exactly 3 members within the 90% the check allows.
  monkeypatch.setattr(parallel, "device_memory_bytes",
                      lambda: (int(3.5 * per_member / 0.9), "a test's budget"))
  with pytest.raises(config_lib.PopulationError,
                     match=r"population=8 does not fit in memory: .* estimated .*GiB.*"
                           r"a test's budget; the largest population that fits is 3"):
    train.build(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # Nothing written: no config.json, no checkpoint.
  config.training.population = 3
  train.build(config, str(tmp_path))  # Three fit.


def test_train_step_estimate_is_near_xlas_own_memory_analysis():
  """The estimate must track what XLA plans for the compiled step (one device)."""
  for name in ("mnist_cnn", "cnn_small_bn", "mlp"):
    c = config_lib.defaults()
    c.model.name = name
    model = models.create(c.model, num_classes=10)
    tx = state_lib.optimizer(c, 10)
    abstract = jax.eval_shape(lambda: state_lib.create(c, model, tx, (28, 28, 1)))
    estimate = state_lib.train_step_bytes(model, abstract, (64, 28, 28, 1))
    step = parallel.make_train_step(
        models.create(c.model, num_classes=10, axis_name=parallel.AXIS), tx, pmap=False, donate_state=False)
    batch = {"image": jax.ShapeDtypeStruct((1, 64, 28, 28, 1), np.float32),
             "label": jax.ShapeDtypeStruct((1, 64), np.int32)}
    analysis = jax.jit(step).lower(abstract, batch).compile().memory_analysis()
    xla = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
           + analysis.temp_size_in_bytes)
    assert 0.5 * xla <= estimate <= 2 * xla, (name, estimate, xla)
