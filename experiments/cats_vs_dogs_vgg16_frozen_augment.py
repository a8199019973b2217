r"""Lecture 003, cats vs dogs: frozen VGG16 base inside the model, with augmentation.

VGG16 (ImageNet notop weights) + Flatten + Dense(256) + Dense(1)
(16,812,353 parameters, 14,714,688 of them frozen), trained end to end on
augmented images (the lecture's generator), RMSProp 2e-5, 30 epochs of 100
batches of 20. No gradient is computed through the frozen base.

Launch (GPU advised):
  python -m jaxcnn.main --config=experiments/cats_vs_dogs_vgg16_frozen_augment.py:/path/to/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 \
      --workdir=workdirs/cats_vs_dogs_vgg16_frozen_augment

Expected (lecture): about 0.96, no overfitting.
"""

import os

from jaxcnn import config as config_lib
from jaxcnn import transfer

KERAS_CACHE = "~/.keras/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
AUGMENTATION = {"rotation_range": 40, "width_shift_range": 0.2,
                "height_shift_range": 0.2, "shear_range": 0.2, "zoom_range": 0.2,
                "horizontal_flip": True, "fill_mode": "nearest"}


def get_config(arg: str = ""):
  config = config_lib.defaults()
  config.dataset.name = "cats_vs_dogs"
  config.dataset.train_split = "train"
  config.dataset.num_train_examples = 3000
  config.dataset.validation_split = 1000
  config.dataset.test_split = "train[3000:4000]"
  config.dataset.image_size = (150, 150)
  config.dataset.normalization = "rescale"
  config.dataset.shuffle_buffer = 3000
  config.dataset.augmentation.update(AUGMENTATION)
  config.model.name = "vgg16_transfer"
  config.model.preprocess = True
  config.transfer.source = os.path.expanduser(arg or KERAS_CACHE)
  config.regularization.freeze = transfer.freeze_before(config.model, "flatten")
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 2e-5
  config.training.batch_size = 20
  config.training.num_epochs = 30
  config.lock()
  return config
