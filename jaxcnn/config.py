"""Experiment configuration: defaults and validation of a whole config.

Every experiment file in ``experiments/`` is a module with ``get_config()``
returning an ``ml_collections.ConfigDict`` built on :func:`defaults`. The whole
config is validated by :func:`validate` before anything is compiled, so a typo
fails in a second with the closest valid key, not after a ten-minute run.

Sections whose keys depend on a choice (the model preset's overrides, the
chosen optimizer's hyperparameters, the schedule's parameters) are open here
and checked by the component that owns them (``models.create``,
``optim.create``), which also name the closest valid key.

Two rules every experiment file shares live here too: :class:`ArgSpec`, the
one parser of the config string after the colon
(``--config=experiments/foo.py:arg``), and :func:`shrink`, the one way a
config is cut down to a quick run (the files' ``quick`` option and the
ladder's ``--epochs``/``--train_examples`` flags).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Any, Iterable, Mapping, Sequence

import ml_collections

# Sections whose keys are checked by their owners rather than against defaults.
OPEN_SECTIONS = ("model", "optimizer", "schedule", "augmentation")

# The valid ``dataset.normalization`` names. 'rescale' is x / 255;
# 'standardize' the per-channel mean/std of the training split only;
# 'standardize_pixel' the per-pixel mean/std (lecture 004); 'none' raw pixels.
NORMALIZATIONS = ("rescale", "standardize", "standardize_pixel", "none")

# How a population step updates its members: 'vmap' maps one member's step
# over the member axis (one batched program); 'loop' unrolls one step per
# member inside the same compiled call. 'auto' is 'loop' on CPU (vmapped
# convolutions become grouped convolutions, which XLA:CPU runs slowly) and
# on GPU/TPU 'vmap' when every varied key can vary under it
# (VMAP_VARIABLE_KEYS), else 'loop'.
POPULATION_MODES = ("auto", "vmap", "loop")

# Keys population.vary may name: they change values, never the shapes of
# the parameters, the data or the program's inputs. Under 'loop' each member
# gets its own step built from its own config; ``schedule.*`` means any
# numeric schedule parameter and ``model.dropout_rate`` the presets' rate.
VARIABLE_KEYS = (
    "seed", "optimizer.learning_rate", "optimizer.weight_decay",
    "optimizer.beta_1", "optimizer.beta_2", "optimizer.epsilon", "optimizer.rho",
    "regularization.l1", "regularization.l2", "regularization.max_norm",
    "training.label_smoothing", "model.dropout_rate", "schedule.*",
)
# The keys that can also vary under 'vmap' (one program for all members):
# the seed, the learning rate as a value in each member's optimizer state
# (constant and plateau schedules, whose rate is not a function), and the
# global l1/l2 and label smoothing as per-member values fed to the step.
VMAP_VARIABLE_KEYS = ("seed", "optimizer.learning_rate", "regularization.l1",
                      "regularization.l2", "training.label_smoothing")


def defaults() -> ml_collections.ConfigDict:
  """Returns the default configuration every experiment starts from."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "fashion_mnist"  # any TFDS image classification dataset
  c.dataset.data_dir = ""  # '' -> $TFDS_DATA_DIR or ~/tensorflow_datasets
  c.dataset.mirror_dir = ""  # '' -> $JAXCNN_MIRROR_DIR or the Debian path
  c.dataset.train_split = "train"
  c.dataset.test_split = "test"
  # Validation carved from the end of train: a fraction in (0, 1) or a count.
  c.dataset.validation_split = 0.0
  c.dataset.normalization = "rescale"  # one of NORMALIZATIONS
  c.dataset.image_size = ()  # () keeps the native size, else (height, width)
  c.dataset.grayscale_to_rgb = False
  c.dataset.num_train_examples = 0  # 0 = all; >0 takes the first N (quick runs)
  c.dataset.num_test_examples = 0
  c.dataset.shuffle_buffer = 60_000
  c.dataset.cache = True
  c.dataset.augmentation = ml_collections.ConfigDict()

  c.model = ml_collections.ConfigDict()
  c.model.name = "mnist_cnn"

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "rmsprop"
  c.optimizer.learning_rate = 1e-3

  c.schedule = ml_collections.ConfigDict()
  c.schedule.name = "constant"

  c.regularization = ml_collections.ConfigDict()
  c.regularization.l1 = 0.0  # kernel penalties for every layer (Keras meaning)
  c.regularization.l2 = 0.0
  c.regularization.max_norm = 0.0  # 0 = off; else a max-norm on every kernel
  c.regularization.freeze = ()  # parameter path patterns that get no update

  c.training = ml_collections.ConfigDict()
  c.training.batch_size = 64  # global batch, split across all devices
  c.training.num_epochs = 5
  c.training.eval_every_epochs = 1
  c.training.checkpoint_every_epochs = 1
  c.training.keep_checkpoints = 3  # the latest N are always kept
  c.training.keep_best = 0  # also keep the best N by best_metric (0 = off)
  c.training.best_metric = "val_accuracy"  # or 'val_loss' (lower is better)
  c.training.progress_bar = True
  c.training.log_every_steps = 100  # TensorBoard train scalars; device fetch
  c.training.label_smoothing = 0.0
  # Validation/test metrics from the mean probabilities of each image and its
  # left-right mirror (test-time augmentation; predict/predict_mc ignore it).
  c.training.test_time_flip = False
  # Members trained together in one compiled program (see population below).
  c.training.population = 1
  # 'auto' | 'vmap' | 'loop': how one step updates every member (POPULATION_MODES).
  c.training.population_mode = "auto"

  c.population = ml_collections.ConfigDict()
  # What differs between the members: '' gives member i the seed seed + i
  # (init, dropout and data order); else 'key=v1,v2,...;key2=...' with one
  # value per member, e.g. 'optimizer.learning_rate=1e-3,3e-3,1e-2' (every
  # member keeps `seed` unless 'seed=...' is listed too).
  c.population.vary = ""

  c.transfer = ml_collections.ConfigDict()
  c.transfer.source = ""  # '' = none; a jaxcnn workdir or a Keras .h5 weights file
  c.transfer.layers = ()  # layer-name globs to copy; () = all whose names and shapes fit
  c.transfer.feature_extraction = False  # train the head on cached base outputs

  c.inference = ml_collections.ConfigDict()
  c.inference.num_samples = 100
  c.inference.batch_size = 1000
  return c


class ConfigError(ValueError):
  """A configuration that cannot run; the message says what would."""


class PopulationError(ConfigError):
  """A population the run cannot train (``training.population``, ``population.vary``)."""


def closest(key: str, valid: Iterable[str]) -> str | None:
  """Returns the valid key closest to ``key``, or None if none is close."""
  matches = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
  return matches[0] if matches else None


def unknown_key_error(key: str, valid: Iterable[str], where: str) -> ConfigError:
  """Builds the error for an unknown key, naming the closest valid one."""
  valid = sorted(valid)
  guess = closest(key.rsplit(".", 1)[-1], valid)
  hint = f" Did you mean '{guess}'?" if guess else ""
  return ConfigError(
      f"Unknown config key '{key}' in {where}.{hint} "
      f"Valid keys: {', '.join(valid)}.")


def _check_against(config: Any, reference: Any, prefix: str) -> None:
  for key in config.keys():
    path = f"{prefix}{key}"
    if key not in reference:
      raise unknown_key_error(path, reference.keys(), f"'{prefix[:-1] or 'config'}'")
    ref_value = reference[key]
    value = config[key]
    if isinstance(ref_value, ml_collections.ConfigDict):
      if not isinstance(value, (ml_collections.ConfigDict, dict)):
        raise ConfigError(f"'{path}' must be a section, got {value!r}.")
      if key not in OPEN_SECTIONS and not (
          prefix == "dataset." and key == "augmentation"):
        _check_against(value, ref_value, path + ".")
    elif ref_value is not None and value is not None:
      _check_type(path, value, ref_value)


def _check_type(path: str, value: Any, ref_value: Any) -> None:
  if isinstance(ref_value, bool):
    ok = isinstance(value, bool)
  elif isinstance(ref_value, int):
    ok = isinstance(value, int) and not isinstance(value, bool)
  elif isinstance(ref_value, float):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  elif isinstance(ref_value, str):
    ok = isinstance(value, str)
  elif isinstance(ref_value, (tuple, list)):
    ok = isinstance(value, (tuple, list))
  else:
    ok = True
  if not ok:
    raise ConfigError(
        f"'{path}' must be of type {type(ref_value).__name__} "
        f"(like the default {ref_value!r}), got {value!r}.")


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Checks a whole config before anything compiles.

  Args:
    config: the experiment config.

  Returns:
    The same config, for chaining.

  Raises:
    ConfigError: an unknown key (with the closest valid one), a wrong type, or
      an impossible value, with what would be valid.
  """
  _check_against(config, defaults(), "")
  t = config.training
  for name in ("batch_size", "num_epochs", "eval_every_epochs",
               "checkpoint_every_epochs", "keep_checkpoints"):
    if t[name] < 1:
      raise ConfigError(f"'training.{name}' must be >= 1, got {t[name]}.")
  if t.best_metric not in ("val_accuracy", "val_loss"):
    raise ConfigError(
        f"'training.best_metric' must be 'val_accuracy' or 'val_loss'; got "
        f"{t.best_metric!r}.")
  if t.keep_best < 0:
    raise ConfigError(f"'training.keep_best' must be >= 0, got {t.keep_best}.")
  d = config.dataset
  if d.normalization not in NORMALIZATIONS:
    raise ConfigError(
        f"'dataset.normalization' must be one of {', '.join(NORMALIZATIONS)}; "
        f"got {d.normalization!r}.")
  if d.validation_split < 0 or (
      isinstance(d.validation_split, float) and 0 < d.validation_split and
      d.validation_split >= 1.0 and not float(d.validation_split).is_integer()):
    raise ConfigError(
        "'dataset.validation_split' must be a fraction in [0, 1) or a count "
        f"of examples; got {d.validation_split!r}.")
  if d.image_size and len(d.image_size) != 2:
    raise ConfigError(
        f"'dataset.image_size' must be () or (height, width); got {d.image_size!r}.")
  _validate_population(config)
  if config.inference.num_samples < 1:
    raise ConfigError(
        f"'inference.num_samples' must be >= 1, got {config.inference.num_samples}.")
  return config


def parse_vary(text: str) -> dict[str, list[float]]:
  """Parses ``population.vary``: ``'key=v1,v2;key2=w1,w2'`` -> ``{key: [values]}``.

  Raises:
    PopulationError: a part without ``=``, a key named twice, a value that
      is not a number.
  """
  out: dict[str, list[float]] = {}
  for part in (p.strip() for p in text.split(";")):
    if not part:
      continue
    key, sep, values = part.partition("=")
    key = key.strip()
    if not sep or not key:
      raise PopulationError(
          f"population.vary part {part!r} is not 'key=v1,v2,...' (parts are "
          "separated by ';').")
    if key in out:
      raise PopulationError(f"population.vary names {key!r} twice.")
    try:
      out[key] = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
      raise PopulationError(
          f"population.vary values of {key!r} must be numbers; got {values!r}.") from None
  return out


def _variable(key: str, keys: Sequence[str]) -> bool:
  return key in keys or any(k.endswith(".*") and key.startswith(k[:-1]) for k in keys)


def population_mode(config: ml_collections.ConfigDict, platform: str) -> str:
  """The mode a population trains in: 'vmap' or 'loop' (``POPULATION_MODES``).

  Args:
    config: a validated config.
    platform: the JAX backend ('cpu', 'gpu', 'tpu').
  """
  mode = config.training.population_mode
  if mode != "auto":
    return mode
  if platform == "cpu":
    return "loop"
  return "vmap" if _vmap_problem(config) is None else "loop"


def _vmap_problem(config: ml_collections.ConfigDict) -> str | None:
  """Why the population cannot train under 'vmap', or None."""
  vary = parse_vary(config.population.vary)
  for key in vary:
    if not _variable(key, VMAP_VARIABLE_KEYS):
      return (f"{key!r} can vary only with training.population_mode='loop' (under "
              "'vmap' all members run one program; there only "
              f"{', '.join(VMAP_VARIABLE_KEYS)} can vary)")
  if "optimizer.learning_rate" in vary and config.schedule.get(
      "name", "constant") not in ("constant", "plateau"):
    return ("optimizer.learning_rate can vary under 'vmap' only with a constant "
            f"or plateau schedule (not {config.schedule.name!r}); use "
            "training.population_mode='loop'")
  return None


def _validate_population(config: ml_collections.ConfigDict) -> None:
  """Checks ``training.population``, ``population_mode`` and ``population.vary``."""
  t = config.training
  n = t.population
  if n < 1:
    raise PopulationError(f"'training.population' must be >= 1, got {n}.")
  if t.population_mode not in POPULATION_MODES:
    raise PopulationError(
        f"'training.population_mode' must be one of {', '.join(POPULATION_MODES)}; "
        f"got {t.population_mode!r}.")
  vary = parse_vary(config.population.vary)
  for key, values in vary.items():
    if not _variable(key, VARIABLE_KEYS):
      raise PopulationError(
          f"population.vary cannot vary {key!r}: only keys that leave the "
          "shapes of the parameters, the data and the program unchanged can; "
          f"those are {', '.join(VARIABLE_KEYS)}.")
    if len(values) != n:
      lengths = ", ".join(f"{k}: {len(v)}" for k, v in vary.items())
      raise PopulationError(
          f"population.vary gives {len(values)} values for {key!r} but "
          f"training.population={n}; give one value per member ({lengths}).")
    if key == "seed" and any(v < 0 or not float(v).is_integer() for v in values):
      raise PopulationError(f"population.vary seeds must be integers >= 0; got {values}.")
  if n > 1 and config.transfer.feature_extraction:
    raise PopulationError(
        "training.population > 1 does not combine with "
        "transfer.feature_extraction; train the members one at a time.")
  if t.population_mode == "vmap" and (problem := _vmap_problem(config)):
    raise PopulationError(problem + ".")


def member_configs(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
  """The single-run config of each member of ``config``'s population.

  Member ``i`` is ``config`` with ``training.population=1``, no
  ``population.vary``, and its values: ``seed + i`` when nothing is varied,
  else the i-th value of each varied key. Training member ``i`` alone with
  its config gives the same parameters as the population's member ``i``.
  """
  vary = parse_vary(config.population.vary)
  out = []
  for i in range(config.training.population):
    c = ml_collections.ConfigDict(config.to_dict())
    c.training.population = 1
    c.population.vary = ""
    if not vary:
      c.seed = config.seed + i
    for key, values in vary.items():
      section, _, name = key.rpartition(".")
      node = c[section] if section else c
      node[name] = int(values[i]) if key == "seed" else values[i]
    out.append(c)
  return out


def to_dict(config: ml_collections.ConfigDict) -> dict:
  """A plain, JSON-serializable dict of the config (tuples become lists)."""
  return config.to_dict()


def shrink(config: ml_collections.ConfigDict, *, epochs: int = 0,
           train_examples: int = 0, validation_examples: int | None = None,
           test_examples: int = 0, batch_size: int = 0
           ) -> ml_collections.ConfigDict:
  """Cuts ``config`` down, in place, to a smaller run (0 leaves a field as is).

  The one rule behind the experiment files' ``quick`` option and the
  ladder's ``--epochs``/``--train_examples``/``--test_examples``/
  ``--batch_size`` flags.

  Args:
    config: the config to change (locked or not: no key is added).
    epochs: ``training.num_epochs``. A checkpoint cadence longer than the run
      is cut to the run, so the config says what happens: the last epoch is
      the one checkpoint.
    train_examples: ``dataset.num_train_examples`` (the first N of the train
      split; validation is carved from their end).
    validation_examples: ``dataset.validation_split`` as a count (0: no
      validation). None: a count above a tenth of ``train_examples`` is cut
      to that tenth (at least 1), so a small run keeps most of its examples
      for training; a fraction already scales with the examples.
    test_examples: ``dataset.num_test_examples``.
    batch_size: ``training.batch_size``.

  Returns:
    The same config, for chaining.
  """
  if epochs:
    config.training.num_epochs = epochs
    config.training.checkpoint_every_epochs = min(
        config.training.checkpoint_every_epochs, epochs)
  if train_examples:
    config.dataset.num_train_examples = train_examples
  if validation_examples is not None:
    config.dataset.validation_split = validation_examples
  elif train_examples:
    val, tenth = config.dataset.validation_split, train_examples // 10
    if val >= 1 and val > tenth:
      config.dataset.validation_split = max(1, tenth)
  if test_examples:
    config.dataset.num_test_examples = test_examples
  if batch_size:
    config.training.batch_size = batch_size
  return config


@dataclasses.dataclass(frozen=True)
class ParsedArg:
  """A config string, understood.

  Attributes:
    member: the member named, else the spec's default (None without members).
    options: the options named.
    values: every ``key=value`` of the spec, the given ones converted to the
      default's type, the others at their defaults.
    free: the whole string, for a spec with a free slot; else ''.
  """
  member: str | None
  options: frozenset[str]
  values: Mapping[str, Any]
  free: str = ""


@dataclasses.dataclass(frozen=True)
class ArgSpec:
  """What the config string of one experiment file may say; its one parser.

  ``--config=experiments/foo.py:arg`` calls ``get_config(arg)``, and a ladder
  calls it with ``'<member>[,<options>]'``. Every file declares an
  ``ArgSpec`` and parses ``arg`` with :meth:`parse`, so all share one rule:
  comma-separated words, in any order, each one of

  * a member (at most one; ``default_member`` when none is named);
  * an option, a switch that is on when named (``quick``, ``augment``);
  * ``key=value`` for a key of ``values``, converted to the default's type.

  Any other word is a :class:`ConfigError` naming the closest valid word and
  listing them all; a spec with nothing takes no argument. A spec with a
  ``free`` slot (a file's weights path or source workdir) takes the whole
  string unsplit as that value, since a path may hold any character, and so
  nothing else.

  Attributes:
    file: the experiment file (``__file__``), named in errors.
    members: the member names.
    default_member: the member when none is named; required with members.
    options: the option names.
    values: ``{key: default}`` of the ``key=value`` words (int, float, str).
    free: what the free slot holds, in words (e.g. ``'VGG16 weights path'``);
      '' for none.
  """
  file: str
  members: Sequence[str] = ()
  default_member: str | None = None
  options: Sequence[str] = ()
  values: Mapping[str, int | float | str] = dataclasses.field(default_factory=dict)
  free: str = ""

  def __post_init__(self):
    # Normalized so a MEMBERS dict can be passed as it is.
    object.__setattr__(self, "file", os.path.basename(self.file))
    object.__setattr__(self, "members", tuple(self.members))
    object.__setattr__(self, "options", tuple(self.options))
    object.__setattr__(self, "values", dict(self.values))
    self._check()

  def _check(self) -> None:
    """Raises ValueError for a spec that could not parse unambiguously."""
    words = [*self.members, *self.options, *self.values]
    if len(set(words)) != len(words):
      raise ValueError(f"{self.file}: a word is both member, option or value: {words}.")
    if any("," in w or "=" in w or not w for w in words):
      raise ValueError(f"{self.file}: words cannot be empty or hold ',' or '='.")
    if self.members and self.default_member not in self.members:
      raise ValueError(f"{self.file}: default_member must be one of the members.")
    if not self.members and self.default_member is not None:
      raise ValueError(f"{self.file}: default_member without members.")
    if self.free and words:
      raise ValueError(f"{self.file}: a free slot takes the whole string; "
                       "it cannot be combined with members, options or values.")
    for key, default in self.values.items():
      if isinstance(default, bool) or not isinstance(default, (int, float, str)):
        raise ValueError(f"{self.file}: value '{key}' must default to an int, "
                         f"float or str, not {default!r}.")

  def describe(self) -> str:
    """The valid words, for messages and docs."""
    if self.free:
      return f"a {self.free}, or nothing for the default"
    parts = []
    if self.members:
      parts.append(f"one member of {', '.join(self.members)} "
                   f"(default {self.default_member})")
    if self.options:
      plural = "s" if len(self.options) > 1 else ""
      parts.append(f"option{plural} {', '.join(self.options)}")
    if self.values:
      parts.append("values " + ", ".join(f"{k}={v}" for k, v in self.values.items()))
    return "; ".join(parts) or "no argument"

  def parse(self, arg: str = "") -> ParsedArg:
    """Parses a config string.

    Args:
      arg: the string after the colon ('' when there is none).

    Returns:
      The :class:`ParsedArg`.

    Raises:
      ConfigError: an unknown word (with the closest valid one), two members,
        a value of the wrong type, or any word for a file without arguments.
    """
    if self.free:
      return ParsedArg(member=None, options=frozenset(), values={}, free=arg)
    words = [w.strip() for w in arg.split(",") if w.strip()]
    if words and not (self.members or self.options or self.values):
      raise ConfigError(f"{self.file} takes no argument; got {arg!r}.")
    member, options, values = None, set(), dict(self.values)
    for word in words:
      key, sep, value = word.partition("=")
      if sep and key in self.values:
        values[key] = self._convert(key, value)
      elif not sep and word in self.options:
        options.add(word)
      elif not sep and word in self.members:
        if member not in (None, word):
          raise ConfigError(f"{self.file} takes one member; got '{member}' and "
                            f"'{word}'. Valid: {self.describe()}.")
        member = word
      else:
        raise self._unknown(word)
    return ParsedArg(member=member or self.default_member,
                     options=frozenset(options), values=values)

  def _convert(self, key: str, value: str) -> int | float | str:
    kind = type(self.values[key])
    try:
      return kind(value)
    except ValueError:
      raise ConfigError(f"'{key}' of {self.file} must be {kind.__name__} (like "
                        f"the default {self.values[key]!r}); got {value!r}.") from None

  def _unknown(self, word: str) -> ConfigError:
    key, _, value = word.partition("=")
    guess = closest(key, [*self.members, *self.options, *self.values])
    if guess in self.values:
      guess = f"{guess}={value or self.values[guess]}"
    hint = f" Did you mean '{guess}'?" if guess else ""
    return ConfigError(f"Unknown config argument '{word}' for {self.file}.{hint} "
                       f"Valid: {self.describe()}.")


def root_config_error(error: BaseException) -> ConfigError | None:
  """The first ConfigError raised in the chain that led to ``error``.

  ``ml_collections.config_flags`` re-raises an error of ``get_config(arg)``
  as a new one whose message is a whole traceback, and absl wraps that in a
  flag error; the ConfigError raised first holds the one clean line.

  Returns:
    That ConfigError, or None when none is in the chain.
  """
  found, seen = None, set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, ConfigError):
      found = error
    error = error.__cause__ or error.__context__
  return found
