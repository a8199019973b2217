r"""Lecture 003's MNIST CNN on MNIST, as in the lecture.

Conv32-MaxPool-Conv64-MaxPool-Conv64-Flatten-Dense64-Dense10 (93,322
parameters, ``mnist_cnn`` preset), images rescaled to [0, 1], RMSProp 1e-3,
batch 64, 5 epochs, no validation split (the lecture fits on all 60,000).
MNIST is not available on the offline machine; ``fashion_mnist_cnn.py`` is the
same network on Fashion-MNIST.

Launch:
  python -m jaxcnn.main --config=experiments/mnist_cnn.py --workdir=workdirs/mnist_cnn

The lecture reports 0.993 test accuracy on MNIST after 5 epochs.
"""

from jaxcnn import config as config_lib

ARG = config_lib.ArgSpec(__file__)


def get_config(arg: str = ""):
  ARG.parse(arg)  # Rejects any argument: this file takes none.
  config = config_lib.defaults()
  config.dataset.name = "mnist"
  config.dataset.validation_split = 0.0
  config.dataset.normalization = "rescale"
  config.model.name = "mnist_cnn"
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-3
  config.training.batch_size = 64
  config.training.num_epochs = 5
  config.lock()
  return config
