"""Tiny runs of benchmarks/peers.py, benchmarks/unet_vs_diffusers.py and benchmarks/mfu.py: the models are
built at matched sizes, the harness measures and compares them, and the FLOP count scales with the batch."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = ["--size", "8", "--frames", "2", "--batch", "1", "--steps", "1", "--warmup", "0", "--sample-steps", "1",
        "--videos", "1"]
NEEDS_LUCIDRAINS = pytest.mark.skipif(importlib.util.find_spec("video_diffusion_pytorch") is None,
                                      reason="lucidrains' package comes with the bench extra")


@pytest.fixture(scope="module")
def bench():
    """The benchmark scripts as modules (they import their shared harness from their own folder)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield SimpleNamespace(**{name: importlib.import_module(name)
                                 for name in ("model_timing", "peers", "unet_vs_diffusers", "mfu")})
    finally:
        sys.path.remove(str(BENCHMARKS))


@NEEDS_LUCIDRAINS
def test_peers_are_built_at_matched_parameter_counts(bench):
    args = bench.peers.parse_args(["--json", "unused.json"])
    params = {name: sum(p.numel() for p in bench.peers.build(name, args)[0].parameters())
              for name in bench.peers.LABELS}
    reference = params["kinema_unet"]
    assert {name: round(n / reference, 2) for name, n in params.items() if not 0.9 <= n / reference <= 1.1} == {}
    if importlib.util.find_spec("torchvision") is None:
        assert "torchvision" not in sys.modules  # the stand-in used to import lucidrains' package is gone


@NEEDS_LUCIDRAINS
def test_peers_measures_every_model_on_the_same_inputs_and_compares_to_kinema(bench, monkeypatch, tmp_path):
    timing = bench.model_timing
    monkeypatch.setattr(timing, "in_fresh_process", timing.peak_memory_mb)  # no spawned interpreters in a test
    args = bench.peers.parse_args([*TINY, "--models", "kinema_unet,lucidrains",
                                   "--json", str(tmp_path / "peers.json")])
    results = bench.peers.run(args)
    for name in args.models:
        r = results[name]
        assert r["train_steps_per_s"] > 0 and r["s_per_video"] > 0 and len(r["train_step_s"]) == 1
        assert r["vs_kinema_unet"]["train_speed"] == pytest.approx(
            r["train_steps_per_s"] / results["kinema_unet"]["train_steps_per_s"])
    assert results["kinema_unet"]["vs_kinema_unet"]["video_speed"] == 1
    assert "lucidrains video-diffusion-pytorch Unet3D" in bench.peers.table(results, args.models)


def test_unet_vs_diffusers_builds_both_models_through_the_shared_harness(bench):
    args = SimpleNamespace(diffusers_patch=2)
    x, t = torch.zeros(1, 3, 2, 8, 8), torch.rand(1)
    text, mask = torch.randn(1, 12, 384), torch.ones(1, 12, dtype=torch.bool)
    for name in bench.unet_vs_diffusers.MODELS:
        model, fn = bench.unet_vs_diffusers.build(name, args)
        with torch.no_grad():
            assert fn(x, t, text, mask).shape == x.shape


def test_mfu_tiny_run_counts_flops_that_scale_with_the_batch(bench, tmp_path):
    report = bench.mfu.main(["--tiny", "--json", str(tmp_path / "mfu.json"), "--peak-tflops", "1"])
    (row,) = report["rows"]
    assert row["mfu"] == pytest.approx(row["achieved_tflops"] / 1.0) and row["mfu"] > 0
    assert (tmp_path / "mfu.json").is_file()
    double = bench.mfu.parse_args(["--tiny", "--steps", "1", "--warmup", "0"])
    double.batch = 4
    assert bench.mfu.measure("tiny", False, double)["flops_per_step"] == pytest.approx(2 * row["flops_per_step"],
                                                                                        rel=0.01)
