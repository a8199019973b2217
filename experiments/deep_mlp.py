r"""Lecture 004's vanishing gradients, on a 20-layer MLP of Fashion-MNIST.

The lecture's 2-layer MLP is too shallow to show what Glorot & Bengio (2010)
and Klambauer et al. (2017) are about; this one has 20 hidden Dense layers of
100 units (``mlp`` preset, ``hidden_units=(100,) * 20``), per-pixel
standardized inputs, plain SGD 0.01, batch 32, 5,000 validation images, with
``training.depth_diagnostics`` on: the per-layer activation and gradient
mean/std at initialization and after every epoch go to TensorBoard
(``depth/<layer>/...``) and ``depth_diagnostics.json`` (plot them with
``jaxcnn.visualize.plot_depth_statistics``). Each rung changes the hidden
activation and the kernel initializer only:

* ``sigmoid_normal``: sigmoid with N(0, 1) weights, the setting the lecture
  (after Glorot & Bengio) blames: the outputs' variance grows until every
  sigmoid saturates;
* ``sigmoid_glorot``: sigmoid with Glorot (Keras' default). Glorot's variance
  rule assumes an activation of slope 1 at 0; sigmoid's slope is 1/4, so over
  20 layers the gradient still shrinks, less steeply;
* ``tanh_glorot``: tanh with Glorot, the setting Glorot & Bengio derived it for;
* ``relu_he``: ReLU with He initialization;
* ``selu_lecun``: SELU with lecun_normal: self-normalizing, every layer's
  output near mean 0 / std 1.

Launch:
  python -m jaxcnn.ladder --config_file=experiments/deep_mlp.py --out=workdirs/ladders/deep_mlp

The lecture gives no numbers; tests/test_diagnostics.py checks the
initialization side on a standardized batch. At initialization (seed 0),
the std of the first hidden layer's kernel gradient over the last hidden
layer's is about 1e-12 for sigmoid + Glorot (it shrinks ~4x at every layer:
the vanishing the lecture describes), 0.1-0.2 for sigmoid + N(0, 1) (the
weights' gain offsets the saturation: there every sigmoid sits at 0 or 1,
output std ~0.44 of a possible 0.5), and within 10x for tanh + Glorot and
ReLU + He; SELU + lecun_normal keeps every hidden layer's output at mean
0 +- 0.02, std 1 +- 0.05.
"""

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases

DEPTH = 20
UNITS = 100
MEMBERS = {
    "sigmoid_normal": ("sigmoid + N(0, 1) init", "saturates, gradients vanish"),
    "sigmoid_glorot": ("sigmoid + glorot_uniform", "Glorot fixes it"),
    "tanh_glorot": ("tanh + glorot_uniform", "Glorot's setting"),
    "relu_he": ("relu + he_normal", "He keeps the gradients"),
    "selu_lecun": ("selu + lecun_normal", "self-normalizing: mean 0 / std 1"),
}
_MODEL = {
    "sigmoid_normal": ("sigmoid", {"name": "random_normal", "stddev": 1.0}),
    "sigmoid_glorot": ("sigmoid", "glorot_uniform"),
    "tanh_glorot": ("tanh", "glorot_uniform"),
    "relu_he": ("relu", "he_normal"),
    "selu_lecun": ("selu", "lecun_normal"),
}
ARG = config_lib.ArgSpec(__file__, members=MEMBERS, default_member="selu_lecun")


def get_ladder(options: str = "") -> list[str]:
  del options
  return list(MEMBERS)


def get_config(arg: str = "selu_lecun"):
  member = ARG.parse(arg).member
  config = experiment_bases.lecture004_mlp("mlp", num_epochs=10)
  config.model.hidden_units = (UNITS,) * DEPTH
  config.model.activation, config.model.kernel_initializer = _MODEL[member]
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.01
  config.training.depth_diagnostics = True
  config.lock()
  return config
