"""Populations: N members of one experiment trained by one compiled program."""

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
  c = population_config(2, "regularization.l2=0,1e-4", mode="vmap")
  with pytest.raises(config_lib.PopulationError,
                     match=r"'regularization.l2' can vary only with .*'loop'"):
    config_lib.validate(c)
  c = population_config(2, "optimizer.learning_rate=1e-3,1e-2", mode="vmap")
  c.schedule.name = "exponential"
  with pytest.raises(config_lib.PopulationError, match="constant or plateau schedule"):
    config_lib.validate(c)


def test_auto_mode_rule():
  seeds = config_lib.validate(population_config(2))
  l2 = config_lib.validate(population_config(2, "regularization.l2=0,1e-4"))
  assert config_lib.population_mode(seeds, "cpu") == "loop"
  assert config_lib.population_mode(seeds, "gpu") == "vmap"
  assert config_lib.population_mode(l2, "tpu") == "loop"
  assert config_lib.population_mode(population_config(2, mode="vmap"), "cpu") == "vmap"
