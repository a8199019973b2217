r"""Lecture 003, cats vs dogs: the small CNN with augmentation and dropout.

The data and network of ``cats_vs_dogs_small.py`` plus Dropout(0.5) after
Flatten and the lecture's ``ImageDataGenerator`` augmentation (rotations up
to 40 degrees, shifts and zooms of 20 %, shear 0.2 radians -- about 11.5
degrees, as jaxcnn's shear_range reads degrees --, horizontal flips,
'nearest' fill) on the training images only; 100 epochs of 100 steps.

Launch:
  python -m jaxcnn.main --config=experiments/cats_vs_dogs_augment.py --workdir=workdirs/cats_vs_dogs_augment

Expected (lecture): no more overfitting, about 0.82 accuracy.
"""

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases

ARG = config_lib.ArgSpec(__file__)


def get_config(arg: str = ""):
  ARG.parse(arg)  # Rejects any argument: this file takes none.
  config = experiment_bases.cats_vs_dogs(augment=True)
  config.model.name = "cats_dogs_cnn_dropout"
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-4
  config.training.num_epochs = 100
  config.training.checkpoint_every_epochs = 5
  config.lock()
  return config
