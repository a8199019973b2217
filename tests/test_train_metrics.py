"""What the loop logs: Keras' loss with the penalty, data_loss, eval-mode training metrics.

``tfds.testing.mock_data`` (conftest's ``mock_fashion_mnist``: random
Fashion-MNIST-shaped examples; the mock ignores slices, so every part holds
all 160): the numbers are checked against independent computations from the
parameters, not against the data's meaning. Four fake CPU devices (conftest).
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import config as config_lib
from jaxcnn import data as data_lib
from jaxcnn import models
from jaxcnn import optim
from jaxcnn import parallel
from jaxcnn import state as state_lib
from jaxcnn import train



def _l2_by_hand(params, l2):
  """Keras' l2(λ): λ Σ w² over every kernel, computed from the tree by hand."""
  total = 0.0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if jax.tree_util.keystr(path).endswith("['kernel']"):
      total += l2 * float(np.sum(np.asarray(leaf, np.float64) ** 2))
  return total


def test_step_loss_is_data_loss_plus_the_penalty_of_the_params_it_started_from():
  config = config_lib.defaults()
  config.model.name = "mlp"
  config.regularization.l2 = 1e-3
  model = models.create(config.model, num_classes=10)
  train_model = models.create(config.model, num_classes=10, axis_name="batch")
  tx = optim.create({"name": "sgd", "learning_rate": 0.1}, {"name": "constant"},
                    steps_per_epoch=10, num_epochs=1)
  state = state_lib.create(config, model, tx, (28, 28, 1))
  rules = optim.regularizers.build_rules(models.param_rules(model), state.params,
                                         config.regularization)
  step = parallel.make_train_step(
      train_model, tx, penalty_fn=lambda p: optim.regularizers.penalty(p, rules),
      donate_state=False)
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(4, 8, 28, 28, 1)).astype(np.float32),
           "label": rng.integers(0, 10, size=(4, 8)).astype(np.int32)}
  for _ in range(2):
    expected_penalty = _l2_by_hand(state.params, 1e-3)
    logits = model.apply({"params": state.params}, batch["image"].reshape(32, 28, 28, 1))
    expected_data = float(jnp.mean(-jax.nn.log_softmax(logits)[
        np.arange(32), batch["label"].reshape(-1)]))
    state, metrics = step(state, batch)
    assert expected_penalty > 0.1  # large enough that a missing penalty fails
    np.testing.assert_allclose(float(metrics["data_loss"]), expected_data, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["loss"]) - float(metrics["data_loss"]),
                               expected_penalty, rtol=1e-4)


def test_history_loss_with_l2_and_eval_train_with_dropout(mock_fashion_mnist, tmp_path):
  config = mock_fashion_mnist
  config.model.name = "mlp_dropout"
  config.regularization.l2 = 1e-3
  config.optimizer.name = "adam"
  config.training.batch_size = 128  # the 128 training examples: one step per epoch
  config.training.num_epochs = 1
  config.training.eval_train = True
  state, history = train.train_and_evaluate(config, str(tmp_path))
  # Epoch 1's one step started from the initial parameters.
  model = models.create(config.model, num_classes=10)
  tx = state_lib.optimizer(config, 1)
  initial = state_lib.create(config, model, tx, (28, 28, 1))
  np.testing.assert_allclose(history["loss"][0] - history["data_loss"][0],
                             _l2_by_hand(initial.params, 1e-3), rtol=1e-4)
  # train_eval_*: the final parameters on the training part in evaluation
  # mode (dropout off), computed here without the eval step or its padding.
  data = data_lib.create(config.dataset, global_batch_size=128, seed=0)
  images, labels = data.as_numpy("train")  # (the mock's whole split: it ignores slices)
  logits = model.apply({"params": state.params}, images, train=False)
  log_probs = jax.nn.log_softmax(logits)
  expected_loss = float(-jnp.mean(log_probs[np.arange(len(labels)), labels]))
  expected_accuracy = float(np.mean(np.argmax(logits, -1) == labels))
  np.testing.assert_allclose(history["train_eval_loss"][0], expected_loss, rtol=1e-5)
  assert history["train_eval_accuracy"][0] == pytest.approx(expected_accuracy, abs=1e-6)
  # Dropout on changes the logits: the train-mode accuracy is another number.
  dropped = model.apply({"params": state.params}, images, train=True,
                        rngs={"dropout": jax.random.PRNGKey(0)})
  assert not np.allclose(dropped, logits)
  saved = json.loads((tmp_path / "history.json").read_text())
  for key in ("loss", "data_loss", "train_eval_loss", "train_eval_accuracy"):
    assert saved[key] == pytest.approx(history[key])
