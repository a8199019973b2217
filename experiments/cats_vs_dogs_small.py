r"""Lecture 003, cats vs dogs with few data: the small CNN, no augmentation.

TFDS ``cats_vs_dogs`` (23,262 images in one 'train' split) cut as the
lecture's Kaggle subset: the first 2,000 to train, the next 1,000 to
validate, the next 1,000 to test, resized to 150x150 and rescaled to [0, 1].
Conv32-Conv64-Conv128-Conv128 (3x3, each with a 2x2 max-pool), Dense(512),
one sigmoid unit (3,453,121 parameters), RMSProp 1e-4, batches of 20 (100
steps per epoch), 30 epochs.

Launch (a GPU is advised; TFDS downloads about 800 MB the first time):
  python -m jaxcnn.main --config=experiments/cats_vs_dogs_small.py --workdir=workdirs/cats_vs_dogs_small

Expected (lecture): overfitting from about epoch 5, about 0.72 accuracy.
"""

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases

ARG = config_lib.ArgSpec(__file__)


def get_config(arg: str = ""):
  ARG.parse(arg)  # Rejects any argument: this file takes none.
  # 3,000 first images: 2,000 train + the last 1,000 of them to validate.
  config = experiment_bases.cats_vs_dogs()
  config.model.name = "cats_dogs_cnn"
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-4
  config.training.num_epochs = 30
  config.lock()
  return config
