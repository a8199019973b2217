"""Shared starting points of the config files in ``experiments/``.

Config files are loaded by path (``--config=experiments/foo.py``), so what
several of them share lives here, in the package, rather than in a sibling
module they could not import. Each file parses its config string with a
:class:`jaxcnn.config.ArgSpec` of its own.
"""

from __future__ import annotations

import math

import ml_collections

from jaxcnn import config as config_lib

# Lecture 003's shear_range=0.2 is in radians: the Keras of its code (before
# 2.1.3, keras-team/keras#8868) read shear that way. jaxcnn, like Keras since,
# reads degrees, so the preset states the same angle in degrees.
LECTURE_003_SHEAR_RADIANS = 0.2
# Lecture 003's ImageDataGenerator settings for cats vs dogs.
CATS_VS_DOGS_AUGMENTATION = {
    "rotation_range": 40, "width_shift_range": 0.2, "height_shift_range": 0.2,
    "shear_range": math.degrees(LECTURE_003_SHEAR_RADIANS),  # about 11.5 degrees
    "zoom_range": 0.2, "horizontal_flip": True, "fill_mode": "nearest"}
# Where keras.applications.VGG16(include_top=False) caches its ImageNet weights.
KERAS_VGG16_NOTOP = "~/.keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


# The smoke-test size of a Fashion-MNIST experiment's ``quick`` option: one
# epoch on the first 6,400 images, the last 640 of them validating, 2,000
# test images.
QUICK = {"epochs": 1, "train_examples": 6400, "validation_examples": 640,
         "test_examples": 2000}


def quick(config: ml_collections.ConfigDict, **sizes: int) -> ml_collections.ConfigDict:
  """Shrinks ``config`` in place to a smoke test (the ``quick`` option).

  Args:
    config: the experiment's config.
    **sizes: :func:`jaxcnn.config.shrink` keywords replacing :data:`QUICK`'s.

  Returns:
    The same config.
  """
  return config_lib.shrink(config, **{**QUICK, **sizes})


def lecture004_mlp(model: str, *, num_epochs: int) -> ml_collections.ConfigDict:
  """Lecture 004's Fashion-MNIST MLP setup, unlocked for the caller to finish.

  The FIRST 5,000 training images validate (the lecture's
  ``X_train_full[:5000]``, ``dataset.validation_from='start'``), per-pixel
  standardization, batch 32, no progress bar (ladders run many members).
  The optimizer is the caller's to set.
  """
  config = config_lib.defaults()
  config.dataset.name = "fashion_mnist"
  config.dataset.validation_split = 5000
  config.dataset.validation_from = "start"
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


def digits_transfer(*, augment: bool = False) -> ml_collections.ConfigDict:
  """The offline transfer experiment's data and model, unlocked.

  ``sklearn_digits`` (500 images: the last 100 validate, 400 train),
  rescaled as the Fashion-MNIST source was; the lecture 003 MNIST CNN;
  RMSProp (rate 1e-3), batch 20, 30 epochs, a checkpoint every 10.

  Args:
    augment: add :data:`DIGITS_AUGMENTATION` to the training images.
  """
  config = config_lib.defaults()
  config.dataset.name = "sklearn_digits"
  config.dataset.validation_split = 100  # the last 100 of the 500: 400 train
  config.dataset.normalization = "rescale"  # as the Fashion-MNIST source
  if augment:
    config.dataset.augmentation.update(DIGITS_AUGMENTATION)
  config.model.name = "mnist_cnn"
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-3
  config.training.batch_size = 20
  config.training.num_epochs = 30
  config.training.checkpoint_every_epochs = 10
  return config
