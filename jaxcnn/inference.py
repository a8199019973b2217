"""Prediction and Monte Carlo dropout (lecture 004) on all local devices.

::

  probs = predict(model, variables, images)                 # [N, K], dropout off
  mc = predict_mc(model, variables, images, num_samples=100, rng=jax.random.key(0))
  mc.mean, mc.std                    # [N, K]: the lecture's y_proba and y_std
  mc.entropy, mc.mutual_information  # [N]: total and epistemic uncertainty (nats)

MC dropout runs the model with dropout on and BatchNorm frozen
(``train=False, deterministic=False``, ``mutable=False``), the way lecture
004's ``MCDropout`` layer does. For each batch of images one compiled program
draws every sample: the layers before the first dropout layer run once, the
rest runs under ``vmap`` over (sample, image) keys, ``samples_per_step``
samples at a time, and only per-image statistics leave the device, so the
test set is streamed and the ``[S, N, K]`` samples are kept only when asked.
Image batches are split over ``jax.local_devices()`` under ``jit``, on the 1-D
mesh of ``parallel.batch_mesh`` (``parallel`` is the one device boundary).

Sampling convention: the dropout key of sample ``s`` for the image at
position ``i`` of ``images`` is ``fold_in(fold_in(rng, s), i)``. The result
therefore depends only on ``rng`` and the images, not on ``batch_size``,
``samples_per_step`` or the number of devices (for counter-based keys: the
default threefry and philox; 'rbg' keys are reproducible only with the same
batching, because XLA's RngBitGenerator is batched from the first key).

Binary models (one logit) give probabilities ``[N, 2]``: ``(1 - p, p)``.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from typing import Any, NamedTuple, Sequence

import flax
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec
import numpy as np

from jaxcnn import config as config_lib
from jaxcnn import metrics
from jaxcnn import models
from jaxcnn import parallel
from jaxcnn import state

# Rows (samples x images per device) per vectorized step. XLA:CPU is fastest
# while one step's masked activations stay in its caches, so CPU steps stay
# small; accelerators want big steps, bounded by their memory instead.
_CPU_ROWS_PER_STEP = 1024
_ACCELERATOR_ROWS_PER_STEP = 32768


class DeterministicModelError(ValueError):
  """``predict_mc`` on a model whose passes would all be equal."""


class OutputNotWritableError(config_lib.ConfigError):
  """The report's folder cannot be written; raised before anything is computed."""


class MCPrediction(NamedTuple):
  """What :func:`predict_mc` returns (host numpy arrays, float32).

  Attributes:
    mean: ``[N, K]`` mean probabilities over the samples (the MC prediction).
    std: ``[N, K]`` their standard deviation over the samples (ddof 0, as
      ``np.std`` in the lecture).
    entropy: ``[N]`` predictive entropy of ``mean`` (total uncertainty).
    mutual_information: ``[N]`` ``entropy`` minus the mean entropy of the
      samples: the epistemic part, 0 when all samples agree.
    samples: ``[S, N, K]`` every sample's probabilities, only with
      ``return_samples=True`` (else None).
  """
  mean: np.ndarray
  std: np.ndarray
  entropy: np.ndarray
  mutual_information: np.ndarray
  samples: np.ndarray | None = None


# ---------------------------------------------------------------- programs


def _probs(logits: jax.Array) -> jax.Array:
  """Softmax probabilities; one logit z is the binary pair softmax([0, z])."""
  if logits.shape[-1] == 1:
    logits = jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
  return jax.nn.softmax(logits, axis=-1)


@functools.partial(jax.jit, static_argnames=("model",))
def _single_batch(model, variables, images):
  # deterministic=True explicitly: MCDropout layers are on unless told so.
  logits = model.apply(variables, images, train=False, deterministic=True, mutable=False)
  return _probs(logits)


@functools.partial(jax.jit, static_argnames=(
    "model", "split", "num_samples", "samples_per_step", "return_samples"))
def _mc_batch(model, variables, images, indices, rng, *, split, num_samples,
              samples_per_step, return_samples):
  """Statistics of ``num_samples`` stochastic passes over one image batch."""
  if split:
    # The deterministic prefix (e.g. a conv base) runs once for all samples.
    h = model.apply(variables, images, train=False, deterministic=True, stop=split,
                    mutable=False)
    extra = {"start": split}
  else:
    h, extra = images, {}

  def one(sample_key, index, x):
    # One image, one sample: its own key, so batching never changes a mask.
    key = jax.random.fold_in(sample_key, index)
    logits = model.apply(variables, x[None], train=False, deterministic=False,
                         rngs={"dropout": key}, mutable=False, **extra)
    return _probs(logits)[0]

  def chunk(sample_ids):
    keys = jax.vmap(lambda s: jax.random.fold_in(rng, s))(sample_ids)
    probs = jax.vmap(lambda k: jax.vmap(one, in_axes=(None, 0, 0))(k, indices, h))(keys)
    return probs, metrics.entropy(probs)  # [c, B, K], [c, B]

  def update(carry, probs, ent):
    # Chan et al.'s pairwise update of (count, mean, M2): exact to round-off,
    # unlike sum-of-squares, when the spread is tiny next to the mean.
    n, mean, m2, ent_sum = carry
    c = probs.shape[0]
    chunk_mean = probs.mean(axis=0)
    chunk_m2 = jnp.sum(jnp.square(probs - chunk_mean), axis=0)
    delta = chunk_mean - mean
    total = n + c
    mean = mean + delta * (c / total)
    m2 = m2 + chunk_m2 + jnp.square(delta) * (n * c / total)
    return total, mean, m2, ent_sum + ent.sum(axis=0)

  step = min(samples_per_step, num_samples)
  full, rest = divmod(num_samples, step)
  out = jax.eval_shape(chunk, jnp.zeros((1,), jnp.uint32))[0]
  zeros = jnp.zeros(out.shape[1:], out.dtype)
  carry = (jnp.zeros((), out.dtype), zeros, zeros, jnp.zeros(out.shape[1:-1], out.dtype))

  def body(carry, j):
    probs, ent = chunk(j * step + jnp.arange(step, dtype=jnp.uint32))
    return update(carry, probs, ent), probs if return_samples else None

  carry, stacked = jax.lax.scan(body, carry, jnp.arange(full, dtype=jnp.uint32))
  samples = stacked.reshape(-1, *stacked.shape[2:]) if return_samples else None
  if rest:
    probs, ent = chunk(full * step + jnp.arange(rest, dtype=jnp.uint32))
    carry = update(carry, probs, ent)
    if return_samples:
      samples = jnp.concatenate([samples, probs])
  _, mean, m2, ent_sum = carry
  total_entropy = metrics.entropy(mean)
  mutual_information = jnp.maximum(total_entropy - ent_sum / num_samples, 0.0)
  stats = (mean, jnp.sqrt(m2 / num_samples), total_entropy, mutual_information)
  return stats + ((samples,) if return_samples else ())


# ---------------------------------------------------------------- checks


def _first_kernel(variables) -> tuple[str, tuple[int, ...]] | None:
  """The path and shape of the first kernel in the params (layer order)."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables.get("params", {})))
  for path, value in flat.items():
    if path[-1] == "kernel":
      return "/".join(path), tuple(np.shape(value))
  return None


def _input_hint(variables) -> str:
  found = _first_kernel(variables)
  if found is None:
    return ""
  path, shape = found
  if len(shape) == 4:
    return (f" Its first kernel '{path}' has shape {shape} (HWIO): it expects NHWC "
            f"images with {shape[2]} channel(s).")
  if len(shape) == 2:
    return (f" Its first kernel '{path}' has shape {shape}: it expects {shape[0]} "
            "values per image after flattening.")
  return f" Its first kernel '{path}' has shape {shape}."


def _check_images(model, variables, images, input_shape) -> tuple[int, int]:
  """Validates the images against the model; returns (N, logits width)."""
  if not hasattr(images, "shape"):
    raise ValueError(f"images must be an array [N, ...], got {type(images).__name__}.")
  if len(images.shape) < 2:
    raise ValueError(f"images must be a batch [N, H, W, C] (N first); got shape {images.shape}.")
  if images.shape[0] == 0:
    raise ValueError("images is empty: nothing to predict.")
  example = tuple(images.shape[1:])
  if input_shape is not None and example != tuple(input_shape):
    raise ValueError(f"images must be [N, {', '.join(map(str, input_shape))}] "
                     f"(input_shape); got {tuple(images.shape)}.")
  probe = jax.ShapeDtypeStruct((1, *example), jnp.float32)
  try:
    out = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=False, deterministic=True, mutable=False),
        variables, probe)
  except (TypeError, ValueError, flax.errors.FlaxError) as e:
    raise ValueError(
        f"The model cannot run on images of shape {tuple(images.shape)} "
        f"(one image: {example}).{_input_hint(variables)} Model error: {e}") from e
  if len(out.shape) != 2:
    raise ValueError(f"The model must return logits [N, K]; it returns shape {out.shape}.")
  return images.shape[0], out.shape[1]


def _draws_dropout(model, variables, example_shape) -> bool:
  """Whether a pass asks for the 'dropout' rng (structural, traced only)."""
  probe = jax.ShapeDtypeStruct((1, *example_shape), jnp.float32)
  try:
    jax.eval_shape(lambda v, x: model.apply(v, x, train=False, deterministic=False,
                                            rngs={}, mutable=False), variables, probe)
  except flax.errors.InvalidRngError:
    return True
  return False


def _split_point(model) -> int:
  """Layers before this index run once per batch (0: the whole model per sample)."""
  if not isinstance(model, models.Sequential):
    return 0
  first = models.first_stochastic_layer(model)
  return first if first is not None and 0 < first < len(model.layers) else 0


def _as_key(rng) -> jax.Array:
  if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
    return jax.random.key(int(rng))
  dtype = getattr(rng, "dtype", None)
  if dtype is not None and (jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
                            or (dtype == np.uint32 and np.ndim(rng) == 1)):
    return rng
  raise ValueError(f"rng must be a key from jax.random.key(seed) (or an int seed); got {rng!r}.")


def _positive(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
  return int(value)


# ---------------------------------------------------------------- batching


class _Runner:
  """Streams image batches, sharded over ``parallel.batch_mesh(devices)``."""

  def __init__(self, images, batch_size: int, devices: Sequence[jax.Device] | None):
    self.mesh = parallel.batch_mesh(devices)
    self.images = images
    self.n = images.shape[0]
    num_devices = self.mesh.devices.size
    per_device = -(-min(batch_size, self.n) // num_devices)
    self.per_device = per_device
    self.batch = per_device * num_devices  # every step has this shape: one compile
    self.sharded = NamedSharding(self.mesh, PartitionSpec(parallel.AXIS))
    self.replicated = NamedSharding(self.mesh, PartitionSpec())

  def replicate(self, tree):
    return jax.device_put(tree, self.replicated)

  def run(self, fn) -> list[np.ndarray]:
    """``fn(images, indices)`` per batch; the outputs concatenated on the host."""
    pending, done = [], []
    for lo in range(0, self.n, self.batch):
      hi = min(lo + self.batch, self.n)
      x = np.asarray(self.images[lo:hi], dtype=np.float32)
      if hi - lo < self.batch:  # Edge padding: real images, no NaN risk.
        x = np.concatenate([x, np.repeat(x[-1:], self.batch - (hi - lo), axis=0)])
      idx = np.arange(lo, lo + self.batch, dtype=np.uint32)
      outs = fn(jax.device_put(x, self.sharded), jax.device_put(idx, self.sharded))
      pending.append((hi - lo, outs))
      if len(pending) > 1:  # One batch in flight while the previous is fetched.
        done.append(self._fetch(*pending.pop(0)))
    done.extend(self._fetch(*p) for p in pending)
    return [np.concatenate(parts, axis=-2 if parts[0].ndim == 3 else 0)
            for parts in zip(*done)]

  @staticmethod
  def _fetch(count, outs):
    # Samples are [S, B, K]: the image axis is -2; everything else leads with it.
    return tuple(np.asarray(o)[:, :count] if o.ndim == 3 else np.asarray(o)[:count]
                 for o in outs)


# ---------------------------------------------------------------- public API


def predict(model, variables, images, *, batch_size: int = 1000,
            input_shape: Sequence[int] | None = None,
            devices: Sequence[jax.Device] | None = None) -> np.ndarray:
  """Class probabilities of one deterministic pass (dropout off, BN frozen).

  Args:
    model: a linen module following the model call convention
      (``train``/``deterministic`` keywords, returns logits).
    variables: ``{'params': ..., 'batch_stats': ...}``.
    images: ``[N, H, W, C]`` array (numpy, jax, or anything sliceable such as
      an h5py dataset); streamed to the devices ``batch_size`` at a time.
    batch_size: images per step over all devices (rounded up to a multiple
      of the device count).
    input_shape: optional shape of one image, checked up front.
    devices: where to run; default ``jax.local_devices()``.

  Returns:
    ``[N, K]`` float32 probabilities (``[N, 2]`` for a one-logit model).

  Raises:
    ValueError: images the model cannot take (naming what it expects), or a
      bad ``batch_size``.
  """
  batch_size = _positive("batch_size", batch_size)
  _check_images(model, variables, images, input_shape)
  runner = _Runner(images, batch_size, devices)
  variables = runner.replicate(variables)
  (probs,) = runner.run(lambda x, idx: (_single_batch(model, variables, x),))
  return probs


def predict_mc(model, variables, images, *, num_samples: int = 100, rng,
               batch_size: int = 1000, return_samples: bool = False,
               samples_per_step: int | None = None, allow_deterministic: bool = False,
               reuse_prefix: bool = True, input_shape: Sequence[int] | None = None,
               devices: Sequence[jax.Device] | None = None) -> MCPrediction:
  """Monte Carlo dropout: ``num_samples`` passes with dropout on, BN frozen.

  Lecture 004's ``np.stack([model(X, training=True) for _ in range(100)])``
  as one compiled program per image batch, without its BatchNorm pitfall.

  Args:
    model: a linen module following the model call convention; a
      ``jaxcnn.models.Sequential`` also gets its deterministic prefix run once.
    variables: ``{'params': ..., 'batch_stats': ...}``; never updated.
    images: ``[N, H, W, C]`` array, streamed ``batch_size`` at a time.
    num_samples: stochastic passes per image.
    rng: a ``jax.random.key`` (or an int seed). Sample ``s`` of image ``i``
      uses ``fold_in(fold_in(rng, s), i)``; see the module docstring.
    batch_size: images per step over all devices.
    return_samples: also return the ``[S, N, K]`` samples (host memory).
    samples_per_step: samples vectorized together; default fits about 1k
      rows per device on CPU and 32k on accelerators. Memory and speed only:
      the result does not depend on it.
    allow_deterministic: run even if the model draws no dropout randomness
      (all samples then equal :func:`predict`).
    reuse_prefix: run the layers before the first dropout layer once per
      batch (Sequential models); False runs the whole model per sample, with
      the same result.
    input_shape: optional shape of one image, checked up front.
    devices: where to run; default ``jax.local_devices()``.

  Returns:
    An :class:`MCPrediction`.

  Raises:
    DeterministicModelError: the model has no active dropout layer and
      ``allow_deterministic`` is False.
    ValueError: bad ``num_samples``/``batch_size``/``samples_per_step``/
      ``rng``, or images the model cannot take (naming what it expects).
  """
  num_samples = _positive("num_samples", num_samples)
  batch_size = _positive("batch_size", batch_size)
  if samples_per_step is not None:
    samples_per_step = _positive("samples_per_step", samples_per_step)
  rng = _as_key(rng)
  _check_images(model, variables, images, input_shape)
  if not allow_deterministic and not _draws_dropout(model, variables, images.shape[1:]):
    raise DeterministicModelError(
        "predict_mc: the model draws no dropout randomness (no Dropout, MCDropout or "
        "AlphaDropout layer with rate > 0), so all samples would equal predict(). "
        "Use a model trained with dropout, or pass allow_deterministic=True.")
  runner = _Runner(images, batch_size, devices)
  if samples_per_step is None:
    platform = runner.mesh.devices.flat[0].platform
    rows = _CPU_ROWS_PER_STEP if platform == "cpu" else _ACCELERATOR_ROWS_PER_STEP
    samples_per_step = max(1, rows // runner.per_device)
  variables, rng = runner.replicate((variables, rng))
  program = functools.partial(
      _mc_batch, model, variables, rng=rng,
      split=_split_point(model) if reuse_prefix else 0, num_samples=num_samples,
      samples_per_step=min(samples_per_step, num_samples), return_samples=return_samples)
  outs = runner.run(lambda x, idx: program(x, idx))
  return MCPrediction(*outs[:4], samples=outs[4] if return_samples else None)


# ---------------------------------------------------------------- report


def _uncertainty_summary(mc: MCPrediction, labels: np.ndarray) -> dict[str, float]:
  """Is the MC uncertainty informative? Accuracy on the most uncertain tenth."""
  order = np.argsort(-mc.mutual_information, kind="stable")
  tenth = max(1, len(order) // 10)
  predicted = mc.mean.argmax(1)
  correct = predicted == labels
  return {
      "mean_mutual_information": float(mc.mutual_information.mean()),
      "mean_std_of_predicted_class": float(mc.std[np.arange(len(labels)), predicted].mean()),
      "accuracy_most_uncertain_tenth": float(correct[order[:tenth]].mean()),
      "accuracy_other_nine_tenths": float(correct[order[tenth:]].mean())
                                    if len(order) > tenth else float("nan"),
  }


def _write_report(out_dir: str, result: dict[str, Any], images, labels: np.ndarray,
                  single: np.ndarray, mc: MCPrediction | None, *, num_samples: int,
                  class_names: Sequence[str] | None, k: int) -> None:
  """Writes the figures and ``metrics.json`` into ``out_dir``, listing them in ``result``."""
  # Local: predicting needs neither matplotlib nor the plotting package.
  from jaxcnn.visualize import uncertainty as uncertainty_plots
  os.makedirs(out_dir, exist_ok=True)
  figures = {"reliability_single.png": lambda p: uncertainty_plots.plot_reliability_diagram(
      single, labels, title="Single pass", path=p)}
  if mc is not None:
    figures["reliability_mc.png"] = lambda p: uncertainty_plots.plot_reliability_diagram(
        mc.mean, labels, title=f"MC dropout ({num_samples})", path=p)
    figures["certainty_mc.png"] = lambda p: uncertainty_plots.plot_certainty_examples(
        images, mc.mean, labels, k=min(k, len(labels)), class_names=class_names,
        uncertainty=mc.mutual_information, score_name="mutual info", std=mc.std, path=p)
  for name, draw in figures.items():
    draw(os.path.join(out_dir, name))
    result["files"].append(os.path.join(out_dir, name))
  path = os.path.join(out_dir, "metrics.json")
  result["files"].append(path)
  with open(path, "w") as f:
    json.dump(result, f, indent=2)


def evaluate_mc(model, variables, images, labels, *, num_samples: int, rng,
                batch_size: int = 1000, class_names: Sequence[str] | None = None,
                out_dir: str | None = None, k: int = 5) -> dict[str, Any]:
  """Single pass against MC dropout on labelled images, with figures.

  Prints the side-by-side table (``metrics.compare``) and, with ``out_dir``,
  writes ``metrics.json``, ``reliability_single.png``, ``reliability_mc.png``
  and ``certainty_mc.png`` (the ``k`` most and least certain images by
  mutual information, MC std as error bars; drawn by
  ``jaxcnn.visualize.uncertainty``). A model without dropout gets the
  single-pass metrics and a note instead of an error.

  Args:
    model, variables: as for :func:`predict_mc`.
    images: ``[N, H, W, C]``; labels: ``[N]`` class ids.
    num_samples, rng, batch_size: as for :func:`predict_mc`.
    class_names: names for the certainty figure.
    out_dir: where the files go (made if missing); None writes nothing.
    k: images per group in the certainty figure.

  Returns:
    ``{'num_examples', 'num_samples', 'comparison' (or 'single'), 'uncertainty',
    'files'}``.
  """
  labels = np.asarray(labels)
  single = predict(model, variables, images, batch_size=batch_size)
  result: dict[str, Any] = {"num_examples": int(len(labels)), "num_samples": num_samples,
                            "files": []}
  try:
    mc = predict_mc(model, variables, images, num_samples=num_samples, rng=rng,
                    batch_size=batch_size)
  except DeterministicModelError as e:
    mc = None
    result["note"] = str(e)
    result["single"] = {name: fn(single, labels) for name, fn in metrics.METRICS.items()}
    print(f"MC dropout skipped: {e}")
    print("\n".join(f"{name:<14}{value:>10.4f}" for name, value in result["single"].items()))
  if mc is not None:
    result["comparison"] = metrics.compare(single, mc.mean, labels)
    result["uncertainty"] = _uncertainty_summary(mc, labels)
    print(f"MC dropout, {num_samples} samples, {len(labels)} images:")
    print(metrics.format_comparison(result["comparison"]))
    for name, value in result["uncertainty"].items():
      print(f"{name:<32}{value:>10.4f}")
  if out_dir:
    _write_report(out_dir, result, images, labels, single, mc, num_samples=num_samples,
                  class_names=class_names, k=k)
  return result


def check_writable(out_dir: str) -> None:
  """Makes ``out_dir`` if needed and writes a scratch file in it.

  A real write, not ``os.access``: that checks the real rather than the
  effective user, and says nothing of a file standing where the folder goes.

  Raises:
    OutputNotWritableError: ``out_dir`` cannot take the report's files.
  """
  try:
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryFile(dir=out_dir):
      pass
  except OSError as e:
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
      reason, fix = "a file is in the way", "move that file away"
    else:
      reason = e.strerror or str(e)
      fix = f"make it (or {os.path.dirname(out_dir) or '.'}) writable"
    raise OutputNotWritableError(
        f"{out_dir} is not writable ({reason}), so the MC dropout report could "
        f"not be saved: {fix}, or copy the workdir somewhere writable and run "
        "there. Nothing was computed.") from e


def report(config, workdir: str, *, out_dir: str | None = None,
           member: int | None = None) -> dict[str, Any]:
  """``--mode=predict_mc``: the trained workdir's model on the test split.

  The model and weights are the workdir's latest checkpoint; everything else
  comes from ``config`` as given: :func:`evaluate_mc` on its test split.

  Args:
    config: the workdir's config, already resolved by
      ``jaxcnn.run.workdir_config`` (its own ``config.json`` with this
      machine's data location, batch sizes and ``inference.*``). Used as is:
      ``dataset`` (the test split), ``training.batch_size`` (reading it),
      ``inference.num_samples`` / ``batch_size``, and ``seed`` (the rng).
    workdir: a training workdir (``config.json``, ``checkpoints/``).
    out_dir: where the files go; default ``<workdir>/mc_dropout``
      (``<workdir>/mc_dropout/member_<i>`` for a population's member).
    member: a population workdir's member (required there).

  Returns:
    :func:`evaluate_mc`'s result.

  Raises:
    FileNotFoundError: the workdir has no config.json or no checkpoint.
    OutputNotWritableError: ``out_dir`` cannot be written; checked before
      the data is read or anything is predicted.
  """
  # Local: TensorFlow (tf.data) only when reporting.
  from jaxcnn import data as data_lib
  model, variables, member_config = state.load_for_inference(workdir, member=member)
  if member is not None:  # The member's seed: its own MC-dropout stream.
    config = config.copy_and_resolve_references()
    config.seed = member_config.seed
  out_dir = out_dir or os.path.join(
      workdir, "mc_dropout", *([f"member_{member}"] if member is not None else []))
  check_writable(out_dir)
  data = data_lib.create(config.dataset, global_batch_size=config.training.batch_size,
                         seed=config.seed)
  images, labels = data.as_numpy("test")
  # A stream of its own: not the training dropout keys of the same seed.
  rng = jax.random.fold_in(jax.random.key(config.seed), 0x4D43)
  return evaluate_mc(model, variables, images, labels,
                     num_samples=config.inference.num_samples, rng=rng,
                     batch_size=config.inference.batch_size,
                     class_names=data.info.class_names, out_dir=out_dir)
