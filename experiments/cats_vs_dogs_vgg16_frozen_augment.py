r"""Lecture 003, cats vs dogs: frozen VGG16 base inside the model, with augmentation.

VGG16 (ImageNet notop weights) + Flatten + Dense(256) + Dense(1)
(16,812,353 parameters, 14,714,688 of them frozen), trained end to end on
augmented images (the lecture's generator), RMSProp 2e-5, 30 epochs of 100
batches of 20. No gradient is computed through the frozen base.

Inputs, a config choice: ``model.preprocess=True`` (the default here) feeds
the base Keras' caffe ``preprocess_input`` of ``x * 255`` (RGB->BGR, ImageNet
mean subtracted), the input its ImageNet weights were trained on;
``--config.model.preprocess=False`` feeds it the pipeline's ``x / 255`` as it
is, which is what the lecture does (``ImageDataGenerator(rescale=1./255)``
straight into ``conv_base``).

Launch (GPU advised):
  python -m jaxcnn.main --config=experiments/cats_vs_dogs_vgg16_frozen_augment.py:/path/to/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 \
      --workdir=workdirs/cats_vs_dogs_vgg16_frozen_augment

Expected (lecture): about 0.96, no overfitting.
"""

import os

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases
from jaxcnn.models.freezing import freeze_before

# The whole config string is the weights path (a path may hold commas).
ARG = config_lib.ArgSpec(__file__, free="VGG16 notop .h5 weights path")


def get_config(arg: str = ""):
  weights = ARG.parse(arg).free or experiment_bases.KERAS_VGG16_NOTOP
  config = experiment_bases.cats_vs_dogs(augment=True)
  config.model.name = "vgg16_transfer"
  config.model.preprocess = True  # caffe preprocess_input; False: the lecture's x/255
  config.transfer.source = os.path.expanduser(weights)
  config.regularization.freeze = freeze_before(config.model, "flatten")
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 2e-5
  config.training.num_epochs = 30
  config.lock()
  return config
