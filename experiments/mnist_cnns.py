r"""Lecture 002's MNIST CNNs: ``cnn``, ``cnn_small``, ``cnn_small_bn``.

As in the lecture: images rescaled to [0, 1], Adam (Keras defaults), batch
128, the last 10% of the training set for validation (``validation_split=.1``),
20 epochs for ``cnn`` and 10 for the small ones. ``cnn_small_bn`` adds
BatchNorm after each conv's ReLU (the lecture's order).

Launch on MNIST (the lecture's dataset; needs MNIST in TFDS, not available
on the offline machine):
  python -m jaxcnn.ladder --config_file=experiments/mnist_cnns.py --out=workdirs/ladders/mnist_cnns
The same ladder on Fashion-MNIST (runs here; RESULTS.md used --epochs=2):
  python -m jaxcnn.ladder --config_file=experiments/mnist_cnns.py --options=fashion_mnist --out=workdirs/ladders/mnist_cnns_fashion
One model:
  python -m jaxcnn.main --config=experiments/mnist_cnns.py:cnn_small_bn,fashion_mnist --workdir=workdirs/cnn_small_bn

The lecture prints no accuracies: it says the CNN's test accuracy beats the
earlier dense network "with fewer parameters" and plots val_accuracy between
0.9 and 1 on MNIST; BatchNorm is shown to speed up training of ``cnn_small``.
"""

from jaxcnn import config as config_lib

MEMBERS = {
    "cnn": ("2x (Conv 32 + MaxPool), Dense 64 (lecture: 20 epochs)",
            "val_accuracy 0.9-1 (MNIST plot)"),
    "cnn_small": ("8 filters per conv (lecture: 10 epochs)", ""),
    "cnn_small_bn": ("cnn_small + BatchNorm after each conv (lecture: 10 epochs)",
                     "trains faster than cnn_small"),
}
_EPOCHS = {"cnn": 20, "cnn_small": 10, "cnn_small_bn": 10}
# The dataset: MNIST unless fashion_mnist is named.
ARG = config_lib.ArgSpec(__file__, members=MEMBERS, default_member="cnn",
                         options=("mnist", "fashion_mnist"))


def get_ladder(options: str = "") -> list[str]:
  del options
  return list(MEMBERS)


def get_config(arg: str = "cnn"):
  parsed = ARG.parse(arg)
  member, options = parsed.member, parsed.options
  config = config_lib.defaults()
  config.dataset.name = "fashion_mnist" if "fashion_mnist" in options else "mnist"
  config.dataset.validation_split = 0.1
  config.dataset.normalization = "rescale"
  config.model.name = member
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.training.batch_size = 128
  config.training.num_epochs = _EPOCHS[member]
  config.training.progress_bar = False
  config.lock()
  return config
