"""jaxcnn.ladder: runs a tiny ladder, reuses it, tabulates it.

The members really train (``train.train_and_evaluate`` on 160 real
Fashion-MNIST images from the session's offline data dir); a wrapper only
counts the calls. (``tfds.testing.mock_data`` cannot be used here: its fake
file system is patched in globally while a dataset is built, and orbax's
background checkpoint writes of the previous epoch then land in it.) The table's
numbers are checked against the members' own ``history.json`` and
``results.json``. Every ladder in ``experiments/`` is also checked to build
valid configs and models for all its members (nothing is trained).
"""

import csv
import glob
import json
import math
import os
import textwrap

import pytest

from jaxcnn import config as config_lib
from jaxcnn import ladder as ladder_lib
from jaxcnn import models
from jaxcnn import optim
from jaxcnn import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_LADDER = textwrap.dedent('''
    """A two-member test ladder: a tiny MLP with two activations."""
    from jaxcnn import config as config_lib

    DATA_DIR = "@DATA_DIR@"
    MEMBERS = {"relu": ("relu hidden layer", "0.99"), "tanh": ("tanh hidden layer", "")}

    def get_ladder(options=""):
      return list(MEMBERS)

    def get_config(arg="relu"):
      member = arg.split(",")[0]
      c = config_lib.defaults()
      c.dataset.name = "fashion_mnist"
      c.dataset.data_dir = DATA_DIR
      c.dataset.num_train_examples = 160
      c.dataset.num_test_examples = 64
      c.dataset.validation_split = 32
      c.dataset.shuffle_buffer = 100
      c.model.name = "mlp"
      c.model.hidden_units = (8,)
      c.model.activation = member
      c.optimizer.name = "adam"
      c.optimizer.learning_rate = 0.01
      c.training.batch_size = 16
      c.training.num_epochs = 2
      c.training.progress_bar = False
      c.lock()
      return c

    def extra_metrics(member, config, workdir):
      return {"hidden_units": float(config.model.hidden_units[0])}
''')


@pytest.fixture
def tiny_ladder(tmp_path, fashion_mnist_data_dir):
  path = tmp_path / "tiny_ladder.py"
  path.write_text(TINY_LADDER.replace("@DATA_DIR@", fashion_mnist_data_dir))
  return str(path)


class CountingTrain:
  """Calls the real train_and_evaluate and records which workdirs it trained."""

  def __init__(self):
    self.workdirs = []

  def __call__(self, config, workdir):
    self.workdirs.append(os.path.basename(workdir))
    return train.train_and_evaluate(config, workdir)


def _read(path):
  with open(path) as f:
    return json.load(f)


def test_runs_members_reuses_them_and_tabulates_their_histories(tiny_ladder, tmp_path):
  out = str(tmp_path / "out")
  counting = CountingTrain()
  rows = ladder_lib.run(tiny_ladder, out, train_fn=counting)
  assert counting.workdirs == ["relu", "tanh"]  # each member trained once
  again = ladder_lib.run(tiny_ladder, out, train_fn=counting)
  assert counting.workdirs == ["relu", "tanh"]  # the second run retrained nothing
  assert again == rows

  for name in ("results.md", "results.csv", "curves.png"):
    assert os.path.getsize(os.path.join(out, name)) > 0
  with open(os.path.join(out, "results.csv")) as f:
    table = list(csv.DictReader(f))
  assert [r["member"] for r in table] == ["relu", "tanh"]
  for row in table:
    history = _read(os.path.join(out, row["member"], "history.json"))
    results = _read(os.path.join(out, row["member"], "results.json"))
    assert int(row["epochs"]) == len(history["loss"]) == 2
    assert float(row["train_loss"]) == pytest.approx(history["loss"][-1])
    assert float(row["train_accuracy"]) == pytest.approx(history["accuracy"][-1])
    assert float(row["val_accuracy"]) == pytest.approx(history["val_accuracy"][-1])
    assert float(row["test_loss"]) == pytest.approx(results["test_loss"])
    assert float(row["test_accuracy"]) == pytest.approx(results["test_accuracy"])
    best = max(range(2), key=lambda i: (history["val_accuracy"][i], -i)) + 1
    assert int(row["best_epoch"]) == best
    assert float(row["wall_time_s"]) == pytest.approx(sum(history["epoch_time"]))
    assert float(row["images_per_second"]) == pytest.approx(
        history["images_per_second"][1])
    assert float(row["hidden_units"]) == 8.0  # the ladder's extra metric
  assert table[0]["changes"] == "relu hidden layer" and table[0]["lecture"] == "0.99"
  markdown = open(os.path.join(out, "results.md")).read()
  assert "| relu | relu hidden layer | 2 |" in markdown


def test_a_workdir_of_another_config_is_not_silently_reused(tiny_ladder, tmp_path):
  out = tmp_path / "out"
  ladder = ladder_lib.load(tiny_ladder, members=["relu"])
  workdir = out / "relu"
  workdir.mkdir(parents=True)
  saved = config_lib.to_dict(ladder.get_config("relu"))
  saved["training"]["progress_bar"] = True  # cosmetic: does not block reuse
  (workdir / "config.json").write_text(json.dumps(saved))
  (workdir / "results.json").write_text("{}")
  calls = []
  # Same config and results.json: reused without training.
  assert ladder_lib.run_member(ladder, "relu", str(out),
                               train_fn=lambda c, w: calls.append(w)) == "reused"
  with pytest.raises(ladder_lib.LadderError, match="different config.*--overwrite"):
    ladder_lib.run_member(ladder, "relu", str(out), overrides={"epochs": 5},
                          train_fn=lambda c, w: calls.append(w))
  assert calls == []
  assert ladder_lib.run_member(ladder, "relu", str(out), overrides={"epochs": 5},
                               overwrite=True,
                               train_fn=lambda c, w: calls.append(c)) == "trained"
  assert calls[0].training.num_epochs == 5
  assert not (workdir / "results.json").exists()  # the old run was removed


def test_summarize_numbers_come_from_the_history(tmp_path):
  nan = float("nan")
  history = {"loss": [1.0, 0.5, 0.4], "accuracy": [0.5, 0.8, 0.9],
             "val_loss": [0.9, 0.6, 0.7], "val_accuracy": [0.6, 0.85, 0.85],
             "epoch_time": [10.0, 2.0, 3.0], "images_per_second": [100.0, 500.0, 300.0],
             "lr": [0.1, 0.1, 0.1]}
  (tmp_path / "history.json").write_text(json.dumps(history))
  (tmp_path / "results.json").write_text(json.dumps(
      {"test_loss": 0.65, "test_accuracy": 0.84}))
  row = ladder_lib.summarize(str(tmp_path))
  assert row["best_epoch"] == 2  # ties go to the earlier epoch
  assert row["train_loss"] == 0.4 and row["train_accuracy"] == 0.9
  assert row["wall_time_s"] == 15.0
  assert row["images_per_second"] == 400.0  # the compiling first epoch left out
  # Without validation the best epoch is the best training accuracy.
  history.update(val_loss=[nan] * 3, val_accuracy=[nan] * 3)
  (tmp_path / "history.json").write_text(json.dumps(history))
  row = ladder_lib.summarize(str(tmp_path))
  assert row["best_epoch"] == 3 and math.isnan(row["val_accuracy"])


def test_overrides_shrink_a_run():
  config = config_lib.defaults()
  config.dataset.validation_split = 5000
  config.lock()
  ladder_lib.apply_overrides(config, epochs=1, train_examples=2000, test_examples=500)
  assert config.training.num_epochs == 1
  assert config.dataset.num_train_examples == 2000
  assert config.dataset.validation_split == 200  # a tenth, not 5,000 of 2,000
  assert config.dataset.num_test_examples == 500


def test_bad_ladder_names_say_what_is_valid(tiny_ladder):
  with pytest.raises(ladder_lib.LadderError, match="members: relu, tanh"):
    ladder_lib.load(tiny_ladder, members=["gelu"])
  with pytest.raises(ladder_lib.LadderError, match="regularization_ladder"):
    ladder_lib.load("no_such_ladder")


def _ladder_files():
  files = []
  for path in sorted(glob.glob(os.path.join(REPO, "experiments", "*.py"))):
    text = open(path).read()
    if "def get_ladder" in text:
      files.append(path)
  return files


@pytest.mark.parametrize("path", _ladder_files(), ids=os.path.basename)
def test_every_member_of_every_ladder_builds(path):
  options = {"regularization_ladder.py": ("", "cifar10"),
             "mnist_cnns.py": ("", "fashion_mnist")}.get(os.path.basename(path), ("",))
  for option in options:
    ladder = ladder_lib.load(path, options=option)
    assert ladder.members, path
    for member in ladder.members:
      config = config_lib.validate(ladder.get_config(member))
      changes, _ = ladder.description(member)
      assert changes, f"{member} of {path} does not say what it changes"
      models.create(config.model, num_classes=10)
      optim.create(config.optimizer, config.schedule, steps_per_epoch=10,
                   num_epochs=config.training.num_epochs)
