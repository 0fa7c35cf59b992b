"""`kinema arch`: a table, JSON, PNG and docs page for chosen variants at one width; the default grid covers every
family of the zoo; bad input is one line."""

import json

import pytest
from typer.testing import CliRunner

from kinema.arch_report import VARIANTS, measure
from kinema.cli import app

TINY = ["--width", "16", "--frames", "4", "--size", "16", "--batch", "1", "--repeats", "1"]


def test_default_grid_covers_every_family_with_valid_configs():
    families = {v.family for v in VARIANTS.values()}
    assert families == {"convolution", "attention", "propagation", "temporal pyramid", "video dit", "inflated 2d"}
    for variant in VARIANTS.values():
        variant.config(32)  # every config is valid at the default width


def test_flops_follow_the_architecture():
    shape = (1, 3, 4, 16, 16)
    results = {name: measure(VARIANTS[name], 16, shape, repeats=1, device="cpu")
               for name in ("unet-factorized", "unet-full3d", "dit-full", "dit-full-pruned", "attn-serial",
                            "attn-joint")}
    assert results["unet-full3d"].parameters > results["unet-factorized"].parameters
    assert results["unet-full3d"].gflops > results["unet-factorized"].gflops
    assert results["dit-full-pruned"].gflops < results["dit-full"].gflops  # same weights, fewer tokens
    assert results["attn-joint"].gflops > results["attn-serial"].gflops  # attention FLOPs are counted on CPU
    assert all(r.step_ms > 0 for r in results.values())
    double = measure(VARIANTS["dit-full"], 16, (2, *shape[1:]), repeats=1, device="cpu")
    assert double.gflops == pytest.approx(2 * results["dit-full"].gflops, rel=1e-6)  # every op scales with the batch
    # activations saved for backward grow with the batch; what does not grow is at most the (saved) weights
    growth = double.activation_mb - results["dit-full"].activation_mb
    assert 0.75 * results["dit-full"].activation_mb < growth <= results["dit-full"].activation_mb
    assert results["dit-full"].activation_mb - growth <= 4 * results["dit-full"].parameters / 2**20


def test_arch_command_writes_table_json_plot_and_docs(tmp_path):
    paths = {k: tmp_path / name for k, name in [("json", "arch.json"), ("plot", "arch.png"), ("md", "arch.md")]}
    result = CliRunner().invoke(app, ["arch", "unet-p3d-c", "dit-factorized", "inflated-frozen-2d", *TINY,
                                      "--json", str(paths["json"]), "--plot", str(paths["plot"]),
                                      "--markdown", str(paths["md"])])
    assert result.exit_code == 0, result.output
    report = json.loads(paths["json"].read_text())
    assert [r["name"] for r in report["results"]] == ["unet-p3d-c", "dit-factorized", "inflated-frozen-2d"]
    assert report["setup"]["input"] == [1, 3, 4, 16, 16]
    frozen = report["results"][2]
    assert frozen["trainable"] < frozen["parameters"]
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["md"].read_text()
    assert "kinema arch unet-p3d-c dit-factorized inflated-frozen-2d --width 16" in page
    assert "| dit-factorized | video dit |" in page and "| dit-factorized | video dit |" in result.output


def test_arch_rejects_unknown_variants_and_bad_sizes_in_one_line(tmp_path):
    for args, needle in [(["no-such-net"], "no-such-net"), (["dit-factorized", "--size", "15"], "dit-factorized")]:
        result = CliRunner().invoke(app, ["arch", *args, "--json", str(tmp_path / "a.json")])
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.exit_code == 2 and len(lines) == 1 and needle in lines[0], result.output

