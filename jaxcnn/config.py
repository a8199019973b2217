"""Experiment configuration: defaults and validation of a whole config.

Every experiment file in ``experiments/`` is a module with ``get_config()``
returning an ``ml_collections.ConfigDict`` built on :func:`defaults`. The whole
config is validated by :func:`validate` before anything is compiled, so a typo
fails in a second with the closest valid key, not after a ten-minute run.

Sections whose keys depend on a choice (the model preset's overrides, the
chosen optimizer's hyperparameters, the schedule's parameters) are open here
and checked by the component that owns them (``models.create``,
``optim.create``), which also name the closest valid key.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

import ml_collections

# Sections whose keys are checked by their owners rather than against defaults.
OPEN_SECTIONS = ("model", "optimizer", "schedule", "augmentation")


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
  # 'rescale' (x / 255), 'standardize' (per-channel mean/std of the training
  # split only), 'standardize_pixel' (per-pixel mean/std, lecture 004), 'none'.
  c.dataset.normalization = "rescale"
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
  if d.normalization not in ("rescale", "standardize", "standardize_pixel", "none"):
    raise ConfigError(
        f"'dataset.normalization' must be one of rescale, standardize, "
        f"standardize_pixel, none; got {d.normalization!r}.")
  if d.validation_split < 0 or (
      isinstance(d.validation_split, float) and 0 < d.validation_split and
      d.validation_split >= 1.0 and not float(d.validation_split).is_integer()):
    raise ConfigError(
        "'dataset.validation_split' must be a fraction in [0, 1) or a count "
        f"of examples; got {d.validation_split!r}.")
  if d.image_size and len(d.image_size) != 2:
    raise ConfigError(
        f"'dataset.image_size' must be () or (height, width); got {d.image_size!r}.")
  if config.inference.num_samples < 1:
    raise ConfigError(
        f"'inference.num_samples' must be >= 1, got {config.inference.num_samples}.")
  return config


def to_dict(config: ml_collections.ConfigDict) -> dict:
  """A plain, JSON-serializable dict of the config (tuples become lists)."""
  return config.to_dict()
