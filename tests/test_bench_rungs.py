"""The rung benchmark: it times jaxcnn's own train step, and claims read its JSON.

No timing is asserted (the machine is shared): what is asserted is that the
timed step is the one ``jaxcnn.train`` runs (its first call ends where
``train.train_and_evaluate``'s first step ends, and XLA counts fewer FLOPs
for the rungs that downsample), and that ``jaxcnn.claims`` judges a speed
claim from the JSON the benchmark writes.
"""

import json
import os
import sys

import jax
import numpy as np
import pytest

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "benchmarks")
sys.path.insert(0, BENCH_DIR)

import bench_rungs  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxcnn import claims  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxcnn import ladder as ladder_lib  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxcnn import train  # noqa: E402  pylint: disable=g-import-not-at-top

# A ladder of three tiny lecture-000 networks on 20 real digits (one batch):
# no downsampling, 2x2 max-pooling per block, stride-2 convolutions.
LADDER = '''
from jaxcnn import config as config_lib

MEMBERS = {{"plain": "none", "maxpool": "max_pool", "strides": "strides"}}


def get_ladder(options=""):
  return list(MEMBERS)


def get_config(arg="plain"):
  member = arg.split(",")[0]
  c = config_lib.defaults()
  c.dataset.name = "sklearn_digits"
  c.dataset.data_dir = {data_dir!r}
  c.dataset.num_train_examples = 40
  c.dataset.validation_split = 20
  c.dataset.num_test_examples = 20
  c.dataset.normalization = "rescale"
  c.model.name = "cifar_cnn"
  c.model.filters = (4, 8)
  c.model.dense_units = (16,)
  c.model.downsample = MEMBERS[member]
  c.model.dropout_rate = 0.25
  c.optimizer.name = "adam"
  c.training.batch_size = 20
  c.training.num_epochs = 1
  c.training.progress_bar = False
  return c
'''


@pytest.fixture
def tiny_ladder(tmp_path, digits_dir):
  path = tmp_path / "tiny_ladder.py"
  path.write_text(LADDER.format(data_dir=digits_dir))
  return str(path)


def test_quick_run_writes_a_json_that_claims_judge(tmp_path, tiny_ladder):
  out = tmp_path / "claims" / "bench" / "pooling.json"
  result = bench_rungs.main([f"--config_file={tiny_ladder}", "--members=plain,maxpool,strides",
                             "--quick", f"--out={out}"])
  saved = json.loads(out.read_text())
  assert saved["members"].keys() == result["members"].keys() == {"plain", "maxpool", "strides"}
  assert saved["rounds"] == 2 and saved["steps"] == 2 and saved["jax"] == jax.__version__
  assert saved["command"].startswith("python benchmarks/bench_rungs.py --config_file=")
  assert isinstance(saved["cpu"]["flags"], list)
  for m in saved["members"].values():
    s = m["step_seconds"]
    assert len(s["rounds"]) == 2 and 0 < s["min"] <= s["median"] <= s["max"]
    assert m["batch_size"] == 20 and m["image_shape"] == [28, 28, 1]
  assert len(saved["ratios"]) == 6
  r = saved["ratios"]["plain/maxpool"]
  np.testing.assert_allclose(  # per round: the two members' step times of that round
      r["rounds"], np.divide(saved["members"]["plain"]["step_seconds"]["rounds"],
                             saved["members"]["maxpool"]["step_seconds"]["rounds"]))
  # The steps are the models': the downsampling rungs compute less than the plain one.
  flops = {k: m["flops_per_step"] for k, m in saved["members"].items()}
  assert flops["strides"] < flops["maxpool"] < flops["plain"]

  def speed_claim(kind, rungs):
    return claims.Claim("000", "w", "tiny", "cmd", kind, rungs, benchmark="bench/pooling.json",
                        benchmark_command="python benchmarks/bench_rungs.py ...")
  row = claims.evaluate(speed_claim("faster", ("maxpool", "plain")), str(tmp_path / "claims"))
  assert row["verdict"] in (claims.REPRODUCED, claims.NOT_REPRODUCED, claims.INCONCLUSIVE)
  assert "2 interleaved rounds" in row["result"] and "JAX " + jax.__version__ in row["result"]
  assert f"{r['median']:.2f}x" in claims.evaluate(
      speed_claim("as_fast", ("maxpool", "plain")), str(tmp_path / "claims"))["statistic"]
  table = claims.to_markdown([row])
  assert "bench/pooling.json: `python benchmarks/bench_rungs.py ...`" in table
  missing = claims.evaluate(speed_claim("faster", ("maxpool", "other")), str(tmp_path / "claims"))
  assert missing["verdict"] == claims.NOT_RUN and "other" in missing["result"]


def test_the_timed_step_is_the_one_train_runs(tmp_path, tiny_ladder):
  ladder = ladder_lib.load(tiny_ladder, members=["maxpool"])
  rung = bench_rungs.build_rung(ladder, "maxpool", str(tmp_path / "bench"))
  assert rung.steps_per_epoch == 1 and rung.image_shape == (28, 28, 1)
  rung.call(0)  # The benchmark's first (warm-up) call: step 1 of epoch 0.
  config = ladder_lib.member_config(ladder, "maxpool")
  trained, _ = train.train_and_evaluate(config, str(tmp_path / "train"))
  # The same program on the same batch from the same initial state: equal to
  # float rounding (1e-6), dropout masks included (they fold in the step).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
               jax.device_get(rung.state.params), jax.device_get(trained.params))
  assert int(rung.state.step) == int(trained.step) == 1
  before = jax.device_get(rung.state.params)
  rung.call(1)  # Continues from its own state: the parameters move.
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(before), jax.tree.leaves(jax.device_get(rung.state.params))))


def test_bad_members_are_refused(tiny_ladder):
  with pytest.raises(SystemExit):
    bench_rungs.main([f"--config_file={tiny_ladder}", "--members=plain"])
  with pytest.raises(ladder_lib.LadderError, match="Unknown member"):
    bench_rungs.main([f"--config_file={tiny_ladder}", "--members=plain,nope"])
