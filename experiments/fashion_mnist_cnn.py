r"""Default experiment: lecture 003's MNIST CNN on real Fashion-MNIST.

Conv32-MaxPool-Conv64-MaxPool-Conv64-Flatten-Dense64-Dense10 (93,322
parameters), RMSProp, batch 64, as in the lecture; Fashion-MNIST instead of
MNIST because it is the real dataset that can be had offline here (Debian's
``dataset-fashion-mnist``), and a harder one: the lecture's 0.993 is on MNIST.

Launch:
  python -m jaxcnn.main --config=experiments/fashion_mnist_cnn.py --workdir=workdirs/fashion_mnist_cnn

Quick check (1 epoch, 6,400 examples):
  python -m jaxcnn.main --config=experiments/fashion_mnist_cnn.py:quick --workdir=/tmp/fm_quick

Expected: about 0.91 test accuracy after 10 epochs (the lectures' small Keras
CNNs reach 0.90-0.92 on Fashion-MNIST).
"""

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases

ARG = config_lib.ArgSpec(__file__, options=("quick",))


def get_config(arg: str = ""):
  options = ARG.parse(arg).options
  config = config_lib.defaults()
  config.dataset.name = "fashion_mnist"
  config.dataset.validation_split = 5000
  config.dataset.normalization = "rescale"
  config.model.name = "mnist_cnn"
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-3
  config.training.batch_size = 64
  config.training.num_epochs = 10
  if "quick" in options:
    experiment_bases.quick(config)
  config.lock()
  return config
