r"""Lecture 004's optimizers, every one on the same Fashion-MNIST MLP.

Model: ``mlp`` preset with elu + he_normal (300-100-10), per-pixel
standardized inputs, batch 32, 5,000 validation images. Each member changes
the optimizer only, with the lecture's hyperparameters where it gives them
(``SGD(lr=0.001, momentum=0.9)``, ``RMSprop(lr=0.001, rho=0.9)``,
``Adam(lr=0.001, beta_1=0.9, beta_2=0.999)``) and Keras' defaults otherwise.

Launch:
  python -m jaxcnn.ladder --config_file=experiments/mlp_optimizers.py --out=workdirs/ladders/mlp_optimizers

The lecture gives no numbers; it says adaptive methods (RMSProp, Adam,
Nadam) usually converge fastest, AdaGrad stops too early on deep nets.
"""

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases

# member -> (what it changes, the lecture's claim), optimizer settings
MEMBERS = {
    "sgd": ("SGD 0.01 (Keras default)", ""),
    "momentum": ("SGD 0.001, momentum 0.9", "faster than SGD"),
    "nesterov": ("SGD 0.001, Nesterov momentum 0.9", "faster than momentum"),
    "adagrad": ("AdaGrad 0.001 (Keras default)", "stops too early"),
    "rmsprop": ("RMSProp 0.001, rho 0.9", "adaptive: fast"),
    "adam": ("Adam 0.001, 0.9, 0.999", "adaptive: fast"),
    "adamax": ("Adamax 0.001", ""),
    "nadam": ("Nadam 0.001", "often a bit better than Adam"),
}
_OPT = {
    "sgd": dict(name="sgd", learning_rate=0.01),
    "momentum": dict(name="sgd", learning_rate=0.001, momentum=0.9),
    "nesterov": dict(name="sgd", learning_rate=0.001, momentum=0.9, nesterov=True),
    "adagrad": dict(name="adagrad", learning_rate=0.001),
    "rmsprop": dict(name="rmsprop", learning_rate=0.001, rho=0.9),
    "adam": dict(name="adam", learning_rate=0.001, beta_1=0.9, beta_2=0.999),
    "adamax": dict(name="adamax", learning_rate=0.001),
    "nadam": dict(name="nadam", learning_rate=0.001),
}
ARG = config_lib.ArgSpec(__file__, members=MEMBERS, default_member="adam")


def get_ladder(options: str = "") -> list[str]:
  del options
  return list(MEMBERS)


def get_config(arg: str = "adam"):
  member = ARG.parse(arg).member
  config = experiment_bases.lecture004_mlp("mlp_elu", num_epochs=10)
  config.optimizer = config_lib.ml_collections.ConfigDict(_OPT[member])
  config.lock()
  return config
