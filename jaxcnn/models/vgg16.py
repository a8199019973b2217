"""VGG16 (Simonyan & Zisserman, 2014) as in ``keras.applications.VGG16``.

Lecture 003 uses its convolutional base (``include_top=False``) for transfer
learning: 13 3x3 'same' ReLU convolutions in five blocks, each block closed by
a 2x2 max-pool; 14,714,688 parameters whatever the input size. Layer names
are Keras' (``block1_conv1`` ... ``block5_pool``), so Keras' weight files load
by name (:mod:`jaxcnn.models.keras_import`) and fine-tuning can address
``block5_conv1`` as the lecture does.

The ImageNet weights expect Keras' ``preprocess_input`` ("caffe" mode):
RGB -> BGR and the ImageNet mean subtracted per channel, on pixels in
[0, 255], no scaling. :func:`preprocess_input` reproduces it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

# ImageNet channel means in BGR order, as in keras.applications.imagenet_utils.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)

# (block, number of convolutions, filters) of VGG16's base.
BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))

# Where Keras publishes the weights (users download it themselves; nothing
# here fetches anything).
NOTOP_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")


def preprocess_input(x: Any) -> jax.Array:
  """``keras.applications.vgg16.preprocess_input`` for channels-last RGB.

  Args:
    x: RGB images with values in [0, 255], channels last (any leading axes).

  Returns:
    float32 BGR images with the ImageNet mean subtracted.

  Raises:
    ValueError: the last axis does not hold 3 channels.
  """
  x = jnp.asarray(x)
  if x.shape[-1:] != (3,):
    raise ValueError(
        f"VGG16 preprocess_input needs RGB images (last axis 3), got shape {x.shape}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  return x[..., ::-1] - jnp.asarray(IMAGENET_MEAN_BGR, x.dtype)


def conv_base_layers() -> list[dict[str, Any]]:
  """VGG16's convolutional base as layer specs with Keras' layer names."""
  layers: list[dict[str, Any]] = []
  for block, convs, filters in BLOCKS:
    for i in range(1, convs + 1):
      layers.append({"type": "conv2d", "name": f"block{block}_conv{i}",
                     "filters": filters, "kernel_size": 3, "padding": "same",
                     "activation": "relu"})
    layers.append({"type": "max_pooling2d", "name": f"block{block}_pool",
                   "pool_size": 2, "strides": 2})
  return layers
