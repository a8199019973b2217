r"""Lecture 000's regularization ladder (CIFAR-10 in the lecture; Fashion-MNIST here).

One member per rung, each named by its config string; every rung after
``normalization`` keeps the standardized input (the lecture's network only
"finally works" once the data are normalized), and the last three build on
dropout + max-norm as the lecture's titles say. The network is
``models.PRESETS['cifar_cnn']``: three 3x3 'same' conv blocks of 32/64/128
filters, Flatten, Dense(128), Dense(10) (the lecture's code cells are empty;
see ``jaxcnn/models/presets.py``). Adam 1e-3, batch 128.

Launch the whole ladder (Fashion-MNIST, runs here: the first 2,000 training
images, 500 of them for validation, 1,000 test images, 2 epochs, so that the
unpooled rungs -- about 0.5 GFLOP per training image -- fit a shared 2-core
CPU; pass --train_examples/--test_examples/--epochs for more):
  python -m jaxcnn.ladder --config_file=experiments/regularization_ladder.py --out=workdirs/ladders/regularization_fashion_mnist
The lecture's CIFAR-10 ladder (full 50,000 images; needs CIFAR-10 in TFDS):
  python -m jaxcnn.ladder --config_file=experiments/regularization_ladder.py --options=cifar10 --out=workdirs/ladders/regularization_cifar10
One rung alone:
  python -m jaxcnn.main --config=experiments/regularization_ladder.py:l2 --workdir=workdirs/reg_l2

The overfitting regime on Fashion-MNIST (800 train / 200 validation images,
8 epochs; RESULTS.md ran all eleven rungs of it):
  python -m jaxcnn.ladder --config_file=experiments/regularization_ladder.py --options=overfit --out=workdirs/ladders/regularization_fashion_mnist_overfit
Some rungs only: add e.g. --members=normalization,l2,dropout.

Config string: ``<member>[,cifar10][,overfit][,quick]`` (words in any order;
no member is ``normalization``).

The batchnorm rung recomputes its BatchNorm moving statistics after training
(``training.recompute_bn_stats``, 20 batches): with Keras' momentum 0.99 the
two-epoch runs here (22 or 48 steps) would evaluate with statistics still
mostly at their initial values (RESULTS.md).

The lecture's numbers (CIFAR-10): with normalized inputs "~0.99 in training
and ~0.7 in test"; BatchNorm and the regularizers narrow that gap; adding
max-pooling "trains much faster" with lower accuracy; stride-2 convolutions
instead of pooling are "similar in speed, but the accuracy is lower".
"""

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases

# member -> (what it changes, the lecture's number or claim)
MEMBERS = {
    "baseline": ("raw pixels 0-255, no regularization", "does not train well"),
    "normalization": ("+ inputs standardized with the training split's mean/std",
                      "~0.99 train / ~0.7 test"),
    "batchnorm": ("+ BatchNorm after every conv (Conv, BN, ReLU); moving statistics "
                  "recomputed over 20 training batches after training",
                  "less overfitting"),
    "l2": ("+ L2 1e-4 on every kernel", "less overfitting"),
    "l1": ("+ L1 1e-5 on every kernel", "less overfitting"),
    "elastic_net": ("+ L1 1e-5 and L2 1e-4", "less overfitting"),
    "max_norm": ("+ max-norm 3 on every kernel", "less overfitting"),
    "dropout": ("+ Dropout 0.25 after each conv block, 0.5 after Dense(128)",
                "less overfitting"),
    "dropout_maxnorm": ("+ dropout and max-norm 3", "less overfitting"),
    "dropout_maxnorm_maxpool": ("dropout + max-norm + 2x2 max-pooling per block",
                                "much faster, lower accuracy"),
    "dropout_maxnorm_strides": ("dropout + max-norm, stride-2 convs, no pooling",
                                "as fast as pooling, lower accuracy"),
}

_PRESET = {
    "baseline": "cifar_cnn",
    "normalization": "cifar_cnn",
    "batchnorm": "cifar_cnn_bn",
    "l2": "cifar_cnn_l2",
    "l1": "cifar_cnn_l1",
    "elastic_net": "cifar_cnn_elastic_net",
    "max_norm": "cifar_cnn_maxnorm",
    "dropout": "cifar_cnn_dropout",
    "dropout_maxnorm": "cifar_cnn_dropout_maxnorm",
    "dropout_maxnorm_maxpool": "cifar_cnn_dropout_maxnorm_maxpool",
    "dropout_maxnorm_strides": "cifar_cnn_dropout_maxnorm_strides",
}

# Training batches the batchnorm rung's moving statistics are recomputed over.
BN_RECOMPUTE_BATCHES = 20

ARG = config_lib.ArgSpec(__file__, members=MEMBERS, default_member="normalization",
                         options=("cifar10", "quick", "overfit"))


def get_ladder(options: str = "") -> list[str]:
  del options  # The same rungs on either dataset.
  return list(MEMBERS)


def get_config(arg: str = "normalization"):
  parsed = ARG.parse(arg)
  member, options = parsed.member, parsed.options
  config = config_lib.defaults()
  if "cifar10" in options:
    config.dataset.name = "cifar10"
    config.dataset.validation_split = 5000
    config.training.num_epochs = 20
  else:
    config.dataset.name = "fashion_mnist"
    # A small training set, so the unpooled baseline overfits as on CIFAR-10
    # and the ladder fits a CPU; the full test set measures generalization.
    config.dataset.num_train_examples = 2000
    config.dataset.validation_split = 500
    config.dataset.num_test_examples = 1000
    config.training.num_epochs = 2
  config.dataset.normalization = "none" if member == "baseline" else "standardize"
  config.model.name = _PRESET[member]
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.training.batch_size = 128
  config.training.progress_bar = False
  if member == "batchnorm":
    # A few dozen steps leave Keras' momentum-0.99 moving statistics mostly at
    # their initial values (0.99**22 = 0.80): evaluation would normalize with
    # the wrong statistics. Recompute them after training ("precise BN").
    config.training.recompute_bn_stats = BN_RECOMPUTE_BATCHES
  if "overfit" in options:  # Fewer images, more epochs: the overfitting regime.
    config.dataset.num_train_examples = 1000
    config.dataset.validation_split = 200
    config.dataset.num_test_examples = 1000
    config.training.num_epochs = 8
    # The gap the regularizers should narrow, measured with dropout off and
    # BatchNorm on its moving statistics (train-mode accuracy understates it).
    config.training.eval_train = True
  if "quick" in options:
    experiment_bases.quick(config, train_examples=1200, validation_examples=200,
                           test_examples=500)
  config.lock()
  return config
