"""The Orbax checkpointer on its own: a real save and restore on disk."""

import logging

import jax.numpy as jnp
import numpy as np

from jaxcnn import checkpoint as checkpoint_lib


def test_restore_returns_the_saved_tree_and_meta_without_orbax_noise(tmp_path, caplog):
  state = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.asarray(7, jnp.int32)}
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(7, state, {"epoch": 1})
  ckpt.close()
  with caplog.at_level(logging.INFO):
    restored, meta = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints")).restore_latest(
        {"w": jnp.zeros((2, 3)), "step": jnp.asarray(0, jnp.int32)})
  np.testing.assert_array_equal(restored["w"], state["w"])
  assert int(restored["step"]) == 7 and meta["epoch"] == 1
  # Orbax looks for a per-item metadata file it never writes and warns on
  # every restore; that warning is filtered, real ones are not.
  assert not [r for r in caplog.records if "Metadata file does not exist" in r.getMessage()]
