"""The device boundary: per-device train and eval steps over the 'batch' axis.

Every mapping over devices is built here: the train and eval steps
(``jax.pmap``, or in one process the ``jit`` of ``shard_map`` that pmap
compiles to, called without pmap's per-call overhead: ``_data_parallel``),
and the 1-D device mesh inference shards its batches over
(:func:`batch_mesh`). The train state is NOT replicated by
hand: it enters with ``in_axes=None`` and leaves with ``out_axes=None``, which
is valid because every device ends the step with the same state (gradients,
metrics and BatchNorm statistics are all averaged over the axis).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn import collectives
from jaxcnn import config as config_lib
from jaxcnn import precision

if TYPE_CHECKING:  # Annotations only: the steps work on any state pytree with
  # TrainState's fields, and the data layer below can use parallel's rules.
  from jaxcnn.state import TrainState

AXIS = "batch"

Batch = Mapping[str, jax.Array]


def to_host(tree: Any) -> Any:
  """Fetches a replicated pytree to host numpy, also across processes.

  Outputs of the pmap-ed steps are replicated over all devices of all
  processes; with several processes they are not fully addressable, so each
  process reads its own copy.
  """
  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      x = x.addressable_data(0)
    return np.asarray(x)
  return jax.tree.map(fetch, tree)


def initialize_distributed(coordinator_address: str = "", num_processes: int = 0,
                           process_id: int = -1) -> None:
  """Starts JAX's multi-controller runtime before anything touches a backend.

  With explicit arguments they are used; otherwise JAX detects the cluster
  (TPU pods, SLURM, Open MPI) where it can. On CPU, collectives go over gloo.

  Raises:
    RuntimeError: JAX's backend already started (XLA_FLAGS or
      jax.distributed set too late), with what to do instead.
  """
  from jax._src import xla_bridge  # The one reliable "backend started?" probe.
  if xla_bridge.backends_are_initialized():
    raise RuntimeError(
        "jax.distributed must be initialized before JAX starts its backend, "
        "but a JAX computation already ran in this process. Pass the "
        "--coordinator_address/--num_processes/--process_id flags (or set "
        "them up) before importing code that uses JAX, e.g. at the top of "
        "the notebook or script.")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if coordinator_address:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes or None,
                               process_id=None if process_id < 0 else process_id)
  else:
    jax.distributed.initialize()


def check_device_count() -> None:
  """Fails clearly if XLA_FLAGS asked for more host devices than JAX has.

  That happens when XLA_FLAGS is set after JAX already started (a notebook
  that imported JAX first): the flag is silently ignored.
  """
  import os
  import re
  m = re.search(r"--xla_force_host_platform_device_count=(\d+)",
                os.environ.get("XLA_FLAGS", ""))
  if m and jax.default_backend() == "cpu" and jax.local_device_count() < int(m.group(1)):
    raise RuntimeError(
        f"XLA_FLAGS asks for {m.group(1)} CPU devices but JAX has "
        f"{jax.local_device_count()}: the flag was set after JAX started. "
        "Set XLA_FLAGS before the first `import jax` (first cell of the "
        "notebook, or in the shell), then restart.")


def check_global_batch(global_batch_size: int, device_count: int | None = None,
                       what: str = "training.batch_size") -> int:
  """Returns the per-device batch size, or explains which sizes would work.

  The one batch-divisibility rule of the project: the train step and the
  input pipeline (training and evaluation batches) all check it here.

  Args:
    global_batch_size: examples per step over all devices.
    device_count: devices of all processes (defaults to jax.device_count()).
    what: the setting the batch comes from, named in the message.

  Raises:
    ConfigError: the batch does not divide across the devices (every device
      needs an equal share of at least one example); the message names the
      nearest sizes that do.
  """
  n = device_count or jax.device_count()
  if global_batch_size < n or global_batch_size % n:
    lower = (global_batch_size // n) * n
    upper = lower + n
    options = [b for b in (lower, upper) if b > 0]
    raise config_lib.ConfigError(
        f"{what}={global_batch_size} does not divide across "
        f"{n} devices ({jax.process_count()} process(es)); use a multiple of "
        f"{n}, e.g. {' or '.join(map(str, options))}.")
  return global_batch_size // n


def device_memory_bytes() -> tuple[int, str]:
  """Memory one process can give its train step, and where that figure comes from.

  Accelerators report their own limit (``Device.memory_stats()``): the free
  memory of the first local device, times the local device count (every
  device holds one share of the step). XLA:CPU reports none; its devices all
  share the host's RAM, so that is the host's available memory.

  Returns:
    ``(bytes, source)``, ``source`` naming the figure for error messages.
  """
  devices = jax.local_devices()
  stats = devices[0].memory_stats() if hasattr(devices[0], "memory_stats") else None
  if stats and stats.get("bytes_limit"):
    free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return free * len(devices), (f"free memory of {len(devices)} "
                                 f"{devices[0].device_kind} device(s)")
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024, "the host's available RAM (/proc/meminfo)"
  except OSError:
    pass
  import os
  return (os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"),
          "the host's available RAM (sysconf)")


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh whose one axis, :data:`AXIS`, splits batches over ``devices``.

  Shard a batch over it with ``NamedSharding(mesh, PartitionSpec(AXIS))``;
  ``PartitionSpec()`` replicates (weights, keys).

  Args:
    devices: the devices, in mesh order; default ``jax.local_devices()``.

  Raises:
    ValueError: ``devices`` is empty.
  """
  devices = list(devices) if devices is not None else jax.local_devices()
  if not devices:
    raise ValueError("devices is empty: give at least one device.")
  return jax.sharding.Mesh(np.asarray(devices), (AXIS,))


def cross_entropy(logits: jax.Array, labels: jax.Array,
                  label_smoothing: float = 0.0) -> jax.Array:
  """Per-example loss: softmax CE, or sigmoid CE for a 1-unit binary model.

  ``label_smoothing`` may be traced (a population member's value); a Python
  0 takes the integer-label path.
  """
  smooth = not (isinstance(label_smoothing, (int, float)) and label_smoothing == 0)
  if logits.shape[-1] == 1:
    targets = labels.astype(logits.dtype)
    if smooth:
      targets = targets * (1 - label_smoothing) + 0.5 * label_smoothing
    return optax.sigmoid_binary_cross_entropy(logits[..., 0], targets)
  if smooth:
    onehot = optax.smooth_labels(
        jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, onehot)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example 0/1 correctness, for multi-class and 1-unit binary models."""
  if logits.shape[-1] == 1:
    predicted = (logits[..., 0] > 0).astype(labels.dtype)
  else:
    predicted = jnp.argmax(logits, axis=-1)
  return (predicted == labels).astype(jnp.float32)


def _variables(params, batch_stats):
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def make_train_step(
    model: flax.linen.Module,
    tx: optax.GradientTransformation,
    *,
    penalty_fn: Callable[[Any], jax.Array] = lambda params: 0.0,
    project_fn: Callable[[Any], Any] = lambda params: params,
    label_smoothing: float = 0.0,
    pmap: bool = True,
    donate_state: bool = True,
    stacked: bool = False,
    gather: Callable[[Any, jax.Array], Batch] | None = None,
    arrays: Any = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """Builds the compiled data-parallel train step.

  Args:
    model: the linen module, built with ``axis_name='batch'`` so BatchNorm
      statistics are averaged over all devices.
    tx: the optimizer.
    penalty_fn: regularization added to the loss (l1/l2 of the kernels).
    project_fn: constraint projection applied after each update (max-norm).
    label_smoothing: as in Keras' CategoricalCrossentropy.
    pmap: False runs the same per-device function on one device under jit
      (``--debug_nans``: jax_debug_nans can then point at the op).
    donate_state: the step reuses the incoming state's buffers for the new
      state (XLA updates parameters and optimizer slots in place, which
      saves a copy of every parameter per step). The state passed in is then
      deleted: always continue from the returned one, and pass False when
      other live pytrees share its arrays. Single-process runs only.
    stacked: the batch has a leading steps axis ``[K, devices, ...]``: one
      call runs the K steps in order (``lax.scan``) and every metric gains
      a leading ``[K]`` axis. K is read from the batch (a shorter last call
      compiles once more).
    gather: device-resident data: ``step(state, index)`` takes int32 rows
      ``[devices, per_device]`` (``[K, devices, per_device]`` when stacked;
      augmented, a dict of such arrays) in place of the batch, and ``gather(arrays, rows) -> batch`` builds
      each device's batch inside the program.
    arrays: with ``gather``, the training data it reads: a pytree already
      replicated on the devices (``jaxcnn.data.device.DeviceTrainSet``),
      passed to every call, never copied from the host again.

  Returns:
    ``step(state, batch) -> (state, metrics)`` where ``batch['image']`` is
    ``[devices, per_device, H, W, C]`` and metrics are device arrays (fetch
    them only at log points): ``loss`` (Keras' reported loss: the
    cross-entropy plus ``penalty_fn`` of the parameters the step started
    from), ``data_loss`` (the cross-entropy alone), ``accuracy`` and
    ``grad_norm``.
  """

  per_device_step = _per_device_step(model, tx, penalty_fn, project_fn,
                                     label_smoothing)
  per_device_step, batch_axis, consts = _many_steps(per_device_step, 0, stacked, gather)

  # Several processes: the replicated state is resharded into global arrays
  # on the way in, and donating it there deleted buffers still in use
  # (measured: tests/test_multihost.py); donation is a single-process speedup.
  donate = (0,) if donate_state and jax.process_count() == 1 else ()
  if not pmap:
    return _bound(_single_device(per_device_step, donate, batch_axis, consts), arrays, consts)
  return _bound(_data_parallel(per_device_step, donate, batch_axis, consts), arrays, consts)


def _bound(step, arrays, consts: int):
  """``step(state, rows)`` calling ``step(state, rows, arrays)``; ``step`` without consts."""
  if not consts:
    return step

  def call(state, rows):
    return step(state, rows, arrays)
  call.lower = lambda state, rows: step.lower(state, rows, arrays)
  if hasattr(step, "compiled_for_batch"):
    call.compiled_for_batch = step.compiled_for_batch
  return call


def _many_steps(per_device_fn, batch_axis: int, stacked: bool, gather):
  """Wraps a per-device step for device-resident data and/or K steps a call.

  Returns ``(fn, batch_axis, consts)``: the per-device function, the device
  axis of what replaces the batch, and the number of replicated arguments
  after it. Neither option set returns ``per_device_fn`` itself (the same
  program as before).
  """
  fn, consts = per_device_fn, 0
  if gather is not None:
    consts = 1

    def fn(state, index, arrays):
      # gather also augments (jaxcnn.data.device): ``index`` is then a dict.
      return per_device_fn(state, gather(arrays, index))
  if stacked:
    one = fn

    def fn(state, batches, *rest):
      return jax.lax.scan(lambda s, b: one(s, b, *rest), state, batches)
    batch_axis += 1
  return fn, batch_axis, consts


def make_population_step(
    members: Sequence[Mapping[str, Any]],
    *,
    mode: str = "loop",
    hparams: Mapping[str, Any] | None = None,
    penalty_with: Callable[[Any, Mapping[str, jax.Array]], jax.Array] | None = None,
    pmap: bool = True,
    donate_state: bool = True,
    stacked: bool = False,
    gather: Callable[[Any, jax.Array], Batch] | None = None,
    arrays: Any = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """Builds one compiled step that updates every member of a population.

  The state has a leading member axis on every leaf (``state.stack``), the
  batch is ``[members, devices, per_device, ...]`` and the metrics come back
  ``[members]``. Member ``i`` takes the same per-device step as a single run
  (:func:`make_train_step`) with its own arguments.

  Args:
    members: per member, the keyword arguments of :func:`make_train_step`
      (``model``, ``tx``, ``penalty_fn``, ``project_fn``,
      ``label_smoothing``).
    mode: 'loop' unrolls one step per member (each with its own arguments)
      inside the compiled call; 'vmap' maps member 0's step over the member
      axis, so members differ only in values: those held in the state
      (seed, the learning rate in the optimizer state) and ``hparams``
      (``config.VMAP_VARIABLE_KEYS``).
    hparams: 'vmap' only: ``{name: f32[members]}`` mapped with the state;
      ``label_smoothing`` replaces member 0's, and the whole dict reaches
      ``penalty_with``.
    penalty_with: 'vmap' only: ``(params, hparams) -> penalty``, replacing
      member 0's ``penalty_fn`` (per-member l1/l2 as traced values).
    pmap: False runs on one device under jit (``--debug_nans``).
    donate_state: as in :func:`make_train_step`.
    stacked: as in :func:`make_train_step`: batches ``[K, members, devices,
      ...]``, metrics ``[K, members]``.
    gather, arrays: as in :func:`make_train_step`; the rows are
      ``[members, devices, per_device]`` (each member its own order).

  Returns:
    ``step(state, batch) -> (state, metrics)``.
  """
  steps = [_per_device_step(m["model"], m["tx"],
                            m.get("penalty_fn", lambda params: 0.0),
                            m.get("project_fn", lambda params: params),
                            m.get("label_smoothing", 0.0)) for m in members]
  if mode not in ("loop", "vmap"):
    raise ValueError(f"mode must be 'loop' or 'vmap', got {mode!r}.")

  def one_of_many(state, batch, hp):
    """Member 0's step with the member's traced hyperparameters."""
    m = members[0]
    penalty = ((lambda p: penalty_with(p, hp)) if penalty_with is not None
               else m.get("penalty_fn", lambda params: 0.0))
    return _per_device_step(
        m["model"], m["tx"], penalty, m.get("project_fn", lambda params: params),
        hp.get("label_smoothing", m.get("label_smoothing", 0.0)))(state, batch)

  def per_device_population(state, batch):
    if mode == "vmap":
      if not hparams and penalty_with is None:
        return jax.vmap(steps[0])(state, batch)
      return jax.vmap(one_of_many)(state, batch, dict(hparams or {}))
    outs = [step(jax.tree.map(lambda x, i=i: x[i], state),
                 jax.tree.map(lambda x, i=i: x[i], batch))
            for i, step in enumerate(steps)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

  fn, batch_axis, consts = _many_steps(per_device_population, 1, stacked, gather)
  donate = (0,) if donate_state and jax.process_count() == 1 else ()
  if not pmap:
    return _bound(_single_device(fn, donate, batch_axis, consts), arrays, consts)
  return _bound(_data_parallel(fn, donate, batch_axis, consts), arrays, consts)


def _per_device_step(model, tx, penalty_fn, project_fn, label_smoothing):
  """One device's train step: the function :func:`make_train_step` compiles."""

  def per_device_step(state: TrainState, batch: Batch):
    # A distinct dropout key per step and per device, reproducible on resume.
    rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step),
                             jax.lax.axis_index(AXIS))

    def loss_fn(params):
      variables = _variables(params, state.batch_stats)
      mutable = ["batch_stats"] if state.batch_stats else False
      out = model.apply(variables, batch["image"], train=True,
                        rngs={"dropout": rng}, mutable=mutable)
      logits, new_model_state = out if mutable else (out, {})
      data_loss = cross_entropy(logits, batch["label"], label_smoothing).mean()
      total = data_loss + penalty_fn(params)
      return total, (data_loss, logits, new_model_state)

    scaled = precision.scales_loss(state.loss_scale)
    if scaled:
      # float16 (jaxcnn.precision): the gradients come back unscaled and
      # averaged over the axis, so every device sees the same ``finite``.
      loss_scale, finite, (loss, (data_loss, logits, new_model_state)), grads = (
          state.loss_scale.value_and_grad(loss_fn, has_aux=True, axis_name=AXIS)(
              state.params))
    else:
      (loss, (data_loss, logits, new_model_state)), grads = jax.value_and_grad(
          loss_fn, has_aux=True)(state.params)
      grads = collectives.pmean(grads, AXIS)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = project_fn(optax.apply_updates(state.params, updates))
    # BatchNorm with axis_name already averaged the batch statistics; the
    # pmean makes the replica-equality that out_axes=None relies on explicit.
    batch_stats = collectives.pmean(
        new_model_state.get("batch_stats", state.batch_stats), AXIS)
    # Keras' reported loss includes the regularization penalty (the
    # parameters' before this update); the cross-entropy alone is data_loss.
    metrics = {
        "loss": loss,
        "data_loss": data_loss,
        "accuracy": correct(logits, batch["label"]).mean(),
        "grad_norm": optax.tree.norm(grads),
    }
    if scaled:
      params, opt_state, batch_stats, metrics = _skip_unless_finite(
          finite, state, (params, opt_state, batch_stats), metrics, loss_scale)
    metrics = collectives.pmean(metrics, AXIS)
    new_state = state.replace(step=state.step + 1, params=params,
                              batch_stats=batch_stats, opt_state=opt_state)
    if scaled:
      new_state = new_state.replace(loss_scale=loss_scale)
    return new_state, metrics

  return per_device_step


def make_batch_stats_step(model: flax.linen.Module, *, pmap: bool = True):
  """Builds the compiled step that returns one batch's BatchNorm statistics.

  ``model`` runs in train mode (batch statistics, dropout on, as during
  training) and should be built with ``axis_name='batch'`` and BatchNorm
  momentum 0, so that its updated ``batch_stats`` are the global batch's
  mean and (biased) variance themselves (``jaxcnn.precise_bn``). Nothing
  else changes: no gradient, no parameter update.

  Returns:
    ``step(state, batch) -> batch_stats`` (replicated, as ``state.batch_stats``).
  """

  def per_device_stats(state: TrainState, batch: Batch):
    # Dropout masks of their own: the step count folded with a fixed tag.
    rng = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(
        state.rng, state.step), 0x5eed), jax.lax.axis_index(AXIS))
    _, new_model_state = model.apply(
        _variables(state.params, state.batch_stats), batch["image"], train=True,
        rngs={"dropout": rng}, mutable=["batch_stats"])
    return collectives.pmean(new_model_state["batch_stats"], AXIS)

  if not pmap:
    return _single_device(per_device_stats)
  return _data_parallel(per_device_stats)


def _skip_unless_finite(finite, state, updated, metrics, loss_scale):
  """float16's skipped step: the old values where the gradients overflowed.

  The step still counts (the data order and dropout keys follow it). Its
  ``grad_norm`` is 0, no gradient having been applied, unless the scale was
  already at its floor (``precision.MIN_LOSS_SCALE``): then the non-finite
  norm is kept and the NaN stop fires (divergence, not overflow from scaling).
  """
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
  params, opt_state, batch_stats = keep(
      updated, (state.params, state.opt_state, state.batch_stats))
  at_floor = state.loss_scale.scale <= state.loss_scale.minimum_scale
  grad_norm = jnp.where(finite | at_floor, metrics["grad_norm"], 0.0)
  metrics = {**metrics, "grad_norm": grad_norm, "loss_scale": loss_scale.scale}
  return params, opt_state, batch_stats, metrics


def flip_averaged_logits(logits: jax.Array, flipped_logits: jax.Array) -> jax.Array:
  """Logits whose probabilities are the mean of the two predictions' ones.

  Softmax models: ``log((softmax(a) + softmax(b)) / 2)`` (already normalized,
  so softmax of it gives the mean back). 1-unit sigmoid models: the logit of
  ``(sigmoid(a) + sigmoid(b)) / 2``. Computed in log space: no overflow.
  """
  log2 = jnp.log(2.0).astype(logits.dtype)
  if logits.shape[-1] == 1:
    log_p = jnp.logaddexp(jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(flipped_logits))
    log_q = jnp.logaddexp(jax.nn.log_sigmoid(-logits), jax.nn.log_sigmoid(-flipped_logits))
    return log_p - log_q
  return jnp.logaddexp(jax.nn.log_softmax(logits), jax.nn.log_softmax(flipped_logits)) - log2


def make_eval_step(model: flax.linen.Module, *, pmap: bool = True,
                   test_time_flip: bool = False):
  """Builds the compiled eval step returning sums over the masked examples.

  The batch carries ``mask`` (False on padding) so that every example of the
  split counts exactly once: sums, not means, are reduced over devices.

  Args:
    model: the linen module (inference mode).
    pmap: False runs on one device under jit (``--debug_nans``).
    test_time_flip: predict with the mean probabilities of each image and its
      left-right mirror (test-time augmentation; twice the forward passes).
  """

  def per_device_eval(state: TrainState, batch: Batch):
    variables = _variables(state.params, state.batch_stats)
    logits = model.apply(variables, batch["image"], train=False)
    if test_time_flip:
      mirrored = model.apply(variables, batch["image"][:, :, ::-1, :], train=False)
      logits = flip_averaged_logits(logits, mirrored)
    mask = batch["mask"].astype(jnp.float32)
    sums = {
        "loss": (cross_entropy(logits, batch["label"]) * mask).sum(),
        "correct": (correct(logits, batch["label"]) * mask).sum(),
        "count": mask.sum(),
    }
    return collectives.psum(sums, AXIS)

  if not pmap:
    return _single_device(per_device_eval)
  return _data_parallel(per_device_eval)


def _data_parallel(per_device_fn, donate_argnums=(), batch_axis=0, consts=0):
  """``jax.pmap(per_device_fn, in_axes=(None, 0), out_axes=None)``, called cheaply.

  JAX (0.10) implements ``pmap`` as ``jit`` of ``shard_map`` over a mesh of
  the devices that the batch's leading axis spans. In one process this builds
  that same program directly, once per device count, and calls the jitted
  function: pmap's per-call Python argument handling (flattening, axis and
  donation bookkeeping, a cache lookup) cost 40-90 us a call, 14% of an epoch
  of lecture 004's MLP at batch 32 (paired A/B, BENCHMARKS.md). With several
  processes this is ``jax.pmap`` itself, which turns the host-local batches
  into global arrays.

  ``batch_axis`` is the batch's device axis (1 for a population's
  ``[members, devices, ...]`` batches). ``consts`` more arguments follow the
  batch, replicated like the state (device-resident training data).
  """
  if jax.process_count() > 1:
    return jax.pmap(per_device_fn, axis_name=AXIS,
                    in_axes=(None, batch_axis) + (None,) * consts,
                    out_axes=None, donate_argnums=donate_argnums)

  def per_shard(state, batch, *rest):
    # Each device's block keeps the mapped axis (size 1); pmap drops it.
    return per_device_fn(state, jax.tree.map(
        lambda x: jnp.squeeze(x, batch_axis), batch), *rest)

  @functools.cache
  def compiled_for(num_devices: int):
    devices = jax.local_devices()
    if not 1 <= num_devices <= len(devices):
      raise ValueError(
          f"The batch's leading (device) axis has size {num_devices}, but "
          f"there are {len(devices)} local devices: shape batches as "
          "[devices, per_device_batch, ...] (jaxcnn.data does).")
    mesh = batch_mesh(devices[:num_devices])
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    split = jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec(*(None,) * batch_axis, AXIS))
    program = jax.shard_map(
        per_shard, mesh=mesh,
        in_specs=(replicated.spec, split.spec) + (replicated.spec,) * consts,
        out_specs=replicated.spec, check_vma=False)
    return jax.jit(program, in_shardings=(replicated, split) + (replicated,) * consts,
                   out_shardings=replicated, donate_argnums=donate_argnums)

  def for_batch(batch):
    return compiled_for(jax.tree.leaves(batch)[0].shape[batch_axis])

  def call(state, batch, *rest):
    return for_batch(batch)(state, batch, *rest)

  call.lower = lambda state, batch, *rest: for_batch(batch).lower(state, batch, *rest)
  call.compiled_for_batch = for_batch
  return call


def replicate(tree: Any, num_devices: int | None = None) -> Any:
  """``tree`` placed as the single-process data-parallel steps return their state.

  A compiled step's outputs are replicated over the batch mesh, and JAX's
  array types carry that mesh: a state fresh from ``init`` or a restore (one
  device, no mesh) would make the step's second call compile it again, for
  the state the first call returned. Placing the state first keeps it to
  one compilation per run. With several processes (``jax.pmap``, which
  reshards its inputs) or under ``--debug_nans`` (the one-device path) the
  tree is returned unchanged.

  Args:
    tree: a pytree of arrays (a TrainState, a population's stacked state).
    num_devices: the devices the batches span; default all local devices.
  """
  if jax.process_count() > 1 or jax.config.jax_debug_nans:
    return tree
  devices = jax.local_devices()[:num_devices or jax.local_device_count()]
  return jax.device_put(tree, jax.sharding.NamedSharding(
      batch_mesh(devices), jax.sharding.PartitionSpec()))


def _single_device(per_device_fn, donate_argnums=(), batch_axis=0, consts=0):
  """Runs a per-device function on one device over the flattened batch."""
  a = batch_axis

  @functools.partial(jax.jit, donate_argnums=donate_argnums)
  def step(state, batch, *rest):
    flat = jax.tree.map(lambda x: x.reshape(x.shape[:a] + (1, -1) + x.shape[a + 2:]),
                        batch)
    # out_axes=0, then the one member: reductions over a one-member axis are
    # skipped (jaxcnn.collectives), so outputs may still carry the axis.
    fn = jax.vmap(per_device_fn, in_axes=(None, a) + (None,) * consts, out_axes=0,
                  axis_name=AXIS)
    return jax.tree.map(lambda x: x[0], fn(state, flat, *rest))

  return step
