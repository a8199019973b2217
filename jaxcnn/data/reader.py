"""Reading a prepared TFDS dataset: encoded examples, decoded images, uint8 arrays.

``image_size`` resizes bilinearly as Keras' ``image_dataset_from_directory``
does, once per example before caching; the result is rounded to uint8 (at
most half a grey level from Keras' float result) so the cache stays small.

A prepared file that TF finds corrupt while reading (a record's CRC, a
truncated file) is :class:`PreparedDataError`, naming the folder to delete.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxcnn import config as config_lib
from jaxcnn.data import splits
from jaxcnn.data.errors import PreparedDataError

AUTOTUNE = tf.data.AUTOTUNE
CHUNK = 2048  # images per chunk when loading or computing statistics


def supervised_keys(builder: tfds.core.DatasetBuilder) -> tuple[str, str]:
  """The (image, label) feature names."""
  keys = builder.info.supervised_keys or ("image", "label")
  return keys[0], keys[1]


def num_examples(builder: tfds.core.DatasetBuilder, split: Any) -> int:
  """Examples in ``split``, from the metadata or else from the dataset."""
  try:
    return int(builder.info.splits[split].num_examples)
  except (KeyError, ValueError, TypeError):
    # No split metadata (e.g. under tfds.testing.mock_data): ask tf.data.
    ds = builder.as_dataset(split=split, shuffle_files=False)
    n = int(ds.cardinality())
    return n if n >= 0 else int(ds.reduce(0, lambda c, _: c + 1))


def image_size(builder: tfds.core.DatasetBuilder, requested: Any,
               name: str) -> tuple[int, int]:
  """The (height, width) the pipeline gives: ``requested``, or else the native one.

  Args:
    builder: a prepared TFDS builder.
    requested: ``dataset.image_size``; empty keeps the native size.
    name: the dataset's name, for the message.

  Raises:
    ConfigError: the images vary in size and no size was requested.
  """
  native = tuple(builder.info.features[supervised_keys(builder)[0]].shape)
  if requested:
    return tuple(int(s) for s in requested)
  if None in native[:2]:
    raise config_lib.ConfigError(
        f"Dataset '{name}' has images of varying size {native}; set "
        "dataset.image_size = (height, width) to resize them.")
  return native[:2]


def _tf_reason(error: tf.errors.OpError) -> str:
  """TF's message without the op's wrapping: 'corrupted record at 626'."""
  text = (error.message.strip().splitlines() or [""])[0]
  text = re.sub(r"\{\{.*?\}\}", "", text)
  return re.sub(r"\s*\[Op:.*$", "", text).strip() or type(error).__name__


class Reader:
  """The examples of each part of a prepared dataset, in the split's fixed order.

  Args:
    builder: a prepared TFDS builder.
    parts: this process's parts, by name.
    size: the (height, width) to give; other sizes are resized.
  """

  def __init__(self, builder: tfds.core.DatasetBuilder,
               parts: Mapping[str, splits.Part], size: tuple[int, int]):
    self._builder = builder
    self._parts = parts
    self._image_key, self._label_key = supervised_keys(builder)
    native = tuple(builder.info.features[self._image_key].shape)
    self._resize = None if tuple(size) == native[:2] else tuple(size)
    self._loaded: dict[str, tuple[tf.Tensor, tf.Tensor]] = {}

  def guarded(self, items: Iterable[Any]) -> Iterator[Any]:
    """Iterates ``items`` (read from the prepared files), corrupt files one clear error.

    Raises:
      PreparedDataError: TF found a prepared file corrupt or truncated.
    """
    try:
      yield from items
    except tf.errors.DataLossError as e:
      folder = self._builder.data_dir
      raise PreparedDataError(
          f"The prepared dataset in {folder} is corrupt ({_tf_reason(e)}): delete {folder} "
          "and run again; it is then prepared anew (from the mirror or TFDS's "
          "download).") from e

  def encoded(self, name: str) -> tf.data.Dataset:
    """(encoded image, int32 label) of part ``name``."""
    ds = self._builder.as_dataset(
        split=self._parts[name].split, shuffle_files=False,
        decoders={self._image_key: tfds.decode.SkipDecoding()})
    image_key, label_key = self._image_key, self._label_key
    return ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))

  def decode(self, encoded: tf.Tensor) -> tf.Tensor:
    """One encoded image to uint8 [H, W, C], resized if asked."""
    image = self._builder.info.features[self._image_key].decode_example(encoded)
    if self._resize is not None:
      # Keras' image_dataset_from_directory: bilinear, no antialias. Rounded
      # back to uint8, which bilinear weights keep inside [0, 255].
      image = tf.image.resize(image, self._resize, method="bilinear")
      image = tf.cast(tf.round(image), tf.uint8)
    return image

  def decoded(self, name: str) -> tf.data.Dataset:
    """(uint8 image, int32 label) of part ``name``."""
    return self.encoded(name).map(lambda x, y: (self.decode(x), y),
                                  num_parallel_calls=AUTOTUNE)

  def arrays(self, name: str) -> tuple[tf.Tensor, tf.Tensor]:
    """The decoded uint8 images and labels of part ``name``, loaded once."""
    if name not in self._loaded:
      images, labels = [], []
      for x, y in self.guarded(self.decoded(name).batch(CHUNK).prefetch(2)):
        images.append(x.numpy())
        labels.append(y.numpy())
      self._loaded[name] = (tf.constant(np.concatenate(images)),
                            tf.constant(np.concatenate(labels)))
    return self._loaded[name]

  def uint8_chunks(self, name: str, cache: bool) -> Iterator[np.ndarray]:
    """The images of part ``name`` in chunks: from memory with ``cache``, else decoded anew."""
    if cache:
      images = self.arrays(name)[0].numpy()
      for i in range(0, len(images), CHUNK):
        yield images[i:i + CHUNK]
    else:
      for x, _ in self.guarded(self.decoded(name).batch(CHUNK).prefetch(2)):
        yield x.numpy()
