r"""Lecture 003, cats vs dogs: VGG16 feature extraction ("transferencia total").

VGG16's ImageNet base (Keras' ``..._notop.h5``, loaded by name) is frozen and
run once over the 4,000 images (4x4x512 = 8,192 features each at 150x150);
only Dense(256)-Dropout(0.5)-Dense(1) trains, RMSProp 2e-5, 30 epochs of
batches of 20.

Inputs, a config choice: ``model.preprocess=True`` (the default here) feeds
the base Keras' caffe ``preprocess_input`` of ``x * 255`` (RGB->BGR, ImageNet
mean subtracted), the input its ImageNet weights were trained on;
``--config.model.preprocess=False`` feeds it the pipeline's ``x / 255`` as it
is, which is what the lecture does (``ImageDataGenerator(rescale=1./255)``
straight into ``conv_base``).

The weights file is given by the user (nothing is downloaded):
  wget https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
  python -m jaxcnn.main --config=experiments/cats_vs_dogs_vgg16_features.py:/path/to/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 \
      --workdir=workdirs/cats_vs_dogs_vgg16_features

Without an argument the file is looked for where Keras caches it
(~/.keras/models/). Expected (lecture): about 0.90, overfitting from epoch 5.
"""

import os

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases
from jaxcnn.models.freezing import freeze_before

# The whole config string is the weights path (a path may hold commas).
ARG = config_lib.ArgSpec(__file__, free="VGG16 notop .h5 weights path")


def get_config(arg: str = ""):
  weights = ARG.parse(arg).free or experiment_bases.KERAS_VGG16_NOTOP
  config = experiment_bases.cats_vs_dogs()
  config.model.name = "vgg16_transfer"
  config.model.preprocess = True  # caffe preprocess_input; False: the lecture's x/255
  config.model.dropout_rate = 0.5
  config.transfer.source = os.path.expanduser(weights)
  config.transfer.feature_extraction = True
  config.regularization.freeze = freeze_before(config.model, "flatten")
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 2e-5
  config.training.num_epochs = 30
  config.lock()
  return config
