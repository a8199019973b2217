r"""Transfer table, rows 5-6: fine-tuning the last convolution on 400 digits.

Starts from the whole model trained by ``transfer_digits_features.py`` (base
from Fashion-MNIST, head trained on digits), unfreezes ``conv2d_2`` (the
base's last convolution, as the lecture unfreezes ``block5_conv1`` on) and
trains it with the head at a 10x lower learning rate, so the pretrained
filters move only a little.

Launch (after the matching feature run):
  python -m jaxcnn.main --config=experiments/transfer_digits_finetune.py --workdir=workdirs/transfer_digits_finetune
  python -m jaxcnn.main --config=experiments/transfer_digits_finetune.py:augment --workdir=workdirs/transfer_digits_finetune_augment

Results of the whole table (one run each, seed 0, 2 CPU cores; test accuracy
on the 1,297 test digits, so about +-0.5 % of noise), after
``fashion_mnist_pretrain.py`` (5 epochs, 0.895 on Fashion-MNIST's test set):

  from scratch, 400 digits                          0.961
  from scratch + augmentation                       0.969
  feature extraction (frozen base, cached)          0.968
  frozen base + augmentation (end to end)           0.969
  fine-tuning conv2d_2 on, lr 1e-4                  0.975
  fine-tuning conv2d_2 on + augmentation            0.979

The lecture's order (few data < augmentation < frozen transfer < fine-tuning
with augmentation) holds, with smaller gaps: digits are an easy task, and
clothing is a distant source.
"""

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases
from jaxcnn.models.freezing import freeze_before

ARG = config_lib.ArgSpec(__file__, options=("augment",))


def get_config(arg: str = ""):
  augment = "augment" in ARG.parse(arg).options
  config = experiment_bases.digits_transfer(augment=augment)
  config.transfer.source = ("workdirs/transfer_digits_features_augment"
                            if augment else "workdirs/transfer_digits_features")
  config.regularization.freeze = freeze_before(config.model, "conv2d_2")
  config.optimizer.learning_rate = 1e-4
  config.lock()
  return config
