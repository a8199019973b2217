"""The data: TFDS examples to host numpy batches shaped for ``jax.pmap``.

  data = jaxcnn.data.create(config.dataset, global_batch_size=64, seed=0)
  for batch in data.train_epoch(epoch): ...      # {'image', 'label'}
  for batch in data.eval_batches('test'): ...    # {'image', 'label', 'mask'}

:func:`create` runs the steps in order, each in its own module:

1. ``sources``: :func:`prepare` the TFDS dataset (online through
   ``download``, or offline from the Fashion-MNIST ``mirror``); ``digits`` is
   the offline sklearn digits builder. ``errors`` holds the data errors a
   user can fix, each one line saying what to do.
2. ``splits``: the batch sizes per process and device, and which examples
   make the train, validation and test parts of this process.
3. ``reader`` + ``statistics``: the training part's normalization
   statistics (decoded once; with ``dataset.cache`` kept for training).
4. ``pipeline``: :class:`Data`, which only iterates (``augment`` supplies
   the per-example augmentation).
"""

from __future__ import annotations

import functools

import tensorflow as tf

from jaxcnn import config as config_lib
from jaxcnn.data import augment
from jaxcnn.data import reader as reader_lib
from jaxcnn.data import splits
from jaxcnn.data import statistics
from jaxcnn.data.errors import (BrokenDataError, ChecksumError, DatasetNotFoundError,
                                MirrorFileError, PreparedDataError, UnknownDatasetError)
from jaxcnn.data.pipeline import Batch, Data, DataInfo, PopulationData
from jaxcnn.data.sources import prepare
from jaxcnn.data.splits import SPLITS


def _hide_gpus_from_tf() -> None:
  """Keeps TF on the CPU so it never takes GPU memory that JAX needs.

  Here, in the package, so that it runs before any of its modules (the
  augmentation too) first touches a TF device.
  """
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:
    # TF's devices were initialized before this import; they cannot change now.
    pass


_hide_gpus_from_tf()

__all__ = ["SPLITS", "Batch", "BrokenDataError", "ChecksumError", "Data", "DataInfo", "PopulationData",
           "DatasetNotFoundError", "MirrorFileError", "PreparedDataError",
           "UnknownDatasetError", "create", "prepare"]


def create(dataset_config, *, global_batch_size: int, seed: int,
           num_local_devices: int | None = None,
           eval_batch_size: int | None = None) -> Data:
  """Prepares the dataset of an experiment and returns its batches.

  Args:
    dataset_config: the ``config.dataset`` section (see ``config.defaults``).
    global_batch_size: training batch over all devices of all processes.
    seed: fixes the training order (with the epoch) and the augmentation.
    num_local_devices: devices of this process; default
      ``jax.local_device_count()``.
    eval_batch_size: global evaluation batch; default ``global_batch_size``.

  Returns:
    A :class:`Data`.

  Raises:
    ConfigError: an unknown normalization, a batch size not divisible by the
      device count (with the nearest ones that are), a bad augmentation, a
      validation split that leaves nothing to train on, varying image sizes
      without ``image_size``, fewer examples than one batch (with the
      largest batch that fits).
    UnknownDatasetError: a ConfigError: ``name`` is no TFDS dataset.
    DatasetNotFoundError: the dataset cannot be found or downloaded.
    MirrorFileError, ChecksumError: a broken mirror file, by name.
    PreparedDataError: a corrupt prepared file (also later, while reading).
  """
  cfg = dataset_config
  if cfg.normalization not in config_lib.NORMALIZATIONS:
    raise config_lib.ConfigError(
        f"dataset.normalization must be one of "
        f"{', '.join(config_lib.NORMALIZATIONS)}; got {cfg.normalization!r}.")
  batches = splits.batching(global_batch_size, eval_batch_size, num_local_devices)
  # Built first: a bad augmentation config fails before any data loads.
  augment_fn = augment.build(cfg.augmentation) if cfg.augmentation else None

  builder = prepare(cfg.name, data_dir=cfg.data_dir, mirror_dir=cfg.mirror_dir)
  size = reader_lib.image_size(builder, cfg.image_size, cfg.name)
  parts = splits.plan(cfg, functools.partial(reader_lib.num_examples, builder))
  steps = splits.steps_per_epoch(parts["train"], batches, cfg.cache)
  reader = reader_lib.Reader(builder, parts, size)

  image_key, label_key = reader_lib.supervised_keys(builder)
  channels = builder.info.features[image_key].shape[2]
  tile = 3 if cfg.grayscale_to_rgb and channels == 1 else 1
  # Without the cache each process holds a share of the training part, so
  # the moments are merged over processes.
  mean, std = statistics.compute(
      cfg.normalization, lambda: reader.uint8_chunks("train", cfg.cache),
      channels, tile, gather=not cfg.cache)
  label = builder.info.features[label_key]
  info = DataInfo(
      name=cfg.name, num_classes=int(label.num_classes),
      image_shape=(size[0], size[1], channels * tile),
      num_train=parts["train"].global_count,
      num_validation=parts["validation"].global_count,
      num_test=parts["test"].global_count,
      class_names=tuple(label.names), mean=mean, std=std)
  return Data(reader, parts, info, batches, steps_per_epoch=steps, seed=seed,
              normalization=cfg.normalization, tile=tile, cache=cfg.cache,
              shuffle_buffer=cfg.shuffle_buffer, augment=augment_fn,
              augmentation=augment.parse_config(cfg.augmentation) if augment_fn else None)
