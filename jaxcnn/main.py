r"""Command line: train, evaluate, predict or plot one experiment.

  python -m jaxcnn.main --config=experiments/fashion_mnist_cnn.py --workdir=/tmp/fm
  python -m jaxcnn.main --config=experiments/fashion_mnist_cnn.py \
      --config.optimizer.learning_rate=3e-4 --workdir=/tmp/fm2
  python -m jaxcnn.main --config=... --workdir=... --mode=eval
  python -m jaxcnn.main --config=experiments/mlp_schedules.py:1cycle \
      --workdir=/tmp/lr --mode=lr_find     # learning-rate range test

Running the same command again with the same workdir resumes.
"""

import os
import re
import sys
from typing import NoReturn, Sequence

from absl import app
from absl import logging
from absl import flags
import ml_collections
from ml_collections import config_flags

from jaxcnn import config as config_lib
from jaxcnn import run

# TF is used for tf.data only: keep it off the GPU, which JAX needs whole.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FLAGS = flags.FLAGS


class _ConfigFileParser(flags.ArgumentParser):
  """Reads ``--config=path[:arg]`` with ``config.load``: a bad file is one line.

  The config comes back locked but for its open sections
  (``config.OPEN_SECTIONS``), so an override may add a key to them
  (``--config.schedule.s=20``): their owners check those keys when the run
  builds, naming the closest valid one. :func:`parse_flags` locks the whole
  config again once the overrides are in.

  Attributes:
    config: the config last read, kept for the error message when an
      override then fails: config_flags applies the overrides before it
      sets the flag's value.
  """

  config = None

  def parse(self, path: str) -> ml_collections.ConfigDict:
    config = self.config = config_lib.load(path)
    config.lock()
    _lock_open_sections(config, False)
    return config

  def flag_type(self) -> str:
    return "config object"


def _lock_open_sections(config: ml_collections.ConfigDict, lock: bool) -> None:
  """Locks or unlocks the open sections of a locked ``config``.

  Locking the whole config again would not reach them: ``lock()`` stops at a
  ConfigDict that is already locked.
  """
  for section in config_lib.OPEN_SECTIONS:
    node = _find(config, section)
    if isinstance(node, ml_collections.ConfigDict):
      if lock:
        node.lock()
      else:
        node.unlock()


def _find(config: ml_collections.ConfigDict, path: str):
  """``config`` at the dotted ``path``; None where a part is missing."""
  for part in path.split("."):
    if not isinstance(config, ml_collections.ConfigDict) or part not in config:
      return None
    config = config[part]
  return config


def define_config_flag(flag_values: flags.FlagValues = FLAGS,
                       sys_argv: Sequence[str] | None = None) -> None:
  """Defines ``--config`` and its ``--config.<key>=value`` overrides.

  Args:
    flag_values: where to define it (a private FlagValues in tests).
    sys_argv: the command line the overrides are read from; None:
      ``sys.argv``, read when the flags are parsed (config_flags' rule).
  """
  # With accept_new_attributes an override of a key the config lacks gets a
  # literal parser instead of an error: the open sections take the key, the
  # locked ones refuse it (parse_flags names the closest valid key).
  config_flags.DEFINE_config_file(
      "config", None, "Experiment config file (experiments/<name>.py[:arg]).",
      flag_values=flag_values, lock_config=False, accept_new_attributes=True,
      sys_argv=sys_argv)
  flag_values["config"].parser = _ConfigFileParser()


define_config_flag()
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
flags.DEFINE_enum("mode", "train", list(run.MODES),
                  "What to do with the experiment.")
flags.DEFINE_integer("member", None, "A population workdir's member (0-based) for "
                     "--mode=eval|predict_mc|visualize; eval without it scores all.",
                     lower_bound=0)
flags.DEFINE_bool("debug_nans", False,
                  "Run the step without pmap under jax_debug_nans to find the op "
                  "that makes a NaN.")
flags.DEFINE_string("coordinator_address", "",
                    "Multi-host: host:port of process 0. Empty with "
                    "--num_processes=0 means single host (or JAX's own cluster "
                    "detection with --distributed).")
flags.DEFINE_integer("num_processes", 0, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", -1, "Multi-host: this process's index.")
flags.DEFINE_bool("distributed", False,
                  "Multi-host with JAX's cluster detection (TPU pods, SLURM, "
                  "Open MPI) when no coordinator is given.")
# --config and --workdir are required, checked by parse_flags rather than by
# absl's mark_flags_as_required: that validator lives on the global FLAGS, so a
# process that imports this module (a test, a notebook) would have it fire on
# every other absl command line it parses (jaxcnn.ladder's).


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    # Orbax and TFDS log every save and read at INFO; the progress bar and the
    # epoch lines are the output. -v 0 brings the INFO logs back.
    logging.set_verbosity(logging.WARNING)
  import jax  # After flag parsing: XLA_FLAGS set by the user are respected.
  if FLAGS.coordinator_address or FLAGS.distributed:
    from jaxcnn import parallel
    parallel.initialize_distributed(FLAGS.coordinator_address,
                                    FLAGS.num_processes, FLAGS.process_id)
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  if FLAGS.debug_nans:
    jax.config.update("jax_debug_nans", True)

  try:
    run.run(FLAGS.config, FLAGS.workdir, FLAGS.mode, FLAGS.member)
  except run.user_errors() as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


def parse_flags(argv: Sequence[str]) -> list[str]:
  """Parses the flags and checks the config before JAX or TensorFlow loads.

  A bad flag, config file, ``--config.*`` override, config value or
  ``--workdir`` is one ``error:`` line on stderr and exit code 2, never a
  traceback (config_flags would print pages of its loader's).

  Args:
    argv: ``sys.argv``-like: the program name, then flags.

  Returns:
    The arguments that are not flags (the program name first).
  """
  try:
    rest = FLAGS(argv)
  except (AttributeError, KeyError) as e:  # An override of an unknown key.
    message = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
    _exit(_override_error(argv, FLAGS["config"].parser.config) or
          f"bad config override: {message}")
  except flags.Error as e:
    cause = config_lib.root_config_error(e)
    if cause is not None:  # Raised by config.load or get_config(arg).
      _exit(str(cause))
    print(f"error: {e}\nPass --helpfull for the flags.", file=sys.stderr)
    sys.exit(2)
  missing = [f"--{name}" for name in ("config", "workdir") if FLAGS[name].value is None]
  if missing:
    _exit(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: "
          "python -m jaxcnn.main --config=experiments/<name>.py --workdir=DIR "
          "(--helpfull lists the flags).")
  _check_workdir(FLAGS.workdir)
  _lock_open_sections(FLAGS.config, True)  # The overrides are in.
  try:
    config_lib.validate(FLAGS.config)  # run.run does too; here it is before JAX.
  except config_lib.ConfigError as e:
    _exit(str(e))
  return rest


def _exit(message: str) -> NoReturn:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _override_error(argv: Sequence[str], config) -> str | None:
  """Says what is wrong with the first ``--config.*`` override that cannot be set.

  Returns:
    The message (for a key a locked section lacks: the closest valid key and
    all valid ones); None when every override names a key that exists or a
    new key of an open section.
  """
  if not isinstance(config, ml_collections.ConfigDict):
    return None
  for arg in argv:
    match = re.match(r"--?(?:no)?config\.([^=]+)", arg)
    parts = match.group(1).split(".") if match else []
    node = config
    for i, part in enumerate(parts):
      path, parent = ".".join(parts[:i + 1]), ".".join(parts[:i])
      if not isinstance(node, ml_collections.ConfigDict):
        return f"Cannot set '{match.group(1)}': '{parent}' is a value, not a section."
      if part not in node and node.is_locked:
        return str(config_lib.unknown_key_error(path, node.keys(),
                                                f"'{parent or 'config'}'"))
      if part not in node and i < len(parts) - 1:
        return (f"Cannot set '{match.group(1)}': '{path}' does not exist and an "
                "override only adds a key to an existing section; set "
                f"'{path}' in the config file.")
      if part not in node:
        break  # A new key of an open section: its owner checks it.
      node = node[part]
  return None


def _check_workdir(workdir: str) -> None:
  """Refuses an empty ``--workdir``, what an unset shell variable gives.

  Training would otherwise write its checkpoints into the current folder.
  """
  if not workdir.strip():
    what = f"blank ({workdir!r})" if workdir else "empty"
    _exit(f"--workdir is {what}: is its shell variable unset? Pass the run's "
          "folder, e.g. --workdir=workdirs/fashion_mnist_cnn.")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
