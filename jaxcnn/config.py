"""Experiment configuration: defaults and validation of a whole config.

Every experiment file in ``experiments/`` is a module with ``get_config()``
returning an ``ml_collections.ConfigDict`` built on :func:`defaults`. The whole
config is validated by :func:`validate` before anything is compiled, so a typo
or a number out of its range (:data:`RANGES`) fails in a second with what
would be valid, not after a ten-minute run. :func:`load` runs such a file
(``path[:arg]``, what ``--config=`` names), every mistake in it one line.

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
import importlib.machinery
import importlib.util
import math
import os
import sys
import traceback
import types
from typing import Any, Iterable, Mapping, Sequence

import ml_collections

# Sections whose keys are checked by their owners rather than against defaults
# (paths from the root). Their keys depend on a choice (the preset, the
# optimizer, the schedule), so ``--config.<section>.<key>=`` may add keys to
# them, and the owner names the closest valid key when one is misspelled.
OPEN_SECTIONS = ("model", "optimizer", "schedule", "dataset.augmentation")

# The valid ``dataset.normalization`` names. 'rescale' is x / 255;
# 'standardize' the per-channel mean/std of the training split only;
# 'standardize_pixel' the per-pixel mean/std (lecture 004); 'minmax' and
# 'minmax_pixel' map the training part's per-channel / per-pixel minimum and
# maximum to -1 and 1 (lecture 000); 'none' raw pixels.
NORMALIZATIONS = ("rescale", "standardize", "standardize_pixel", "minmax", "minmax_pixel",
                  "none")

# Where ``dataset.validation_split`` is carved from the training split.
VALIDATION_FROM = ("end", "start")

# How a population step updates its members: 'vmap' maps one member's step
# over the member axis (one batched program); 'loop' unrolls one step per
# member inside the same compiled call. 'auto' is 'loop' on CPU (vmapped
# convolutions become grouped convolutions, which XLA:CPU runs slowly) and
# on GPU/TPU 'vmap' when every varied key can vary under it
# (VMAP_VARIABLE_KEYS), else 'loop'.
POPULATION_MODES = ("auto", "vmap", "loop")

# ``training.precision``: the dtype the layers compute in (jaxcnn.precision).
# Parameters, optimizer state, BatchNorm statistics, softmax and the loss stay
# float32 in all three; 'float16' adds dynamic loss scaling.
PRECISIONS = ("float32", "bfloat16", "float16")
# ``dataset.device_cache``: 'on' keeps the training part on every device and
# gathers (and augments) each batch inside the compiled step, 'off' feeds host batches from
# tf.data, 'auto' decides by backend, size and features (jaxcnn.data.device).
DEVICE_CACHE_MODES = ("auto", "on", "off")

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
  # Validation carved from train (see validation_from): a fraction in (0, 1) or a count.
  c.dataset.validation_split = 0.0
  # Where it is carved from: 'end' (Keras' validation_split, lecture 002) or
  # 'start' (lecture 004 holds out the FIRST 5,000 training images).
  c.dataset.validation_from = "end"
  c.dataset.normalization = "rescale"  # one of NORMALIZATIONS
  c.dataset.image_size = ()  # () keeps the native size, else (height, width)
  c.dataset.grayscale_to_rgb = False
  c.dataset.num_train_examples = 0  # 0 = all; >0 takes the first N (quick runs)
  c.dataset.num_test_examples = 0
  c.dataset.shuffle_buffer = 60_000
  c.dataset.cache = True
  # 'auto' | 'on' | 'off': the training part on the accelerator as uint8, each
  # step's batch gathered, augmented and normalized inside the compiled step
  # (DEVICE_CACHE_MODES; jaxcnn.data.device says when 'auto' turns it on).
  c.dataset.device_cache = "auto"
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
  # Also score the training part in evaluation mode (dropout off, BatchNorm
  # moving statistics) at each validation: train_eval_loss/accuracy in the
  # history, so the real train/validation gap is visible (lecture 004).
  c.training.eval_train = False
  # After training: recompute BatchNorm's moving mean/var as the plain average
  # of this many training batches' statistics ("precise BN"); 0 = off.
  c.training.recompute_bn_stats = 0
  # Members trained together in one compiled program (see population below).
  c.training.population = 1
  # 'auto' | 'vmap' | 'loop': how one step updates every member (POPULATION_MODES).
  c.training.population_mode = "auto"
  # Per-layer activation and gradient mean/std on one fixed batch, logged to
  # TensorBoard at the start and after every epoch (jaxcnn.diagnostics;
  # lecture 004's vanishing/exploding gradients). A separate compiled call,
  # never part of the train step.
  c.training.depth_diagnostics = False
  # One of PRECISIONS: 'bfloat16' (TPUs, Ampere+ GPUs) or 'float16' computes
  # convolutions, matmuls and activations in half precision.
  c.training.precision = "float32"
  # float16 only: the loss is multiplied by a scale that halves after a step
  # with non-finite gradients (skipped) and doubles after this many finite ones.
  c.training.initial_loss_scale = 65536.0
  c.training.loss_scale_period = 2000
  # Train steps per compiled call (lax.scan over stacked batches); 0 = auto
  # (jaxcnn.data.device.steps_per_call says the rule). Logging, evaluation,
  # checkpoints and SIGTERM act between calls.
  c.training.steps_per_call = 0

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
  # Which member of a population workdir source to start from: -1 = member i
  # for member i of a population of the source's size (seed-matched), and
  # required otherwise; j >= 0 = member j for the run (every member of it).
  c.transfer.source_member = -1

  c.inference = ml_collections.ConfigDict()
  c.inference.num_samples = 100
  c.inference.batch_size = 1000

  # --mode=lr_find (jaxcnn.lr_find): the learning-rate range test. The rate
  # starts at `start` and is multiplied by the same factor every step to
  # reach `end` after `steps` steps (Geron's 1e-5 -> 10 in 500 iterations);
  # the sweep stops once the smoothed loss exceeds `stop_factor` times its
  # best. `smoothing` is the loss's exponential moving average factor.
  c.lr_find = ml_collections.ConfigDict()
  c.lr_find.start = 1e-5
  c.lr_find.end = 10.0
  c.lr_find.steps = 500
  c.lr_find.stop_factor = 4.0
  c.lr_find.smoothing = 0.98
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
      if path not in OPEN_SECTIONS:
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


@dataclasses.dataclass(frozen=True)
class Range:
  """The valid values of one number in :func:`defaults`.

  Attributes:
    path: the dotted key.
    minimum: the smallest valid value.
    maximum: the largest valid value (None: no bound).
    open_max: whether ``maximum`` itself is invalid.
    note: what a special value means, shown in the error (e.g. '0 = all').
  """
  path: str
  minimum: float
  maximum: float | None = None
  open_max: bool = False
  note: str = ""

  def describe(self) -> str:
    """The range in words: '>= 1', 'in [0, 1)'."""
    if self.maximum is None:
      return f">= {self.minimum:g}"
    return f"in [{self.minimum:g}, {self.maximum:g}{')' if self.open_max else ']'}"

  def contains(self, value: float) -> bool:
    """Whether ``value`` is in range; NaN and infinities never are."""
    if not math.isfinite(value) or value < self.minimum:
      return False
    if self.maximum is None:
      return True
    return value < self.maximum if self.open_max else value <= self.maximum


# Every number of defaults() but dataset.validation_split (a fraction or a
# count: a rule of its own). A value out of range fails here, in a second,
# not mid-run: a
# log_every_steps of 0 would divide by zero a minute into training, and a
# negative num_train_examples would silently mean "all".
# tests/test_config.py checks that every number of defaults() has a rule.
RANGES = (
    Range("seed", 0),
    Range("dataset.num_train_examples", 0, note="0 = all"),
    Range("dataset.num_test_examples", 0, note="0 = all"),
    Range("dataset.shuffle_buffer", 1),
    Range("regularization.l1", 0, note="0 = off"),
    Range("regularization.l2", 0, note="0 = off"),
    Range("regularization.max_norm", 0, note="0 = off"),
    Range("training.batch_size", 1),
    Range("training.num_epochs", 1),
    Range("training.eval_every_epochs", 1),
    Range("training.checkpoint_every_epochs", 1),
    Range("training.keep_checkpoints", 1),
    Range("training.keep_best", 0, note="0 = off"),
    Range("training.log_every_steps", 1),
    Range("training.label_smoothing", 0, 1, open_max=True),
    Range("training.recompute_bn_stats", 0, note="training batches; 0 = off"),
    Range("training.population", 1),
    Range("training.initial_loss_scale", 1),
    Range("training.loss_scale_period", 1),
    Range("training.steps_per_call", 0, note="0 = auto"),
    Range("transfer.source_member", -1,
          note="-1 = seed-matched from a population source of the run's size"),
    Range("inference.num_samples", 1),
    Range("inference.batch_size", 1),
    Range("lr_find.steps", 2),
    Range("lr_find.smoothing", 0, 1, open_max=True),
)


def _check_range(config: ml_collections.ConfigDict, rule: Range) -> None:
  section, _, name = rule.path.rpartition(".")
  value = (config[section] if section else config)[name]
  # The type was checked against the default's, but None passes that check.
  if value is None or not rule.contains(value):
    note = f" ({rule.note})" if rule.note else ""
    raise ConfigError(
        f"'{rule.path}' must be {rule.describe()}{note}, got {value!r}.")


def _check_validation_split(split: float) -> None:
  """A fraction in [0, 1) or a whole count of examples (e.g. 5000 or 5000.0)."""
  number = split is not None and math.isfinite(split)
  fraction = number and 0 <= split < 1
  count = number and split >= 1 and float(split).is_integer()
  if not (fraction or count):
    raise ConfigError(
        "'dataset.validation_split' must be a fraction in [0, 1) or a count "
        f"of examples; got {split!r}.")


def _check_image_size(size: Sequence[Any] | None) -> None:
  """() or [] (the native size), else a (height, width) pair."""
  if size is not None and len(size) == 0:
    return
  pair = size is not None and len(size) == 2 and all(
      isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in size)
  if not pair:
    raise ConfigError(
        "'dataset.image_size' must be () or (height, width) of whole numbers "
        f">= 1; got {size!r}.")


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Checks a whole config before anything compiles.

  Every key is checked against :func:`defaults` (the open sections are left
  to their owners), every value's type against the default's, and every
  number against its :data:`RANGES` rule.

  Args:
    config: the experiment config.

  Returns:
    The same config, for chaining.

  Raises:
    ConfigError: an unknown key (with the closest valid one), a wrong type, or
      an impossible value, with what would be valid.
  """
  _check_against(config, defaults(), "")
  for rule in RANGES:
    _check_range(config, rule)
  t = config.training
  if t.best_metric not in ("val_accuracy", "val_loss"):
    raise ConfigError(
        f"'training.best_metric' must be 'val_accuracy' or 'val_loss'; got "
        f"{t.best_metric!r}.")
  if t.precision not in PRECISIONS:
    guess = closest(str(t.precision), PRECISIONS)
    raise ConfigError(
        f"'training.precision' must be one of {', '.join(PRECISIONS)}; got "
        f"{t.precision!r}." + (f" Did you mean '{guess}'?" if guess else ""))
  d = config.dataset
  if d.normalization not in NORMALIZATIONS:
    raise ConfigError(
        f"'dataset.normalization' must be one of {', '.join(NORMALIZATIONS)}; "
        f"got {d.normalization!r}.")
  _check_validation_split(d.validation_split)
  if d.validation_from not in VALIDATION_FROM:
    raise ConfigError(
        f"'dataset.validation_from' must be one of {', '.join(VALIDATION_FROM)}; "
        f"got {d.validation_from!r}.")
  _check_image_size(d.image_size)
  _check_device_cache(config)
  _check_transfer(config.transfer)
  _validate_population(config)
  _check_lr_find(config.lr_find)
  return config


def _check_lr_find(lr: ml_collections.ConfigDict) -> None:
  """``lr_find.start`` > 0, ``end`` > ``start``, ``stop_factor`` > 1 (all finite)."""
  finite = all(v is not None and math.isfinite(v)
               for v in (lr.start, lr.end, lr.stop_factor))
  if not finite or lr.start <= 0:
    raise ConfigError(f"'lr_find.start' must be > 0 and 'lr_find.end' and "
                      f"'lr_find.stop_factor' finite; got start={lr.start!r}, "
                      f"end={lr.end!r}, stop_factor={lr.stop_factor!r}.")
  if lr.end <= lr.start:
    raise ConfigError(f"'lr_find.end' must be > 'lr_find.start' (the rate grows "
                      f"from start to end); got start={lr.start!r}, end={lr.end!r}.")
  if lr.stop_factor <= 1:
    raise ConfigError(f"'lr_find.stop_factor' must be > 1 (the sweep stops once "
                      f"the smoothed loss exceeds stop_factor x its best); got "
                      f"{lr.stop_factor!r}.")


def _check_transfer(transfer: ml_collections.ConfigDict) -> None:
  """``transfer.source_member`` only with a source (its range is in RANGES).

  Whether the source holds a population, and how many members, is read from
  the source workdir when the run starts (``state.source_member``).
  """
  if transfer.source_member >= 0 and not transfer.source:
    raise ConfigError(
        f"'transfer.source_member' is {transfer.source_member} but transfer.source "
        "is empty: name the population workdir to start from in transfer.source, "
        "or leave transfer.source_member at -1.")


def _check_device_cache(config: ml_collections.ConfigDict) -> None:
  """``dataset.device_cache``: a valid mode, and 'on' only where it can run.

  The checks that need the data (its size against device memory) or the
  runtime (processes) are ``jaxcnn.data.device.resolve``'s.
  """
  d = config.dataset
  if d.device_cache not in DEVICE_CACHE_MODES:
    raise ConfigError(
        f"'dataset.device_cache' must be one of {', '.join(DEVICE_CACHE_MODES)}; "
        f"got {d.device_cache!r}.")
  if d.device_cache != "on":
    return
  if not d.cache:
    raise ConfigError(
        "dataset.device_cache='on' needs dataset.cache=True (the device copy is "
        "made from the decoded examples held in memory); set dataset.cache=True "
        "or dataset.device_cache='off'.")
  if config.transfer.feature_extraction:
    raise ConfigError(
        "dataset.device_cache='on' does not apply to transfer.feature_extraction "
        "(the head trains on cached features, not images); set "
        "dataset.device_cache='off' or 'auto'.")


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
      split; validation is carved from their end or start,
      ``dataset.validation_from``).
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


# The config files a "not found" error lists when the path names no folder
# that holds any: this repository's experiments.
EXPERIMENTS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")


def load(spec: str) -> ml_collections.ConfigDict:
  """Runs a config file: ``'path[:arg]'`` -> its ``get_config(arg)``.

  What ``--config=path[:arg]`` means (``get_config()`` without a colon, as in
  ``ml_collections.config_flags``), with every mistake in the file one
  :class:`ConfigError` line instead of a page of loader traceback.

  Args:
    spec: the file's path, optionally followed by ``:`` and the config string.

  Returns:
    The ConfigDict ``get_config`` returned, as it returned it.

  Raises:
    ConfigError: no such file (where it looked, the closest file and the files
      there), a syntax error (file:line and the message), no ``get_config``,
      a key a ConfigDict lacks (file:line, the closest valid key), a value of
      the wrong type for a typed key (file:line, the key, its type and the
      value), a result that is not a ConfigDict, and the ConfigErrors of
      ``get_config`` itself (e.g. an unknown config argument).
  """
  path, colon, arg = spec.partition(":")
  _check_file(path)
  get_config = getattr(_exec_file(path), "get_config", None)
  if not callable(get_config):
    raise ConfigError(f"Config file {path} defines no get_config(); it must "
                      "return the experiment's ml_collections.ConfigDict.")
  try:
    config = get_config(arg) if colon else get_config()
  except (TypeError, KeyError, AttributeError) as e:
    error = _file_error(e, path)
    if error is None:
      raise
    raise error from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"get_config() of {path} returned {type(config).__name__}, "
                      "not an ml_collections.ConfigDict.")
  return config


def _check_file(path: str) -> None:
  """Raises a ConfigError saying where it looked unless ``path`` is a file."""
  if not path.strip():
    raise ConfigError("No config file given; pass the path of one, e.g. "
                      "experiments/fashion_mnist_cnn.py.")
  if os.path.isfile(path):
    return
  # The files in the folder named, else (a bare name, a folder that does not
  # exist or holds none) this repository's experiments.
  folder = os.path.dirname(path)
  names = _config_files(folder) if folder else []
  if not names:
    folder = _shown(EXPERIMENTS_DIR)
    names = _config_files(folder)
  # Compared without '.py', which would make every name look alike.
  stems = {os.path.splitext(n)[0]: n for n in names}
  guess = stems.get(closest(os.path.splitext(os.path.basename(path))[0], stems))
  hint = f" Did you mean '{os.path.join(folder, guess)}'?" if guess else ""
  files = f" Config files in {folder}/: {', '.join(names)}." if names else ""
  kind = "is a folder, not a file" if os.path.isdir(path) else "not found"
  raise ConfigError(f"Config file '{path}' {kind} (looked for "
                    f"{os.path.abspath(path)}).{hint}{files}")


def _config_files(folder: str) -> list[str]:
  if not os.path.isdir(folder):
    return []
  return sorted(n for n in os.listdir(folder)
                if n.endswith(".py") and not n.startswith("_"))


def _shown(folder: str) -> str:
  """``folder`` relative to the current one when inside it, else absolute."""
  relative = os.path.relpath(folder)
  return folder if relative.startswith("..") else relative


def _exec_file(path: str) -> types.ModuleType:
  """Imports the file at ``path`` (any suffix) as a fresh module."""
  name = "jaxcnn_config_" + os.path.splitext(os.path.basename(path))[0]
  loader = importlib.machinery.SourceFileLoader(name, path)
  spec = importlib.util.spec_from_loader(name, loader)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module  # Dataclasses defined in the file look it up.
  try:
    loader.exec_module(module)
  except SyntaxError as e:
    del sys.modules[name]  # As import does: no half-run module is left.
    imported = "" if _same_file(e.filename, path) else f" (imported by {path})"
    raise ConfigError(f"Syntax error in {e.filename}:{e.lineno}{imported}: "
                      f"{e.msg}.") from e
  except BaseException:
    del sys.modules[name]
    raise
  return module


def _same_file(a: str | None, b: str) -> bool:
  return a is not None and os.path.abspath(a) == os.path.abspath(b)


# The ConfigDict methods that refuse a key or a value, and their key argument.
_KEY_ARGUMENTS = {
    ml_collections.ConfigDict.__getitem__.__code__: "key",
    ml_collections.ConfigDict.__setitem__.__code__: "key",
    ml_collections.ConfigDict.__getattr__.__code__: "attribute",
    ml_collections.ConfigDict.__setattr__.__code__: "attribute",
}


def _file_error(error: Exception, path: str) -> ConfigError | None:
  """The one line for a ConfigDict that refused a key or a value in ``path``.

  ml_collections' own messages name only the last part of the key (and a
  locked section's every value); the innermost ConfigDict frame of the
  traceback holds the section, the key and the value, and the config
  file's own frame the line.

  Returns:
    The ConfigError: an unknown key with the closest valid one, or a value of
    the wrong type with the key's type; None when ``error`` is neither.
  """
  frames = list(traceback.walk_tb(error.__traceback__))
  refused = [(frame.f_locals, _KEY_ARGUMENTS[frame.f_code]) for frame, _ in frames
             if frame.f_code in _KEY_ARGUMENTS]
  if not refused:
    return None
  local, key_argument = refused[-1]
  section, key, value = local.get("self"), local.get(key_argument), local.get("value")
  if not isinstance(section, ml_collections.ConfigDict) or not isinstance(key, str):
    return None
  lines = [line for frame, line in frames
           if _same_file(frame.f_code.co_filename, path)]
  where = f"{path}:{lines[-1]}" if lines else path
  prefix = _prefix_in_defaults(section)
  if key not in section:
    name = "its section" if prefix is None else f"'{prefix[:-1] or 'config'}'"
    return ConfigError(f"{where}: " + str(unknown_key_error(
        (prefix or "") + key, section.keys(), name)))
  if not isinstance(error, TypeError):
    return None
  default = _at(defaults(), (prefix or "") + key) if prefix is not None else None
  like = (f"like the default {default!r}" if default is not None
          else f"like its value {section[key]!r}")
  full = (prefix or "") + key if default is not None else key
  return ConfigError(f"{where}: '{full}' must be of type "
                     f"{section.get_type(key).__name__} ({like}), got {value!r}.")


def _prefix_in_defaults(section: ml_collections.ConfigDict) -> str | None:
  """Which section of :func:`defaults` ``section`` is, as a key prefix.

  Returns:
    'training.' (or '' for the root) for the one section with the most keys
    of which ``section`` has every one; None when none or two such.
  """
  matches = []

  def walk(node: ml_collections.ConfigDict, prefix: str) -> None:
    if len(node) and set(node.keys()) <= set(section.keys()):
      matches.append((len(node), prefix))
    for name, value in node.items():
      if isinstance(value, ml_collections.ConfigDict):
        walk(value, f"{prefix}{name}.")

  walk(defaults(), "")
  best = max((size for size, _ in matches), default=0)
  found = [prefix for size, prefix in matches if size == best]
  return found[0] if len(found) == 1 else None


def _at(config: ml_collections.ConfigDict, path: str) -> Any:
  """The value at the dotted ``path`` of ``config``; None where it has none."""
  for part in path.split("."):
    if not isinstance(config, ml_collections.ConfigDict) or part not in config:
      return None
    config = config[part]
  return config


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
