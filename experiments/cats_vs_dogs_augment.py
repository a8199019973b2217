r"""Lecture 003, cats vs dogs: the small CNN with augmentation and dropout.

The data and network of ``cats_vs_dogs_small.py`` plus Dropout(0.5) after
Flatten and the lecture's ``ImageDataGenerator`` augmentation (rotations up
to 40 degrees, shifts and zooms of 20 %, shear 0.2, horizontal flips,
'nearest' fill) on the training images only; 100 epochs of 100 steps.

Launch:
  python -m jaxcnn.main --config=experiments/cats_vs_dogs_augment.py --workdir=workdirs/cats_vs_dogs_augment

Expected (lecture): no more overfitting, about 0.82 accuracy.
"""

from jaxcnn import config as config_lib

AUGMENTATION = {"rotation_range": 40, "width_shift_range": 0.2,
                "height_shift_range": 0.2, "shear_range": 0.2, "zoom_range": 0.2,
                "horizontal_flip": True, "fill_mode": "nearest"}


def get_config(arg: str = ""):
  del arg
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
  config.model.name = "cats_dogs_cnn_dropout"
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-4
  config.training.batch_size = 20
  config.training.num_epochs = 100
  config.training.checkpoint_every_epochs = 5
  config.lock()
  return config
