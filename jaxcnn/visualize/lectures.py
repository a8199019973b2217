"""Lecture 004's figures: activation functions and optimizer paths.

:func:`plot_activations` draws sigmoid, tanh, ReLU, leaky ReLU, ELU and SELU
with their derivatives, the derivatives taken by ``jax.grad`` of the same
functions the models use (:mod:`jaxcnn.models.activations`).
:func:`plot_optimizer_paths` runs momentum, Nesterov, RMSProp and Adam -- the
house's Keras-semantics optimizers from :mod:`jaxcnn.optim` -- on a 2-D toy
loss and draws their paths over its contours. The data behind each figure has
its own function (:func:`activation_curves`, :func:`optimizer_paths`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from matplotlib.figure import Figure

from jaxcnn.models import activations
from jaxcnn.optim import optimizers
from jaxcnn.visualize._figure import PathLike, finish, new_figure

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu")


def _activation(name: str, leaky_alpha: float, elu_alpha: float) -> Callable[[Any], Any]:
  if name == "leaky_relu":
    return functools.partial(activations.leaky_relu, alpha=leaky_alpha)
  if name == "elu":
    return functools.partial(activations.elu, alpha=elu_alpha)
  return activations.parse(name)


def activation_curves(z: Sequence[float] | np.ndarray, *, names: Sequence[str] = ACTIVATIONS,
                      leaky_alpha: float = 0.2, elu_alpha: float = 1.0
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Each activation and its derivative at the points ``z``.

  Args:
    z: the inputs.
    names: activations of :data:`ACTIVATIONS`.
    leaky_alpha: leaky ReLU's slope for z < 0 (Keras 3's default 0.2; the
      lecture quotes 0.01 as typical, which is hard to see at plot scale).
    elu_alpha: ELU's alpha (1.0: smooth at 0, as the lecture notes).

  Returns:
    name -> (values, derivatives), float32 arrays shaped like ``z``. The
    derivative is ``jax.grad`` of the function; at a kink (z = 0) it is
    whatever JAX's rules give there (e.g. 0.5 for ELU's ``min(z, 0)``).
  """
  unknown = [n for n in names if n not in ACTIVATIONS]
  if unknown:
    raise ValueError(f"unknown activations {unknown}; valid: {ACTIVATIONS}")
  z = jnp.asarray(z, jnp.float32)
  curves = {}
  for name in names:
    f = _activation(name, leaky_alpha, elu_alpha)
    # grad of a scalar function, mapped over the points (each z on its own).
    df = jax.vmap(jax.grad(lambda x, f=f: f(x)))(z.reshape(-1)).reshape(z.shape)
    curves[name] = (np.asarray(f(z)), np.asarray(df))
  return curves


def plot_activations(*, z_range: tuple[float, float] = (-4.0, 4.0), num: int = 401,
                     leaky_alpha: float = 0.2, elu_alpha: float = 1.0,
                     path: PathLike | None = None, dpi: int = 100) -> Figure:
  """Lecture 004's activation functions (left) and their derivatives (right).

  Args:
    z_range: the inputs drawn.
    num: points drawn.
    leaky_alpha: see :func:`activation_curves`.
    elu_alpha: see :func:`activation_curves`.
    path: where to save the PNG, if anywhere.
    dpi: pixels per inch; the PNG is 11x4.5 inches.

  Returns:
    The Figure.
  """
  z = np.linspace(*z_range, num)
  curves = activation_curves(z, leaky_alpha=leaky_alpha, elu_alpha=elu_alpha)
  fig = new_figure(11.0, 4.5, dpi)
  ax_f, ax_df = fig.subplots(1, 2)
  for name, (values, grads) in curves.items():
    ax_f.plot(z, values, label=name)
    ax_df.plot(z, grads, label=name)
  for ax, title in ((ax_f, "activation"), (ax_df, "derivative (jax.grad)")):
    ax.axhline(0, color="k", linewidth=0.5)
    ax.axvline(0, color="k", linewidth=0.5)
    ax.set_xlabel("z")
    ax.set_title(title)
    ax.legend(fontsize="small")
  return finish(fig, path)


# 2-D toy losses: an elongated bowl (steep in y, flat in x, where plain
# gradient descent zigzags) and Rosenbrock's curved valley, minimum at (1, 1).
TOY_LOSSES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "bowl": lambda p: 0.05 * p[0] ** 2 + p[1] ** 2,
    "rosenbrock": lambda p: (1.0 - p[0]) ** 2 + 10.0 * (p[1] - p[0] ** 2) ** 2,
}
TOY_STARTS = {"bowl": (-4.0, 1.5), "rosenbrock": (-1.5, 2.0)}

# label -> optimizer config (jaxcnn.optim names, Keras hyperparameters). The
# rates are larger than Keras' defaults so that each path gets somewhere in a
# few hundred steps on these small problems.
OPTIMIZER_PATHS: dict[str, dict[str, Any]] = {
    "momentum": dict(name="sgd", learning_rate=0.01, momentum=0.9),
    "nesterov": dict(name="sgd", learning_rate=0.01, momentum=0.9, nesterov=True),
    "rmsprop": dict(name="rmsprop", learning_rate=0.01, rho=0.9),
    "adam": dict(name="adam", learning_rate=0.05),
}


def toy_optimizer(config: Mapping[str, Any]) -> optax.GradientTransformation:
  """The house optimizer of ``config`` (``{'name': 'adam', ...}``), fixed rate."""
  hp = optimizers.resolve(config["name"], {k: v for k, v in config.items() if k != "name"})
  # Keras keeps a velocity only when momentum > 0; optim.create decides the same.
  return optimizers.build(config["name"], hp["learning_rate"], hp,
                          use_momentum=hp.get("momentum", 0.0) > 0)


def _loss_fn(loss: str | Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
  if callable(loss):
    return loss
  if loss not in TOY_LOSSES:
    raise ValueError(f"unknown toy loss {loss!r}; valid: {sorted(TOY_LOSSES)}")
  return TOY_LOSSES[loss]


def optimizer_path(loss: str | Callable[[jax.Array], jax.Array],
                   config: Mapping[str, Any], start: Sequence[float], steps: int) -> np.ndarray:
  """The points one optimizer visits on a 2-D loss.

  Args:
    loss: a name of :data:`TOY_LOSSES` or a function of a ``(2,)`` array.
    config: an optimizer config, e.g. ``{'name': 'sgd', 'momentum': 0.9}``.
    start: the starting point.
    steps: updates to take.

  Returns:
    float32 array ``(steps + 1, 2)``: the start, then the point after each update.
  """
  fn = _loss_fn(loss)
  tx = toy_optimizer(config)
  p0 = jnp.asarray(start, jnp.float32)

  def step(carry, _):
    p, opt_state = carry
    updates, opt_state = tx.update(jax.grad(fn)(p), opt_state, p)
    p = optax.apply_updates(p, updates)
    return (p, opt_state), p

  _, points = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), length=steps))(p0)
  return np.concatenate([np.asarray(p0)[None], np.asarray(points)])


def optimizer_paths(loss: str | Callable[[jax.Array], jax.Array] = "bowl", *,
                    configs: Mapping[str, Mapping[str, Any]] | None = None,
                    start: Sequence[float] | None = None,
                    steps: int = 200) -> dict[str, np.ndarray]:
  """:func:`optimizer_path` for each of ``configs`` (default :data:`OPTIMIZER_PATHS`)."""
  if start is None:
    if not isinstance(loss, str):
      raise ValueError("give start for a loss function of your own")
    start = TOY_STARTS[loss] if loss in TOY_STARTS else (0.0, 0.0)
  configs = OPTIMIZER_PATHS if configs is None else configs
  return {label: optimizer_path(loss, cfg, start, steps) for label, cfg in configs.items()}


def plot_optimizer_paths(loss: str | Callable[[jax.Array], jax.Array] = "bowl", *,
                         configs: Mapping[str, Mapping[str, Any]] | None = None,
                         start: Sequence[float] | None = None, steps: int = 200,
                         path: PathLike | None = None, dpi: int = 100) -> Figure:
  """Paths of momentum, Nesterov, RMSProp and Adam over a toy loss's contours.

  Args:
    loss: see :func:`optimizer_path`.
    configs: label -> optimizer config; default :data:`OPTIMIZER_PATHS`.
    start: starting point; default :data:`TOY_STARTS` of ``loss``.
    steps: updates per optimizer.
    path: where to save the PNG, if anywhere.
    dpi: pixels per inch; the PNG is 7x5.5 inches.

  Returns:
    The Figure.
  """
  paths = optimizer_paths(loss, configs=configs, start=start, steps=steps)
  fn = _loss_fn(loss)
  points = np.concatenate(list(paths.values()))
  lo, hi = points.min(0), points.max(0)
  margin = 0.1 * np.maximum(hi - lo, 1e-3)
  xs, ys = (np.linspace(lo[i] - margin[i], hi[i] + margin[i], 200) for i in range(2))
  grid = np.stack(np.meshgrid(xs, ys), -1)
  z = np.asarray(jax.vmap(jax.vmap(fn))(jnp.asarray(grid, jnp.float32)))
  fig = new_figure(7.0, 5.5, dpi)
  ax = fig.subplots()
  # Log-spaced levels: the interesting part of a valley is near its floor.
  levels = np.geomspace(max(z.min(), 1e-4), z.max(), 20)
  ax.contour(xs, ys, z, levels=levels, colors="0.7", linewidths=0.7)
  for label, p in paths.items():
    ax.plot(p[:, 0], p[:, 1], ".-", markersize=2, linewidth=1, label=label)
  ax.plot(*points[0], "k*", markersize=10)
  ax.set_xlabel(r"$\theta_1$")
  ax.set_ylabel(r"$\theta_2$")
  ax.set_title(f"{loss if isinstance(loss, str) else 'loss'}: {steps} steps")
  ax.legend(fontsize="small")
  return finish(fig, path)
