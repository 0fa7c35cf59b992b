"""Adaptive scene-cut detection on synthetic clips with known cuts (the set of benchmarks/scene_cuts.py)."""

import importlib.util
from pathlib import Path

import numpy as np

from kinema.data.scenes import CutDetector, detect_cuts, split_shots

_spec = importlib.util.spec_from_file_location(
    "scene_cuts", Path(__file__).resolve().parents[1] / "benchmarks" / "scene_cuts.py")
scene_cuts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scene_cuts)


def test_cuts_are_found_and_fades_pans_and_objects_are_not_cuts():
    clips = scene_cuts.synthetic_set(10, seed=0)  # bright / dark, high / low contrast cuts; fades, fast pans, objects
    result = scene_cuts.score(clips, detect_cuts)
    assert result["true cuts"] == 21
    assert result["recall"] >= 0.95 and result["precision"] >= 0.95, result


def test_a_dark_low_contrast_cut_between_quiet_shots_is_found():
    rng = np.random.default_rng(0)  # two night shots whose colours differ little: below any fixed threshold
    frames = np.concatenate([scene_cuts.scene(rng, 20, "dark, low contrast", "none") for _ in range(2)])
    assert scene_cuts.histogram_cuts(frames) == []  # the fixed 0.35 threshold misses it
    assert detect_cuts(frames) == [20]
    for style in scene_cuts.STYLES:  # a fade of the light is no cut, however dark or flat the shot
        assert detect_cuts(scene_cuts.scene(rng, 30, style, "fade")) == []


def test_the_online_detector_reports_each_cut_once_within_its_window_and_the_last_ones_at_the_end():
    rng = np.random.default_rng(1)
    lengths = (12, 12, 12, 2)  # the last cut is two frames before the end
    frames = np.concatenate([scene_cuts.scene(rng, n, "bright, high contrast", "none") for n in lengths])
    detector = CutDetector()
    reported = {}
    for index, rgb in enumerate(frames):
        for cut in detector.update(rgb):
            reported[cut] = index
    assert sorted(reported) == [12, 24]
    assert all(0 <= index - cut <= detector.window for cut, index in reported.items())
    assert detector.finish() == [36]
    assert detect_cuts(frames) == [12, 24, 36]
    assert split_shots(38, [12, 24, 36]) == [(0, 12), (12, 24), (24, 36), (36, 38)]
