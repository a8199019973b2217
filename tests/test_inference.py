"""Tests of jaxcnn.inference: predict and MC dropout (lecture 004)."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxcnn import inference
from jaxcnn import metrics


class DropoutMLP(nn.Module):
  """A plain linen module (not a models.Sequential) with the call convention."""
  rate: float = 0.3
  outputs: int = 4

  @nn.compact
  def __call__(self, x, train=False, deterministic=None):
    off = not train if deterministic is None else deterministic
    x = x.reshape((x.shape[0], -1))
    x = nn.Dropout(self.rate, deterministic=off)(x)
    x = nn.elu(nn.Dense(16)(x))
    x = nn.Dropout(self.rate, deterministic=off)(x)
    return nn.Dense(self.outputs)(x)


class BatchNormDropout(nn.Module):
  """Dense, BatchNorm, Dropout, Dense: MC dropout must keep BN frozen."""

  @nn.compact
  def __call__(self, x, train=False, deterministic=None):
    off = not train if deterministic is None else deterministic
    x = nn.Dense(8)(x.reshape((x.shape[0], -1)))
    x = nn.BatchNorm(use_running_average=not train)(x)
    x = nn.Dropout(0.5, deterministic=off)(nn.relu(x))
    return nn.Dense(3)(x)


def _images(n, shape=(5, 5, 1), seed=0):
  return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def _init(model, images):
  return model.init({"params": jax.random.key(0)}, images[:2])


def _reference_samples(model, variables, images, rng, num_samples):
  """The documented convention, one apply per (sample, image)."""
  @jax.jit
  def one(key, x):
    logits = model.apply(variables, x[None], train=False, deterministic=False,
                         rngs={"dropout": key})
    return inference._probs(logits)[0]
  return np.stack([
      np.stack([one(jax.random.fold_in(jax.random.fold_in(rng, s), i), x)
                for i, x in enumerate(images)])
      for s in range(num_samples)])


def test_rate_zero_mc_mean_equals_the_single_pass():
  images = _images(11)
  model = DropoutMLP(rate=0.0)
  variables = _init(model, images)
  single = inference.predict(model, variables, images, batch_size=4)
  mc = inference.predict_mc(model, variables, images, num_samples=5, rng=jax.random.key(0),
                            allow_deterministic=True)
  np.testing.assert_allclose(mc.mean, single, atol=1e-6)
  np.testing.assert_allclose(mc.std, 0.0, atol=1e-6)
  np.testing.assert_allclose(mc.mutual_information, 0.0, atol=1e-6)
  np.testing.assert_allclose(mc.entropy, metrics.entropy(single), atol=1e-6)
  np.testing.assert_allclose(single.sum(1), 1.0, atol=1e-6)
  assert mc.samples is None


def test_a_model_without_dropout_is_refused_with_a_clear_message():
  images = _images(3)
  model = DropoutMLP(rate=0.0)
  with pytest.raises(inference.DeterministicModelError, match="allow_deterministic=True"):
    inference.predict_mc(model, _init(model, images), images, rng=jax.random.key(0))


def test_samples_follow_the_documented_keys_and_statistics():
  images = _images(6)
  model = DropoutMLP()
  variables = _init(model, images)
  rng = jax.random.key(3)
  mc = inference.predict_mc(model, variables, images, num_samples=4, rng=rng,
                            batch_size=4, samples_per_step=3, return_samples=True)
  assert mc.samples.shape == (4, 6, 4)
  np.testing.assert_allclose(mc.samples, _reference_samples(model, variables, images, rng, 4),
                             atol=1e-6)
  # Dropout is on: samples differ.
  assert np.abs(mc.samples[0] - mc.samples[1]).max() > 1e-3
  np.testing.assert_allclose(mc.mean, mc.samples.mean(0), atol=1e-6)
  np.testing.assert_allclose(mc.std, mc.samples.std(0), atol=1e-6)
  np.testing.assert_allclose(mc.entropy, metrics.entropy(mc.samples.mean(0)), atol=1e-5)
  np.testing.assert_allclose(mc.mutual_information,
                             metrics.mutual_information(mc.samples), atol=1e-5)
  assert (mc.mutual_information > 1e-4).all()


def test_mc_mean_converges_as_one_over_sqrt_samples():
  images = _images(48)
  model = DropoutMLP(rate=0.5)
  variables = _init(model, images)

  def spread(num_samples):
    means = np.stack([
        inference.predict_mc(model, variables, images, num_samples=num_samples,
                             rng=jax.random.key(seed)).mean for seed in range(8)])
    return means.std(axis=0).mean()  # spread over rngs, averaged over images/classes

  ratio = spread(8) / spread(128)
  assert 3.0 < ratio < 5.3, ratio  # sqrt(128 / 8) = 4


def test_same_rng_same_result_other_rng_other_result():
  images = _images(9)
  model = DropoutMLP()
  variables = _init(model, images)
  a = inference.predict_mc(model, variables, images, num_samples=6, rng=jax.random.key(1))
  b = inference.predict_mc(model, variables, images, num_samples=6, rng=jax.random.key(1))
  c = inference.predict_mc(model, variables, images, num_samples=6, rng=1)  # int seed
  d = inference.predict_mc(model, variables, images, num_samples=6, rng=jax.random.key(2))
  for field in inference.MCPrediction._fields[:4]:
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(getattr(a, field), getattr(c, field))
  assert np.abs(a.mean - d.mean).max() > 1e-3


def test_batchnorm_uses_moving_statistics_and_is_never_updated():
  images = _images(7)
  model = BatchNormDropout()
  variables = _init(model, images)
  # Moving statistics far from any batch's, so using batch stats would show.
  stats = jax.tree.map(lambda v: v + 3.0, variables["batch_stats"])
  variables = {"params": variables["params"], "batch_stats": stats}
  before = jax.tree.map(np.array, variables)
  rng = jax.random.key(5)
  mc = inference.predict_mc(model, variables, images, num_samples=3, rng=rng,
                            return_samples=True)
  np.testing.assert_allclose(mc.samples, _reference_samples(model, variables, images, rng, 3),
                             atol=1e-6)
  logits, _ = model.apply(variables, images, train=True, rngs={"dropout": rng},
                          mutable=["batch_stats"])
  assert np.abs(mc.samples[0] - np.asarray(jax.nn.softmax(logits))).max() > 1e-2
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, variables))


def test_result_does_not_depend_on_batching_devices_or_prefix_reuse():
  from jaxcnn import models
  model = models.build([
      {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu"},
      {"type": "max_pooling2d", "pool_size": 2},
      {"type": "flatten"},
      {"type": "dropout", "rate": 0.3},
      {"type": "dense", "units": 8, "activation": "elu"},
      {"type": "alpha_dropout", "rate": 0.2},
      {"type": "dense", "units": 5},
  ])
  assert inference._split_point(model) == 3  # conv, pool, flatten run once
  images = _images(13, (8, 8, 2))
  variables = _init(model, images)
  rng = jax.random.key(7)
  run = lambda **kw: inference.predict_mc(model, variables, images, num_samples=5, rng=rng,
                                          return_samples=True, **kw)
  base = run(batch_size=1000, devices=jax.local_devices()[:1])
  assert len(jax.local_devices()) == 4  # conftest's fake CPU devices
  for kw in (dict(batch_size=3), dict(samples_per_step=2), dict(reuse_prefix=False),
             dict(devices=jax.local_devices()), dict(batch_size=6, samples_per_step=4)):
    other = run(**kw)
    for field in ("mean", "std", "entropy", "mutual_information", "samples"):
      np.testing.assert_allclose(getattr(other, field), getattr(base, field), atol=1e-6,
                                 err_msg=f"{field} with {kw}")
  # The single pass is sharded the same way.
  np.testing.assert_allclose(
      inference.predict(model, variables, images, batch_size=5),
      inference.predict(model, variables, images, devices=jax.local_devices()[:1]), atol=1e-6)


def test_batches_are_sharded_on_the_parallel_mesh():
  """parallel.batch_mesh is the one place device meshes come from."""
  from jaxcnn import parallel
  devices = jax.local_devices()
  mesh = parallel.batch_mesh()
  assert mesh.axis_names == (parallel.AXIS,) and list(mesh.devices.flat) == devices
  assert list(parallel.batch_mesh(devices[:2]).devices.flat) == devices[:2]
  runner = inference._Runner(_images(7), 5, devices[1:3])
  assert runner.mesh.axis_names == (parallel.AXIS,)
  assert list(runner.mesh.devices.flat) == devices[1:3]
  assert (runner.per_device, runner.batch) == (3, 6)  # 5 rounded up to 2 devices
  with pytest.raises(ValueError, match="devices is empty"):
    images = _images(3)
    inference.predict(DropoutMLP(), _init(DropoutMLP(), images), images, devices=[])


def test_mc_dropout_layers_are_off_in_predict_and_on_in_predict_mc():
  from jaxcnn import models
  model = models.build([{"type": "flatten"}, {"type": "mc_dropout", "rate": 0.5},
                        {"type": "dense", "units": 3}])
  images = _images(5)
  variables = _init(model, images)
  expected = jax.nn.softmax(model.apply(variables, images, deterministic=True))
  np.testing.assert_allclose(inference.predict(model, variables, images), expected, atol=1e-6)
  mc = inference.predict_mc(model, variables, images, num_samples=4, rng=0)
  assert mc.std.max() > 1e-3


def test_binary_model_gives_two_columns():
  images = _images(6)
  model = DropoutMLP(outputs=1)
  variables = _init(model, images)
  logits = np.asarray(model.apply(variables, images))[:, 0]
  probs = inference.predict(model, variables, images)
  p = 1 / (1 + np.exp(-logits))
  np.testing.assert_allclose(probs, np.stack([1 - p, p], axis=-1), atol=1e-6)
  mc = inference.predict_mc(model, variables, images, num_samples=3, rng=0)
  assert mc.mean.shape == (6, 2) and mc.entropy.shape == (6,)
  np.testing.assert_allclose(mc.mean.sum(1), 1.0, atol=1e-6)


def test_bad_input_gets_a_clear_error():
  from jaxcnn import models
  mlp = models.create("mlp_dropout")
  images = _images(4, (28, 28, 1))
  mlp_vars = _init(mlp, images)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="num_samples must be an integer >= 1, got 0"):
    inference.predict_mc(mlp, mlp_vars, images, num_samples=0, rng=key)
  with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
    inference.predict(mlp, mlp_vars, images, batch_size=0)
  with pytest.raises(ValueError, match="784 values per image"):
    inference.predict_mc(mlp, mlp_vars, _images(4, (32, 32, 3)), rng=key)
  with pytest.raises(ValueError, match=r"images must be \[N, 28, 28, 1\]"):
    inference.predict(mlp, mlp_vars, images[:, :, :, 0], input_shape=(28, 28, 1))
  with pytest.raises(ValueError, match="N first"):
    inference.predict(mlp, mlp_vars, images[0, 0, :, 0])
  with pytest.raises(ValueError, match="rng must be a key"):
    inference.predict_mc(mlp, mlp_vars, images, rng="seed")
  cnn = models.build([{"type": "conv2d", "filters": 2, "kernel_size": 3},
                      {"type": "flatten"}, {"type": "dropout", "rate": 0.5},
                      {"type": "dense", "units": 2}])
  cnn_vars = _init(cnn, _images(2, (8, 8, 3)))
  with pytest.raises(ValueError, match="3 channel"):
    inference.predict_mc(cnn, cnn_vars, _images(2, (8, 8, 1)), rng=key)


def test_evaluate_mc_writes_the_comparison_and_figures(tmp_path, capsys):
  import json
  images = _images(20)
  labels = np.arange(20) % 4
  model = DropoutMLP()
  variables = _init(model, images)
  result = inference.evaluate_mc(model, variables, images, labels, num_samples=8, rng=0,
                                 out_dir=str(tmp_path), class_names=list("abcd"), k=2)
  single = inference.predict(model, variables, images)
  assert result["comparison"]["accuracy"]["single"] == metrics.accuracy(single, labels)
  assert "MC dropout" in capsys.readouterr().out
  names = sorted(p.name for p in tmp_path.iterdir())
  assert names == ["certainty_mc.png", "metrics.json", "reliability_mc.png",
                   "reliability_single.png"]
  assert json.loads((tmp_path / "metrics.json").read_text())["num_samples"] == 8
  # No dropout: the single-pass metrics and a note, not an error.
  plain = DropoutMLP(rate=0.0)
  result = inference.evaluate_mc(plain, _init(plain, images), images, labels, num_samples=8,
                                 rng=0)
  assert "allow_deterministic" in result["note"] and "accuracy" in result["single"]


def test_check_writable_makes_the_folder_and_fails_with_one_line(tmp_path, monkeypatch):
  from jaxcnn import run
  out = tmp_path / "w" / "mc_dropout"
  inference.check_writable(str(out))
  assert out.is_dir() and not list(out.iterdir())  # the scratch file is gone
  in_the_way = tmp_path / "file"
  in_the_way.write_text("x")
  with pytest.raises(inference.OutputNotWritableError) as e:
    inference.check_writable(str(in_the_way))
  assert f"{in_the_way} is not writable (a file is in the way)" in str(e.value)
  assert "\n" not in str(e.value) and isinstance(e.value, run.user_errors())

  def refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")
  monkeypatch.setattr(inference.tempfile, "TemporaryFile", refuse)
  with pytest.raises(inference.OutputNotWritableError, match=r"not writable \(Permission denied\)"):
    inference.check_writable(str(out))


def test_report_checks_the_output_before_reading_data(tmp_path, monkeypatch):
  from jaxcnn import data as data_lib
  monkeypatch.setattr(inference.state, "load_for_inference",
                      lambda workdir, member=None: (None, None, None))
  monkeypatch.setattr(data_lib, "create", lambda *a, **k: pytest.fail("data read first"))
  (tmp_path / "mc_dropout").write_text("x")
  with pytest.raises(inference.OutputNotWritableError, match="mc_dropout is not writable"):
    inference.report(None, str(tmp_path))
