"""Populations: N members of one experiment trained by one compiled program."""

import functools
import pytest

from jaxcnn import config as config_lib


def population_config(n, vary="", mode="auto"):
  c = config_lib.defaults()
  c.training.population = n
  c.training.population_mode = mode
  c.population.vary = vary
  return c


def test_default_population_is_one_member_with_no_vary():
  c = config_lib.validate(config_lib.defaults())
  assert c.training.population == 1 and c.population.vary == ""
  assert [m.seed for m in config_lib.member_configs(c)] == [0]


def test_seed_population_gives_member_i_seed_plus_i():
  c = population_config(3)
  c.seed = 7
  members = config_lib.member_configs(config_lib.validate(c))
  assert [m.seed for m in members] == [7, 8, 9]
  assert all(m.training.population == 1 and m.population.vary == "" for m in members)


def test_varied_keys_take_one_value_per_member_and_keep_the_seed():
  c = population_config(2, "optimizer.learning_rate=1e-3,1e-2; regularization.l2=0,1e-4")
  members = config_lib.member_configs(config_lib.validate(c))
  assert [m.optimizer.learning_rate for m in members] == [1e-3, 1e-2]
  assert [m.regularization.l2 for m in members] == [0.0, 1e-4]
  assert [m.seed for m in members] == [0, 0]
  c = population_config(2, "seed=3,5;training.label_smoothing=0,0.1")
  members = config_lib.member_configs(config_lib.validate(c))
  assert [m.seed for m in members] == [3, 5] and isinstance(members[0].seed, int)


@pytest.mark.parametrize("vary, n, match", [
    ("model.name=1,2", 2, r"cannot vary 'model.name'.*those are seed, optimizer"),
    ("training.batch_size=32,64", 2, r"cannot vary 'training.batch_size'"),
    ("optimizer.learning_rate=1e-3,1e-2,1e-1", 2,
     r"gives 3 values for 'optimizer.learning_rate' but training.population=2"),
    ("optimizer.learning_rate=1e-3,1e-2;regularization.l2=0", 2,
     r"gives 1 values for 'regularization.l2'.*optimizer.learning_rate: 2, "
     r"regularization.l2: 1"),
    ("optimizer.learning_rate=1e-3,1e-2", 1, r"training.population=1"),
    ("optimizer.learning_rate", 2, r"is not 'key=v1,v2"),
    ("optimizer.learning_rate=a,b", 2, r"must be numbers"),
    ("seed=1.5,2", 2, r"seeds must be integers"),
    ("seed=1,2;seed=3,4", 2, r"names 'seed' twice"),
])
def test_bad_vary_is_one_clear_population_error(vary, n, match):
  with pytest.raises(config_lib.PopulationError, match=match):
    config_lib.validate(population_config(n, vary))


def test_population_size_and_mode_are_checked():
  with pytest.raises(config_lib.ConfigError, match="'training.population' must be >= 1"):
    config_lib.validate(population_config(0))
  with pytest.raises(config_lib.ConfigError, match="one of auto, vmap, loop"):
    config_lib.validate(population_config(2, mode="scan"))


def test_vmap_mode_refuses_keys_only_a_loop_can_vary():
  c = population_config(2, "model.dropout_rate=0.1,0.2", mode="vmap")
  with pytest.raises(config_lib.PopulationError,
                     match=r"'model.dropout_rate' can vary only with .*'loop'"):
    config_lib.validate(c)
  c = population_config(2, "optimizer.learning_rate=1e-3,1e-2", mode="vmap")
  c.schedule.name = "exponential"
  with pytest.raises(config_lib.PopulationError, match="constant or plateau schedule"):
    config_lib.validate(c)


def test_auto_mode_rule():
  seeds = config_lib.validate(population_config(2))
  l2 = config_lib.validate(population_config(2, "model.dropout_rate=0.1,0.2"))
  assert config_lib.population_mode(seeds, "cpu") == "loop"
  assert config_lib.population_mode(seeds, "gpu") == "vmap"
  assert config_lib.population_mode(l2, "tpu") == "loop"
  assert config_lib.population_mode(population_config(2, mode="vmap"), "cpu") == "vmap"


# --- the population step equals each member's single run ---------------------

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxcnn import models  # noqa: E402
from jaxcnn import optim  # noqa: E402
from jaxcnn import parallel  # noqa: E402
from jaxcnn import state as state_lib  # noqa: E402

import tree_asserts  # noqa: E402

# Member i of a population and its single run compute the same float32
# operations in different compiled programs (XLA may fuse and reorder them
# differently), so after a few steps they agree to rounding, not bit for bit.
RTOL, ATOL = 1e-4, 1e-5


assert_trees_close = functools.partial(tree_asserts.assert_trees_close,
                                       rtol=RTOL, atol=ATOL)


def step_config(vary=""):
  """cnn_small_bn with dropout: BatchNorm statistics and dropout keys both matter."""
  c = config_lib.defaults()
  c.model.name = "cnn_small_bn"
  c.model.dropout_rate = 0.3
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.training.population = 3
  c.population.vary = vary
  return config_lib.validate(c)


def member_step_args(member_config, params):
  model = models.create(member_config.model, num_classes=10, axis_name="batch")
  tx = state_lib.optimizer(member_config, 10)
  rules = optim.build_rules(models.param_rules(model), params,
                            member_config.regularization)
  return {"model": model, "tx": tx,
          "penalty_fn": lambda p: optim.penalty(p, rules),
          "project_fn": lambda p: optim.constraints.project(p, rules),
          "label_smoothing": member_config.training.label_smoothing}


def member_states(config):
  members = config_lib.member_configs(config)
  eval_model = models.create(config.model, num_classes=10)
  states = [state_lib.create(m, eval_model, state_lib.optimizer(m, 10), (28, 28, 1))
            for m in members]
  args = [member_step_args(m, s.params) for m, s in zip(members, states)]
  return members, states, args


def batches(num_members, steps=3, batch=32, seed=0):
  """Per member its own batches: [steps] of {'image': [B, ...], 'label': [B]}."""
  rng = np.random.default_rng(seed)
  return [[{"image": rng.normal(size=(batch, 28, 28, 1)).astype(np.float32),
            "label": rng.integers(0, 10, size=(batch,)).astype(np.int32)}
           for _ in range(steps)] for _ in range(num_members)]


def on_devices(batch, d):
  return jax.tree.map(lambda x: x.reshape((d, -1) + x.shape[1:]), batch)


def run_population(config, mode, devices, pmap=True):
  _, states, args = member_states(config)
  data = batches(len(states))
  step = parallel.make_population_step(args, mode=mode, pmap=pmap)
  state, metrics = state_lib.stack(states), []
  for t in range(len(data[0])):
    batch = jax.tree.map(lambda *xs: np.stack(xs),
                         *[on_devices(d[t], devices) for d in data])
    state, m = step(state, batch)
    metrics.append(m)
  return state, metrics


def run_single(config, i, devices, pmap=True):
  members, states, args = member_states(config)
  data = batches(len(states))
  step = parallel.make_train_step(**args[i], pmap=pmap)
  state = states[i]
  for b in data[i]:
    state, _ = step(state, on_devices(b, devices))
  return state


@pytest.mark.parametrize("vary", ["", "optimizer.learning_rate=1e-3,3e-3,1e-2"],
                         ids=["seeds", "learning_rates"])
@pytest.mark.parametrize("mode", ["loop", "vmap"])
def test_population_step_member_i_equals_its_single_run_on_4_devices(vary, mode):
  config = step_config(vary)
  population, metrics = run_population(config, mode, devices=4)
  assert metrics[-1]["loss"].shape == (3,)
  singles = [run_single(config, i, devices=4) for i in range(3)]
  for i, single in enumerate(singles):
    got = state_lib.member(population, i)
    assert int(got.step) == 3
    assert_trees_close(got.params, single.params)
    assert_trees_close(got.batch_stats, single.batch_stats)
    assert_trees_close(got.opt_state, single.opt_state)
  # The members differ: the test cannot pass with one member copied thrice.
  a, b = (state_lib.member(population, i).params for i in (0, 1))
  assert max(float(np.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a),
                                                      jax.tree.leaves(b))) > 1e-3


@pytest.mark.parametrize("vary", ["", "optimizer.learning_rate=1e-3,3e-3,1e-2"],
                         ids=["seeds", "learning_rates"])
@pytest.mark.parametrize("mode", ["loop", "vmap"])
def test_population_step_member_i_equals_its_single_run_on_1_device(vary, mode):
  """The one-device path (pmap=False, as --debug_nans runs it)."""
  config = step_config(vary)
  population, _ = run_population(config, mode, devices=4, pmap=False)
  for i in range(3):
    single = run_single(config, i, devices=4, pmap=False)
    assert_trees_close(state_lib.member(population, i).params, single.params)
    assert_trees_close(state_lib.member(population, i).batch_stats, single.batch_stats)


def test_loop_mode_varies_regularization_and_label_smoothing_exactly():
  config = step_config("regularization.l2=0,1e-3,0;training.label_smoothing=0,0,0.1;"
                       "model.dropout_rate=0.3,0.3,0.5")
  population, _ = run_population(config, "loop", devices=4)
  for i in range(3):
    assert_trees_close(state_lib.member(population, i).params,
                       run_single(config, i, devices=4).params)


def test_members_whose_states_differ_in_shape_are_refused():
  c = config_lib.defaults()
  c.optimizer.name = "sgd"
  c.training.population = 2
  c.population.vary = "optimizer.momentum=0,0.9"
  with pytest.raises(config_lib.PopulationError, match="cannot vary 'optimizer.momentum'"):
    config_lib.validate(c)
  members = [config_lib.defaults(), config_lib.defaults()]
  members[1].optimizer.name = "adam"
  model = models.create("mlp", num_classes=10)
  states = [state_lib.create(m, model, state_lib.optimizer(m, 10), (28, 28, 1))
            for m in members]
  with pytest.raises(config_lib.PopulationError, match="member 1.s train state differs"):
    state_lib.stack(states)
