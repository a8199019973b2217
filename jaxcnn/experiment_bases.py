"""Shared starting points of the config files in ``experiments/``.

Config files are loaded by path (``--config=experiments/foo.py``), so what
several of them share lives here, in the package, rather than in a sibling
module they could not import.
"""

from __future__ import annotations

from typing import Iterable

import ml_collections

from jaxcnn import config as config_lib

# Lecture 003's ImageDataGenerator settings for cats vs dogs.
CATS_VS_DOGS_AUGMENTATION = {
    "rotation_range": 40, "width_shift_range": 0.2, "height_shift_range": 0.2,
    "shear_range": 0.2, "zoom_range": 0.2, "horizontal_flip": True,
    "fill_mode": "nearest"}
# Where keras.applications.VGG16(include_top=False) caches its ImageNet weights.
KERAS_VGG16_NOTOP = "~/.keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def pick_member(arg: str, members: Iterable[str], default: str) -> str:
  """The ladder member named first in ``arg`` (``default`` when empty).

  Raises:
    ConfigError: an unknown member, listing the valid ones.
  """
  members = list(members)
  member = arg.split(",")[0] or default
  if member not in members:
    raise config_lib.ConfigError(
        f"Unknown member '{member}'; members: {', '.join(members)}.")
  return member


def quick(config: ml_collections.ConfigDict, *, train: int = 6400,
          validation: int = 640, test: int = 2000) -> None:
  """Shrinks ``config`` in place to a smoke test: one epoch on a few images.

  ``train`` examples are read, the last ``validation`` of them validate,
  ``test`` are scored; the one epoch ends with a checkpoint.
  """
  config.dataset.num_train_examples = train
  config.dataset.validation_split = validation
  config.dataset.num_test_examples = test
  config.training.num_epochs = 1
  config.training.checkpoint_every_epochs = 1


def lecture004_mlp(model: str, *, num_epochs: int) -> ml_collections.ConfigDict:
  """Lecture 004's Fashion-MNIST MLP setup, unlocked for the caller to finish.

  5,000 validation images, per-pixel standardization, batch 32, no progress
  bar (ladders run many members). The optimizer is the caller's to set.
  """
  config = config_lib.defaults()
  config.dataset.name = "fashion_mnist"
  config.dataset.validation_split = 5000
  config.dataset.normalization = "standardize_pixel"
  config.model.name = model
  config.training.batch_size = 32
  config.training.num_epochs = num_epochs
  config.training.progress_bar = False
  return config


def cats_vs_dogs(*, augment: bool = False) -> ml_collections.ConfigDict:
  """Lecture 003's cats-vs-dogs data, unlocked for the caller to finish.

  The first 3,000 images of TFDS' ``cats_vs_dogs`` train split: 2,000 to
  train, the last 1,000 of them to validate; the next 1,000 to test. Resized
  to 150x150 and rescaled (``ImageDataGenerator(rescale=1./255)``); with
  ``augment`` the lecture's augmentation on the training images. Batch 20.
  """
  config = config_lib.defaults()
  config.dataset.name = "cats_vs_dogs"
  config.dataset.train_split = "train"
  config.dataset.num_train_examples = 3000
  config.dataset.validation_split = 1000
  config.dataset.test_split = "train[3000:4000]"
  config.dataset.image_size = (150, 150)
  config.dataset.normalization = "rescale"
  config.dataset.shuffle_buffer = 3000
  if augment:
    config.dataset.augmentation.update(CATS_VS_DOGS_AUGMENTATION)
  config.training.batch_size = 20
  return config


# Small augmentation for the 400 labelled digits of the transfer experiment.
DIGITS_AUGMENTATION = {"rotation_range": 10, "width_shift_range": 0.1,
                       "height_shift_range": 0.1, "zoom_range": 0.1}


def digits_transfer(arg: str) -> ml_collections.ConfigDict:
  """The offline transfer experiment's data and model, unlocked.

  ``sklearn_digits`` (500 images: the last 100 validate, 400 train),
  rescaled as the Fashion-MNIST source was; the lecture 003 MNIST CNN;
  RMSProp (rate 1e-3), batch 20, 30 epochs, a checkpoint every 10.

  Args:
    arg: '' or 'augment' (adds :data:`DIGITS_AUGMENTATION`).

  Raises:
    ConfigError: any other argument.
  """
  if arg not in ("", "augment"):
    raise config_lib.ConfigError(
        f"Unknown config argument {arg!r}; valid: '' or 'augment'.")
  config = config_lib.defaults()
  config.dataset.name = "sklearn_digits"
  config.dataset.validation_split = 100  # the last 100 of the 500: 400 train
  config.dataset.normalization = "rescale"  # as the Fashion-MNIST source
  if arg == "augment":
    config.dataset.augmentation.update(DIGITS_AUGMENTATION)
  config.model.name = "mnist_cnn"
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-3
  config.training.batch_size = 20
  config.training.num_epochs = 30
  config.training.checkpoint_every_epochs = 10
  return config
