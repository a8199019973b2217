"""Split and batch arithmetic: which examples each part holds, per process.

Pure bookkeeping on split names and counts; nothing here reads an example
(counting is the caller's ``count`` function).

* ``num_train_examples`` takes the first N of ``train_split``; the validation
  part is carved from the END of those by default (``validation_from='end'``:
  Keras' ``fit(..., validation_split=)`` convention, lecture 002), and the
  rest is trained on. ``validation_from='start'`` carves it from the START
  instead (lecture 004: ``X_valid, X_train = X_train_full[:5000],
  X_train_full[5000:]``); the two give different but equally valid
  partitions.
* Each part is split per process with ``tfds.split_for_jax_process`` (train
  evenly, dropping a remainder), except the cached training part: every
  process holds all of it and takes its own rows of each global batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import tensorflow_datasets as tfds

from jaxcnn import config as config_lib
from jaxcnn import parallel

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Part:
  """One part of the data as seen by this process."""
  split: Any  # the TFDS split argument for this process
  count: int  # examples in this process
  max_count: int  # examples in the largest process (sets the eval steps)
  global_count: int


@dataclasses.dataclass(frozen=True)
class Batching:
  """How the training and evaluation batches divide over processes and devices."""
  global_size: int  # training examples per step, all processes
  process_size: int  # training examples per step in this process
  eval_process_size: int  # evaluation examples per step in this process
  num_local_devices: int


def batching(global_batch_size: int, eval_batch_size: int | None,
             num_local_devices: int | None) -> Batching:
  """Checks the batch sizes against the devices and divides them per process.

  Args:
    global_batch_size: training batch over all devices of all processes.
    eval_batch_size: evaluation batch over all devices; None means
      ``global_batch_size``.
    num_local_devices: devices of this process; None means
      ``jax.local_device_count()``.

  Returns:
    The :class:`Batching`.

  Raises:
    ConfigError: a batch that does not divide across all devices (see
      ``parallel.check_global_batch``).
  """
  local = num_local_devices or jax.local_device_count()
  num_devices = local * jax.process_count()
  eval_batch_size = eval_batch_size or global_batch_size
  parallel.check_global_batch(global_batch_size, num_devices)
  parallel.check_global_batch(eval_batch_size, num_devices, what="eval_batch_size")
  return Batching(global_size=global_batch_size,
                  process_size=global_batch_size // jax.process_count(),
                  eval_process_size=eval_batch_size // jax.process_count(),
                  num_local_devices=local)


def validation_count(value: float | int, n: int) -> int:
  """Validation examples out of ``n``: ``value`` is a fraction or a count."""
  if isinstance(value, float) and 0 < value < 1:
    return int(round(value * n))
  if value < 0 or float(value) != int(value):
    raise config_lib.ConfigError(
        f"dataset.validation_split must be a fraction in (0, 1), a count of "
        f"examples or 0; got {value!r}.")
  return int(value)


def sliced(split: str, start: int, stop: int | None, total: int) -> str:
  """``split[start:stop]``, or ``split`` itself when that is all of it."""
  if start == 0 and (stop is None or stop >= total):
    return split
  if "[" in split:
    raise config_lib.ConfigError(
        f"Split '{split}' already has a slice; num_train_examples, "
        "num_test_examples and validation_split need a plain split name "
        "such as 'train'.")
  return f"{split}[{start}:{'' if stop is None else stop}]"


def _no_training_left(cfg, n_used: int, total: int) -> config_lib.ConfigError:
  """The error for a validation part that takes every example, saying what fits."""
  source = (f"dataset.num_train_examples={cfg.num_train_examples}"
            if 0 < cfg.num_train_examples < total else f"split '{cfg.train_split}'")
  tenth = max(1, round(n_used / 10))
  value = cfg.validation_split  # a count is a float in the config: 5000.0
  shown = int(value) if float(value).is_integer() else value
  return config_lib.ConfigError(
      f"dataset.validation_split={shown!r} leaves no training "
      f"examples out of {n_used} ({source}): use a count below {n_used} or a "
      f"fraction such as 0.1 ({tenth} examples), or raise dataset.num_train_examples.")


def _global_parts(cfg, count: Callable[[Any], int]) -> dict[str, tuple[str, int]]:
  """Each part's (split expression, example count) over all processes."""
  total = count(cfg.train_split)
  n_used = min(cfg.num_train_examples, total) if cfg.num_train_examples > 0 else total
  n_val = validation_count(cfg.validation_split, n_used)
  if n_val >= n_used:
    raise _no_training_left(cfg, n_used, total)
  n_fit = n_used - n_val
  if cfg.get("validation_from", "end") == "start":
    train, validation = (n_val, n_used), (0, n_val)
  else:
    train, validation = (0, n_fit), (n_fit, n_used)
  total_test = count(cfg.test_split)
  n_test = (min(cfg.num_test_examples, total_test)
            if cfg.num_test_examples > 0 else total_test)
  return {
      "train": (sliced(cfg.train_split, *train, total), n_fit),
      "validation": (sliced(cfg.train_split, *validation, total), n_val),
      "test": (sliced(cfg.test_split, 0, n_test, total_test), n_test),
  }


def plan(cfg, count: Callable[[Any], int]) -> dict[str, Part]:
  """This process's train, validation and test parts.

  Args:
    cfg: the ``config.dataset`` section (splits, counts, ``cache``).
    count: the number of examples of a TFDS split argument.

  Returns:
    ``{'train': Part, 'validation': Part, 'test': Part}``; a part with no
    examples has ``split`` None and zero counts.

  Raises:
    ConfigError: a validation split that leaves nothing to train on, or a
      slice asked of a split that already has one.
  """
  parts = {}
  procs = jax.process_count()
  for name, (split, n) in _global_parts(cfg, count).items():
    drop = name == "train"  # every process trains on n // procs examples
    if n == 0:
      parts[name] = Part(None, 0, 0, 0)
    elif name == "train" and cfg.cache:
      # Every process holds the whole (cached) training part and takes its
      # rows of each global batch: the order is then independent of how
      # many processes and devices there are (same run on 1 or 4 hosts).
      parts[name] = Part(split, n, n, n)
    else:
      local = tfds.split_for_jax_process(split, drop_remainder=drop)
      local_count = count(local)
      if procs == 1:
        n = local_count  # the truth, even where the metadata is missing
      if drop:
        parts[name] = Part(local, local_count, n // procs, n // procs * procs)
      else:
        parts[name] = Part(local, local_count, -(-n // procs), n)
  return parts


def steps_per_epoch(train: Part, batches: Batching, cache: bool) -> int:
  """Whole training batches per epoch (the remainder is dropped).

  Raises:
    ConfigError: fewer examples than one batch; says the largest batch that fits.
  """
  steps = (train.count // batches.global_size if cache
           else train.count // batches.process_size)
  if steps < 1:
    raise _batch_too_large(train, batches, cache)
  return steps


def _batch_too_large(train: Part, batches: Batching, cache: bool) -> config_lib.ConfigError:
  """The error for a training batch larger than the data, with the largest that fits."""
  procs = jax.process_count()
  num_devices = batches.num_local_devices * procs
  # With the cache every process holds all examples; without, its own share.
  per_process = not cache and procs > 1
  per_device = train.count // (batches.num_local_devices if per_process else num_devices)
  held = f"{train.count} training examples" + (" per process" if per_process else "")
  devices = f" (a multiple of the {num_devices} devices)" if num_devices > 1 else ""
  use = (f"use training.batch_size <= {per_device * num_devices}{devices}, or "
         if per_device else "")
  return config_lib.ConfigError(
      f"training.batch_size={batches.global_size} is larger than the {held}: {use}"
      "raise dataset.num_train_examples (or lower dataset.validation_split).")


def eval_part(parts: Mapping[str, Part], split: str) -> Part:
  """The part ``split`` names, if it has data.

  Raises:
    ValueError: an unknown split.
    ConfigError: a split with no data (no validation split configured).
  """
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; valid: {', '.join(SPLITS)}.")
  part = parts[split]
  if part.global_count == 0:
    hint = (" Set dataset.validation_split (a fraction such as 0.1, or a "
            "count) to carve one from the training data (dataset.validation_from: "
            "'end' or 'start')."
            if split == "validation" else "")
    raise config_lib.ConfigError(f"There is no {split} data.{hint}")
  return part


def eval_steps(part: Part, eval_process_size: int) -> int:
  """Evaluation batches of ``part``; the same on every process."""
  return -(-part.max_count // eval_process_size)
