r"""Source of the offline transfer experiment: lecture 003's CNN on Fashion-MNIST.

The same Conv32-Conv64-Conv64 + Dense64 network as ``fashion_mnist_cnn.py``
(93,322 parameters), trained for a few epochs on real Fashion-MNIST. Its
convolutional base is then transferred to scikit-learn's handwritten digits
(``experiments/transfer_digits_*.py``), the offline stand-in for lecture
003's ImageNet VGG16 -> cats vs dogs: a base learned on plenty of one kind
of image, reused on few images of another kind.

Launch (about 2 minutes on 2 CPU cores):
  python -m jaxcnn.main --config=experiments/fashion_mnist_pretrain.py --workdir=workdirs/fashion_mnist_pretrain

Expected: about 0.89 test accuracy after 5 epochs (seen: 0.895).
"""

from jaxcnn import config as config_lib

ARG = config_lib.ArgSpec(__file__)


def get_config(arg: str = ""):
  ARG.parse(arg)  # Rejects any argument: this file takes none.
  config = config_lib.defaults()
  config.dataset.name = "fashion_mnist"
  config.dataset.validation_split = 5000
  config.dataset.normalization = "rescale"
  config.model.name = "mnist_cnn"
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-3
  config.training.batch_size = 64
  config.training.num_epochs = 5
  config.lock()
  return config
