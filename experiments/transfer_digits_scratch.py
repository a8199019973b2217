r"""Transfer table, rows 1-2: the CNN trained from scratch on 400 digits.

scikit-learn's 1,797 real handwritten digits (``sklearn_digits``, 28x28x1:
500 train / 1,297 test, built offline by ``jaxcnn/data/digits.py``), of which 400
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
from jaxcnn import experiment_bases

ARG = config_lib.ArgSpec(__file__, options=("augment",))


def get_config(arg: str = ""):
  augment = "augment" in ARG.parse(arg).options
  config = experiment_bases.digits_transfer(augment=augment)
  config.lock()
  return config
