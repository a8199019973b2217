r"""Transfer table, rows 5-6: fine-tuning the last convolution on 400 digits.

Starts from the whole model trained by ``transfer_digits_features.py`` (base
from Fashion-MNIST, head trained on digits), unfreezes ``conv2d_2`` (the
base's last convolution, as the lecture unfreezes ``block5_conv1`` on) and
trains it with the head at a 10x lower learning rate, so the pretrained
filters move only a little.

Launch (after the matching feature run):
  python -m jaxcnn.main --config=experiments/transfer_digits_finetune.py --workdir=workdirs/transfer_digits_finetune
  python -m jaxcnn.main --config=experiments/transfer_digits_finetune.py:augment --workdir=workdirs/transfer_digits_finetune_augment
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
  config.transfer.source = ("workdirs/transfer_digits_features_augment"
                            if arg == "augment" else "workdirs/transfer_digits_features")
  config.regularization.freeze = transfer.freeze_before(config.model, "conv2d_2")
  if arg == "augment":
    config.dataset.augmentation.update(AUGMENTATION)
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-4
  config.training.batch_size = 20
  config.training.num_epochs = 30
  config.training.checkpoint_every_epochs = 10
  config.lock()
  return config
