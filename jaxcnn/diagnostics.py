"""Depth diagnostics: how activations and gradients fare through the layers.

Lecture 004 (Glorot & Bengio 2010; Klambauer et al. 2017): with a saturating
activation and a badly scaled initialization the gradients shrink layer by
layer on the way back (vanishing gradients) or grow (exploding); Glorot / He
initialization keeps their variance roughly constant, and SELU with
``lecun_normal`` keeps every layer's outputs near mean 0 / std 1
(self-normalization). :func:`depth_statistics` measures it on one batch, for
every layer with a kernel (Dense, Conv):

* ``activation_mean`` / ``activation_std``: of the layer's output (after its
  activation), over the batch and the units;
* ``activation_grad_mean`` / ``activation_grad_std``: of the gradient of the
  batch's mean loss with respect to that output (the backpropagated signal
  ``dL/da``);
* ``kernel_grad_mean`` / ``kernel_grad_std``: of the gradient with respect to
  the layer's kernel (what the optimizer sees).

The model runs in inference mode (dropout off, BatchNorm on its moving
statistics), one layer at a time (``start``/``stop``), so that a zero
perturbation added to each layer's output gives ``dL/da`` by ``jax.grad``.
The whole is one jitted function, separate from the train step:
``training.depth_diagnostics`` calls it once per epoch on a fixed batch.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import parallel

JSON_FILE = "depth_diagnostics.json"  # a training run's, one row per epoch
STATISTICS = ("activation_mean", "activation_std", "activation_grad_mean",
              "activation_grad_std", "kernel_grad_mean", "kernel_grad_std")


def kernel_layers(model, params: Mapping[str, Any]) -> list[tuple[int, str]]:
  """``(index, name)`` of the layers of ``model`` that hold a kernel, in order."""
  first = getattr(model, "input_layer", 0)
  return [(i, spec.name) for i, spec in enumerate(model.layers)
          if i >= first and "kernel" in params.get(spec.name, {})]


def make_depth_statistics(model) -> Callable[..., dict[str, jax.Array]]:
  """The jitted ``(variables, images, labels) -> {statistic: f32[layers]}``.

  Args:
    model: a ``models.Sequential`` (run layer by layer).

  Returns:
    The function; its statistics are :data:`STATISTICS`, one value per layer
    of :func:`kernel_layers`, in that order.
  """

  @jax.jit
  def stats(variables, images, labels):
    params = variables["params"]
    layers = kernel_layers(model, params)
    first = getattr(model, "input_layer", 0)
    watched = {i for i, _ in layers}

    def loss(params, perturbations):
      a, outputs = images, []
      for i in range(first, len(model.layers)):
        a = model.apply({**variables, "params": params}, a, train=False,
                        start=i, stop=i + 1)
        if i in watched:
          a = a + perturbations[len(outputs)]
          outputs.append(a)
      return parallel.cross_entropy(a, labels).mean(), outputs

    shapes = jax.eval_shape(lambda: loss(params, [0.0] * len(layers))[1])
    zeros = [jnp.zeros(s.shape, s.dtype) for s in shapes]
    (kernel_grads, output_grads), outputs = jax.grad(
        loss, argnums=(0, 1), has_aux=True)(params, zeros)
    out = {k: [] for k in STATISTICS}
    for (_, name), a, g in zip(layers, outputs, output_grads):
      k = kernel_grads[name]["kernel"]
      for prefix, x in (("activation", a), ("activation_grad", g), ("kernel_grad", k)):
        out[f"{prefix}_mean"].append(jnp.mean(x))
        out[f"{prefix}_std"].append(jnp.std(x))
    return {k: jnp.stack(v) for k, v in out.items()}

  return stats


def depth_statistics(model, variables: Mapping[str, Any], images, labels, *,
                     fn: Callable[..., dict[str, jax.Array]] | None = None
                     ) -> dict[str, Any]:
  """The statistics of :func:`make_depth_statistics` as host numpy, with the layer names.

  Args:
    model: a ``models.Sequential``.
    variables: its variables.
    images: a batch ``[N, ...]`` (one example's shape as the model takes).
    labels: ``int32[N]``.
    fn: ``make_depth_statistics(model)``, built once by a caller that calls
      this repeatedly (None: built here).

  Returns:
    ``{'layers': [names], statistic: float64[layers], ...}``.
  """
  fn = fn or make_depth_statistics(model)
  stats = fn(variables, jnp.asarray(images), jnp.asarray(labels))
  out = {k: np.asarray(v, np.float64) for k, v in stats.items()}
  out["layers"] = [name for _, name in kernel_layers(model, variables["params"])]
  return out


def fixed_batch(data, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
  """The first ``size`` examples of the validation split (else of train).

  The same examples every epoch, so the per-epoch statistics compare.
  """
  split = "validation" if data.info.num_validation > 0 else "train"
  images, labels = [], []
  count = 0
  for batch in data.eval_batches(split):
    mask = batch["mask"].reshape(-1)
    shape = batch["image"].shape[2:]
    images.append(batch["image"].reshape(-1, *shape)[mask])
    labels.append(batch["label"].reshape(-1)[mask])
    count += int(mask.sum())
    if count >= size:
      break
  return np.concatenate(images)[:size], np.concatenate(labels)[:size]


def log(writer, stats: Mapping[str, Any], step: int) -> None:
  """Writes every statistic of every layer as ``depth/<layer>/<statistic>``."""
  for i, name in enumerate(stats["layers"]):
    for key in STATISTICS:
      writer.scalar(f"depth/{name}/{key}", float(stats[key][i]), step)


def to_json(stats: Mapping[str, Any]) -> dict[str, Any]:
  """``stats`` as plain lists (the rows of :data:`JSON_FILE`)."""
  return {k: (list(v) if k == "layers" else [float(x) for x in v])
          for k, v in stats.items()}
