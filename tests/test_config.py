"""Config validation, the config-string parser and the shrink rule.

Bad keys and values fail before anything compiles, naming the key and what
would be valid; every variant of every file in ``experiments/`` builds a
valid config.
"""

import importlib.util
import itertools
import pathlib
import textwrap

from absl import flags
import ml_collections
from ml_collections import config_flags
import pytest

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases
from jaxcnn import main
from jaxcnn import optim
from jaxcnn import parallel

REPO = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted((REPO / "experiments").glob("*.py"))


def _load(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location("test_config_" + path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _experiment(name: str):
  return _load(REPO / "experiments" / f"{name}.py")


def _replaced(config, section: str, key: str, value):
  """``config`` with ``section.key`` set past ml_collections' type check.

  A typed field refuses a wrong type at assignment; a section replaced whole
  (e.g. read from JSON) does not, and that is what validate is for.
  """
  values = config[section].to_dict()
  values[key] = value
  config[section] = ml_collections.ConfigDict(values)
  return config


# --- validate ---------------------------------------------------------------


def test_defaults_validate_and_validate_returns_the_config():
  config = config_lib.defaults()
  assert config_lib.validate(config) is config


def test_misspelled_key_names_closest_and_lists_the_valid_ones():
  c = config_lib.defaults()
  c.training.batchsize = 32
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert "'training.batchsize'" in str(e.value)
  assert "Did you mean 'batch_size'" in str(e.value)
  assert "Valid keys: " in str(e.value) and "num_epochs" in str(e.value)


def test_misspelled_section_names_closest():
  c = config_lib.defaults()
  c.trainig = {"batch_size": 1}
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'training'"):
    config_lib.validate(c)


def test_unknown_key_with_nothing_close_still_lists_the_valid_ones():
  c = config_lib.defaults()
  c.dataset.zzzzzz = 1
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert "Did you mean" not in str(e.value)
  assert "'dataset.zzzzzz'" in str(e.value) and "normalization" in str(e.value)


def test_open_sections_are_left_to_their_owners():
  c = config_lib.defaults()
  with c.unlocked():
    c.model.filters = 8  # models.create checks these, not validate
    c.optimizer.momentum = 0.9
    c.schedule.boundaries = (1, 2)
    c.dataset.augmentation.rotation_range = 10
  assert config_lib.validate(c) is c


def test_assignment_of_a_wrong_type_fails_at_once():
  c = config_lib.defaults()
  with pytest.raises(TypeError, match="num_epochs"):
    c.training.num_epochs = "ten"


@pytest.mark.parametrize("section,key,value,kind", [
    ("training", "num_epochs", "ten", "int"),
    ("training", "num_epochs", 2.5, "int"),
    ("training", "num_epochs", True, "int"),  # a bool is not a count
    ("training", "progress_bar", 1, "bool"),
    ("regularization", "l2", "1e-4", "float"),
    ("dataset", "name", 3, "str"),
    ("dataset", "image_size", "150", "tuple"),
])
def test_wrong_type_names_the_key_and_the_type(section, key, value, kind):
  c = _replaced(config_lib.defaults(), section, key, value)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert f"'{section}.{key}' must be of type {kind}" in str(e.value)


def test_an_int_is_a_valid_float():
  c = _replaced(config_lib.defaults(), "regularization", "l2", 1)
  assert config_lib.validate(c) is c


def test_a_section_replaced_by_a_value_is_named():
  c = _replaced(config_lib.defaults(), "dataset", "augmentation", 3)
  with pytest.raises(config_lib.ConfigError,
                     match=r"'dataset.augmentation' must be a section, got 3"):
    config_lib.validate(c)


# Every number of defaults() with a rule of RANGES: (key, the edge of its
# range, the first value past it, the range as the message says it).
RANGE_CASES = [
    ("seed", 0, -1, ">= 0"),
    ("dataset.num_train_examples", 0, -1, ">= 0 (0 = all)"),
    ("dataset.num_test_examples", 0, -1, ">= 0 (0 = all)"),
    ("dataset.shuffle_buffer", 1, 0, ">= 1"),
    ("regularization.l1", 0.0, -1e-4, ">= 0 (0 = off)"),
    ("regularization.l2", 0.0, -1e-4, ">= 0 (0 = off)"),
    ("regularization.max_norm", 0.0, -1.0, ">= 0 (0 = off)"),
    ("training.batch_size", 1, 0, ">= 1"),
    ("training.num_epochs", 1, 0, ">= 1"),
    ("training.eval_every_epochs", 1, 0, ">= 1"),
    ("training.checkpoint_every_epochs", 1, 0, ">= 1"),
    ("training.keep_checkpoints", 1, 0, ">= 1"),
    ("training.keep_best", 0, -1, ">= 0 (0 = off)"),
    ("training.log_every_steps", 1, 0, ">= 1"),
    ("training.label_smoothing", 0.0, -0.1, "in [0, 1)"),
    ("training.label_smoothing", 0.9, 1.0, "in [0, 1)"),
    ("training.population", 1, 0, ">= 1"),
    ("training.recompute_bn_stats", 0, -1, ">= 0 (training batches; 0 = off)"),
    ("training.initial_loss_scale", 1.0, 0.5, ">= 1"),
    ("training.loss_scale_period", 1, 0, ">= 1"),
    ("training.steps_per_call", 0, -1, ">= 0 (0 = auto)"),
    ("transfer.source_member", -1, -2,
     ">= -1 (-1 = seed-matched from a population source of the run's size)"),
    ("inference.num_samples", 1, 0, ">= 1"),
    ("inference.batch_size", 1, 0, ">= 1"),
    ("lr_find.steps", 2, 1, ">= 2"),
    ("lr_find.smoothing", 0.0, -0.1, "in [0, 1)"),
    ("lr_find.smoothing", 0.9, 1.0, "in [0, 1)"),
]
# Numbers whose rules are not a range (tested below; lr_find's in
# tests/test_lr_find.py).
OWN_RULES = {"dataset.validation_split", "lr_find.start", "lr_find.end",
             "lr_find.stop_factor"}


def _numbers(node, prefix=""):
  """The dotted keys of every int or float of ``node`` outside open sections."""
  for key, value in node.items():
    path = prefix + key
    if isinstance(value, ml_collections.ConfigDict):
      if path not in config_lib.OPEN_SECTIONS:
        yield from _numbers(value, path + ".")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      yield path


def _set(config, path, value):
  section, _, key = path.rpartition(".")
  (config[section] if section else config)[key] = value
  return config


def test_every_number_of_the_defaults_has_a_tested_rule():
  numbers = set(_numbers(config_lib.defaults()))
  assert "training.log_every_steps" in numbers  # the walk sees the sections
  assert numbers == {case[0] for case in RANGE_CASES} | OWN_RULES
  assert {rule.path for rule in config_lib.RANGES} == numbers - OWN_RULES


@pytest.mark.parametrize("path,edge,past,valid", RANGE_CASES,
                         ids=[f"{c[0]}={c[2]}" for c in RANGE_CASES])
def test_each_number_is_refused_past_its_range(path, edge, past, valid):
  c = _set(config_lib.defaults(), path, edge)
  assert config_lib.validate(c) is c
  _set(c, path, past)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert str(e.value) == f"'{path}' must be {valid}, got {past!r}."


@pytest.mark.parametrize("path", ["regularization.l2", "training.label_smoothing"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_infinity_are_out_of_every_range(path, value):
  with pytest.raises(config_lib.ConfigError, match=f"'{path}' must be .*got {value}"):
    config_lib.validate(_set(config_lib.defaults(), path, value))


def test_none_is_not_a_number():
  c = _replaced(config_lib.defaults(), "training", "log_every_steps", None)
  with pytest.raises(config_lib.ConfigError,
                     match=r"'training.log_every_steps' must be >= 1, got None"):
    config_lib.validate(c)


def test_best_metric_says_what_is_valid():
  c = config_lib.defaults()
  c.training.best_metric = "accuracy"
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert "'training.best_metric'" in str(e.value)
  assert "'val_accuracy' or 'val_loss'" in str(e.value) and "'accuracy'" in str(e.value)
  c.training.best_metric = "val_loss"
  assert config_lib.validate(c) is c


def test_normalization_names_the_valid_ones():
  assert config_lib.NORMALIZATIONS == (
      "rescale", "standardize", "standardize_pixel", "minmax", "minmax_pixel", "none")
  c = config_lib.defaults()
  for name in config_lib.NORMALIZATIONS:
    c.dataset.normalization = name
    config_lib.validate(c)
  c.dataset.normalization = "standardise"
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert "'dataset.normalization'" in str(e.value) and "'standardise'" in str(e.value)
  assert all(name in str(e.value) for name in config_lib.NORMALIZATIONS)


@pytest.mark.parametrize("split", [0.0, 0.1, 0.99, 5000, 5000.0])
def test_validation_split_fractions_and_counts_are_valid(split):
  c = config_lib.defaults()
  c.dataset.validation_split = split
  config_lib.validate(c)


@pytest.mark.parametrize("split", [-1, -0.5, 1.5, float("nan"), float("inf")])
def test_validation_split_must_be_a_fraction_or_a_count(split):
  c = config_lib.defaults()
  c.dataset.validation_split = split
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(c)
  assert "'dataset.validation_split'" in str(e.value)
  assert "a fraction in [0, 1) or a count" in str(e.value)


def test_image_size_must_be_empty_or_a_pair():
  c = config_lib.defaults()
  c.dataset.image_size = (150, 150)
  config_lib.validate(c)
  c.dataset.image_size = []  # () as config.json gives it back
  config_lib.validate(c)
  for size in [(150,), (150, 0), (150, 150.5), (150, True)]:
    c.dataset.image_size = size
    with pytest.raises(config_lib.ConfigError) as e:
      config_lib.validate(c)
    assert "'dataset.image_size' must be () or (height, width)" in str(e.value)


def test_batch_not_divisible_says_what_would():
  with pytest.raises(config_lib.ConfigError, match=r"multiple of 4, e.g. 60 or 64"):
    parallel.check_global_batch(62, device_count=4)
  assert parallel.check_global_batch(64, device_count=4) == 16


# --- the config-string parser -------------------------------------------------


SPEC = config_lib.ArgSpec("/somewhere/demo.py", members={"a": 1, "bee": 2},
                          default_member="bee", options=("quick", "overfit"),
                          values={"width": 16, "peak": 3e-3, "tag": "x"})


def test_parse_words_in_any_order_with_defaults():
  parsed = SPEC.parse("")
  assert parsed.member == "bee" and parsed.options == frozenset()
  assert parsed.values == {"width": 16, "peak": 3e-3, "tag": "x"}
  parsed = SPEC.parse(" overfit, width=32,,a ,peak=1e-2,tag=y ")
  assert parsed.member == "a" and parsed.options == {"overfit"}
  assert parsed.values == {"width": 32, "peak": 0.01, "tag": "y"}
  assert isinstance(parsed.values["width"], int)
  assert SPEC.parse("quick,a") == SPEC.parse("a,quick")


def test_unknown_word_names_the_closest_and_lists_all():
  with pytest.raises(config_lib.ConfigError) as e:
    SPEC.parse("a,quik")
  message = str(e.value)
  assert message.startswith("Unknown config argument 'quik' for demo.py.")
  assert "Did you mean 'quick'?" in message
  assert "one member of a, bee (default bee)" in message
  assert "options quick, overfit" in message and "width=16" in message


def test_misspelled_value_key_suggests_the_key_with_its_value():
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'width=8'"):
    SPEC.parse("widht=8")
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'width=16'"):
    SPEC.parse("width")  # a value needs its '='
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'quick'"):
    SPEC.parse("quick=1")  # an option takes none


def test_nothing_close_gives_no_guess():
  with pytest.raises(config_lib.ConfigError) as e:
    SPEC.parse("zzzzzz")
  assert "Did you mean" not in str(e.value) and "Valid: " in str(e.value)


def test_a_value_of_the_wrong_type_is_named():
  with pytest.raises(config_lib.ConfigError,
                     match=r"'width' of demo.py must be int .*got '1.5'"):
    SPEC.parse("width=1.5")


def test_two_members_are_refused():
  assert SPEC.parse("a,a").member == "a"
  with pytest.raises(config_lib.ConfigError, match="takes one member; got 'a' and 'bee'"):
    SPEC.parse("a,bee")


def test_a_file_without_arguments_refuses_any():
  spec = config_lib.ArgSpec("plain.py")
  assert spec.parse("") == spec.parse(" , ")
  with pytest.raises(config_lib.ConfigError) as e:
    spec.parse("quick")
  assert str(e.value) == "plain.py takes no argument; got 'quick'."


def test_a_free_slot_takes_the_whole_string():
  spec = config_lib.ArgSpec("weights.py", free="weights path")
  assert spec.parse("/tmp/a,b=c.h5").free == "/tmp/a,b=c.h5"
  assert spec.parse("").free == ""
  assert "weights path" in spec.describe()


@pytest.mark.parametrize("kwargs", [
    dict(members=("a", "b")),  # no default member
    dict(members=("a", "b"), default_member="c"),
    dict(default_member="a"),
    dict(members=("a",), default_member="a", options=("a",)),
    dict(options=("x=1",)),
    dict(options=("",)),
    dict(free="path", options=("quick",)),
    dict(values={"fast": True}),
])
def test_ambiguous_specs_are_refused(kwargs):
  with pytest.raises(ValueError):
    config_lib.ArgSpec("bad.py", **kwargs)


def test_misspelled_quick_on_the_default_experiment_names_quick():
  module = _experiment("fashion_mnist_cnn")
  with pytest.raises(config_lib.ConfigError) as e:
    module.get_config("quik")
  assert "'quik' for fashion_mnist_cnn.py" in str(e.value)
  assert "Did you mean 'quick'?" in str(e.value)


def test_misspelled_member_names_the_member():
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'dropout'"):
    _experiment("mlp_regularization").get_config("dropuot")


def test_an_experiment_without_arguments_refuses_one():
  with pytest.raises(config_lib.ConfigError,
                     match="fashion_mnist_pretrain.py takes no argument; got 'quick'"):
    _experiment("fashion_mnist_pretrain").get_config("quick")


def test_config_flag_errors_lead_back_to_the_clean_config_error():
  # What jaxcnn.main's flag parsing sees: config_flags re-raises the error
  # with a whole traceback as its message, and absl wraps that again.
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values)
  path = REPO / "experiments" / "fashion_mnist_cnn.py"
  with pytest.raises(flags.Error) as e:
    flag_values(["prog", f"--config={path}:quik"])
  assert "Traceback" in str(e.value)
  root = config_lib.root_config_error(e.value)
  assert isinstance(root, config_lib.ConfigError)
  assert str(root).startswith("Unknown config argument 'quik' for fashion_mnist_cnn.py.")
  assert config_lib.root_config_error(ValueError("other")) is None


# --- config files (config.load) and the --config flag ---------------------------


def _file(tmp_path, text, name="exp.py"):
  path = tmp_path / name
  path.write_text(textwrap.dedent(text))
  return str(path)


def test_load_calls_get_config_with_the_string_after_the_colon(tmp_path):
  path = _file(tmp_path, """
      from jaxcnn import config as config_lib
      def get_config(arg="none"):
        config = config_lib.defaults()
        config.dataset.name = arg
        return config
      """)
  assert config_lib.load(path).dataset.name == "none"  # no colon: no argument
  assert config_lib.load(path + ":").dataset.name == ""
  assert config_lib.load(path + ":a:b").dataset.name == "a:b"


def test_a_missing_file_says_where_it_looked_and_what_is_there():
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load(str(REPO / "experiments" / "mnist_cn.py") + ":quick")
  message = str(e.value)
  assert f"(looked for {REPO / 'experiments' / 'mnist_cn.py'})" in message
  assert f"Did you mean '{REPO / 'experiments' / 'mnist_cnn.py'}'?" in message
  assert "Config files in " in message and "fashion_mnist_cnn.py, " in message


def test_a_bare_missing_name_points_to_the_experiments(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # no experiments/ here
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load("mnist_cnns.py")
  assert f"(looked for {tmp_path / 'mnist_cnns.py'})" in str(e.value)
  assert f"Did you mean '{REPO / 'experiments' / 'mnist_cnns.py'}'?" in str(e.value)


def test_nothing_close_gives_no_guess_and_a_folder_is_not_a_file(tmp_path):
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load(str(REPO / "experiments" / "zzzzzz.py"))
  assert "Did you mean" not in str(e.value) and "mnist_cnn.py" in str(e.value)
  with pytest.raises(config_lib.ConfigError, match="is a folder, not a file"):
    config_lib.load(str(tmp_path))
  with pytest.raises(config_lib.ConfigError, match="No config file given"):
    config_lib.load(" ")


def test_a_syntax_error_names_file_and_line(tmp_path):
  path = _file(tmp_path, """
      def get_config():
        return (
      """)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load(path)
  assert str(e.value) == f"Syntax error in {path}:3: '(' was never closed."


def test_a_syntax_error_in_an_imported_file_names_both(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(tmp_path))
  _file(tmp_path, "x = = 1\n", name="broken_helper_for_test_config.py")
  path = _file(tmp_path, "import broken_helper_for_test_config\n")
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load(path)
  assert str(e.value).startswith(
      f"Syntax error in {tmp_path / 'broken_helper_for_test_config.py'}:1 "
      f"(imported by {path}): ")


def test_a_wrong_type_in_the_file_names_line_key_type_and_value(tmp_path):
  path = _file(tmp_path, """
      from jaxcnn import config as config_lib

      def get_config():
        config = config_lib.defaults()
        config.training.num_epochs = "ten"
        return config
      """)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load(path)
  assert str(e.value) == (f"{path}:6: 'training.num_epochs' must be of type int "
                          "(like the default 5), got 'ten'.")


@pytest.mark.parametrize("line,message", [
    # batch_size is in two sections: the section's keys tell which.
    ("config.inference.batch_size = '8'",
     "'inference.batch_size' must be of type int (like the default 1000), got '8'."),
    ("config.seed = 'x'", "'seed' must be of type int (like the default 0), got 'x'."),
    # Not a key of the defaults: its value then says the type.
    ("config.model.filters = 8; config.model.filters = 'x'",
     "'filters' must be of type int (like its value 8), got 'x'."),
])
def test_the_wrong_type_names_the_whole_key(tmp_path, line, message):
  path = _file(tmp_path, f"""
      from jaxcnn import config as config_lib
      def get_config():
        config = config_lib.defaults()
        {line}
        return config
      """)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load(path)
  assert str(e.value) == f"{path}:5: {message}"


@pytest.mark.parametrize("line,message", [
    ("config.trainig.num_epochs = 3",  # a section that does not exist
     "Unknown config key 'trainig' in 'config'. Did you mean 'training'?"),
    ("config.lock(); config.training.batchsize = 3",  # a locked section
     "Unknown config key 'training.batchsize' in 'training'. "
     "Did you mean 'batch_size'?"),
    ("config['dataset']['nmae']",
     "Unknown config key 'dataset.nmae' in 'dataset'. Did you mean 'name'?"),
])
def test_an_unknown_key_in_the_file_names_line_and_closest(tmp_path, line, message):
  path = _file(tmp_path, f"""
      from jaxcnn import config as config_lib
      def get_config():
        config = config_lib.defaults()
        {line}
        return config
      """)
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load(path)
  assert str(e.value).startswith(f"{path}:5: {message} Valid keys: ")


@pytest.mark.parametrize("body,error", [
    ("return len(3)", TypeError),
    ("return {}['x']", KeyError),
    ("return (3).x", AttributeError),
])
def test_other_errors_of_a_config_file_keep_their_traceback(tmp_path, body, error):
  path = _file(tmp_path, f"""
      def get_config():
        {body}
      """)
  with pytest.raises(error):
    config_lib.load(path)


def test_a_file_must_define_get_config_and_return_a_config_dict(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="defines no get_config"):
    config_lib.load(_file(tmp_path, "x = 1\n"))
  with pytest.raises(config_lib.ConfigError, match="returned dict, not an ml_coll"):
    config_lib.load(_file(tmp_path, "def get_config():\n  return {}\n"))


def test_an_argument_error_of_get_config_is_its_own_line():
  with pytest.raises(config_lib.ConfigError,
                     match="^Unknown config argument 'quik' for fashion_mnist_cnn.py."):
    config_lib.load(str(REPO / "experiments" / "fashion_mnist_cnn.py") + ":quik")


def _parse(*overrides, file="fashion_mnist_cnn.py"):
  """The --config flag of jaxcnn.main, parsed on a private FlagValues."""
  argv = ["prog", f"--config={REPO / 'experiments' / file}", *overrides]
  flag_values = flags.FlagValues()
  main.define_config_flag(flag_values, sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def test_overrides_add_keys_to_the_open_sections():
  config = _parse("--config.schedule.name=exponential", "--config.schedule.s=20",
                  "--config.optimizer.momentum=0.5", "--config.model.filters=8",
                  "--config.dataset.augmentation.rotation_range=10")
  assert config.schedule.to_dict() == {"name": "exponential", "s": 20}
  assert config.optimizer.momentum == 0.5 and config.model.filters == 8
  assert config.dataset.augmentation.rotation_range == 10
  assert config_lib.validate(config) is config
  assert optim.schedules.resolve(config.schedule) == (
      "exponential", {"s": 20.0, "decay_rate": 0.1, "unit": "epoch"})


def test_the_owner_names_the_closest_key_of_an_open_section():
  config = _parse("--config.schedule.name=exponential", "--config.schedule.ss=20")
  with pytest.raises(config_lib.ConfigError, match="'schedule.ss' .*Did you mean 's'?"):
    optim.schedules.resolve(config.schedule)


def test_overrides_cannot_add_keys_to_the_other_sections():
  config = _parse()
  assert config.is_locked and config.training.is_locked
  assert not config.schedule.is_locked  # parse_flags locks it once all are in
  with pytest.raises(KeyError, match='Did you mean "batch_size"'):
    _parse("--config.training.batchsize=32")
  with pytest.raises(KeyError, match='Did you mean "training"'):
    _parse("--config.trainig.batch_size=32")


def test_a_bad_file_is_the_config_error_behind_the_flag_error(tmp_path):
  with pytest.raises(flags.Error) as e:
    _parse(file="no_such_file.py")
  assert "not found (looked for" in str(config_lib.root_config_error(e.value))


# --- shrink -------------------------------------------------------------------


def _sized(validation_split=5000, checkpoint_every_epochs=1):
  c = config_lib.defaults()
  c.dataset.validation_split = validation_split
  c.training.num_epochs = 10
  c.training.checkpoint_every_epochs = checkpoint_every_epochs
  c.lock()
  return c


def test_shrink_with_nothing_changes_nothing():
  c = _sized()
  before = c.to_dict()
  assert config_lib.shrink(c) is c
  assert c.to_dict() == before


def test_shrink_sets_what_it_is_given_on_a_locked_config():
  c = config_lib.shrink(_sized(), epochs=2, train_examples=2000, test_examples=500,
                        batch_size=16)
  assert c.is_locked
  assert c.training.num_epochs == 2
  assert c.dataset.num_train_examples == 2000
  assert c.dataset.num_test_examples == 500
  assert c.training.batch_size == 16


@pytest.mark.parametrize("validation,train,expected", [
    (5000, 2000, 200),  # a tenth of 2,000, not 5,000 of them
    (100, 2000, 100),  # already small: kept
    (5000, 5, 1),  # at least one
    (0.1, 2000, 0.1),  # a fraction scales by itself
    (0.0, 2000, 0.0),  # no validation stays none
])
def test_shrink_cuts_a_validation_count_to_a_tenth(validation, train, expected):
  c = config_lib.shrink(_sized(validation), train_examples=train)
  assert c.dataset.validation_split == expected


def test_shrink_takes_an_explicit_validation_count():
  assert config_lib.shrink(_sized(), train_examples=2000,
                           validation_examples=640).dataset.validation_split == 640
  assert config_lib.shrink(_sized(), validation_examples=0).dataset.validation_split == 0


@pytest.mark.parametrize("every,epochs,expected", [(10, 3, 3), (1, 3, 1), (2, 3, 2)])
def test_shrink_cuts_the_checkpoint_cadence_to_the_run(every, epochs, expected):
  c = config_lib.shrink(_sized(checkpoint_every_epochs=every), epochs=epochs)
  assert c.training.checkpoint_every_epochs == expected


def test_quick_is_shrink_with_the_quick_sizes():
  c = experiment_bases.quick(_sized(checkpoint_every_epochs=10))
  assert (c.training.num_epochs, c.training.checkpoint_every_epochs) == (1, 1)
  assert (c.dataset.num_train_examples, c.dataset.validation_split,
          c.dataset.num_test_examples) == (6400, 640, 2000)
  c = experiment_bases.quick(_sized(), train_examples=1200, validation_examples=200)
  assert (c.dataset.num_train_examples, c.dataset.validation_split) == (1200, 200)


# --- every variant of every experiment ------------------------------------------


_NO_ARG = None  # get_config() as config_flags calls it without a colon


def _variants(spec: config_lib.ArgSpec) -> list:
  """Config strings using every member, option subset and value of ``spec``."""
  if spec.free:
    return [_NO_ARG, "", "/tmp/weights.h5"]
  out = [_NO_ARG, ""]
  subsets = [c for r in range(len(spec.options) + 1)
             for c in itertools.combinations(spec.options, r)]
  for member in [None, *spec.members]:
    for subset in subsets:
      out.append(",".join(w for w in (member, *subset) if w))
  out += [f"{key}={default}" for key, default in spec.values.items()]
  return list(dict.fromkeys(out))  # "" appears twice


def test_every_experiment_declares_its_config_argument():
  missing = [p.name for p in EXPERIMENTS
             if not isinstance(getattr(_load(p), "ARG", None), config_lib.ArgSpec)]
  assert not missing, f"experiments without an ARG = config.ArgSpec(...): {missing}"


def test_variants_cover_members_and_options():
  variants = _variants(_experiment("regularization_ladder").ARG)
  assert "l2,cifar10,quick,overfit" in variants and "quick" in variants
  assert len(variants) == 2 + 12 * 8 - 1  # (no member + 11 members) x 8 subsets


# One test per file (a file that cannot import fails alone); each of its
# variants is built and validated, and every failure is listed.
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_variant_of_every_experiment_validates(path):
  module = _load(path)
  failures = []
  for arg in _variants(module.ARG):
    try:
      config = module.get_config() if arg is None else module.get_config(arg)
      config_lib.validate(config)
      if not config.is_locked:
        failures.append(f"{arg!r}: the config is not locked")
    except Exception as e:  # pylint: disable=broad-except
      failures.append(f"{arg!r}: {type(e).__name__}: {e}")
  assert not failures, f"{path.name}:\n" + "\n".join(failures)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_no_argument_and_an_empty_one_agree(path):
  module = _load(path)
  assert module.get_config().to_dict() == module.get_config("").to_dict()


def test_options_mean_what_they_say():
  quick = _experiment("fashion_mnist_cnn").get_config("quick")
  assert (quick.training.num_epochs, quick.dataset.num_train_examples) == (1, 6400)
  fast = _experiment("fashion_mnist_fast").get_config("quick,epochs=12,width=8")
  assert fast.training.num_epochs == 1  # quick wins over epochs=12
  assert fast.model.layers[0]["filters"] == 8
  cnns = _experiment("mnist_cnns")
  assert cnns.get_config("fashion_mnist").dataset.name == "fashion_mnist"
  assert cnns.get_config("cnn_small").dataset.name == "mnist"
  ladder = _experiment("regularization_ladder")
  assert ladder.get_config("cifar10,l2").to_dict() == ladder.get_config("l2,cifar10").to_dict()
  assert ladder.get_config("cifar10").dataset.name == "cifar10"
  features = _experiment("transfer_digits_features")
  assert features.get_config("").transfer.feature_extraction
  assert not features.get_config("augment").transfer.feature_extraction


def test_regularization_ladder_says_how_many_overfit_rungs_results_md_ran():
  ladder = _experiment("regularization_ladder")
  results = (REPO / "RESULTS.md").read_text()
  section = results.split("### The same ladder in the overfitting regime")[1].split("\n- ")[0]
  rows = [line for line in section.splitlines() if line.startswith("| ")][2:]  # less header
  assert [row.split(" | ")[0].strip("| ") for row in rows] == list(ladder.MEMBERS)
  assert "RESULTS.md ran all eleven rungs" in ladder.__doc__ and len(ladder.MEMBERS) == 11
