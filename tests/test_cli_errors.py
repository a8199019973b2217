"""Bad input at the command line: one ``error:`` line, a non-zero exit code.

Each case runs ``python -m jaxcnn.main`` in its own process, as a user
would, and checks stderr whole: one line that says what is wrong and what
would work, no traceback. Every one of them fails while the flags are
parsed, before JAX or TensorFlow loads, so each takes well under a second;
the timeout catches one that would train instead.
"""

import pathlib
import subprocess
import sys
import textwrap

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
CNN = "experiments/fashion_mnist_cnn.py"


def _cli(*args, workdir="/tmp/jaxcnn_test_cli_errors_unused"):
  """Runs the command line; returns (exit code, stderr lines)."""
  flags = [*args, f"--workdir={workdir}"] if workdir is not None else list(args)
  result = subprocess.run([sys.executable, "-m", "jaxcnn.main", *flags],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
  return result.returncode, result.stderr.splitlines()


def _one_error(args, code=2, workdir="/tmp/jaxcnn_test_cli_errors_unused"):
  """The message of the one ``error:`` line the command must print."""
  returncode, lines = _cli(*args, workdir=workdir)
  assert len(lines) == 1 and lines[0].startswith("error: "), lines
  assert returncode == code
  return lines[0][len("error: "):]


def _file(tmp_path, text):
  path = tmp_path / "exp.py"
  path.write_text(textwrap.dedent(text))
  return str(path)


# --- a number out of range ------------------------------------------------------


@pytest.mark.parametrize("override,message", [
    # It divided by zero a minute into training.
    ("training.log_every_steps=0", "'training.log_every_steps' must be >= 1, got 0."),
    # A negative count silently meant "all".
    ("dataset.num_train_examples=-1",
     "'dataset.num_train_examples' must be >= 0 (0 = all), got -1."),
    ("dataset.num_test_examples=-5",
     "'dataset.num_test_examples' must be >= 0 (0 = all), got -5."),
    ("training.label_smoothing=1.0",
     "'training.label_smoothing' must be in [0, 1), got 1.0."),
    ("regularization.l2=-0.001",
     "'regularization.l2' must be >= 0 (0 = off), got -0.001."),
    ("inference.num_samples=0", "'inference.num_samples' must be >= 1, got 0."),
    ("dataset.shuffle_buffer=0", "'dataset.shuffle_buffer' must be >= 1, got 0."),
])
def test_a_number_out_of_range(override, message):
  assert _one_error([f"--config={CNN}", f"--config.{override}"]) == message


# --- the config file --------------------------------------------------------------


def test_a_missing_config_file_says_where_it_looked():
  message = _one_error(["--config=experiments/fashion_mnist_cn.py:quick"])
  assert message.startswith(
      "Config file 'experiments/fashion_mnist_cn.py' not found (looked for "
      f"{REPO / 'experiments' / 'fashion_mnist_cn.py'}). Did you mean "
      "'experiments/fashion_mnist_cnn.py'? Config files in experiments/: ")
  assert "mnist_cnn.py, " in message


def test_a_syntax_error_names_file_line_and_message(tmp_path):
  path = _file(tmp_path, """
      def get_config():
        return config_lib.defaults(
      """)
  assert _one_error([f"--config={path}"]) == (
      f"Syntax error in {path}:3: '(' was never closed.")


def test_a_wrong_type_in_the_file_names_key_type_and_value(tmp_path):
  path = _file(tmp_path, """
      from jaxcnn import config as config_lib

      def get_config():
        config = config_lib.defaults()
        config.training.num_epochs = "ten"
        return config
      """)
  assert _one_error([f"--config={path}"]) == (
      f"{path}:6: 'training.num_epochs' must be of type int (like the default 5), "
      "got 'ten'.")


def test_an_unknown_key_in_the_file_names_line_and_closest(tmp_path):
  path = _file(tmp_path, """
      from jaxcnn import config as config_lib

      def get_config():
        config = config_lib.defaults()
        config.trainig.num_epochs = 3
        return config
      """)
  assert _one_error([f"--config={path}"]).startswith(
      f"{path}:6: Unknown config key 'trainig' in 'config'. Did you mean "
      "'training'? Valid keys: dataset, ")


def test_an_unknown_config_argument_names_the_closest():
  assert _one_error([f"--config={CNN}:quik"]) == (
      "Unknown config argument 'quik' for fashion_mnist_cnn.py. Did you mean "
      "'quick'? Valid: option quick.")


# --- overrides ---------------------------------------------------------------------


def test_a_misspelled_key_of_a_closed_section_names_the_closest():
  message = _one_error([f"--config={CNN}", "--config.training.batchsize=32"])
  assert message.startswith("Unknown config key 'training.batchsize' in 'training'. "
                            "Did you mean 'batch_size'? Valid keys: batch_size, ")
  message = _one_error([f"--config={CNN}", "--config.trainig.batch_size=32"])
  assert message.startswith("Unknown config key 'trainig' in 'config'. "
                            "Did you mean 'training'? Valid keys: dataset, ")


def test_an_override_below_a_missing_section_says_to_use_the_file():
  assert _one_error([f"--config={CNN}", "--config.schedule.x.y=1"]) == (
      "Cannot set 'schedule.x.y': 'schedule.x' does not exist and an override "
      "only adds a key to an existing section; set 'schedule.x' in the config file.")


def test_schedule_parameters_reach_the_config():
  # parse_flags as the command runs it (the config locked and validated),
  # then the parsed config printed instead of training.
  code = ("import sys; from jaxcnn import main; main.parse_flags(sys.argv); "
          "c = main.FLAGS.config; print(c.schedule.name, c.schedule.s, c.is_locked, "
          "c.schedule.is_locked)")
  result = subprocess.run(
      [sys.executable, "-c", code, f"--config={CNN}",
       "--config.schedule.name=exponential", "--config.schedule.s=20",
       "--workdir=/tmp/unused"],
      cwd=REPO, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert result.stdout.split() == ["exponential", "20", "True", "True"]


# --- the workdir ---------------------------------------------------------------------


@pytest.mark.parametrize("workdir,what", [("", "empty"), ("   ", "blank ('   ')")])
def test_an_empty_workdir_is_refused(workdir, what):
  # The schedule overrides parse, so this is the one error left.
  message = _one_error([f"--config={CNN}", "--config.schedule.name=exponential",
                        "--config.schedule.s=20"], workdir=workdir)
  assert message == (f"--workdir is {what}: is its shell variable unset? Pass the "
                     "run's folder, e.g. --workdir=workdirs/fashion_mnist_cnn.")


# --- the required flags -----------------------------------------------------------


@pytest.mark.parametrize("args,message", [
    ((f"--config={CNN}",), "--workdir is required: python -m jaxcnn.main "
     "--config=experiments/<name>.py --workdir=DIR (--helpfull lists the flags)."),
    ((), "--config and --workdir are required: python -m jaxcnn.main "
     "--config=experiments/<name>.py --workdir=DIR (--helpfull lists the flags)."),
])
def test_missing_required_flags_say_the_command(args, message):
  assert _one_error(args, workdir=None) == message


def test_importing_main_leaves_other_absl_command_lines_alone():
  """A process that imported jaxcnn.main (a notebook, a test) parses other flags."""
  code = textwrap.dedent("""
      import jaxcnn.main
      from jaxcnn import ladder
      ladder.parse_flags(["ladder", "--config_file=mlp_activations", "--out=/tmp/o"])
      print(ladder.FLAGS.config_file)
  """)
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "mlp_activations"
