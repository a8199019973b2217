r"""Lecture 004's activation / initializer comparison on the Fashion-MNIST MLP.

The same Flatten-Dense(300)-Dense(100)-Dense(10) network (``mlp`` preset),
per-pixel standardized inputs, plain SGD 0.01 (where the differences between
activations show most), batch 32, 5,000 validation images; each member
changes the hidden activation and its matching initializer only.

Launch:
  python -m jaxcnn.ladder --config_file=experiments/mlp_activations.py --out=workdirs/ladders/mlp_activations

The lecture ranks the activations, best to worst: SELU > ELU > leaky ReLU >
ReLU > tanh > logistic (no numbers). ``relu_glorot`` vs ``relu`` checks the
lecture's advice to pair ReLU with He initialization.
"""

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases

MEMBERS = {
    "selu": ("selu + lecun_normal", "rank 1"),
    "elu": ("elu + he_normal", "rank 2"),
    "leaky_relu": ("leaky_relu(0.2) + he_normal", "rank 3"),
    "relu": ("relu + he_normal", "rank 4"),
    "tanh": ("tanh + glorot_uniform", "rank 5"),
    "logistic": ("sigmoid + glorot_uniform", "rank 6"),
    "relu_glorot": ("relu + glorot_uniform (Keras default init)", "He init should win"),
}
_MODEL = {
    "selu": ("selu", "lecun_normal"),
    "elu": ("elu", "he_normal"),
    "leaky_relu": ({"name": "leaky_relu", "alpha": 0.2}, "he_normal"),
    "relu": ("relu", "he_normal"),
    "tanh": ("tanh", "glorot_uniform"),
    "logistic": ("sigmoid", "glorot_uniform"),
    "relu_glorot": ("relu", "glorot_uniform"),
}
ARG = config_lib.ArgSpec(__file__, members=MEMBERS, default_member="selu")


def get_ladder(options: str = "") -> list[str]:
  del options
  return list(MEMBERS)


def get_config(arg: str = "selu"):
  member = ARG.parse(arg).member
  config = experiment_bases.lecture004_mlp("mlp", num_epochs=10)
  config.model.activation, config.model.kernel_initializer = _MODEL[member]
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.01
  config.lock()
  return config
