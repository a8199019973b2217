r"""Command line: train, evaluate, predict or plot one experiment.

  python -m jaxcnn.main --config=experiments/fashion_mnist_cnn.py --workdir=/tmp/fm
  python -m jaxcnn.main --config=experiments/fashion_mnist_cnn.py \
      --config.optimizer.learning_rate=3e-4 --workdir=/tmp/fm2
  python -m jaxcnn.main --config=... --workdir=... --mode=eval

Running the same command again with the same workdir resumes.
"""

import os
import sys

from absl import app
from absl import logging
from absl import flags
from ml_collections import config_flags

from jaxcnn import run

# TF is used for tf.data only: keep it off the GPU, which JAX needs whole.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/<name>.py).",
    lock_config=True)
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
flags.mark_flags_as_required(["config", "workdir"])


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


def parse_flags(argv):
  """Parses flags; a bad ``--config.*`` override is one clear line, not a trace."""
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:
    message = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
    print(f"error: bad config override: {message}", file=sys.stderr)
    sys.exit(2)
  except flags.Error as e:
    from jaxcnn import config as config_lib  # pylint: disable=g-import-not-at-top
    cause = config_lib.root_config_error(e)
    if cause is not None:  # Raised by get_config(arg): its one line, not a trace.
      print(f"error: {cause}", file=sys.stderr)
      sys.exit(2)
    print(f"error: {e}\nPass --helpfull for the flags.", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
