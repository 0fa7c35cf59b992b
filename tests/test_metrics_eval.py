"""Tests for `kinema eval`: sources, report contents, the feature cache, JSON / Markdown / plot, and the CLI."""

import json

import pytest
import torch
from typer.testing import CliRunner

from kinema.cli import app
from kinema.evaluation import EvalOptions, evaluate, load_source, write_reports
from kinema.metrics.features import VideoFeatureNet, VideoFeatureNetConfig, save_feature_net
from kinema.video import write_video

DATA_YAML = "data:\n  kind: balls\n  num_frames: 6\n  size: 32\n  min_balls: 1\n  max_balls: 2\n"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    (root / "balls.yaml").write_text(DATA_YAML)
    torch.manual_seed(0)
    save_feature_net(root / "features", VideoFeatureNet(VideoFeatureNetConfig()), {"note": "untrained"})
    options = EvalOptions(num_samples=6)
    real = load_source(root / "balls.yaml", options)
    for name, order in (("same", range(6)), ("reversed", range(5, -1, -1))):
        (root / name).mkdir()
        for i, video in enumerate(real.videos):
            write_video(root / name / f"clip_{i}.mp4", video[:, list(order)], fps=8)
            (root / name / f"clip_{i}.txt").write_text(real.captions[i])
    return root


def _options(root, **overrides):
    values = dict(num_samples=6, features=str(root / "features"), bootstrap=4, kvd_subsets=3,
                  cache_dir=str(root / "cache"))
    return EvalOptions(**{**values, **overrides})


def test_report_has_every_metric_and_says_unavailable_instead_of_inventing(sources):
    (report,) = evaluate(sources / "balls.yaml", [sources / "same"], _options(sources))
    metrics = report["metrics"]
    for name in ("fvd", "kvd", "frame_fid", "flicker", "warping_error", "motion_consistency", "dynamic_degree",
                 "count_constancy", "color_persistence", "physics_plausibility", "psnr", "lpips_t", "clip_sim"):
        assert name in metrics, name
    assert metrics["psnr"]["value"] == "unavailable" and "unpaired" in metrics["psnr"]["reason"]
    assert metrics["clip_sim"]["value"] == "unavailable"
    low, high = metrics["fvd"]["ci95"]
    assert low <= high
    assert metrics["count_constancy"]["value"] == 1.0
    assert report["real_reference"]["count_constancy"]["value"] == 1.0


def test_paired_sets_get_frame_metrics_and_reversed_clips_score_worse(sources):
    same, reversed_ = evaluate(sources / "balls.yaml", [sources / "same", sources / "reversed"],
                               _options(sources, paired=True))
    assert same["metrics"]["psnr"]["value"] > 30.0 > reversed_["metrics"]["psnr"]["value"]
    assert same["metrics"]["ssim"]["value"] > reversed_["metrics"]["ssim"]["value"]
    assert same["metrics"]["target_error"]["value"] < 0.5 < reversed_["metrics"]["target_error"]["value"]
    assert same["metrics"]["fvd"]["value"] < reversed_["metrics"]["fvd"]["value"]


def test_real_features_are_cached_and_reused(sources, monkeypatch):
    options = _options(sources, bootstrap=0)
    first = evaluate(sources / "balls.yaml", [sources / "same"], options)[0]["metrics"]["fvd"]["value"]
    cached = list((sources / "cache").glob("*.npz"))
    assert len(cached) == 1
    import kinema.evaluation as evaluation

    calls = []
    original = evaluation._features
    monkeypatch.setattr(evaluation, "_features", lambda extractor, videos: calls.append(len(videos)) or
                        original(extractor, videos))
    again = evaluate(sources / "balls.yaml", [sources / "same"], options)[0]["metrics"]["fvd"]["value"]
    assert again == pytest.approx(first) and calls == [6]  # only the fake set was featurised


def test_reports_are_written_as_json_markdown_and_a_plot(sources, tmp_path):
    reports = evaluate(sources / "balls.yaml", [sources / "same", sources / "reversed"], _options(sources))
    written = write_reports(reports, tmp_path / "report.json")
    assert [p.suffix for p in written] == [".json", ".md", ".png"]
    assert len(json.loads((tmp_path / "report.json").read_text())) == 2
    table = (tmp_path / "report.md").read_text()
    assert "| fvd (lower is better) |" in table and "unavailable" in table


def test_checkpoint_source_is_sampled_once_per_sampler_steps_count(sources, tiny_config, tmp_path):
    from kinema.models.pretrained import save_pretrained
    from kinema.models.registry import build_model

    config = tiny_config("data.num_frames=6", "data.size=32")
    save_pretrained(tmp_path / "model", build_model(config.model_name, config.model), config, {"step": 7})
    reports = evaluate(sources / "balls.yaml", [tmp_path / "model"],
                       _options(sources, num_samples=2, sampler_steps=[1, 2], bootstrap=0, kvd_subsets=1))
    assert [r["sampler_steps"] for r in reports] == [1, 2] and reports[0]["step"] == 7
    assert reports[0]["shape"] == [3, 6, 32, 32]


def test_cli_eval_writes_the_report_and_reports_bad_input_on_one_line(sources, tmp_path):
    runner = CliRunner()
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["eval", "--real", str(sources / "balls.yaml"), "--fake", str(sources / "same"),
                                 "--out", str(out), "-n", "4", "--bootstrap", "0",
                                 "--features", str(sources / "features")])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["num_samples"] == 4 and out.with_suffix(".md").is_file()
    bad = runner.invoke(app, ["eval", "--real", str(sources / "balls.yaml"), "--fake", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "error: eval source not found" in bad.output
