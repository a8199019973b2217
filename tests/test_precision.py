"""Mixed precision: bfloat16/float16 compute, float16's dynamic loss scale.

Step-level tests use a tiny CNN on random 12x12 images (fast on 2 cores);
the loop tests train cnn_small_bn on scikit-learn's digits (offline), as
tests/test_population_train.py does, with 4 fake CPU devices.
"""

import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import checkpoint as checkpoint_lib
from jaxcnn import config as config_lib
from jaxcnn import models
from jaxcnn import parallel
from jaxcnn import precision
from jaxcnn import state as state_lib
from jaxcnn import train
from jaxcnn import workdir as workdir_lib

LAYERS = [
    {"type": "conv2d", "filters": 8, "kernel_size": 3, "activation": "relu"},
    {"type": "batch_normalization"},
    {"type": "max_pooling2d"},
    {"type": "flatten"},
    {"type": "dense", "units": 16, "activation": "relu"},
    {"type": "dense", "units": 10},
]
SHAPE = (12, 12, 1)


def step_config(prec="float32", **training):
  c = config_lib.defaults()
  c.model.name = "sequential"
  c.model.layers = LAYERS
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.training.precision = prec
  c.training.update(training)
  return config_lib.validate(c)


def build(config, devices=2):
  """(state, step) for ``config`` as train.build builds them."""
  dtype = precision.compute_dtype(config.training.precision)
  model = models.create(config.model, num_classes=10, dtype=dtype)
  train_model = models.create(config.model, num_classes=10, axis_name=parallel.AXIS,
                              dtype=dtype)
  tx = state_lib.optimizer(config, 10)
  state = state_lib.create(config, model, tx, SHAPE)
  return state, parallel.make_train_step(train_model, tx, donate_state=False)


def batches(n=4, batch=32, devices=2, seed=0):
  """A fixed tiny training set: the loss can only drop by memorising it."""
  rng = np.random.default_rng(seed)
  return [{"image": rng.normal(size=(devices, batch // devices, *SHAPE)).astype(np.float32),
           "label": rng.integers(0, 10, size=(devices, batch // devices)).astype(np.int32)}
          for _ in range(n)]


def run(config, steps, data=None):
  state, step = build(config)
  data = data or batches()
  losses, metrics = [], []
  for t in range(steps):
    state, m = step(state, data[t % len(data)])
    m = jax.device_get(m)
    losses.append(float(m["loss"]))
    metrics.append(m)
  return state, losses, metrics


def max_abs_diff(a, b):
  return max(float(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).max())
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ------------------------------------------------------------------ config


def test_precision_is_checked_and_float32_by_default():
  assert config_lib.defaults().training.precision == "float32"
  c = step_config()
  c.training.precision = "bfloat"
  with pytest.raises(config_lib.ConfigError, match=r"precision.*Did you mean 'bfloat16'"):
    config_lib.validate(c)
  c = step_config("float16")
  c.training.loss_scale_period = 0
  with pytest.raises(config_lib.ConfigError, match=r"loss_scale_period' must be >= 1"):
    config_lib.validate(c)


def test_float32_adds_nothing_to_the_state_or_the_model():
  """float32: no cast in the model, no leaf in the state (the compiled step
  and the checkpoints are those of jaxcnn before training.precision)."""
  assert precision.compute_dtype("float32") is None
  config = step_config()
  state, _ = build(config)
  assert state.loss_scale == ()
  old_fields = [state.step, state.params, state.batch_stats, state.opt_state, state.rng,
                state.plateau]
  assert len(jax.tree.leaves(state)) == len(jax.tree.leaves(old_fields))
  assert models.create(config.model, num_classes=10, dtype=None) == models.create(
      config.model, num_classes=10)


@pytest.mark.parametrize("prec, dtype", [("bfloat16", jnp.bfloat16),
                                         ("float16", jnp.float16)])
def test_half_precision_computes_in_half_and_keeps_float32_around_it(prec, dtype):
  config = step_config(prec)
  state, _ = build(config)
  model = models.create(config.model, num_classes=10, dtype=precision.compute_dtype(prec))
  x = jnp.ones((2, *SHAPE), jnp.float32)
  jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]))(
      state.variables)
  convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
  dots = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "dot_general"]
  assert convs and len(dots) == 2
  assert all(v.aval.dtype == dtype for e in convs + dots for v in e.invars)
  logits, new_state = model.apply(state.variables, x, train=True, mutable=["batch_stats"])
  assert logits.dtype == jnp.float32
  for tree in (state.params, state.opt_state, new_state["batch_stats"]):
    assert {leaf.dtype for leaf in jax.tree.leaves(tree)} <= {
        jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)}


# ------------------------------------------------------------------ learning


def norm(tree):
  return float(np.sqrt(sum(float(np.sum(np.square(np.asarray(x, np.float64))))
                           for x in jax.tree.leaves(tree))))


# Relative error of the first 3 Adam updates, ||p_half - p_f32|| / ||p_f32 - p_0||.
# Random labels make each gradient a sum of per-example terms that mostly
# cancel, which magnifies the rounding of half-precision activations
# (bfloat16 keeps 8 significant bits, float16 11): observed 0.18 and 0.02.
UPDATE_RTOL = {"bfloat16": 0.3, "float16": 0.05}


@pytest.mark.parametrize("prec", ["bfloat16", "float16"])
def test_half_precision_learns_and_its_first_steps_track_float32(prec):
  """30 steps over 4 fixed batches: the loss drops as float32's does
  (observed 2.81 -> 1.77 in all three precisions); the first 3 losses agree
  with float32's to 1% (observed 0.1%) and the updates to UPDATE_RTOL."""
  init = build(step_config())[0].params
  reference, ref_losses, _ = run(step_config(), 3)
  _, full_losses, _ = run(step_config(), 30)
  config = step_config(prec, initial_loss_scale=1024.0)
  state, losses, metrics = run(config, 30)
  np.testing.assert_allclose(losses[:3], ref_losses, rtol=1e-2)
  early, _, _ = run(config, 3)
  update = norm(jax.tree.map(lambda a, b: a - b, reference.params, init))
  error = norm(jax.tree.map(lambda a, b: a - b, early.params, reference.params))
  assert error < UPDATE_RTOL[prec] * update
  assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])
  assert np.mean(losses[-4:]) == pytest.approx(np.mean(full_losses[-4:]), rel=0.05)
  if prec == "float16":
    assert all(float(m["loss_scale"]) == 1024.0 for m in metrics)  # nothing overflowed
    assert int(state.loss_scale.fin_steps) == 30
  else:
    assert "loss_scale" not in metrics[0]


# ------------------------------------------------------------------ loss scaling


def test_float16_overflow_skips_the_step_and_halves_the_scale():
  """2**100 times the loss overflows float16's backward pass: no update."""
  config = step_config("float16", initial_loss_scale=2.0 ** 100)
  state, step = build(config)
  data = batches()
  new, m = step(state, data[0])
  assert int(new.step) == 1  # the step counts: data order and dropout keys follow it
  assert float(new.loss_scale.scale) == 2.0 ** 99
  assert int(new.loss_scale.fin_steps) == 0
  for before, after in ((state.params, new.params), (state.opt_state, new.opt_state),
                        (state.batch_stats, new.batch_stats)):
    jax.tree.map(np.testing.assert_array_equal, before, after)
  assert float(m["grad_norm"]) == 0.0 and float(m["loss_scale"]) == 2.0 ** 99
  assert np.isfinite(float(m["loss"]))
  # The same batch at a scale float16 can hold updates the parameters.
  ok = state.replace(loss_scale=state.loss_scale.replace(scale=jnp.float32(256.0)))
  updated, m = step(ok, data[0])
  assert max_abs_diff(updated.params, state.params) > 1e-3
  assert float(updated.loss_scale.scale) == 256.0 and float(m["grad_norm"]) > 0


def test_float16_scale_doubles_after_the_period_of_finite_steps():
  config = step_config("float16", initial_loss_scale=8.0, loss_scale_period=3)
  _, _, metrics = run(config, 7)
  assert [float(m["loss_scale"]) for m in metrics] == [8, 8, 16, 16, 16, 32, 32]


def test_float16_non_finite_gradients_at_the_floor_are_not_excused(monkeypatch):
  """At precision.MIN_LOSS_SCALE an overflow is divergence: grad_norm stays
  non-finite, which the NaN stop reads (here the floor is raised to 2**100,
  where the backward pass overflows, to reach it in one step)."""
  monkeypatch.setattr(precision, "MIN_LOSS_SCALE", 2.0 ** 100)
  state, step = build(step_config("float16", initial_loss_scale=2.0 ** 100))
  new, m = step(state, batches()[0])
  assert np.isfinite(float(m["loss"])) and not np.isfinite(float(m["grad_norm"]))
  assert float(new.loss_scale.scale) == 2.0 ** 100  # never below the floor
  jax.tree.map(np.testing.assert_array_equal, state.params, new.params)


@pytest.mark.parametrize("mode", ["loop", "vmap"])
def test_float16_population_members_equal_their_single_runs(mode):
  """Each member keeps its own loss scale; member i ends as its single run."""
  config = step_config("float16", initial_loss_scale=2.0 ** 30, population=2)
  members = config_lib.member_configs(config)
  dtype = jnp.float16
  model = models.create(config.model, num_classes=10, dtype=dtype)
  states, args = [], []
  for m in members:
    tx = state_lib.optimizer(m, 10)
    states.append(state_lib.create(m, model, tx, SHAPE))
    args.append({"model": models.create(m.model, num_classes=10, axis_name=parallel.AXIS,
                                        dtype=dtype), "tx": tx})
  step = parallel.make_population_step(args, mode=mode, donate_state=False)
  data = [batches(seed=i) for i in range(2)]
  population = state_lib.stack(states)
  for t in range(4):
    population, metrics = step(population, jax.tree.map(
        lambda *xs: np.stack(xs), data[0][t], data[1][t]))
  assert metrics["loss_scale"].shape == (2,)
  for i in range(2):
    single = states[i]
    single_step = parallel.make_train_step(**args[i], donate_state=False)
    for t in range(4):
      single, _ = single_step(single, data[i][t])
    got = state_lib.member(population, i)
    assert float(got.loss_scale.scale) == float(single.loss_scale.scale) < 2.0 ** 30
    for a, b in ((got.params, single.params), (got.batch_stats, single.batch_stats)):
      jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5), a, b)


# ------------------------------------------------------------------ checkpoints


@flax.struct.dataclass
class _TrainStateBeforePrecision:
  """TrainState as jaxcnn saved it before ``loss_scale`` existed."""
  step: jax.Array
  params: object
  batch_stats: object
  opt_state: object
  rng: jax.Array
  plateau: object


def test_checkpoints_from_before_precision_restore(tmp_path):
  state, _ = build(step_config())
  old = _TrainStateBeforePrecision(state.step, state.params, state.batch_stats,
                                   state.opt_state, state.rng, state.plateau)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  ckpt.save(0, old, {"epoch": 0})
  ckpt.close()
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path))
  restored, _ = ckpt.restore_latest(state)
  ckpt.close()
  assert isinstance(restored, state_lib.TrainState) and restored.loss_scale == ()
  jax.tree.map(np.testing.assert_array_equal, restored.params, state.params)


def test_old_config_json_resumes_and_a_changed_precision_is_refused(tmp_path):
  config = step_config()
  saved = config.to_dict()
  for key in ("precision", "initial_loss_scale", "loss_scale_period"):
    del saved["training"][key]  # a workdir written before these keys
  (tmp_path / "config.json").write_text(json.dumps(saved))
  assert workdir_lib.resume_changes(str(tmp_path), config) == {}
  config.training.precision = "bfloat16"
  with pytest.raises(config_lib.ConfigError,
                     match=r"training.precision: saved 'float32', now 'bfloat16'"):
    workdir_lib.resume_changes(str(tmp_path), config)


# ------------------------------------------------------------------ the loop


def loop_config(data_dir, prec="float16", **training):
  c = config_lib.defaults()
  c.dataset.name = "sklearn_digits"
  c.dataset.data_dir = data_dir
  c.dataset.num_train_examples = 160  # 128 train (8 steps of 16) + 32 validation
  c.dataset.validation_split = 32
  c.dataset.num_test_examples = 100
  c.model.name = "cnn_small_bn"
  c.model.dropout_rate = 0.3
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3
  c.training.batch_size = 16
  c.training.num_epochs = 2
  c.training.progress_bar = False
  c.training.precision = prec
  c.training.update(training)
  return c


def test_float16_run_resumes_exactly_with_its_loss_scale(digits_dir, tmp_path,
                                                         signal_at_step):
  """Skipped steps (2**24 overflows at first) do not stop the run; SIGTERM
  mid-epoch 2, then rerun: the parameters and the scale of never stopping."""
  config = loop_config(digits_dir, initial_loss_scale=2.0 ** 24, loss_scale_period=3,
                       log_every_steps=1)
  full, full_history = train.train_and_evaluate(config, str(tmp_path / "full"))
  assert float(full.loss_scale.scale) != 2.0 ** 24  # the scale moved
  disarm = signal_at_step(11)  # mid-epoch 2 of 8 steps
  workdir = str(tmp_path / "interrupted")
  with pytest.raises(train.Preempted):
    train.train_and_evaluate(config, workdir)
  assert checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints")).all_steps() == [8, 11]
  disarm()
  resumed, resumed_history = train.train_and_evaluate(config, workdir)
  assert float(resumed.loss_scale.scale) == float(full.loss_scale.scale)
  assert int(resumed.loss_scale.fin_steps) == int(full.loss_scale.fin_steps)
  for a, b in ((resumed.params, full.params), (resumed.opt_state, full.opt_state)):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)
  np.testing.assert_allclose(resumed_history["loss"], full_history["loss"], rtol=1e-5)
  from tensorboard.backend.event_processing import event_accumulator
  events = event_accumulator.EventAccumulator(str(tmp_path / "full" / "tensorboard"))
  events.Reload()
  assert "train/loss_scale" in set(events.Tags()["tensors"]) | set(events.Tags()["scalars"])


def test_float16_divergence_still_stops_the_run(digits_dir, tmp_path):
  config = loop_config(digits_dir, num_epochs=3)
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 1e30
  with pytest.raises(train.NonFiniteLossError, match=r"Non-finite loss at step \d+"):
    train.train_and_evaluate(config, str(tmp_path))


def test_bfloat16_model_is_what_inference_loads(digits_dir, tmp_path):
  config = loop_config(digits_dir, "bfloat16", num_epochs=1)
  train.train_and_evaluate(config, str(tmp_path))
  model, variables, _ = state_lib.load_for_inference(str(tmp_path))
  assert model.dtype == jnp.bfloat16
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
