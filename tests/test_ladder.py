"""jaxcnn.ladder: runs a tiny ladder, reuses it, tabulates it.

The members really train (``train.train_and_evaluate`` on 160 real
Fashion-MNIST images from the session's offline data dir); a wrapper only
counts the calls. (``tfds.testing.mock_data`` cannot be used here: its fake
file system is patched in globally while a dataset is built, and orbax's
background checkpoint writes of the previous epoch then land in it.) The table's
numbers are checked against the members' own ``history.json`` and
``results.json``. Every ladder in ``experiments/`` is also checked to build
valid configs and models for all its members (nothing is trained), and the
command line (absl flags) is run in process, its errors as one line.
"""

import csv
import glob
import json
import math
import os
import subprocess
import sys
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
  # A key jaxcnn gained after the run was saved, at its default: still the same run.
  del saved["training"]["eval_train"]
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


def test_summarize_optional_columns_data_loss_and_eval_train(tmp_path):
  history = {"loss": [1.0, 0.5], "data_loss": [1.0, 0.5], "accuracy": [0.5, 0.8],
             "val_loss": [0.9, 0.6], "val_accuracy": [0.6, 0.85],
             "epoch_time": [1.0, 1.0], "images_per_second": [1.0, 1.0], "lr": [0.1, 0.1]}
  (tmp_path / "results.json").write_text(json.dumps({"test_loss": 0.6, "test_accuracy": 0.8}))
  (tmp_path / "history.json").write_text(json.dumps(history))
  row = ladder_lib.summarize(str(tmp_path))
  # No penalty: data_loss is the loss, no column of its own; no eval_train.
  assert not {"train_data_loss", "train_eval_loss", "train_eval_accuracy"} & set(row)
  history.update(loss=[1.2, 0.7], train_eval_loss=[0.8, 0.3],
                 train_eval_accuracy=[0.7, 0.95])
  (tmp_path / "history.json").write_text(json.dumps(history))
  row = ladder_lib.summarize(str(tmp_path))
  assert (row["train_loss"], row["train_data_loss"]) == (0.7, 0.5)
  assert (row["train_eval_loss"], row["train_eval_accuracy"]) == (0.3, 0.95)
  table = ladder_lib.to_markdown([{"member": "m", **row}])
  header = table.splitlines()[0]
  assert "| train_loss | train_data_loss | train_accuracy | train_eval_loss |" in header


def test_overrides_shrink_each_member_by_the_one_rule(tiny_ladder, tmp_path):
  ladder = ladder_lib.load(tiny_ladder, members=["relu"])
  overrides = dict(epochs=1, train_examples=100, test_examples=10, batch_size=8)
  seen = []
  ladder_lib.run_member(ladder, "relu", str(tmp_path), overrides=overrides,
                        train_fn=lambda c, w: seen.append(c))
  expected = config_lib.shrink(ladder.get_config("relu"), **overrides)
  assert seen[0].to_dict() == expected.to_dict()
  assert seen[0].dataset.validation_split == 10  # a tenth of 100, not 32
  assert (seen[0].training.num_epochs, seen[0].training.batch_size) == (1, 8)


def test_default_train_goes_through_the_one_dispatch(monkeypatch):
  from jaxcnn import run as run_lib
  calls = []
  monkeypatch.setattr(run_lib, "run", lambda *args: calls.append(args))
  config = config_lib.defaults()
  ladder_lib.default_train(config, "/tmp/member")
  assert calls == [(config, "/tmp/member", "train")]


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


def _ladder_options(path):
  """'' and each option the ladder file's ArgSpec accepts."""
  spec = getattr(ladder_lib.load(path).module, "ARG", None)
  return ("", *(spec.options if spec else ()))


@pytest.mark.parametrize("path", _ladder_files(), ids=os.path.basename)
def test_every_member_of_every_ladder_builds(path):
  for option in _ladder_options(path):
    ladder = ladder_lib.load(path, options=option)
    assert ladder.members, path
    for member in ladder.members:
      config = config_lib.validate(ladder.get_config(member))
      changes, _ = ladder.description(member)
      assert changes, f"{member} of {path} does not say what it changes"
      models.create(config.model, num_classes=10)
      optim.create(config.optimizer, config.schedule, steps_per_epoch=10,
                   num_epochs=config.training.num_epochs)


def test_misspelled_options_fail_at_load_naming_the_closest():
  path = os.path.join(REPO, "experiments", "regularization_ladder.py")
  with pytest.raises(config_lib.ConfigError, match="Did you mean 'cifar10'"):
    ladder_lib.load(path, options="cifar")
  assert ladder_lib.load(path, options="cifar10").options == "cifar10"


# --- the command line ---------------------------------------------------------


def _cli(*args):
  """Runs the command line in process, as ``absl.app.run`` would."""
  return ladder_lib.main(ladder_lib.parse_flags(["ladder", *args]))


def test_flags_reach_run(monkeypatch, tmp_path):
  calls = []
  monkeypatch.setattr(ladder_lib, "run", lambda *a, **k: calls.append((a, k)))
  _cli("--config_file=regularization_ladder", f"--out={tmp_path}", "--members=l2,l1",
       "--options=overfit", "--epochs=2", "--train_examples=500", "--test_examples=100",
       "--batch_size=32", "--overwrite", "--no_plot")
  assert calls == [(("regularization_ladder", str(tmp_path)), dict(
      members=["l2", "l1"], options="overfit",
      overrides=dict(epochs=2, train_examples=500, test_examples=100, batch_size=32),
      overwrite=True, plot=False, seeds=0))]
  # A second parse in the same process starts again from the defaults.
  _cli("--config_file=regularization_ladder", f"--out={tmp_path}")
  assert calls[1][1] == dict(
      members=None, options="",
      overrides=dict(epochs=0, train_examples=0, test_examples=0, batch_size=0),
      overwrite=False, plot=True, seeds=0)
  _cli("--config_file=regularization_ladder", f"--out={tmp_path}", "--seeds=3")
  assert calls[2][1]["seeds"] == 3


def test_table_only_tabulates_finished_members(tiny_ladder, tmp_path):
  member = tmp_path / "tanh"
  member.mkdir()
  (member / "history.json").write_text(json.dumps(
      {"loss": [0.5], "accuracy": [0.8], "val_loss": [0.6], "val_accuracy": [0.7],
       "epoch_time": [1.0], "images_per_second": [100.0]}))
  (member / "results.json").write_text(json.dumps({"test_loss": 0.6, "test_accuracy": 0.75}))
  _cli(f"--config_file={tiny_ladder}", f"--out={tmp_path}", "--table_only", "--no_plot")
  with open(tmp_path / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["member"] for r in rows] == ["tanh"]
  assert float(rows[0]["test_accuracy"]) == 0.75
  assert not (tmp_path / "curves.png").exists()


@pytest.mark.parametrize("args,message", [
    (["--config_file=no_such_ladder", "--out=/tmp/x"], "No ladder file 'no_such_ladder'"),
    (["--config_file=regularization_ladder", "--out=/tmp/x", "--options=quik"],
     "Did you mean 'quick'?"),
    (["--config_file=regularization_ladder", "--out=/tmp/x", "--members=l3"],
     "Unknown member(s) l3"),
    (["--config_file=regularization_ladder"], "Missing --out; usage:"),
])
def test_errors_are_one_line_and_exit_1(args, message, capsys):
  with pytest.raises(SystemExit) as e:
    _cli(*args)
  assert e.value.code == 1
  err = capsys.readouterr().err
  assert err.startswith("error: ") and message in err
  assert err.count("\n") == 1 and "Traceback" not in err


def test_a_training_error_is_one_line_too(monkeypatch, capsys):
  def diverge(*args, **kwargs):
    raise train.NonFiniteLossError("loss is nan at step 3")
  monkeypatch.setattr(ladder_lib, "run", diverge)
  with pytest.raises(SystemExit) as e:
    _cli("--config_file=regularization_ladder", "--out=/tmp/x")
  assert e.value.code == 1
  assert capsys.readouterr().err == "error: loss is nan at step 3\n"


def test_a_bad_flag_is_one_message_and_exits_2(capsys):
  with pytest.raises(SystemExit) as e:
    ladder_lib.parse_flags(["ladder", "--epochs=-1"])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: flag --epochs=-1") and "Traceback" not in err


def test_the_module_command_prints_one_line(tmp_path):
  # The real entry point (absl.app.run), in its own process.
  result = subprocess.run(
      [sys.executable, "-m", "jaxcnn.ladder", "--config_file=no_such_ladder",
       f"--out={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
  assert errors and "No ladder file 'no_such_ladder'" in errors[0]
  assert "Traceback" not in result.stderr


def test_interval_and_welch_against_hand_computed_values():
  mean, std, low, high = ladder_lib.interval([1.0, 2.0, 3.0])
  # t_{0.975, 2} = 4.302653: the half-width is 4.302653 * 1 / sqrt(3).
  assert (mean, std) == (2.0, 1.0)
  assert high - mean == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-6)
  assert mean - low == pytest.approx(high - mean)
  # Welch: t = -3 / sqrt(1/3 + 1/3) = -3.674, df = 4, two-sided p = 0.02131.
  assert ladder_lib.welch([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.02131, abs=1e-5)
  assert ladder_lib.welch([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
  assert math.isnan(ladder_lib.welch([1.0], [2.0, 3.0]))


def test_seeds_train_each_rung_as_a_population_with_intervals_and_welch(
    tiny_ladder, tmp_path):
  out = str(tmp_path / "out")
  rows = ladder_lib.run(tiny_ladder, out, seeds=3, train_fn=CountingTrain())
  assert [r["seeds"] for r in rows] == [3, 3]
  for row in rows:
    results = _read(os.path.join(out, row["member"], "results.json"))
    assert results["population"] == 3
    accs = results["test_accuracy_members"]
    mean, std, low, high = ladder_lib.interval(accs)
    assert row["test_accuracy"] == pytest.approx(mean)
    assert row["test_accuracy_std"] == pytest.approx(std)
    assert (row["test_accuracy_ci_low"], row["test_accuracy_ci_high"]) == pytest.approx(
        (low, high))
  p = ladder_lib.welch(rows[1]["test_accuracy_members"], rows[0]["test_accuracy_members"])
  assert rows[1]["test_accuracy_p_vs_first"] == pytest.approx(p, nan_ok=True)
  assert "vs_first" not in rows[0] and rows[1]["vs_first"].split(" (")[0] in (
      "differs", "within noise", "-")
  markdown = open(os.path.join(out, "results.md")).read()
  assert "Welch's two-sided t-test" in markdown and " ± " in markdown and "[" in markdown
  with open(os.path.join(out, "results.csv")) as f:
    table = list(csv.DictReader(f))
  assert float(table[0]["test_accuracy_ci_high"]) == pytest.approx(
      rows[0]["test_accuracy_ci_high"])
  assert os.path.getsize(os.path.join(out, "curves.png")) > 0


TRANSFER_LADDER = textwrap.dedent('''
    """A transfer test ladder: 'tuned' fine-tunes 'base' (its source, by basename)."""
    from jaxcnn import config as config_lib

    DATA_DIR = "@DATA_DIR@"
    MEMBERS = {"base": "trains from scratch", "tuned": "fine-tunes base",
               "loop_a": "names loop_b", "loop_b": "names loop_a"}
    SOURCES = {"tuned": "workdirs/base", "loop_a": "workdirs/loop_b",
               "loop_b": "elsewhere/loop_a/"}

    def get_ladder(options=""):
      return ["base", "tuned"]

    def get_config(arg="base"):
      member = arg.split(",")[0]
      c = config_lib.defaults()
      c.dataset.name = "sklearn_digits"
      c.dataset.data_dir = DATA_DIR
      c.dataset.num_train_examples = 48  # 2 steps of 16 + 16 validation
      c.dataset.validation_split = 16
      c.dataset.num_test_examples = 32
      c.model.name = "cnn_small"
      c.optimizer.name = "adam"
      c.training.batch_size = 16
      c.training.num_epochs = 1
      c.training.progress_bar = False
      c.transfer.source = SOURCES.get(member, "")
      if member == "tuned":
        c.regularization.freeze = ("conv2d",)
        c.seed = 7
      c.lock()
      return c
''')


def test_a_source_naming_a_member_is_its_workdir_under_out_and_trains_first(
    tmp_path, digits_dir):
  from jaxcnn import state as state_lib
  import numpy as np
  path = tmp_path / "transfer_ladder.py"
  path.write_text(TRANSFER_LADDER.replace("@DATA_DIR@", digits_dir))
  out = str(tmp_path / "out")
  counting = CountingTrain()
  # Given in the wrong order: the source trains first.
  ladder_lib.run(str(path), out, members=["tuned", "base"], seeds=2, train_fn=counting,
                 plot=False)
  assert counting.workdirs == ["base", "tuned"]
  saved = _read(os.path.join(out, "tuned", "config.json"))
  assert saved["transfer"]["source"] == os.path.join(out, "base")
  for i in range(2):  # Seed-matched: tuned member i froze base member i's conv2d.
    base = state_lib.load_for_inference(os.path.join(out, "base"), member=i)[1]
    tuned = state_lib.load_for_inference(os.path.join(out, "tuned"), member=i)[1]
    np.testing.assert_array_equal(tuned["params"]["conv2d"]["kernel"],
                                  base["params"]["conv2d"]["kernel"])
    assert not np.allclose(tuned["params"]["conv2d_1"]["kernel"],
                           base["params"]["conv2d_1"]["kernel"])
  ladder_lib.run(str(path), out, members=["tuned", "base"], seeds=2, train_fn=counting,
                 plot=False)
  assert counting.workdirs == ["base", "tuned"]  # both reused, resolved the same way
  # A source member that this run leaves out stays where the config says.
  alone = ladder_lib.load(str(path), members=["tuned"])
  assert ladder_lib.member_config(alone, "tuned", out=out).transfer.source == "workdirs/base"
  # Sources naming each other (a trailing slash still names the member).
  module = ladder_lib.load(str(path)).module
  loop = ladder_lib.Ladder(str(path), module, ["base", "loop_a", "loop_b"])
  with pytest.raises(ladder_lib.LadderError,
                     match=r"in a cycle: loop_a <- loop_b, loop_b <- loop_a\."):
    ladder_lib.run_order(loop)
