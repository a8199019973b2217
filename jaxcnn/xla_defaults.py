"""XLA:CPU flags jaxcnn sets by default, before JAX starts its backend.

XLA reads ``XLA_FLAGS`` once, when JAX creates its first backend (the first
computation, not ``import jax``), so setting it at ``import jaxcnn`` is in
time unless the process already ran JAX code; then the defaults simply do
not apply and nothing breaks.

The one default today: XLA's own convolution emitter instead of YNNPACK's
convolutions, which jaxlib 0.10 uses on CPU: YNNPACK's kernel gradient of a
small-image convolution (a convolution whose window is the whole image) is
slow there, and XLA's emitter makes the lectures' CNN steps faster
(BENCHMARKS.md has the profile and the figures). The result is the same
convolution (float rounding aside).

XLA aborts the process on a flag it does not know, so the flag is only added
for the jaxlib releases it was verified with, and never where the user
already chose (``--xla_cpu_experimental_ynn_fusion_type`` in ``XLA_FLAGS``)
or opted out (``JAXCNN_XLA_DEFAULTS=0``).
"""

from __future__ import annotations

import importlib.metadata
import os

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
XLA_CONVOLUTIONS = f"{YNN_FLAG}=-individual_convolution"
# jaxlib releases where the flag exists and XLA's emitter was measured faster.
VERIFIED_JAXLIB = ("0.10.",)


def _jaxlib_version() -> str:
  try:
    return importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return ""


def flags_to_add(environ: os._Environ | dict[str, str] | None = None,
                 jaxlib_version: str | None = None) -> list[str]:
  """The default flags that apply to this environment.

  Args:
    environ: the environment to read (default ``os.environ``).
    jaxlib_version: the installed jaxlib version (default: looked up).

  Returns:
    Flags to append to ``XLA_FLAGS`` (possibly none).
  """
  environ = os.environ if environ is None else environ
  if environ.get("JAXCNN_XLA_DEFAULTS", "1").strip().lower() in ("0", "false", "no"):
    return []
  version = _jaxlib_version() if jaxlib_version is None else jaxlib_version
  if not version.startswith(VERIFIED_JAXLIB):
    return []
  if YNN_FLAG in environ.get("XLA_FLAGS", ""):
    return []
  return [XLA_CONVOLUTIONS]


def apply(environ: os._Environ | dict[str, str] | None = None) -> list[str]:
  """Appends :func:`flags_to_add` to ``XLA_FLAGS``; returns what was added."""
  environ = os.environ if environ is None else environ
  added = flags_to_add(environ)
  if added:
    environ["XLA_FLAGS"] = " ".join([environ.get("XLA_FLAGS", ""), *added]).strip()
  return added
