"""Mixed precision: the compute dtype and float16's dynamic loss scale.

``training.precision`` (``config.PRECISIONS``) says what the layers compute
in; the model casts its input to that dtype and its logits back to float32
(``models.Sequential.dtype``), and every layer casts its float32 parameters to
its input's dtype, so parameters, optimizer state, BatchNorm statistics
(computed in float32 from the half-precision activations), softmax and the
loss stay float32.

float16's range is narrow (largest 65504, smallest normal 6e-5): small
gradients flush to zero unless the loss is scaled up first. The train step
(``parallel``) does so with Flax's ``DynamicScale`` (the loss times
``scale``, the gradients divided by it, averaged over the devices, then
checked finite). A step with non-finite gradients is skipped (parameters,
optimizer state and BatchNorm statistics unchanged) and the scale halves; the
``training.loss_scale_period``-th finite step in a row doubles it (and starts
the count again). Its state
lives in ``TrainState.loss_scale``, so a checkpoint resumes with the scale it
had; float32 and bfloat16 states hold ``()`` there, which adds nothing to
their pytree (old checkpoints restore, the compiled step is unchanged).

The NaN stop (``train.NonFiniteLossError``) follows one rule for every
precision: a non-finite loss stops the run (the forward pass does not depend
on the scale, so no scaling can explain it), and so do non-finite gradients,
except in a float16 step skipped at a scale above :data:`MIN_LOSS_SCALE`. At
that floor the scale no longer magnifies anything, so overflowing gradients
mean divergence. A skipped step reports ``grad_norm`` 0 (no gradient was
applied) and every float16 step its ``loss_scale``.
"""

from __future__ import annotations

from typing import Any

from flax.training import dynamic_scale
import jax.numpy as jnp

from jaxcnn import config as config_lib

DynamicScale = dynamic_scale.DynamicScale

# The scale never halves below this; non-finite gradients at it stop the run.
MIN_LOSS_SCALE = 1.0

_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def name(config: Any) -> str:
  """``config.training.precision``; 'float32' for configs saved before it existed."""
  return config.get("training", {}).get("precision", "float32")


def compute_dtype(precision: str) -> Any:
  """The dtype layers compute in; None for float32 (the model casts nothing).

  Raises:
    config.ConfigError: an unknown precision, naming the valid ones.
  """
  if precision not in _DTYPES:
    raise config_lib.ConfigError(
        f"training.precision must be one of {', '.join(config_lib.PRECISIONS)}; "
        f"got {precision!r}.")
  return _DTYPES[precision]


def initial_loss_scale(config: Any) -> Any:
  """The ``TrainState.loss_scale`` a run starts with: a ``DynamicScale`` for
  float16 (``training.initial_loss_scale``, ``training.loss_scale_period``),
  ``()`` otherwise."""
  if name(config) != "float16":
    return ()
  t = config.training
  # Flax grows on the finite step that finds ``growth_interval`` finite steps
  # already counted: period - 1 makes the period-th finite step the one.
  return DynamicScale(growth_interval=int(t.loss_scale_period) - 1,
                      fin_steps=jnp.zeros((), jnp.int32),
                      scale=jnp.asarray(t.initial_loss_scale, jnp.float32),
                      minimum_scale=MIN_LOSS_SCALE)


def scales_loss(loss_scale: Any) -> bool:
  """Whether a state's ``loss_scale`` asks the step for dynamic loss scaling."""
  return isinstance(loss_scale, DynamicScale)
