r"""One framework's side of the throughput benchmark, in its own process.

``bench_throughput.py`` starts one worker per framework (Keras 3 cannot
switch backend inside a process), waits for its ``ready`` message, then asks
the workers in turn to time one item each, so that the frameworks are
measured interleaved on a shared, noisy machine. Workers sit blocked on
stdin between items: they take no CPU while another one is timed.

Protocol: one JSON object per line. Commands on stdin:
``{"cmd": "run", "item": ITEM}`` and ``{"cmd": "quit"}``. Replies on the
process's original stdout (library output is sent to stderr):
``{"ready": true, "info": {...}}``, ``{"item": ITEM, "seconds": s,
"images": n}`` (``"gflops"`` for 'matmul'), or ``{"error": traceback}``.

Items:
  jaxcnn   e2e       one epoch of ``steps`` batches: jaxcnn's input pipeline
                     (``jaxcnn.data.create``), the pmap-ed
                     ``parallel.make_train_step``, and the metric fetch every
                     ``train.REFRESH_EVERY_STEPS`` steps, as ``train.py``
                     runs them
           pipeline  the same epoch of host batches, with no training
           step      ``steps`` train steps on one batch already on the device
           e2e_FEED  as e2e, fed as ``train.py`` feeds with another
                     ``jaxcnn.data.device.Feed`` (``--feeds``): FEED is
                     ``device`` (the training part on the device, gathered
                     in the step), ``kK`` (K steps per compiled call) or
                     ``device_kK``
           matmul    GFLOP/s of a large float32 matrix product (the machine's
                     peak, best of 5)
  keras    e2e       ``model.fit(x, y, batch_size, epochs=1, shuffle=True)``
                     on the same ``steps * batch`` examples held in numpy
                     (jaxcnn's training part, normalized by its pipeline and
                     saved by the jaxcnn worker), the lectures' way

The ``ready`` info also carries ``first_call_seconds`` (each item's warm-up
call: compilation and first-call work) and ``aot_compile`` (seconds to lower
and to compile the one-step program with JAX's AOT API), which
``bench_accelerator.py`` reports as compile times.

Where TensorFlow is not installed (e.g. a GPU machine without it), jaxcnn's
e2e and pipeline items run on a numpy feeder with the same epoch order,
normalization and prefetch depth instead of tf.data; ``info['pipeline']``
says which one ran.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import queue
import sys
import threading
import time
import traceback
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput_keras  # noqa: E402  pylint: disable=g-import-not-at-top
import throughput_workloads as wl  # noqa: E402  pylint: disable=g-import-not-at-top

MATMUL_SIZE = {"cpu": 2048, "gpu": 8192}


def _matmul_gflops(platform: str, repeats: int = 5) -> float:
  """Best-of-``repeats`` float32 GFLOP/s of an n x n matrix product."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = MATMUL_SIZE.get(platform, MATMUL_SIZE["gpu"])
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  product = jax.jit(jnp.dot)
  product(a, b).block_until_ready()
  best = math.inf
  for _ in range(repeats):
    start = time.perf_counter()
    product(a, b).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best / 1e9


# ------------------------------------------------------------------ jaxcnn


class NumpyFeeder:
  """jaxcnn's training batches without TensorFlow (numpy, one thread ahead).

  Same contract and order as ``jaxcnn.data.Data.train_epoch`` with
  ``cache``: a permutation from ``default_rng([seed, epoch])``, whole-batch
  gathers, ``(x / 255 - mean) / std``, ``[devices, per_device, ...]``, and
  two batches prefetched.
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray, normalization: str,
               batch_size: int, num_devices: int, seed: int = 0):
    """Batches of ``images`` (uint8 [N, H, W, C]) and ``labels`` (int32 [N])."""
    self._images, self._labels = images, labels
    self._mean, self._std = wl.normalization_stats(images, normalization)
    self._batch, self._devices, self._seed = batch_size, num_devices, seed
    self.steps_per_epoch = len(images) // batch_size

  @classmethod
  def for_workload(cls, workload: wl.Workload, count: int, batch_size: int,
                   mirror_dir: str, num_devices: int, seed: int = 0) -> "NumpyFeeder":
    images, labels = wl.uint8_examples(workload, count, mirror_dir)
    return cls(images, labels, workload.normalization, batch_size, num_devices, seed)

  def as_numpy(self) -> tuple[np.ndarray, np.ndarray]:
    """(normalized float32 images, labels) of the whole part, in order."""
    x = (self._images.astype(np.float32) / 255.0 - self._mean) / self._std
    return x.astype(np.float32), self._labels

  def _batches(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
    order = np.random.default_rng([self._seed, epoch]).permutation(len(self._images))
    b, d = self._batch, self._devices
    for i in range(self.steps_per_epoch):
      idx = order[i * b:(i + 1) * b]
      x = (self._images[idx].astype(np.float32) / 255.0 - self._mean) / self._std
      yield {"image": x.reshape(d, b // d, *x.shape[1:]),
             "label": self._labels[idx].reshape(d, b // d)}

  def train_epoch(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
    q: queue.Queue = queue.Queue(maxsize=2)
    done = object()

    def produce():
      for batch in self._batches(epoch):
        q.put(batch)
      q.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := q.get()) is not done:
      yield item


class JaxcnnWorker:
  """Builds jaxcnn's data, model, optimizer and pmap-ed step as train.py does."""

  def __init__(self, workload: wl.Workload, steps: int, batch_size: int,
               mirror_dir: str, tfds_data_dir: str, feeder: str = "auto",
               precision: str = "float32", feeds: tuple[str, ...] = (),
               augmentation: dict[str, Any] | None = None):
    import jax  # pylint: disable=g-import-not-at-top
    from jaxcnn import config as config_lib  # pylint: disable=g-import-not-at-top
    from jaxcnn import models  # pylint: disable=g-import-not-at-top
    from jaxcnn import optim  # pylint: disable=g-import-not-at-top
    from jaxcnn import parallel  # pylint: disable=g-import-not-at-top
    from jaxcnn.models import specs  # pylint: disable=g-import-not-at-top

    self._jax, self._parallel = jax, parallel
    config = wl.jaxcnn_config(workload, steps, mirror_dir, batch_size)
    config.dataset.data_dir = tfds_data_dir
    if precision != "float32":  # the key exists only in checkouts that have it
      config.training.precision = precision
    if augmentation:  # e2e augments in tf.data, the device feeds with augment_jax
      config.dataset.augmentation.update(augmentation)
    config_lib.validate(config)
    parallel.check_global_batch(batch_size)
    self.batch_size, self.steps = batch_size, steps
    self.platform = jax.devices()[0].platform
    self._epoch = 0
    self._mock = None

    if feeder not in ("auto", "tfdata", "numpy"):
      raise ValueError(f"feeder must be auto, tfdata or numpy; got {feeder!r}.")
    has_tf = importlib.util.find_spec("tensorflow") is not None
    if feeder == "tfdata" and not has_tf:
      raise RuntimeError("feeder 'tfdata' needs TensorFlow, which is not installed.")
    if has_tf and feeder != "numpy":
      from jaxcnn import data as data_lib  # pylint: disable=g-import-not-at-top
      from jaxcnn import train  # pylint: disable=g-import-not-at-top
      if workload.data == "random":
        # cats_vs_dogs cannot be had offline: TFDS' mock data gives random
        # images of varying sizes, which the pipeline resizes to 150x150.
        import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
        self._mock = tfds.testing.mock_data(num_examples=steps * batch_size)
        self._mock.__enter__()
      self.data = data_lib.create(config.dataset, global_batch_size=batch_size,
                                  seed=config.seed)
      num_classes, image_shape = self.data.info.num_classes, self.data.info.image_shape
      self.refresh_every = train.REFRESH_EVERY_STEPS
      pipeline = "jaxcnn.data (tf.data)"
    else:
      train = None
      self.data = NumpyFeeder.for_workload(workload, steps * batch_size, batch_size,
                                           mirror_dir, jax.local_device_count(), config.seed)
      num_classes, image_shape = workload.num_classes, workload.image_shape
      self.refresh_every = 50  # train.REFRESH_EVERY_STEPS, which needs TF to import
      pipeline = ("numpy feeder (TensorFlow not installed)" if not has_tf
                  else "numpy feeder (asked for)")
    if self.data.steps_per_epoch != steps:
      raise RuntimeError(f"The pipeline has {self.data.steps_per_epoch} steps per "
                         f"epoch, not {steps}.")

    dtype = {}
    if precision != "float32":
      from jaxcnn import precision as precision_lib  # pylint: disable=g-import-not-at-top
      dtype = {"dtype": precision_lib.compute_dtype(precision)}
    model = models.create(config.model, num_classes=num_classes, **dtype)
    train_model = models.create(config.model, num_classes=num_classes,
                                axis_name=parallel.AXIS, **dtype)
    tx = optim.create(config.optimizer, config.schedule, steps_per_epoch=steps,
                      num_epochs=config.training.num_epochs,
                      freeze=tuple(config.regularization.freeze))
    self.state = self._init_state(config, model, tx, image_shape, optim)
    if precision == "float16":
      self.state = self.state.replace(loss_scale=precision_lib.initial_loss_scale(config))
    rules = optim.regularizers.build_rules(models.param_rules(model), self.state.params,
                                           config.regularization)
    step_kwargs = dict(
        penalty_fn=lambda p: optim.regularizers.penalty(p, rules),
        project_fn=lambda p: optim.constraints.project(p, rules),
        label_smoothing=config.training.label_smoothing)
    self.train_step = parallel.make_train_step(train_model, tx, **step_kwargs)
    self._feeds = {f"e2e_{name}": self._feed_step(name, train_model, tx, step_kwargs)
                   for name in feeds}

    # Warm-up: compiles the step and fills the pipeline's cache. The first
    # call's seconds, against a later round's, give each item's compile time.
    self._device_batch = None
    self._aot = {}
    first_call = {}
    for item in ("e2e", "step", *self._feeds):
      first_call[item] = self.run(item)["seconds"]
    summary = models.summary(model, image_shape)
    self.info = {
        "framework": "jaxcnn", "platform": self.platform,
        "device_kind": jax.devices()[0].device_kind,
        "local_devices": jax.local_device_count(), "jax": jax.__version__,
        "jaxcnn_file": sys.modules["jaxcnn"].__file__,
        "pipeline": pipeline, "params": int(summary.total), "precision": precision,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "flops_per_image": self._flops_per_image(train_model, tx, step_kwargs),
        "first_call_seconds": first_call,
        "aot_compile": self._aot_compile(train_model, tx, step_kwargs),
        "layers": [specs.to_config(s) for s in model.layers],
        "image_shape": list(image_shape), "output_units": self._output_units(model, image_shape),
    }

  def _feed_step(self, name: str, train_model, tx, step_kwargs):
    """(Feed, step) of a ``--feeds`` name: 'device', 'kK' or 'device_kK'."""
    from jaxcnn.data import device as device_lib  # pylint: disable=g-import-not-at-top
    parts = name.split("_")
    on_device = parts[0] == "device"
    rest = parts[1:] if on_device else parts
    if (len(rest) > 1 or (rest and not (rest[0][:1] == "k" and rest[0][1:].isdigit()))
        or not (on_device or rest)):
      raise ValueError(f"--feeds: {name!r} is not device, kK or device_kK.")
    k = int(rest[0][1:]) if rest else 1
    if isinstance(self.data, NumpyFeeder):
      raise RuntimeError("--feeds needs jaxcnn.data (tf.data), not the numpy feeder.")
    feed = device_lib.Feed(device=on_device, steps_per_call=k)
    extra = {"stacked": True} if feed.stacked else {}
    if on_device:
      train_set = device_lib.DeviceTrainSet(self.data)
      extra.update(gather=train_set.gather, arrays=train_set.arrays)
    return feed, self._parallel.make_train_step(train_model, tx, **step_kwargs, **extra)

  @staticmethod
  def _init_state(config, model, tx, image_shape, optim):
    """``jaxcnn.state.create`` as every checkout under test computes it.

    Written out here so a variant worker can time an older checkout (whose
    TrainState lived in ``parallel``) and machines where tf.data is absent.
    """
    jax = __import__("jax")
    try:
      from jaxcnn.state import TrainState  # pylint: disable=g-import-not-at-top
    except ImportError:  # A checkout from before jaxcnn.state.
      from jaxcnn.parallel import TrainState  # pylint: disable=g-import-not-at-top
    rng = jax.random.PRNGKey(config.seed)
    init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
    dummy = jax.numpy.zeros((1,) + tuple(image_shape), jax.numpy.float32)
    variables = jax.jit(lambda r, d: model.init(
        {"params": r, "dropout": dropout_rng}, d, train=False))(init_rng, dummy)
    params = variables["params"]
    return TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}),
                      opt_state=tx.init(params), rng=state_rng,
                      plateau=optim.init_plateau(config.schedule))

  def save_examples(self, path: str) -> None:
    """Writes the training part, normalized, for the Keras workers (.npz)."""
    if isinstance(self.data, NumpyFeeder):
      x, y = self.data.as_numpy()
    else:
      x, y = self.data.as_numpy("train")
    np.savez(path, x=x, y=y)

  def _output_units(self, model, image_shape) -> int:
    out = self._jax.eval_shape(
        lambda: model.apply({"params": self.state.params, "batch_stats": self.state.batch_stats}
                            if self.state.batch_stats else {"params": self.state.params},
                            np.zeros((1, *image_shape), np.float32)))
    return int(out.shape[-1])

  def _flops_per_image(self, train_model, tx, step_kwargs) -> float:
    """XLA:CPU's count for the whole train step (one device, whole batch) / batch.

    Always compiled for the CPU: on a GPU, convolutions become cuDNN custom
    calls, which XLA's cost analysis counts as zero FLOPs.
    """
    jax = self._jax
    cpu = jax.devices("cpu")[0]
    step = self._parallel.make_train_step(train_model, tx, pmap=False, **step_kwargs)
    state, batch = jax.device_put((self.state, jax.device_get(self._device_batch)), cpu)
    start = time.perf_counter()
    lowered = step.lower(state, batch)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    if self.platform == "cpu":  # the device's own compile: _aot_compile reuses it
      self._aot = {"lower_seconds": lowered_at - start,
                   "compile_seconds": time.perf_counter() - lowered_at,
                   "device": str(cpu.device_kind), "program": "train step, pmap=False"}
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
      cost = cost[0]
    return float(cost["flops"]) / self.batch_size

  def _aot_compile(self, train_model, tx, step_kwargs) -> dict[str, Any]:
    """Seconds to lower and to compile the one-step program for the default device.

    JAX's AOT API (``jit(...).lower(...)``, then ``.compile()``), on a fresh
    ``make_train_step``: no cache of this process holds it. On a CPU the
    FLOP count's compile is that program already.
    """
    if self._aot:
      return self._aot
    jax = self._jax
    dev = jax.devices()[0]
    step = self._parallel.make_train_step(train_model, tx, pmap=False, **step_kwargs)
    state, batch = jax.device_put((self.state, jax.device_get(self._device_batch)), dev)
    start = time.perf_counter()
    lowered = step.lower(state, batch)
    lowered_at = time.perf_counter()
    lowered.compile()
    return {"lower_seconds": lowered_at - start,
            "compile_seconds": time.perf_counter() - lowered_at,
            "device": str(dev.device_kind), "program": "train step, pmap=False"}

  def _flush(self, pending: list) -> None:
    if not pending:
      return
    for m in self._jax.device_get(pending):
      if not np.all(np.isfinite(m["loss"])):
        raise FloatingPointError(f"non-finite loss {m['loss']} in the benchmark")
    pending.clear()

  def run(self, item: str) -> dict[str, Any]:
    """Times one item; see the module docstring."""
    jax = self._jax
    if item == "matmul":
      return {"gflops": _matmul_gflops(self.platform)}
    if item not in ("e2e", "pipeline", "step", *self._feeds):
      raise ValueError(f"Unknown jaxcnn item {item!r}; valid: e2e, pipeline, step, "
                       f"matmul, {', '.join(self._feeds) or '(no --feeds)'}.")
    self._epoch += 1
    start = time.perf_counter()
    n = 0
    if item in self._feeds:
      from jaxcnn.data import device as device_lib  # pylint: disable=g-import-not-at-top
      feed, step = self._feeds[item]
      pending = []
      for count, inputs in device_lib.calls(self.data, self._epoch, 0, feed):
        self.state, metrics = step(self.state, inputs)
        pending.append(metrics)
        if (n + count) // self.refresh_every > n // self.refresh_every:
          self._flush(pending)  # as train.py: at the calls that cross a refresh point
        n += count
      self._flush(pending)
    elif item == "e2e":
      pending = []
      for batch in self.data.train_epoch(self._epoch):
        self.state, metrics = self.train_step(self.state, batch)
        if self._device_batch is None:
          self._device_batch = jax.pmap(lambda x: x)(batch)  # for 'step' (warm-up only)
        n += 1
        pending.append(metrics)
        if n % self.refresh_every == 0:
          self._flush(pending)
      self._flush(pending)
    elif item == "pipeline":
      for _ in self.data.train_epoch(self._epoch):
        n += 1
    else:
      for _ in range(self.steps):
        self.state, _ = self.train_step(self.state, self._device_batch)
        n += 1
    jax.block_until_ready(self.state)
    return {"seconds": time.perf_counter() - start, "images": n * self.batch_size}

  def close(self) -> None:
    if self._mock is not None:
      self._mock.__exit__(None, None, None)


# ------------------------------------------------------------------ main


def main(argv=None) -> int:
  # The protocol owns the real stdout; anything libraries print goes to stderr.
  proto = os.fdopen(os.dup(1), "w", buffering=1)
  os.dup2(2, 1)

  def send(obj):
    proto.write(json.dumps(obj) + "\n")

  parser = argparse.ArgumentParser()
  parser.add_argument("--framework", choices=("jaxcnn", "keras"), required=True)
  parser.add_argument("--model", required=True)
  parser.add_argument("--steps", type=int, required=True)
  parser.add_argument("--batch-size", type=int, required=True)
  parser.add_argument("--data-dir", default=wl.DEFAULT_MIRROR_DIR)
  parser.add_argument("--tfds-data-dir", default="")
  parser.add_argument("--feeder", default="auto", choices=("auto", "tfdata", "numpy"))
  parser.add_argument("--keras-model", default="",
                      help="JSON file: {layers, image_shape, output_units, examples} "
                      "written by the orchestrator from the jaxcnn worker's info")
  parser.add_argument("--precision", default="float32",
                      choices=("float32", "bfloat16", "float16"),
                      help="jaxcnn: training.precision")
  parser.add_argument("--feeds", default="",
                      help="jaxcnn: comma-separated extra e2e feeds (device, kK, device_kK)")
  parser.add_argument("--augmentation", default="",
                      help="jaxcnn: dataset.augmentation as JSON (default: none)")
  parser.add_argument("--save-examples", default="",
                      help="jaxcnn: write the normalized training part here (.npz)")
  args = parser.parse_args(argv)
  try:
    workload = wl.get(args.model)
    if args.framework == "jaxcnn":
      worker = JaxcnnWorker(workload, args.steps, args.batch_size, args.data_dir,
                            args.tfds_data_dir, args.feeder, args.precision,
                            tuple(f for f in args.feeds.split(",") if f),
                            json.loads(args.augmentation) if args.augmentation else None)
      if args.save_examples:
        worker.save_examples(args.save_examples)
    else:
      with open(args.keras_model) as f:
        spec = json.load(f)
      worker = throughput_keras.KerasWorker(workload, args.batch_size, spec["examples"], spec["layers"],
                           spec["image_shape"], spec["output_units"])
    send({"ready": True, "info": worker.info})
  except Exception:  # pylint: disable=broad-except
    send({"error": traceback.format_exc()})
    return 1
  for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("cmd") == "quit":
      break
    try:
      send({"item": msg["item"], **worker.run(msg["item"])})
    except Exception:  # pylint: disable=broad-except
      send({"error": traceback.format_exc()})
  worker.close()
  return 0


if __name__ == "__main__":
  sys.exit(main())
