r"""The offline transfer experiment as one ladder (lecture 003's road, offline).

Delegates to the per-run files (``fashion_mnist_pretrain.py``,
``transfer_digits_{scratch,features,finetune}.py``, written by the transfer
room): members are named like the workdirs those files' docstrings launch,
so with ``--out=workdirs`` the runs already finished there are reused and
the transfer configs find their sources (``workdirs/fashion_mnist_pretrain``,
``workdirs/transfer_digits_features``) where they expect them. With another
``--out`` a source that is a member of the run is read from ``--out``
(``jaxcnn.ladder.source_rung``); a source left out of ``--members`` stays
where the config says. Members run in dependency order: pretraining,
scratch, feature extraction, fine-tuning. With ``--seeds=N`` the fine-tuning
rung's member i continues the feature-extraction rung's member i.

Launch (from the repo root):
  python -m jaxcnn.ladder --config_file=experiments/transfer_digits_ladder.py --out=workdirs

The lecture's numbers (cats vs dogs, 2,000 training images, VGG16 from
ImageNet), its summary table: few data 72%, with data expansion 82%, full
transfer without expansion 90%, with expansion 96%, fine-tuning with
expansion 97%. The rows here are the same steps on another task.
"""

import importlib.util
import os

from jaxcnn import config as config_lib

_HERE = os.path.dirname(os.path.abspath(__file__))

# member -> (file, config argument, what it changes)
_RUNS = {
    "fashion_mnist_pretrain": ("fashion_mnist_pretrain", "",
                               "source: mnist_cnn trained on Fashion-MNIST"),
    "transfer_digits_scratch": ("transfer_digits_scratch", "",
                                "400 digits, random init"),
    "transfer_digits_scratch_augment": ("transfer_digits_scratch", "augment",
                                        "400 digits, random init, augmentation"),
    "transfer_digits_features": ("transfer_digits_features", "",
                                 "frozen Fashion-MNIST base, head on cached features"),
    "transfer_digits_features_augment": ("transfer_digits_features", "augment",
                                         "frozen base in the model, augmentation"),
    "transfer_digits_finetune": ("transfer_digits_finetune", "",
                                 "features run + conv2d_2 unfrozen, lr 1e-4"),
    "transfer_digits_finetune_augment": ("transfer_digits_finetune", "augment",
                                         "the same with augmentation"),
}
# The lecture's cats-vs-dogs number for the matching step.
_LECTURE = {
    "transfer_digits_scratch": "72% (few data)",
    "transfer_digits_scratch_augment": "82% (+ data expansion)",
    "transfer_digits_features": "90% (transfer, no expansion)",
    "transfer_digits_features_augment": "96% (transfer + expansion)",
    "transfer_digits_finetune_augment": "97% (fine-tuning + expansion)",
}
MEMBERS = {m: (changes, _LECTURE.get(m, "")) for m, (_, _, changes) in _RUNS.items()}
ARG = config_lib.ArgSpec(__file__, members=MEMBERS,
                         default_member="transfer_digits_features")


def get_ladder(options: str = "") -> list[str]:
  del options
  return list(_RUNS)


def _module(name: str):
  path = os.path.join(_HERE, name + ".py")
  spec = importlib.util.spec_from_file_location("jaxcnn_experiment_" + name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str = "transfer_digits_features"):
  name, run_arg, _ = _RUNS[ARG.parse(arg).member]
  return _module(name).get_config(run_arg)
