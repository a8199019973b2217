"""optim.create's config handling: ConfigDicts, Keras names, clear errors."""

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from jaxcnn import config as config_lib
from jaxcnn import optim
from jaxcnn.config import ConfigError

PARAMS = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}}


def _create(opt, schedule=None, **kwargs):
  return optim.create(opt, schedule, **{"steps_per_epoch": 4, "num_epochs": 3,
                                        **kwargs})


def test_default_config_builds_and_runs():
  c = config_lib.defaults()
  tx = optim.create(c.optimizer, c.schedule, steps_per_epoch=10,
                    num_epochs=c.training.num_epochs, freeze=c.regularization.freeze)
  state = tx.init(PARAMS)
  updates, state = tx.update(jax.tree.map(jnp.ones_like, PARAMS), state, PARAMS)
  assert float(optim.learning_rate(state)) == pytest.approx(1e-3)
  # rmsprop's first step: lr * g / sqrt((1 - rho) g² + eps).
  assert float(updates["dense"]["kernel"][0, 0]) == pytest.approx(
      -1e-3 / (0.1 + 1e-7) ** 0.5, rel=1e-6)


def test_config_dict_with_experiment_keys():
  c = config_lib.defaults()
  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd", learning_rate=0.01, momentum=0.9, nesterov=True, clipnorm=1.0))
  c.schedule = ml_collections.ConfigDict(dict(name="plateau", factor=0.5, patience=5))
  config_lib.validate(c)
  tx = optim.create(c.optimizer, c.schedule, steps_per_epoch=5, num_epochs=5)
  state = tx.init(PARAMS)
  assert float(optim.learning_rate(state)) == pytest.approx(0.01)


@pytest.mark.parametrize("opt,match", [
    (dict(name="sgdm"), "Unknown optimizer 'sgdm'. Valid optimizers: adagrad, "
                        "adam, adamax, nadam, rmsprop, sgd"),
    (dict(learning_rate=0.1), "'optimizer.name' is missing"),
    (dict(name="sgd", beta_2=0.99), r"'optimizer.beta_2' in optimizer 'sgd'.*"
     r"'beta_2' is a hyperparameter of adam, adamax, nadam"),
    (dict(name="sgd", momentun=0.9), "Did you mean 'momentum'"),
    (dict(name="adam", rho=0.9), "'rho' is a hyperparameter of rmsprop"),
    (dict(name="adagrad", nesterov=True), "hyperparameter of sgd"),
    (dict(name="adam", learning_rate=-0.001), "'optimizer.learning_rate' must be >= 0"),
    (dict(name="adam", learning_rate="1e-3"), "must be a number"),
    (dict(name="adam", beta_1=1.0), "'optimizer.beta_1' must be >= 0 and < 1"),
    (dict(name="sgd", momentum=-0.5), "'optimizer.momentum'"),
    (dict(name="sgd", nesterov=True), "needs 'optimizer.momentum' > 0"),
    (dict(name="rmsprop", centered="yes"), "True or False"),
    (dict(name="adam", weight_decay=-1e-4), "'optimizer.weight_decay'"),
    (dict(name="adam", clipnorm=1.0, global_clipnorm=1.0), "Only one of"),
])
def test_bad_optimizer_configs(opt, match):
  with pytest.raises(ConfigError, match=match):
    _create(opt)


def test_bad_run_lengths():
  with pytest.raises(ConfigError, match="steps_per_epoch must be an integer >= 1"):
    _create(dict(name="adam"), steps_per_epoch=0)
  with pytest.raises(ConfigError, match="num_epochs"):
    _create(dict(name="adam"), num_epochs=2.5)


def test_injected_rate_is_float32_and_settable():
  tx = _create(dict(name="adam", learning_rate=0.01))
  state = tx.init(PARAMS)
  assert optim.learning_rate(state).dtype == jnp.float32
  state = optim.set_hyperparam(state, "learning_rate", 0.5)
  updates, state = tx.update(jax.tree.map(jnp.ones_like, PARAMS), state, PARAMS)
  # Adam's first step is about -lr per element.
  assert float(updates["dense"]["kernel"][0, 0]) == pytest.approx(-0.5, rel=1e-3)
