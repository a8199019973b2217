"""The Orbax checkpointer on its own: a real save and restore on disk."""

import json
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


def test_values_that_do_not_match_their_digest_are_moved_aside_not_loaded(tmp_path, capsys):
  """A flipped bit that still decodes: the SHA-256 saved in meta catches it."""
  directory = str(tmp_path / "checkpoints")
  ckpt = checkpoint_lib.Checkpointer(directory)
  ckpt.save(7, {"w": jnp.arange(6.0)}, {"epoch": 1})
  ckpt.close()
  meta_path = tmp_path / "checkpoints" / "7" / "meta" / "metadata"
  meta = json.loads(meta_path.read_text())
  meta[checkpoint_lib.DIGEST_KEY] = checkpoint_lib.tree_digest({"w": jnp.arange(6.0) + 1})
  meta_path.write_text(json.dumps(meta))
  restored = checkpoint_lib.Checkpointer(directory).restore_latest({"w": jnp.zeros(6)})
  assert restored is None  # No older step to fall back on: a fresh start, nothing loaded.
  assert "checkpoint step 7 is unreadable (CorruptCheckpointError)" in capsys.readouterr().out
  assert len(list((tmp_path / "checkpoints" / "corrupt").glob("7-*"))) == 1
