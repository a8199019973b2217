"""jaxcnn's default XLA:CPU flags: when they are added, and that XLA obeys."""

import importlib.metadata
import os
import subprocess
import sys
import textwrap

import pytest

from jaxcnn import xla_defaults

_FLAG = xla_defaults.XLA_CONVOLUTIONS


@pytest.mark.parametrize("environ, version, expected", [
    ({}, "0.10.2", [_FLAG]),
    ({"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}, "0.10.0", [_FLAG]),
    # The user's own choice wins, whatever its value.
    ({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=default"}, "0.10.2", []),
    ({"JAXCNN_XLA_DEFAULTS": "0"}, "0.10.2", []),
    # Unverified releases: XLA would abort on a flag it does not know.
    ({}, "0.12.0", []),
    ({}, "", []),
])
def test_flags_to_add(environ, version, expected):
  assert xla_defaults.flags_to_add(environ, jaxlib_version=version) == expected


def test_apply_appends_and_keeps_user_flags():
  environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  added = xla_defaults.apply(environ)
  if added:
    assert environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=4 " + _FLAG
  # Applying twice adds nothing more.
  assert xla_defaults.apply(environ) == []


_PROBE = textwrap.dedent("""
    import sys
    if sys.argv[1] == "jaxcnn":
      import jaxcnn  # noqa: F401  (sets XLA_FLAGS before the backend starts)
    import jax, jax.numpy as jnp
    from jax import lax
    def loss(k, x):
      return lax.conv_general_dilated(
          x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()
    args = (jnp.ones((3, 3, 1, 32)), jnp.ones((8, 28, 28, 1)))
    print(jax.jit(jax.grad(loss)).lower(*args).compile().as_text())
""")


@pytest.mark.skipif(
    not importlib.metadata.version("jaxlib").startswith(xla_defaults.VERIFIED_JAXLIB),
    reason="the default applies to verified jaxlib releases only")
def test_importing_jaxcnn_switches_xla_to_its_own_convolutions():
  """Compiled HLO: YNNPACK fusions without jaxcnn, none after `import jaxcnn`."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("XLA_FLAGS", "JAXCNN_XLA_DEFAULTS")}

  def compiled(mode):
    return subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, text=True,
                          capture_output=True, check=True).stdout

  assert "ynn" in compiled("plain")
  assert "ynn" not in compiled("jaxcnn")
