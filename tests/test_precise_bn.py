"""BatchNorm on short runs: model.bn_momentum, precise BN, the staleness warning.

The recomputed moving statistics are checked against the moments of each
BatchNorm layer's inputs computed here layer by layer (the normalization
written out, not the BatchNormalization module). Four fake CPU devices.
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
from jaxcnn import precise_bn
from jaxcnn import state as state_lib
from jaxcnn import train

EPSILON = 1e-3  # Keras' BatchNormalization epsilon, as the layer's default


def _independent_moments(model, params, images):
  """Each BatchNorm layer's batch mean and biased variance, in train mode, by hand.

  Other layers run one at a time through ``model.apply(start=i, stop=i+1)``
  (a model without dropout); BatchNorm layers are written out here.
  """
  x, out = jnp.asarray(images), {}
  for i, spec in enumerate(model.layers):
    if spec.type == "batch_normalization":
      axes = tuple(range(x.ndim - 1))
      mean = np.asarray(x, np.float64).mean(axes)
      var = ((np.asarray(x, np.float64) - mean) ** 2).mean(axes)
      out[spec.name] = (mean, var)
      p = params[spec.name]
      x = ((x - mean) / np.sqrt(var + EPSILON) * p["scale"] + p["bias"]).astype(np.float32)
    else:
      x = model.apply({"params": params}, x, start=i, stop=i + 1)
  return out


def _mlp_bn_state(seed=0):
  config = config_lib.defaults()
  config.seed = seed
  config.model.name = "mlp_bn"
  model = models.create(config.model, num_classes=10)
  tx = optim.create({"name": "sgd", "learning_rate": 0.1}, {"name": "constant"},
                    steps_per_epoch=10, num_epochs=1)
  state = state_lib.create(config, model, tx, (28, 28, 1))
  # Non-trivial scale and bias, so later layers' inputs depend on them.
  rng = np.random.default_rng(seed)
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 0.3 * rng.normal(size=x.shape).astype(np.float32)
      if jax.tree_util.keystr(path).endswith(("['scale']", "['bias']")) else x,
      state.params)
  return config, model, state.replace(params=params)


def test_recomputed_stats_are_the_mean_of_the_batches_moments():
  config, model, state = _mlp_bn_state()
  train_model = models.create(config.model, num_classes=10, axis_name="batch")
  rng = np.random.default_rng(1)
  batches = [{"image": (rng.normal(size=(4, 8, 28, 28, 1)) * (1 + k)).astype(np.float32),
              "label": np.zeros((4, 8), np.int32)} for k in range(4)]
  new = precise_bn.recompute(train_model, state, iter(batches), 3)
  moments = [_independent_moments(model, state.params, b["image"].reshape(32, 28, 28, 1))
             for b in batches[:3]]
  names = [s.name for s in model.layers if s.type == "batch_normalization"]
  assert len(names) == 3 and set(new.batch_stats) == set(names)
  for name in names:
    np.testing.assert_allclose(new.batch_stats[name]["mean"],
                               np.mean([m[name][0] for m in moments], axis=0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new.batch_stats[name]["var"],
                               np.mean([m[name][1] for m in moments], axis=0),
                               rtol=1e-4, atol=1e-5)
  # The batches differ in scale: the mean of 3 is not any one batch's.
  assert not np.allclose(moments[0][names[0]][1], moments[2][names[0]][1])
  # Parameters and optimizer state untouched; the same on one device.
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)
  single = precise_bn.recompute(train_model, state, iter(batches), 3, pmap=False)
  for a, b in zip(jax.tree.leaves(single.batch_stats), jax.tree.leaves(new.batch_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="Only 4 training batches"):
    precise_bn.recompute(train_model, state, iter(batches), 5)


def test_stale_warning_fires_for_50_steps_at_099_and_not_for_1000():
  model = models.create("mlp_bn", num_classes=10)
  warning = precise_bn.stale_warning(model, 50)
  # 0.99**50 = 0.605: the initial statistics still weigh 0.61 of them.
  assert warning is not None
  for text in ("50 updates", "momentum 0.99", "0.61", "model.bn_momentum",
               "training.recompute_bn_stats", "at least 299 steps",
               "bn_momentum=0.94"):  # 0.05**(1/50) = 0.9418
    assert text in warning
  assert precise_bn.stale_warning(model, 1000) is None  # 0.99**1000 = 4e-5
  assert precise_bn.stale_weight(0.99, 50) == pytest.approx(0.99 ** 50)
  # A lower momentum settles in 50 steps (0.9**50 = 0.005).
  fast = models.create({"name": "mlp_bn", "bn_momentum": 0.9}, num_classes=10)
  assert precise_bn.momenta(fast) == [0.9, 0.9, 0.9]
  assert precise_bn.stale_warning(fast, 50) is None
  assert 0.94 ** 50 <= 0.05 < 0.95 ** 50  # the suggestion is the largest that works
  assert precise_bn.stale_warning(models.create("mlp", num_classes=10), 5) is None


def test_bn_momentum_reaches_every_preset_batch_norm_layer():
  for name in ("mlp_bn", "cnn_small_bn", "cifar_cnn_bn"):
    model = models.create({"name": name, "bn_momentum": 0.9}, num_classes=10)
    found = [s.kwargs["momentum"] for s in model.layers if s.type == "batch_normalization"]
    assert found and all(m == 0.9 for m in found)
    # Default: Keras' 0.99 (the layer's own default).
    assert precise_bn.momenta(models.create(name, num_classes=10))[0] == 0.99
  # A layer that sets its own momentum keeps it.
  custom = models.create({"name": "sequential", "bn_momentum": 0.5, "layers": [
      {"type": "flatten"}, {"type": "batchnorm", "momentum": 0.7},
      {"type": "batch_normalization"}, {"type": "dense", "units": 2}]})
  assert precise_bn.momenta(custom) == [0.7, 0.5]
  with pytest.raises(config_lib.ConfigError, match=r"bn_momentum must be a number in \[0, 1\)"):
    models.create({"name": "mlp_bn", "bn_momentum": 1.0})
  # The layer does what the momentum says: one update from (0, 1).
  model = models.create({"name": "mlp_bn", "bn_momentum": 0.9}, num_classes=10)
  x = np.random.default_rng(0).normal(size=(16, 28, 28, 1)).astype(np.float32)
  variables = model.init(jax.random.PRNGKey(0), x)
  _, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
  flat = x.reshape(16, -1)
  np.testing.assert_allclose(updated["batch_stats"]["batch_normalization"]["mean"],
                             0.1 * flat.mean(0), rtol=1e-4, atol=1e-6)


def test_run_recomputes_before_checkpoint_and_test_and_warns_without(
    mock_fashion_mnist, tmp_path, capsys):
  config = mock_fashion_mnist
  config.model.name = "mlp_bn"
  config.optimizer.name = "adam"
  config.training.batch_size = 32  # 128 training examples: 4 steps
  config.training.num_epochs = 1
  plain, _ = train.train_and_evaluate(config, str(tmp_path / "plain"))
  out = capsys.readouterr().out
  assert "saw 4 updates at momentum 0.99" in out  # 0.99**4 = 0.96
  config.training.recompute_bn_stats = 3
  state, history = train.train_and_evaluate(config, str(tmp_path / "precise"))
  out = capsys.readouterr().out
  assert "Recomputed the BatchNorm moving statistics as the mean of 3" in out
  assert "saw 4 updates" not in out
  # Same training (same seed): the same parameters, other statistics.
  for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # The statistics: the mean of the first 3 batches of the epoch after the
  # last, computed by hand.
  model = models.create(config.model, num_classes=10)
  data = data_lib.create(config.dataset, global_batch_size=32, seed=config.seed)
  batches = list(data.train_epoch(1))[:3]
  moments = [_independent_moments(model, state.params, b["image"].reshape(32, 28, 28, 1))
             for b in batches]
  for name, stats in state.batch_stats.items():
    np.testing.assert_allclose(stats["mean"], np.mean([m[name][0] for m in moments], 0),
                               rtol=1e-4, atol=1e-5)
  # The checkpoint holds them, and the test score used them.
  _, variables, _ = state_lib.load_for_inference(str(tmp_path / "precise"))
  for a, b in zip(jax.tree.leaves(variables["batch_stats"]),
                  jax.tree.leaves(state.batch_stats)):
    np.testing.assert_array_equal(a, b)
  images, labels = data.as_numpy("test")
  logits = model.apply(variables, images, train=False)
  accuracy = float(np.mean(np.argmax(logits, -1) == labels))
  results = json.loads((tmp_path / "precise" / "results.json").read_text())
  assert results["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_population_member_recomputes_and_evaluates_as_its_single_run(
    mock_fashion_mnist, tmp_path):
  config = mock_fashion_mnist
  config.model.name = "mlp_bn"
  config.optimizer.name = "adam"
  config.regularization.l2 = 1e-4
  config.training.batch_size = 32
  config.training.num_epochs = 1
  config.training.population = 2
  config.training.recompute_bn_stats = 2
  config.training.eval_train = True
  state, history = train.train_and_evaluate(config, str(tmp_path / "population"))
  single_config = config_lib.member_configs(config)[1]
  single, single_history = train.train_and_evaluate(single_config, str(tmp_path / "single"))
  for a, b in zip(jax.tree.leaves(state_lib.member(state, 1).batch_stats),
                  jax.tree.leaves(single.batch_stats)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  member = history["members"][1]
  for key in ("loss", "data_loss", "train_eval_loss", "train_eval_accuracy"):
    np.testing.assert_allclose(member[key], single_history[key], rtol=1e-5)
  assert member["loss"][0] > member["data_loss"][0]  # the l2 penalty
  assert len(history["train_eval_accuracy_std"]) == 1


def test_regularization_ladders_batchnorm_rung_recomputes_its_statistics():
  path = "experiments/regularization_ladder.py"
  import pathlib  # pylint: disable=g-import-not-at-top
  path = str(pathlib.Path(__file__).parents[1] / path)
  for options in ("", ",overfit", ",cifar10"):
    assert config_lib.load(f"{path}:batchnorm{options}").training.recompute_bn_stats == 20
    assert config_lib.load(f"{path}:l2{options}").training.recompute_bn_stats == 0
