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
from jaxcnn import experiment_bases
from jaxcnn.models.freezing import freeze_before

ARG = config_lib.ArgSpec(__file__, options=("augment",))


def get_config(arg: str = ""):
  augment = "augment" in ARG.parse(arg).options
  config = experiment_bases.digits_transfer(augment=augment)
  config.transfer.source = "workdirs/fashion_mnist_pretrain"
  config.transfer.layers = ("conv2d*",)
  config.regularization.freeze = freeze_before(config.model, "flatten")
  # With augmentation the base must see every augmented image: no cached features.
  config.transfer.feature_extraction = not augment
  config.lock()
  return config
