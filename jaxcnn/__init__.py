"""jaxcnn: convolutional networks the JAX way.

The notebook API, imported lazily so ``import jaxcnn`` stays cheap:

  state, history = jaxcnn.train_and_evaluate(config, workdir)
  probs = jaxcnn.predict(model, variables, images)
  mc = jaxcnn.predict_mc(model, variables, images, num_samples=100, rng=key)
"""

import importlib

from jaxcnn import xla_defaults

# Before any JAX backend starts: XLA reads XLA_FLAGS once, at that moment.
xla_defaults.apply()

__version__ = "0.1.0"

_LAZY = {
    "train_and_evaluate": ("jaxcnn.train", "train_and_evaluate"),
    "predict": ("jaxcnn.inference", "predict"),
    "predict_mc": ("jaxcnn.inference", "predict_mc"),
    "load_for_inference": ("jaxcnn.state", "load_for_inference"),
    "defaults": ("jaxcnn.config", "defaults"),
}


def __getattr__(name):
  if name in _LAZY:
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
  raise AttributeError(f"module 'jaxcnn' has no attribute '{name}'")


def __dir__():
  return sorted(list(globals()) + list(_LAZY))
