"""The throughput benchmark: it runs, its JSON holds what BENCHMARKS.md reads.

No timing is asserted (the machine is shared and noisy); what is asserted is
what the numbers rest on: the Keras twin is the same model as jaxcnn's (same
parameter counts), XLA's FLOP count is the lecture model's, and the numpy
feeder used where TensorFlow is missing yields jaxcnn's own batches.
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "benchmarks")
sys.path.insert(0, BENCH_DIR)

import bench_throughput  # noqa: E402  pylint: disable=g-import-not-at-top
import throughput_workloads as wl  # noqa: E402  pylint: disable=g-import-not-at-top
import throughput_keras  # noqa: E402  pylint: disable=g-import-not-at-top
import throughput_worker  # noqa: E402  pylint: disable=g-import-not-at-top

FASHION_MNIST_MIRROR = wl.DEFAULT_MIRROR_DIR  # $JAXCNN_MIRROR_DIR or Debian's path


def test_smoke_run_writes_the_expected_json(tmp_path, fashion_mnist_data_dir):
  out = tmp_path / "throughput.json"
  results = bench_throughput.main([
      "--models", "mlp_dropout", "--frameworks", "jaxcnn,keras-tensorflow",
      "--steps", "2", "--rounds", "2", "--feeds", "device_k2",
      # --precision: one more jaxcnn worker per precision, in the same rounds.
      "--precision", "float32,float16", "--data-dir", FASHION_MNIST_MIRROR,
      "--tfds-data-dir", fashion_mnist_data_dir, "--log-dir", str(tmp_path / "logs"),
      "--out", str(out)])
  saved = json.loads(out.read_text())
  assert saved["models"].keys() == results["models"].keys() == {"mlp_dropout"}
  assert saved["platform"] in ("cpu", "gpu") and saved["rounds"] == 2
  m = saved["models"]["mlp_dropout"]
  assert not m["errors"]
  rows = {(r["framework"], r["item"]): r for r in m["rows"]}
  assert set(rows) >= {("jaxcnn", "e2e"), ("jaxcnn", "pipeline"), ("jaxcnn", "step"),
                       ("jaxcnn", "e2e_device_k2"), ("keras-tensorflow", "e2e"),
                       ("jaxcnn[float16]", "e2e"), ("jaxcnn[float16]", "step")}
  assert {fw: info["precision"] for fw, info in m["frameworks"].items()
          if fw.startswith("jaxcnn")} == {"jaxcnn": "float32", "jaxcnn[float16]": "float16"}
  assert m["ratios"]["jaxcnn[float16]/jaxcnn"]["median"] > 0
  assert bench_throughput.item_name("e2e_device_k2") == (
      "end to end, device data, 2 steps/call")
  assert m["ratios"]["jaxcnn:e2e_device_k2/e2e"]["median"] > 0
  for row in rows.values():
    s = row["images_per_second"]
    assert len(s["rounds"]) == 2 and 0 < s["min"] <= s["median"] <= s["max"]
  for key in [("jaxcnn", "e2e"), ("jaxcnn", "step"), ("jaxcnn", "e2e_device_k2"),
              ("keras-tensorflow", "e2e")]:
    assert 0 < rows[key]["fraction_of_peak"] < 1
  assert "fraction_of_peak" not in rows[("jaxcnn", "pipeline")]
  ratio = m["ratios"]["jaxcnn/keras-tensorflow"]
  assert len(ratio["rounds"]) == 2 and ratio["median"] > 0
  # Lecture 004's MLP in both frameworks: 784*300+300 + 300*100+100 + 100*10+10.
  assert m["frameworks"]["jaxcnn"]["params"] == 266_610
  assert m["frameworks"]["keras-tensorflow"]["params"] == 266_610
  assert m["frameworks"]["keras-tensorflow"]["backend"] == "tensorflow"
  assert m["frameworks"]["jaxcnn"]["pipeline"].startswith("jaxcnn.data")
  # Matmuls: forward 2 * 266,000 = 0.53 MFLOP/image, the kernel gradients as
  # much again, input gradients of the two upper layers 0.06: ~1.13 MFLOP
  # plus elementwise work (dropout, elu, softmax, Nadam).
  assert 1.1e6 < m["flops_per_image"] < 1.6e6
  assert saved["matmul_peak_gflops"] > 0
  assert m["images_per_round"] == 2 * 32


@pytest.mark.parametrize("name", ["mnist_cnn", "cnn_small_bn", "cats_dogs_cnn"])
def test_keras_twin_has_jaxcnn_parameter_counts(name):
  import keras  # pylint: disable=g-import-not-at-top
  from jaxcnn import models  # pylint: disable=g-import-not-at-top
  from jaxcnn.models import specs  # pylint: disable=g-import-not-at-top
  workload = wl.get(name)
  model = models.create(name, num_classes=workload.num_classes)
  summary = models.summary(model, workload.image_shape)
  keras.backend.clear_session()
  twin = keras.Sequential([keras.Input(workload.image_shape)] + [
      throughput_keras.keras_layer(keras, specs.to_config(s)) for s in model.layers])
  assert twin.count_params() == summary.total
  assert [l.name for l in twin.layers] == list(model.layer_names)
  assert twin.layers[-1].units == (1 if name == "cats_dogs_cnn" else 10)


def test_keras_translation_refuses_what_it_cannot_translate():
  import keras  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="kernel_regularizer"):
    throughput_keras.keras_layer(keras, {"type": "dense", "name": "d", "units": 3,
                                          "kernel_regularizer": {"l2": 1e-4}})
  with pytest.raises(ValueError, match="no Keras translation"):
    throughput_keras.keras_layer(keras, {"type": "locally_connected2d", "name": "l"})


def test_numpy_feeder_matches_jaxcnn_pipeline(fashion_mnist_data_dir):
  from jaxcnn import data as data_lib  # pylint: disable=g-import-not-at-top
  workload = wl.get("mlp_dropout")  # per-pixel standardization: the hard case
  steps, batch = 4, 32
  config = wl.jaxcnn_config(workload, steps, FASHION_MNIST_MIRROR, batch)
  config.dataset.data_dir = fashion_mnist_data_dir
  data = data_lib.create(config.dataset, global_batch_size=batch, seed=0,
                         num_local_devices=2)
  # The pipeline's own training part, back to uint8, feeds the numpy feeder.
  x, labels = data.as_numpy("train")
  uint8 = np.rint((x * data.info.std + data.info.mean) * 255).astype(np.uint8)
  feeder = throughput_worker.NumpyFeeder(uint8, labels, workload.normalization, batch,
                                         num_devices=2, seed=0)
  assert feeder.steps_per_epoch == data.steps_per_epoch == steps
  for epoch in (0, 3):
    ours = list(feeder.train_epoch(epoch))
    theirs = list(data.train_epoch(epoch))
    assert len(ours) == len(theirs) == steps
    for a, b in zip(ours, theirs):
      assert a["image"].shape == b["image"].shape == (2, 16, 28, 28, 1)
      np.testing.assert_array_equal(a["label"], b["label"])
      np.testing.assert_allclose(a["image"], b["image"], rtol=1e-5, atol=1e-4)
  # What the Keras workers train on: the same part, normalized the same way.
  np.testing.assert_allclose(feeder.as_numpy()[0], x, rtol=1e-5, atol=1e-4)


def test_random_workload_examples_are_uint8_of_its_shape():
  images, labels = wl.uint8_examples(wl.get("cats_dogs_cnn"), 5, mirror_dir="/nonexistent")
  assert images.shape == (5, 150, 150, 3) and images.dtype == np.uint8
  assert set(labels.tolist()) <= {0, 1}


def test_bad_arguments_name_the_valid_ones():
  with pytest.raises(ValueError, match="mnist_cnn"):
    wl.get("resnet50")
  with pytest.raises(ValueError, match="NAME:VAR=VALUE"):
    bench_throughput.parse_variant("no_assignment")
  assert bench_throughput.parse_variant("fast:XLA_FLAGS=--a=1;FOO=2") == (
      "jaxcnn[fast]", {"XLA_FLAGS": "--a=1", "FOO": "2"})
  with pytest.raises(SystemExit):
    bench_throughput.main(["--frameworks", "keras-cntk"])


