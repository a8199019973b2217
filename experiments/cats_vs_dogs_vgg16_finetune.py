r"""Lecture 003, cats vs dogs: fine-tuning VGG16 from ``block5_conv1`` ("entonación fina").

Starts from the whole model trained by ``cats_vs_dogs_vgg16_frozen_augment.py``
(its workdir is the transfer source: base and trained head), unfreezes
block5_conv1..block5_conv3 (blocks 1-4 stay frozen:
``freeze_before(model, 'block5_conv1')``) and trains with the same
augmentation at RMSProp 1e-5 for 100 epochs.

Inputs, a config choice: ``model.preprocess=True`` (the default here) feeds
the base Keras' caffe ``preprocess_input`` of ``x * 255`` (RGB->BGR, ImageNet
mean subtracted), the input its ImageNet weights were trained on;
``--config.model.preprocess=False`` feeds it the pipeline's ``x / 255`` as it
is, which is what the lecture does (``ImageDataGenerator(rescale=1./255)``
straight into ``conv_base``). Keep the choice of the run this one starts
from: its head was trained on those inputs.

Launch (after the frozen-base run; the argument is its workdir):
  python -m jaxcnn.main --config=experiments/cats_vs_dogs_vgg16_finetune.py:workdirs/cats_vs_dogs_vgg16_frozen_augment \
      --workdir=workdirs/cats_vs_dogs_vgg16_finetune

Starting straight from the ImageNet file also works (the head then starts
from random weights): pass the .h5 path as the argument.
Expected (lecture): about 0.97.
"""

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases
from jaxcnn.models.freezing import freeze_before

# The whole config string is the source (a path may hold commas).
ARG = config_lib.ArgSpec(__file__, free="source workdir or .h5 weights path")
SOURCE = "workdirs/cats_vs_dogs_vgg16_frozen_augment"


def get_config(arg: str = ""):
  config = experiment_bases.cats_vs_dogs(augment=True)
  config.model.name = "vgg16_transfer"
  config.model.preprocess = True  # caffe preprocess_input; False: the lecture's x/255
  config.transfer.source = ARG.parse(arg).free or SOURCE
  config.regularization.freeze = freeze_before(config.model, "block5_conv1")
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-5
  config.training.num_epochs = 100
  config.training.checkpoint_every_epochs = 5
  config.lock()
  return config
