"""Config validation: bad keys fail before anything compiles, with a hint."""

import ml_collections
import pytest

from jaxcnn import config as config_lib
from jaxcnn import parallel


def test_defaults_validate():
  config_lib.validate(config_lib.defaults())


def test_misspelled_key_names_closest():
  c = config_lib.defaults()
  c.training.batchsize = 32
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'batch_size'"):
    config_lib.validate(c)


def test_misspelled_section_names_closest():
  c = config_lib.defaults()
  c.trainig = {"batch_size": 1}
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'training'"):
    config_lib.validate(c)


def test_wrong_type_is_named():
  # Assigning to a typed field fails at once (ml_collections); a section
  # replaced whole (e.g. from JSON) is caught by validate.
  c = config_lib.defaults()
  with pytest.raises(TypeError, match="num_epochs"):
    c.training.num_epochs = "ten"
  section = c.training.to_dict()
  section["num_epochs"] = "ten"
  c.training = ml_collections.ConfigDict(section)
  with pytest.raises(config_lib.ConfigError, match="training.num_epochs.*int"):
    config_lib.validate(c)


@pytest.mark.parametrize("field,value", [("batch_size", 0), ("num_epochs", -1)])
def test_impossible_values(field, value):
  c = config_lib.defaults()
  c.training[field] = value
  with pytest.raises(config_lib.ConfigError, match=field):
    config_lib.validate(c)


def test_batch_not_divisible_says_what_would():
  with pytest.raises(config_lib.ConfigError, match=r"multiple of 4, e.g. 60 or 64"):
    parallel.check_global_batch(62, device_count=4)
  assert parallel.check_global_batch(64, device_count=4) == 16


def test_every_experiment_validates():
  import importlib.util
  import pathlib
  for path in sorted(pathlib.Path(__file__).parent.parent.glob("experiments/*.py")):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config_lib.validate(module.get_config())
