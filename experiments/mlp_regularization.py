r"""Lecture 004's Fashion-MNIST MLPs (300-100-10): BatchNorm, dropout, MC dropout, SELU.

Members (config strings):
  ``batchnorm``  BatchNorm before every Dense, elu + he_normal (``mlp_bn``,
                 271,346 params, 2,368 non-trainable, as the lecture's summary).
  ``dropout``    Dropout 0.2 before every Dense, elu + he_normal, Nadam, 2
                 epochs: the lecture's model. Its row also reports MC dropout:
                 the mean of 100 stochastic passes over the test set
                 (``inference.predict_mc``), the lecture's ``training=True`` loop.
  ``selu_alpha_dropout``  selu + lecun_normal with AlphaDropout 0.2.
All on per-pixel standardized inputs (the lecture's ``X_train_scaled``), the
first 5,000 training images held out for validation, as the lecture does
(``dataset.validation_from='start'``, set by
``experiment_bases.lecture004_mlp``; RESULTS.md's table was run before that
key existed, on the last 5,000), batch 32, Nadam.

Launch:
  python -m jaxcnn.ladder --config_file=experiments/mlp_regularization.py --out=workdirs/ladders/mlp_regularization
One member:
  python -m jaxcnn.main --config=experiments/mlp_regularization.py:dropout --workdir=workdirs/mlp_dropout

The lecture's numbers (Fashion-MNIST test, 2 epochs): dropout model 0.8577,
with MC dropout 0.8568.
"""

import json
import os

from jaxcnn import config as config_lib
from jaxcnn import experiment_bases

MEMBERS = {
    "batchnorm": ("BatchNorm before each Dense, elu + he_normal", ""),
    "dropout": ("Dropout 0.2 before each Dense, elu + he_normal",
                "0.8577 test; MC dropout 0.8568"),
    "selu_alpha_dropout": ("selu + lecun_normal, AlphaDropout 0.2", ""),
}
_PRESET = {"batchnorm": "mlp_bn", "dropout": "mlp_dropout",
           "selu_alpha_dropout": "mlp_selu"}
MC_SAMPLES = 100
ARG = config_lib.ArgSpec(__file__, members=MEMBERS, default_member="dropout")


def get_ladder(options: str = "") -> list[str]:
  del options
  return list(MEMBERS)


def get_config(arg: str = "dropout"):
  member = ARG.parse(arg).member
  config = experiment_bases.lecture004_mlp(_PRESET[member], num_epochs=2)
  config.optimizer.name = "nadam"
  config.optimizer.learning_rate = 1e-3
  config.lock()
  return config


def extra_metrics(member: str, config, workdir: str) -> dict:
  """MC-dropout test accuracy for the members that have dropout.

  A population (``--seeds``) gives the members' mean and, under
  ``mc_dropout_test_accuracy_members``, each member's, as its results.json does.
  """
  if not member.startswith("dropout"):
    return {}
  import jax
  import numpy as np
  from jaxcnn import data as data_lib
  from jaxcnn import inference, state
  data = data_lib.create(config.dataset, global_batch_size=config.training.batch_size,
                         seed=config.seed)
  images, labels = data.as_numpy("test")
  with open(os.path.join(workdir, "results.json")) as f:
    members = len(json.load(f).get("test_accuracy_members", [None]))
  accuracies = []
  for i in range(members):
    model, variables, member_config = state.load_for_inference(
        workdir, member=i if members > 1 else None)
    mc = inference.predict_mc(model, variables, images, num_samples=MC_SAMPLES,
                              rng=jax.random.PRNGKey(member_config.seed))
    accuracies.append(float(np.mean(mc.mean.argmax(-1) == labels)))
  out = {"mc_dropout_test_accuracy": float(np.mean(accuracies))}
  if members > 1:
    out["mc_dropout_test_accuracy_members"] = accuracies
  return out
