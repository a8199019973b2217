"""The train loop: pmap equivalence, exact resume, faults, learning.

Every loop test runs twice, over the ``data_source`` fixture:

* ``[mock]`` always runs: ``tfds.testing.mock_data`` (policy ``USE_CODE``)
  makes random Fashion-MNIST-shaped examples through TFDS's own builder, so
  the loop, checkpoints, resume and faults are tested on any machine.
* ``[real]`` (marked ``real_data`` and ``slow``) trains on the real
  Fashion-MNIST from Debian's ``dataset-fashion-mnist`` mirror and skips
  only when that mirror is absent (``$JAXCNN_MIRROR_DIR`` moves it).
"""

import dataclasses
import functools
import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxcnn import checkpoint as checkpoint_lib
from jaxcnn import config as config_lib
from jaxcnn import models
from jaxcnn import optim
from jaxcnn import parallel
from jaxcnn import state as state_lib
from jaxcnn import train

import tree_asserts

# Mock splits: with USE_CODE there is no split metadata, so tf.data counts
# the examples, and the mock ignores slices: the validation and test parts
# hold all MOCK_EXAMPLES (the same random examples each time), the cached
# training part its 160 - 32 = 128 of them: 4 steps of 32 per epoch.
MOCK_EXAMPLES = 160
MOCK_VALIDATION = 32


@dataclasses.dataclass(frozen=True)
class DataSource:
  """Where a loop test's Fashion-MNIST comes from, and the sizes that follow.

  Attributes:
    kind: ``"mock"`` or ``"real"``.
    data_dir: the TFDS data dir (mock: an empty folder nothing reads).
    mirror_dir: ``dataset.mirror_dir`` ('' = the default search; mock: a
      folder that does not exist, so the mock never touches a real mirror).
    num_train_examples, validation_split, num_test_examples: the dataset
      sizes of :meth:`config`.
    steps_per_epoch: training steps per epoch at batch size 32.
    num_test: examples in the test part.
    interrupt_at: a train step in the middle of epoch 2 (for the SIGTERM).
  """
  kind: str
  data_dir: str
  mirror_dir: str
  num_train_examples: int
  validation_split: int
  num_test_examples: int
  steps_per_epoch: int
  num_test: int
  interrupt_at: int

  @property
  def mock(self) -> bool:
    return self.kind == "mock"

  def config(self, **training):
    """A small cnn_small/adam run of this source's sizes, batch 32."""
    c = config_lib.defaults()
    c.dataset.name = "fashion_mnist"
    c.dataset.data_dir = self.data_dir
    c.dataset.mirror_dir = self.mirror_dir
    c.dataset.num_train_examples = self.num_train_examples
    c.dataset.num_test_examples = self.num_test_examples
    c.dataset.validation_split = self.validation_split
    c.model.name = "cnn_small"
    c.optimizer.name = "adam"
    c.optimizer.learning_rate = 1e-3
    c.training.batch_size = 32
    c.training.num_epochs = 2
    c.training.progress_bar = False
    c.training.update(training)
    return c


def _mock_source(tmp_path_factory, monkeypatch):
  """Enters ``tfds.testing.mock_data`` for the test; saves made synchronous.

  ``mock_data`` swaps in a fake file system while a dataset is opened (for
  every validation and test pass too); an asynchronous Orbax save running
  at that moment would write into it. As in tests/test_cats_vs_dogs.py,
  each save therefore finishes before the loop goes on.
  """
  save = checkpoint_lib.Checkpointer.save

  def save_and_wait(self, *args, **kwargs):
    result = save(self, *args, **kwargs)
    self.wait()
    return result
  monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", save_and_wait)
  root = tmp_path_factory.mktemp("mock")
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    yield DataSource(
        kind="mock", data_dir=str(root / "tfds"),
        mirror_dir=str(root / "no-mirror"),
        num_train_examples=MOCK_EXAMPLES, validation_split=MOCK_VALIDATION,
        num_test_examples=0,
        steps_per_epoch=(MOCK_EXAMPLES - MOCK_VALIDATION) // 32,
        num_test=MOCK_EXAMPLES,
        interrupt_at=6)  # 2 of epoch 2's 4 steps


@pytest.fixture(params=["mock", pytest.param(
    "real", marks=[pytest.mark.real_data, pytest.mark.slow])])
def data_source(request, tmp_path_factory, monkeypatch):
  """A :class:`DataSource`: ``mock`` always, ``real`` where the mirror is."""
  if request.param == "mock":
    yield from _mock_source(tmp_path_factory, monkeypatch)
    return
  # Skips, with the reason, when the mirror is absent.
  data_dir = request.getfixturevalue("fashion_mnist_data_dir")
  # 512 train + 100 validation: 16 steps of 32.
  yield DataSource(kind="real", data_dir=data_dir, mirror_dir="",
                   num_train_examples=612, validation_split=100,
                   num_test_examples=300, steps_per_epoch=16, num_test=300,
                   interrupt_at=21)  # 5 of epoch 2's 16 steps


assert_trees_close = functools.partial(tree_asserts.assert_trees_close,
                                       rtol=1e-5, atol=1e-6)


def test_pmap_on_4_devices_equals_one_device():
  """The same global batch gives the same update on 4 devices as on 1."""
  assert jax.local_device_count() == 4
  config = config_lib.defaults()
  config.model.name = "cnn_small_bn"
  model = models.create(config.model, num_classes=10)
  train_model = models.create(config.model, num_classes=10, axis_name="batch")
  tx = optim.create({"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
                    {"name": "constant"}, steps_per_epoch=10, num_epochs=1)
  state = state_lib.create(config, model, tx, (28, 28, 1))
  rng = np.random.default_rng(0)
  batches = [{"image": rng.normal(size=(32, 28, 28, 1)).astype(np.float32),
              "label": rng.integers(0, 10, size=(32,)).astype(np.int32)}
             for _ in range(3)]
  step4 = parallel.make_train_step(train_model, tx, donate_state=False)
  step1 = parallel.make_train_step(train_model, tx, pmap=False, donate_state=False)
  s4, s1 = state, state
  for b in batches:
    s4, m4 = step4(s4, jax.tree.map(lambda x: x.reshape((4, 8) + x.shape[1:]), b))
    s1, m1 = step1(s1, jax.tree.map(lambda x: x.reshape((1, 32) + x.shape[1:]), b))
  assert int(s4.step) == int(s1.step) == 3
  assert_trees_close(s4.params, s1.params, rtol=1e-4, atol=1e-5)
  assert_trees_close(s4.batch_stats, s1.batch_stats, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(float(m4["loss"]), float(m1["loss"]), rtol=1e-5)
  # And the parameters did move: the test cannot pass on a no-op step.
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), s4.params, state.params)
  assert max(jax.tree.leaves(moved)) > 1e-3


def test_donated_step_equals_undonated_and_consumes_its_input():
  """Donation reuses buffers in place: the same numbers, the old state gone."""
  config = config_lib.defaults()
  config.model.name = "mlp_dropout"
  model = models.create(config.model, num_classes=10)
  train_model = models.create(config.model, num_classes=10, axis_name="batch")
  tx = optim.create({"name": "nadam", "learning_rate": 1e-3}, {"name": "constant"},
                    steps_per_epoch=10, num_epochs=1)
  rng = np.random.default_rng(1)
  batch = {"image": rng.normal(size=(4, 8, 28, 28, 1)).astype(np.float32),
           "label": rng.integers(0, 10, size=(4, 8)).astype(np.int32)}
  kept = state_lib.create(config, model, tx, (28, 28, 1))
  given = state_lib.create(config, model, tx, (28, 28, 1))
  plain = parallel.make_train_step(train_model, tx, donate_state=False)
  donating = parallel.make_train_step(train_model, tx)
  a, _ = plain(kept, batch)
  b, _ = donating(given, batch)
  assert_trees_close(a.params, b.params, rtol=0, atol=0)
  assert_trees_close(a.opt_state, b.opt_state, rtol=0, atol=0)
  assert not any(x.is_deleted() for x in jax.tree.leaves(kept.params))
  assert all(x.is_deleted() for x in jax.tree.leaves(given.params))


def test_trains_writes_logs_and_learns(data_source, tmp_path):
  if data_source.mock:
    # Random images with random labels: nothing generalizes, so "learns"
    # means memorising a tiny fixed training set: 16 examples (48 less the
    # 32 of validation), 4 steps of 4 per epoch. The MLP memorises noise
    # within two epochs; the CNNs first only learn the label frequencies.
    config = data_source.config(num_epochs=2, batch_size=4)
    config.dataset.num_train_examples = 48
    config.model.name = "mlp"
    num_test = data_source.num_test
  else:
    config = data_source.config(num_epochs=2)
    config.dataset.num_train_examples = 4096
    config.dataset.num_test_examples = 1000
    config.dataset.validation_split = 500
    config.model.name = "mnist_cnn"
    num_test = 1000
  state, history = train.train_and_evaluate(config, str(tmp_path))
  assert len(history["loss"]) == 2 and len(history["val_accuracy"]) == 2
  assert history["loss"][1] < history["loss"][0]
  if data_source.mock:
    # The second pass over the same 16 examples: a much lower loss, and
    # far more of them right than chance (0.10); observed 0.5.
    assert history["loss"][1] < 0.8 * history["loss"][0]
    assert history["accuracy"][1] > 0.3
  else:
    assert history["test_accuracy"] > 0.65  # chance is 0.10
  assert len(history["lr"]) == 2 and history["lr"][0] == pytest.approx(1e-3)
  assert all(v > 0 for v in history["images_per_second"])
  saved = json.loads((tmp_path / "history.json").read_text())
  assert saved["val_loss"] == pytest.approx(history["val_loss"])
  assert json.loads((tmp_path / "results.json").read_text())["test_count"] == num_test
  assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
  assert json.loads((tmp_path / "config.json").read_text())["model"]["name"] == (
      config.model.name)


def test_resumed_run_equals_uninterrupted(data_source, tmp_path, signal_at_step):
  """SIGTERM mid-epoch, then rerun: same final parameters as never stopping."""
  config = data_source.config(num_epochs=2)
  config.model.name = "cnn_small"
  spe = data_source.steps_per_epoch
  full_state, full_history = train.train_and_evaluate(config, str(tmp_path / "full"))

  disarm = signal_at_step(data_source.interrupt_at)  # Mid-epoch 2.
  workdir = str(tmp_path / "interrupted")
  with pytest.raises(train.Preempted):
    train.train_and_evaluate(config, workdir)
  steps = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints")).all_steps()
  assert spe < data_source.interrupt_at < 2 * spe
  assert steps == [spe, data_source.interrupt_at]
  disarm()
  resumed_state, resumed_history = train.train_and_evaluate(config, workdir)
  assert int(resumed_state.step) == int(full_state.step) == 2 * spe
  assert_trees_close(resumed_state.params, full_state.params)
  assert_trees_close(resumed_state.opt_state, full_state.opt_state)
  np.testing.assert_allclose(resumed_history["loss"], full_history["loss"], rtol=1e-5)
  assert resumed_history["test_accuracy"] == pytest.approx(full_history["test_accuracy"])

  # A finished run says so and only evaluates.
  again_state, _ = train.train_and_evaluate(config, workdir)
  assert int(again_state.step) == 2 * spe


def test_corrupt_latest_checkpoint_is_skipped_not_lost(data_source, tmp_path, capsys):
  config = data_source.config(num_epochs=2)
  spe = data_source.steps_per_epoch
  train.train_and_evaluate(config, str(tmp_path))
  ckpt_dir = tmp_path / "checkpoints"
  # Truncate every data file of the newest step, as a killed copy would.
  truncated = 0
  for path in glob.glob(str(ckpt_dir / str(2 * spe) / "state" / "**" / "*"), recursive=True):
    if os.path.isfile(path) and os.path.getsize(path) > 64:
      with open(path, "r+b") as f:
        f.truncate(10)
      truncated += 1
  assert truncated
  config.training.num_epochs = 3
  state, history = train.train_and_evaluate(config, str(tmp_path))
  out = capsys.readouterr().out
  assert f"checkpoint step {2 * spe} is unreadable" in out
  assert "Resumed from" in out and f"at step {spe} " in out
  assert glob.glob(str(ckpt_dir / "corrupt" / f"{2 * spe}-*"))  # Kept aside, not deleted.
  assert int(state.step) == 3 * spe and len(history["loss"]) == 3


def test_changed_model_lists_mismatches(data_source, tmp_path):
  config = data_source.config(num_epochs=1)
  train.train_and_evaluate(config, str(tmp_path))
  config.model.name = "cnn"
  with pytest.raises(checkpoint_lib.CheckpointMismatchError,
                     match=r"(?s)does not fit.*shape"):
    train.train_and_evaluate(config, str(tmp_path))


def test_nan_loss_stops_with_step_and_last_checkpoint(data_source, tmp_path):
  config = data_source.config(num_epochs=3)
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 1e30
  with pytest.raises(train.NonFiniteLossError,
                     match=r"Non-finite loss at step \d+ .*last good checkpoint is"):
    train.train_and_evaluate(config, str(tmp_path))


def test_load_for_inference_on_one_device(data_source, tmp_path):
  config = data_source.config(num_epochs=1)
  state, _ = train.train_and_evaluate(config, str(tmp_path))
  model, variables, loaded_config = state_lib.load_for_inference(str(tmp_path))
  assert loaded_config.model.name == "cnn_small"
  assert_trees_close(variables["params"], state.params, rtol=0, atol=0)
  x = jnp.zeros((2, 28, 28, 1))
  assert model.apply(variables, x, train=False).shape == (2, 10)


def test_load_for_inference_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    state_lib.load_for_inference(str(tmp_path))


def test_flip_averaged_logits_average_the_probabilities():
  rng = np.random.default_rng(2)
  a, b = (jnp.asarray(rng.normal(size=(5, 10)) * 20, jnp.float32) for _ in range(2))
  np.testing.assert_allclose(jax.nn.softmax(parallel.flip_averaged_logits(a, b)),
                             (jax.nn.softmax(a) + jax.nn.softmax(b)) / 2, rtol=1e-5, atol=1e-7)
  a1, b1 = a[:, :1], b[:, :1]
  np.testing.assert_allclose(jax.nn.sigmoid(parallel.flip_averaged_logits(a1, b1)),
                             (jax.nn.sigmoid(a1) + jax.nn.sigmoid(b1)) / 2, rtol=1e-5, atol=1e-7)


def test_eval_step_with_test_time_flip_scores_mean_of_image_and_mirror():
  config = config_lib.defaults()
  model = models.create(config.model, num_classes=10)
  state = state_lib.create(
      config, model, optim.create({"name": "sgd"}, {"name": "constant"},
                                  steps_per_epoch=1, num_epochs=1), (28, 28, 1))
  rng = np.random.default_rng(3)
  images = rng.random((16, 28, 28, 1)).astype(np.float32)
  labels = rng.integers(0, 10, 16).astype(np.int32)
  mask = np.arange(16) < 13  # three padding examples must not count
  batch = {"image": images.reshape(4, 4, 28, 28, 1), "label": labels.reshape(4, 4),
           "mask": mask.reshape(4, 4)}
  sums = parallel.to_host(parallel.make_eval_step(model, test_time_flip=True)(state, batch))
  variables = {"params": state.params}
  probs = (jax.nn.softmax(model.apply(variables, images)) +
           jax.nn.softmax(model.apply(variables, images[:, :, ::-1]))) / 2
  expected_loss = -np.log(np.asarray(probs)[np.arange(16), labels])[mask].sum()
  expected_correct = (np.asarray(probs).argmax(-1) == labels)[mask].sum()
  assert float(sums["count"]) == 13
  np.testing.assert_allclose(float(sums["loss"]), expected_loss, rtol=1e-5)
  assert float(sums["correct"]) == expected_correct
  # And it is not the plain evaluation: the mirror changed the loss.
  plain = parallel.to_host(parallel.make_eval_step(model)(state, batch))
  assert abs(float(plain["loss"]) - float(sums["loss"])) > 1e-4


def test_a_run_compiles_its_train_step_once(data_source, tmp_path, monkeypatch):
  """The state fit starts from is placed where the step returns it
  (``parallel.replicate``): one compilation for the whole run, not one for the
  first step and another for the rest."""
  steps = []
  make = train._make_train_step

  def recording(setup):
    step = make(setup)
    steps.append(step)
    return step
  monkeypatch.setattr(train, "_make_train_step", recording)
  config = data_source.config(num_epochs=2)
  train.train_and_evaluate(config, str(tmp_path))
  (step,) = steps
  batch_shape = (jax.local_device_count(), 32 // jax.local_device_count(), 28, 28, 1)
  batch = {"image": np.zeros(batch_shape, np.float32),
           "label": np.zeros(batch_shape[:2], np.int32)}
  assert step.compiled_for_batch(batch)._cache_size() == 1
