"""TFDS builder ``sklearn_digits``: scikit-learn's 1,797 real handwritten digits.

The data is the UCI "Optical Recognition of Handwritten Digits" test set
(Alpaydin & Kaynak, 1998) that ships inside scikit-learn
(``sklearn.datasets.load_digits``): 8x8 images of 0..16 ink counts from 43
writers. It is the one small set of real handwritten digits that can be had
with no network, which makes it the offline target of the transfer-learning
experiment (a CNN pretrained on Fashion-MNIST, transferred to digits with few
labels; see ``experiments/transfer_digits_*.py``).

The images are made MNIST-like: ink counts scaled to 0..255 (``round(v * 255 /
16)``) and upsampled to 28x28x1 with bilinear interpolation (half-pixel
centers, as ``tf.image.resize``), rounded to uint8.

Splits are fixed (no randomness at load time):

* ``train``: 500 examples, the first 50 of each digit in a permutation of the
  1,797 indices drawn once from ``numpy.random.default_rng(0)``: few labels,
  balanced classes;
* ``test``: the other 1,297.

Importing this module registers the builder (``jaxcnn.data.sources`` imports
it), so ``jaxcnn.data.prepare('sklearn_digits')`` and
``tfds.load('sklearn_digits')`` work; preparing it is quick and downloads
nothing.
"""

from __future__ import annotations

import os
from typing import Iterator

from etils import epath
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

IMAGE_SIZE = 28
TRAIN_PER_CLASS = 50
SPLIT_SEED = 0


def load_arrays() -> tuple[np.ndarray, np.ndarray]:
  """All 1,797 digits as MNIST-like images.

  Returns:
    ``(images uint8[1797, 28, 28, 1], labels int64[1797])`` in scikit-learn's
    order.
  """
  from sklearn import datasets as sk_datasets  # Heavy; only when preparing.
  digits = sk_datasets.load_digits()
  ink = digits.images.astype(np.float32) * (255.0 / 16.0)
  # Bilinear upsampling of the 0..255 image, then back to uint8 (bilinear
  # weights keep the values inside [0, 255]).
  big = tf.image.resize(ink[..., None], (IMAGE_SIZE, IMAGE_SIZE),
                        method="bilinear").numpy()
  images = np.clip(np.round(big), 0, 255).astype(np.uint8)
  return images, digits.target.astype(np.int64)


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
  """The fixed train/test partition of the indices (see the module docstring)."""
  order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
  train = np.concatenate([order[labels[order] == c][:TRAIN_PER_CLASS]
                          for c in range(10)])
  train = np.sort(train)
  test = np.setdiff1d(np.arange(len(labels)), train)
  return {"train": train, "test": test}


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's handwritten digits, 28x28x1, 500 train / 1,297 test."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: 28x28 bilinear upsampling, 50 per class train."}
  # TFDS infers both from importlib.resources, which fails for an editable
  # install of jaxcnn (a MultiplexedPath); this folder is the answer anyway.
  pkg_dir_path = epath.Path(os.path.dirname(os.path.abspath(__file__)))

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    return epath.Path(os.path.abspath(__file__))

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "scikit-learn's load_digits (UCI Optical Recognition of "
            "Handwritten Digits, test part): 1,797 8x8 images of 0..16 ink "
            "counts, scaled to 0..255 and upsampled bilinearly to 28x28."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage=("https://archive.ics.uci.edu/dataset/80/"
                  "optical+recognition+of+handwritten+digits"),
        citation=(
            "@misc{alpaydin1998digits, author = {Alpaydin, E. and Kaynak, C.},"
            " title = {Optical Recognition of Handwritten Digits}, year = "
            "{1998}, howpublished = {UCI Machine Learning Repository}}"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data ships with scikit-learn.
    images, labels = load_arrays()
    parts = split_indices(labels)
    return {name: self._generate_examples(images, labels, idx)
            for name, idx in parts.items()}

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray,
                         indices: np.ndarray) -> Iterator[tuple[int, dict]]:
    for i in indices:
      # The key is scikit-learn's index: stable across preparations.
      yield int(i), {"image": images[i], "label": int(labels[i])}
