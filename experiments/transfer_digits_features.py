r"""Transfer table, rows 3-4: the Fashion-MNIST base, frozen, on 400 digits.

The three convolutions of ``fashion_mnist_pretrain.py`` (copied by name,
``transfer.layers = ('conv2d*',)``) are frozen; a new Dense(64)-Dense(10)
head trains on 400 digits (same data as ``transfer_digits_scratch.py``).

* no argument: feature extraction (the lecture's fast path): the frozen base
  runs once over the images and the head trains on its 576 cached features;
* ``:augment``: the frozen base inside the model, trained end to end with
  augmentation (the lecture's "transfer with data expansion").

Launch (after the pretraining):
  python -m jaxcnn.main --config=experiments/transfer_digits_features.py --workdir=workdirs/transfer_digits_features
  python -m jaxcnn.main --config=experiments/transfer_digits_features.py:augment --workdir=workdirs/transfer_digits_features_augment

Another source: --config.transfer.source=PATH (a jaxcnn workdir or .h5).
Results: see ``transfer_digits_finetune.py``.
"""

from jaxcnn import config as config_lib
from jaxcnn import transfer

AUGMENTATION = {"rotation_range": 10, "width_shift_range": 0.1,
                "height_shift_range": 0.1, "zoom_range": 0.1}


def get_config(arg: str = ""):
  if arg not in ("", "augment"):
    raise ValueError(f"Unknown config argument {arg!r}; valid: '' or 'augment'.")
  config = config_lib.defaults()
  config.dataset.name = "sklearn_digits"
  config.dataset.validation_split = 100
  config.dataset.normalization = "rescale"
  config.model.name = "mnist_cnn"
  config.transfer.source = "workdirs/fashion_mnist_pretrain"
  config.transfer.layers = ("conv2d*",)
  config.regularization.freeze = transfer.freeze_before(config.model, "flatten")
  if arg == "augment":
    config.dataset.augmentation.update(AUGMENTATION)
  else:
    config.transfer.feature_extraction = True
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-3
  config.training.batch_size = 20
  config.training.num_epochs = 30
  config.training.checkpoint_every_epochs = 10
  config.lock()
  return config
