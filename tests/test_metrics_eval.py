"""Tests for `kinema eval`: sources, report contents, the feature cache, JSON / Markdown / plot, and the CLI."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from kinema.cli import app
from kinema.evaluation import EvalOptions, evaluate, load_source, markdown_table, write_reports
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
    assert low <= metrics["fvd"]["value"] <= high
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
    assert "warning: FVD" in result.stderr and "too few" in result.stderr  # the same clips: FVD ~ 0
    bad = runner.invoke(app, ["eval", "--real", str(sources / "balls.yaml"), "--fake", str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "error: eval source not found" in bad.output


def test_report_carries_the_split_baseline_and_the_shuffled_time_control(sources):
    from kinema.metrics.controls import split_baseline
    from kinema.metrics.distances import frechet_distance_from_features

    (report,) = evaluate(sources / "balls.yaml", [sources / "reversed"], _options(sources, control_splits=7))
    split = report["controls"]["fvd_real_split"]
    assert split["splits"] == 7 and split["clips_per_half"] == 3
    assert 0 < split["min"] <= split["value"] <= split["max"] and split["std"] > 0
    assert report["real_reference"]["fvd"] == split  # the real column of the fvd row
    shuffled = report["controls"]["fvd_real_vs_shuffled"]["value"]
    assert shuffled > 0
    table = markdown_table([report])
    assert f"| {split['value']:.4g} ± {split['std']:.3g} [" in table
    assert f"shuffled in time: {shuffled:.4g}" in table
    features = np.random.default_rng(0).normal(size=(40, 3))
    assert split_baseline(features, splits=3)["max"] < 1.0 < frechet_distance_from_features(features, features + 1.2)
    assert split_baseline(features[:3])["value"] == "unavailable"


def test_warnings_say_when_sets_are_too_small_or_outside_the_features_domain():
    """Camera moves over photographs (held out from the shipped features' training) against broken copies."""
    from kinema.data.camera import CameraMotion, CameraMotionConfig
    from kinema.metrics.controls import (domain_warnings, separation_warnings, shuffled_control, shuffled_in_time,
                                         split_baseline)
    from kinema.metrics.distances import frechet_distance_from_features
    from kinema.metrics.features import KinemaVideoFeatures

    config = CameraMotionConfig(num_frames=12, size=48, max_pan=2.0)
    real, other = (torch.stack([CameraMotion(config, 24, seed=s)[i]["video"] for i in range(24)]) for s in (0, 1))
    extractor = KinemaVideoFeatures()
    features = extractor.videos(real)
    baseline = split_baseline(features, splits=10)
    control = shuffled_control(features, extractor.videos(shuffled_in_time(real)))
    frozen = frechet_distance_from_features(features, extractor.videos(other[:, :, :1].expand_as(other)))
    assert separation_warnings(frozen, baseline, control, 24) == []  # far beyond real-vs-real, time order seen
    same = frechet_distance_from_features(features, extractor.videos(other))
    assert "too few" in " ".join(separation_warnings(same, baseline, control, 24))
    small = split_baseline(features[:3])
    assert "too few" in separation_warnings(frozen, small, control, 3)[0]

    domain, warnings = domain_warnings(extractor.metadata, tuple(real.shape[1:]), features)
    assert domain["known"] and warnings == []
    noise = torch.rand(12, 3, 12, 48, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    domain, warnings = domain_warnings(extractor.metadata, tuple(noise.shape[1:]), extractor.videos(noise))
    assert domain["fraction_beyond_p99"] > 0.5 and "outside the features' domain" in warnings[0]
    _, warnings = domain_warnings(extractor.metadata, (3, 4, 48, 48), features)
    assert len(warnings) == 1 and "4 frames, outside the 8-16" in warnings[0]
    _, warnings = domain_warnings(extractor.metadata, (3, 12, 480, 640), features)
    assert len(warnings) == 1 and "480x640" in warnings[0]
