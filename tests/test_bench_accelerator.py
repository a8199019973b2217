"""The accelerator suite runs (--quick, on CPU) and its JSON holds what BENCHMARKS.md reads.

No timing is asserted (the machine is shared and noisy): what is asserted is
the JSON's structure and sanity, that the MFU is null with a reason where no
peak is known, the peak table's lookups, and that the budget guard skips
items with the reason.
"""

import json
import os
import sys

import pytest

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "benchmarks")
sys.path.insert(0, BENCH_DIR)

import bench_accelerator  # noqa: E402  pylint: disable=g-import-not-at-top
import throughput_workloads as wl  # noqa: E402  pylint: disable=g-import-not-at-top


def test_quick_run_writes_rows_compile_times_and_the_recipe(tmp_path, fashion_mnist_data_dir):
  out = tmp_path / "suite.json"
  results = bench_accelerator.main([
      "--quick", "--groups", "cnn_small_bn,fast_recipe", "--recipe_examples", "640",
      "--data-dir", wl.DEFAULT_MIRROR_DIR, "--tfds-data-dir", fashion_mnist_data_dir,
      "--log-dir", str(tmp_path / "logs"), "--out", str(out)])
  saved = json.loads(out.read_text())
  assert saved["rows"] == json.loads(json.dumps(results["rows"]))
  assert saved["quick"] and saved["platform"] == "cpu" and saved["skipped"] == []
  modes = {(r["precision"], r["mode"]) for r in saved["rows"]}
  assert modes == {("float32", m) for m in ("plain", "device", "k2", "device_k2")}
  for r in saved["rows"]:
    assert r["group"] == "cnn_small_bn" and r["batch_size"] == 128
    s = r["images_per_second"]
    assert 0 < s["min"] <= s["median"] <= s["max"]
    assert r["step_ms"] == pytest.approx(1e3 * 128 / s["median"])
    assert r["first_call_seconds"] > 0 and r["compile_seconds"] >= 0
    # XLA's count for lecture 002's CNN at batch 128: ~1.0 MFLOP per image.
    assert 0.5e6 * 128 < r["flops_per_step"] < 2e6 * 128
    assert r["mfu"] is None and r["peak_tflops"] is None
    assert "no peak known" in r["mfu_reason"] and "cpu" in r["mfu_reason"]
    assert (r["ratio_to_plain"] is None) == (r["mode"] == "plain")
  # The plain first call compiles the step: longer than a steady round.
  plain = next(r for r in saved["rows"] if r["mode"] == "plain")
  assert plain["compile_seconds"] > 0
  aot = saved["aot_compile"]["cnn_small_bn"]
  assert aot["lower_seconds"] > 0 and aot["compile_seconds"] > 0
  fast = saved["fast_recipe"]
  assert "skipped" not in fast, fast.get("skipped")
  assert fast["epochs"] == 1 and len(fast["val_accuracy"]) == 1
  assert 0 < fast["train_seconds"] < fast["wall_seconds"]
  assert 0 <= fast["test_accuracy"] <= 1 and not fast["target_expected"]
  assert (fast["val_epoch_reaching_target"] is None) == (fast["val_accuracy"][0] < 0.93)
  table = bench_accelerator.format_table(saved)
  assert "smoke run, not a measurement" in table and "device data, 2 steps/call" in table


def test_spent_budget_skips_every_item_with_the_reason(tmp_path):
  results = bench_accelerator.main(["--quick", "--budget_s", "0",
                                    "--log-dir", str(tmp_path / "logs")])
  assert [s["item"] for s in results["skipped"]] == [
      "mnist_cnn", "cnn_small_bn", "mnist_cnn_1024", "fast_recipe"]
  assert all("budget of 0 s spent" in s["reason"] for s in results["skipped"])
  # Every mode of every group is still listed, marked skipped.
  assert len(results["rows"]) == 4 + 4 + 4
  assert all("budget" in r["skipped"] for r in results["rows"])
  assert {(r["precision"], r["mode"]) for r in results["rows"]
          if r["group"] == "mnist_cnn_1024"} == {
              ("float32", "plain"), ("float32", "device_k2"),
              ("bfloat16", "plain"), ("bfloat16", "device_k2")}
  assert "skipped" in results["fast_recipe"]


@pytest.mark.parametrize("kind,precision,tflops", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.5),
    ("NVIDIA H100 80GB HBM3", "float32", 494.5),
    ("NVIDIA H100 PCIe", "bfloat16", 756.5),
    ("NVIDIA H200", "bfloat16", 989.5),
    ("NVIDIA A100-SXM4-80GB", "float32", 156.0),
    ("TPU v4", "bfloat16", 275.0),
    ("TPU v5 lite", "bfloat16", 197.0),
    ("TPU v5p", "bfloat16", 459.0),
])
def test_peaks_by_device_kind(kind, precision, tflops):
  peak, source = bench_accelerator.peak_flops(kind, precision)
  assert peak == tflops * 1e12 and ("NVIDIA" in source or "Google" in source)


def test_unknown_peaks_are_null_with_the_reason():
  assert bench_accelerator.peak_flops("cpu", "float32")[0] is None
  peak, why = bench_accelerator.peak_flops("TPU v4", "float32")
  assert peak is None and "no float32 peak" in why


def test_unknown_group_names_the_valid_ones():
  with pytest.raises(SystemExit):
    bench_accelerator.main(["--groups", "resnet50"])
