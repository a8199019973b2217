"""Models: Keras-style layers, the lectures' architectures, VGG16 import.

::

  model = models.create('mnist_cnn', num_classes=10, dropout_rate=0.3)
  model = models.create(config.model, num_classes=info.num_classes,
                        axis_name='batch')
  print(models.summary(model, (28, 28, 1)))          # Keras-like table
  variables = model.init({'params': key}, x)          # params['conv2d_1']['kernel']
  variables = models.load_pretrained(model, variables)  # weights_path, if any
  logits = model.apply(variables, x)                  # inference
  mc = model.apply(variables, x, deterministic=False,  # MC dropout, BN frozen
                   rngs={'dropout': key})
  rules = models.param_rules(model)                   # {'dense_1/kernel': ParamRule}
"""

from jaxcnn.models import activations
from jaxcnn.models import freezing
from jaxcnn.models import initializers
from jaxcnn.models import layers
from jaxcnn.models import pretrained
from jaxcnn.models import specs
from jaxcnn.models import vgg16
from jaxcnn.models.keras_import import KerasWeightsError
from jaxcnn.models.keras_import import load_keras_weights
from jaxcnn.models.keras_import import load_pretrained
from jaxcnn.models.keras_import import read_keras_weights
from jaxcnn.models.presets import PRESETS
from jaxcnn.models.presets import create
from jaxcnn.models.rules import param_rules
from jaxcnn.models.sequential import Sequential
from jaxcnn.models.sequential import build
from jaxcnn.models.sequential import first_stochastic_layer
from jaxcnn.models.sequential import from_layer
from jaxcnn.models.summary import Summary
from jaxcnn.models.summary import summary
from jaxcnn.models.vgg16 import preprocess_input

__all__ = [
    "PRESETS", "create", "build", "Sequential", "summary", "Summary",
    "param_rules", "first_stochastic_layer", "from_layer", "freezing", "pretrained", "load_keras_weights",
    "load_pretrained", "read_keras_weights", "KerasWeightsError",
    "preprocess_input", "activations", "initializers", "layers", "specs", "vgg16",
]
