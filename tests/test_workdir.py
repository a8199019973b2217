"""A workdir loses nothing and says what it refuses (issue 16's unsafe cases).

Each test trains a tiny CNN on scikit-learn's digits (offline, on every
machine) through the real loop, Orbax checkpoints on disk included.
"""

import errno
import glob
import json
import os
import re
import signal

import jax
import numpy as np
import pytest

from jaxcnn import checkpoint as checkpoint_lib
from jaxcnn import config as config_lib
from jaxcnn import state as state_lib
from jaxcnn import train
from jaxcnn import workdir as workdir_lib


def tiny_config(data_dir, num_epochs=2):
  c = config_lib.defaults()
  c.dataset.name = "sklearn_digits"
  c.dataset.data_dir = data_dir
  c.dataset.num_train_examples = 160  # 128 train (8 steps of 16) + 32 validation
  c.dataset.validation_split = 32
  c.dataset.num_test_examples = 100
  c.model.name = "cnn_small"
  c.optimizer.name = "adam"
  c.training.batch_size = 16
  c.training.num_epochs = num_epochs
  c.training.progress_bar = False
  return c


def assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def snapshot(workdir):
  """The bytes of every file a run writes outside checkpoints/."""
  out = {}
  for name in ("config.json", "history.json", "results.json"):
    path = os.path.join(workdir, name)
    if os.path.exists(path):
      with open(path, "rb") as f:
        out[name] = f.read()
  return out


@pytest.fixture(scope="module")
def finished(digits_dir, tmp_path_factory):
  """A finished 2-epoch run: (config, state, history) of the uninterrupted run."""
  config = tiny_config(digits_dir)
  workdir = str(tmp_path_factory.mktemp("finished"))
  state, history = train.train_and_evaluate(config, workdir)
  return config, jax.device_get(state), history


def test_a_flipped_bit_in_the_latest_checkpoint_is_caught_and_the_run_redone(
    digits_dir, finished, tmp_path, capfd):
  config, full_state, full_history = finished
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)
  data_files = [p for p in glob.glob(os.path.join(workdir, "checkpoints", "16", "state",
                                                  "**", "d", "*"), recursive=True)
                if os.path.isfile(p)]
  largest = max(data_files, key=os.path.getsize)
  with open(largest, "r+b") as f:  # As `dd bs=1 seek=... count=64 conv=notrunc`.
    f.seek(os.path.getsize(largest) // 2)
    f.write(np.random.default_rng(0).bytes(64))
  capfd.readouterr()
  state, history = train.train_and_evaluate(config, workdir)
  out = capfd.readouterr()
  # Where the 64 bytes land in Orbax's (compressed) chunks varies with the
  # write order: a read error or, if they still decode, the digest check
  # (pinned on its own in tests/test_checkpoint.py). Either way: caught.
  assert re.search(r"checkpoint step 16 is unreadable \(\w+\)", out.out)
  assert "Event loop is closed" not in out.out + out.err
  assert len(glob.glob(os.path.join(workdir, "checkpoints", "corrupt", "16-*"))) == 1
  assert "Resumed from" in out.out and "at step 8 " in out.out
  assert_trees_equal(state.params, full_state.params)
  assert history["test_accuracy"] == full_history["test_accuracy"]
  results = json.loads(open(os.path.join(workdir, "results.json")).read())
  assert results["test_accuracy"] == full_history["test_accuracy"]


def test_a_refused_run_leaves_the_workdir_as_it_was(digits_dir, tmp_path):
  config = tiny_config(digits_dir, num_epochs=1)
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)
  before = snapshot(workdir)
  other = tiny_config(digits_dir, num_epochs=1)
  other.model.name = "cnn_small_bn"
  with pytest.raises(checkpoint_lib.CheckpointMismatchError):
    train.train_and_evaluate(other, workdir)
  assert snapshot(workdir) == before
  model, _, saved = state_lib.load_for_inference(workdir)
  assert saved.model.name == "cnn_small" and model.preset == "cnn_small"


@pytest.mark.parametrize("key, value, shown", [
    ("training.batch_size", 32, "training.batch_size: saved 16, now 32"),
    ("seed", 1, "seed: saved 0, now 1"),
    ("dataset.num_train_examples", 320, "dataset.num_train_examples: saved 160, now 320"),
    ("optimizer.learning_rate", 1e6, "optimizer.learning_rate: saved 0.001, now 1000000.0"),
])
def test_a_resume_that_cannot_be_honoured_is_refused_before_training(
    digits_dir, tmp_path, key, value, shown):
  config = tiny_config(digits_dir, num_epochs=1)
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)
  before = snapshot(workdir)
  steps = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints")).all_steps()
  section, name = key.split(".") if "." in key else (None, key)
  changed = tiny_config(digits_dir, num_epochs=2)
  if section:
    changed[section][name] = value
  else:
    changed[name] = value
  with pytest.raises(config_lib.ConfigError, match="Cannot resume") as e:
    train.train_and_evaluate(changed, workdir)
  assert shown in str(e.value)
  assert "training.num_epochs" not in str(e.value)  # A change a resume honours.
  assert snapshot(workdir) == before
  assert checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints")).all_steps() == steps


def test_longer_training_on_resume_is_applied_said_and_recorded(digits_dir, finished,
                                                              tmp_path, capsys):
  _, full_state, full_history = finished
  workdir = str(tmp_path)
  train.train_and_evaluate(tiny_config(digits_dir, num_epochs=1), workdir)
  capsys.readouterr()
  state, history = train.train_and_evaluate(tiny_config(digits_dir, num_epochs=2), workdir)
  assert "Changed on resume: training.num_epochs 1 -> 2." in capsys.readouterr().out
  assert_trees_equal(state.params, full_state.params)
  assert history["loss"] == full_history["loss"]
  assert json.loads(open(os.path.join(workdir, "config.json")).read())[
      "training"]["num_epochs"] == 2
  lines = open(os.path.join(workdir, workdir_lib.CONFIG_HISTORY_FILE)).read().splitlines()
  assert len(lines) == 1
  entry = json.loads(lines[0])
  assert entry["step"] == 8
  assert entry["changes"] == {"training.num_epochs": {"saved": 1, "new": 2}}


def test_a_second_run_on_a_busy_workdir_stops_and_a_stale_lock_is_taken_over(
    digits_dir, tmp_path, capsys):
  config = tiny_config(digits_dir, num_epochs=1)
  workdir = str(tmp_path)
  with workdir_lib.lock(workdir):
    with pytest.raises(workdir_lib.WorkdirInUseError,
                       match=rf"in use by another run \(pid {os.getpid()} on "):
      train.train_and_evaluate(config, workdir)
  assert not os.path.exists(os.path.join(workdir, "config.json"))
  # A run that stopped with an error released its lock: no stale warning.
  with pytest.raises(RuntimeError):
    with workdir_lib.lock(workdir):
      raise RuntimeError("a refused run")
  with workdir_lib.lock(workdir):
    pass
  assert "took over the lock" not in capsys.readouterr().out
  # A lock left by a run that died: the kernel released it, its record stays.
  with open(os.path.join(workdir, workdir_lib.LOCK_FILE), "w") as f:
    json.dump({"host": "elsewhere", "pid": 999999, "since": "yesterday"}, f)
  train.train_and_evaluate(config, workdir)
  assert "took over the lock" in capsys.readouterr().out
  assert os.path.exists(os.path.join(workdir, "results.json"))


def test_ctrl_c_saves_the_step_and_exits_130_then_resumes_exactly(
    digits_dir, finished, tmp_path, signal_at_step, capsys):
  _, full_state, _ = finished
  disarm = signal_at_step(11, signal.SIGINT)  # Mid-epoch 2 of 8 steps.
  workdir = str(tmp_path)
  with pytest.raises(train.Preempted) as e:
    train.train_and_evaluate(tiny_config(digits_dir), workdir)
  assert e.value.code == 130
  assert "SIGINT: saved a complete checkpoint at step 11" in capsys.readouterr().out
  disarm()
  state, _ = train.train_and_evaluate(tiny_config(digits_dir), workdir)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(full_state.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_full_disk_leaves_no_tmp_and_keeps_the_previous_file(tmp_path, monkeypatch):
  path = str(tmp_path / "history.json")
  workdir_lib.write_json(path, {"loss": [1.0]})

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(json, "dump", full)
  with pytest.raises(workdir_lib.WriteError, match="No space left on device.*keeps its "
                     "previous content. Free space"):
    workdir_lib.write_json(path, {"loss": [1.0, 0.5]})
  assert os.listdir(tmp_path) == ["history.json"]
  monkeypatch.undo()
  assert json.loads(open(path).read()) == {"loss": [1.0]}


def test_a_failed_checkpoint_save_stops_the_run_at_the_next_save(
    digits_dir, tmp_path, monkeypatch):
  """A background save that fails (ENOSPC) stops training with the last good step."""
  config = tiny_config(digits_dir, num_epochs=3)
  workdir = str(tmp_path)
  saves = {"n": 0}
  check = checkpoint_lib.Checkpointer.check

  def failing_after_first_save(self):
    if saves["n"] >= 2:  # The second save (epoch 2) failed in the background.
      raise checkpoint_lib.CheckpointSaveError("Saving a checkpoint failed (test)")
    check(self)

  save = checkpoint_lib.Checkpointer.save

  def counting_save(self, *args, **kwargs):
    save(self, *args, **kwargs)
    self.wait()
    saves["n"] += 1

  monkeypatch.setattr(checkpoint_lib.Checkpointer, "check", failing_after_first_save)
  monkeypatch.setattr(checkpoint_lib.Checkpointer, "save", counting_save)
  with pytest.raises(checkpoint_lib.CheckpointSaveError):
    train.train_and_evaluate(config, workdir)
  history = json.loads(open(os.path.join(workdir, "history.json")).read())
  assert len(history["loss"]) == 3  # Epoch 3 ran; its save found epoch 2's failure.
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  assert not glob.glob(os.path.join(workdir, "*.tmp"))


def test_a_workdir_that_cannot_be_made_or_written_is_one_line_from_the_cli(tmp_path):
  """A workdir under a file, or a read-only one: one error line, exit 1, no training."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
      [sys.executable, "-m", "jaxcnn.main", "--config=experiments/mnist_cnn.py",
       f"--workdir={blocker}/run"], cwd=repo, capture_output=True, text=True, timeout=120)
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert result.returncode == 1, result.stderr[-2000:]
  assert errors == [f"error: Workdir {blocker}/run is not writable (Not a directory); "
                    "choose another --workdir or free space there."]
  assert "Traceback" not in result.stderr
