r"""Transfer table, rows 1-2: the CNN trained from scratch on 400 digits.

scikit-learn's 1,797 real handwritten digits (``sklearn_digits``, 28x28x1:
500 train / 1,297 test, built offline by ``jaxcnn/digits.py``), of which 400
are trained on and 100 validate: lecture 003's "few data" setting. The
network is the one pretrained on Fashion-MNIST (``mnist_cnn``), here from
random weights: the baseline the transfer rows are compared with.

Launch:
  python -m jaxcnn.main --config=experiments/transfer_digits_scratch.py --workdir=workdirs/transfer_digits_scratch
  python -m jaxcnn.main --config=experiments/transfer_digits_scratch.py:augment --workdir=workdirs/transfer_digits_scratch_augment

``:augment`` adds small rotations, shifts and zooms (no flips: a mirrored
digit is another symbol). Results: see ``transfer_digits_finetune.py``.
"""

from jaxcnn import config as config_lib

AUGMENTATION = {"rotation_range": 10, "width_shift_range": 0.1,
                "height_shift_range": 0.1, "zoom_range": 0.1}


def get_config(arg: str = ""):
  if arg not in ("", "augment"):
    raise ValueError(f"Unknown config argument {arg!r}; valid: '' or 'augment'.")
  config = config_lib.defaults()
  config.dataset.name = "sklearn_digits"
  config.dataset.validation_split = 100  # the last 100 of the 500: 400 train
  config.dataset.normalization = "rescale"  # as the Fashion-MNIST source
  if arg == "augment":
    config.dataset.augmentation.update(AUGMENTATION)
  config.model.name = "mnist_cnn"
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-3
  config.training.batch_size = 20
  config.training.num_epochs = 30
  config.training.checkpoint_every_epochs = 10
  config.lock()
  return config
