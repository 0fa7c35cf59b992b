"""Trajectory files: objects' curves sampled at every frame, colours from descriptions, resizing, the shipped examples,
and one-line errors naming the file and key for every kind of bad file."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kinema.control.multi_object import min_separation
from kinema.control.trajectory import load_trajectories, read_trajectory_file
from kinema.errors import KinemaError

EXAMPLES = sorted((Path(__file__).parents[1] / "examples" / "trajectories").iterdir())

TWO_BALLS = {
    "size": 32, "num_frames": 8,
    "objects": [
        {"description": "the red ball", "radius": 3.5, "curve": "min_acceleration",
         "points": [[4, 8], [16, 20], [28, 8]], "times": [0, 3, 7]},
        {"description": "a small blue ball", "radius": 3, "curve": "linear", "points": [[28, 28], [4, 28]],
         "times": [2, 5]},
    ],
}


def obj(**changes):
    entry = {**TWO_BALLS["objects"][0], **changes}
    return {k: v for k, v in entry.items() if v is not None}


def write(tmp_path: Path, data, name: str = "paths.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))  # JSON is YAML too
    return path


@pytest.mark.parametrize("name", ["paths.json", "paths.yaml"])
def test_a_file_gives_every_objects_position_at_every_frame(tmp_path, name):
    spec = load_trajectories(write(tmp_path, TWO_BALLS, name))
    assert (spec.size, spec.num_frames, len(spec.objects)) == (32, 8, 2)
    red, blue = spec.objects
    assert (red.description, red.colour, red.radius) == ("the red ball", "red", 3.5)
    assert (blue.colour, blue.radius) == ("blue", 3.0)
    positions = spec.positions()
    assert positions.shape == (2, 8, 2) and positions.dtype == torch.float32
    torch.testing.assert_close(positions[0, [0, 3, 7]], torch.tensor([[4.0, 8.0], [16.0, 20.0], [28.0, 8.0]]))
    torch.testing.assert_close(positions[1, :3], torch.tensor([[28.0, 28.0]] * 3))  # still until its first time
    torch.testing.assert_close(positions[1, 3], torch.tensor([20.0, 28.0]))
    torch.testing.assert_close(positions[1, 5:], torch.tensor([[4.0, 28.0]] * 3))


def test_times_in_seconds_with_fps_and_spread_keypoints_by_default(tmp_path):
    data = {**TWO_BALLS, "fps": 2, "objects": [{**TWO_BALLS["objects"][1], "times": [1.0, 2.5]}, obj(times=None)]}
    paths = read_trajectory_file(write(tmp_path, data))
    np.testing.assert_allclose(paths.objects[0].times, [2.0, 5.0])  # seconds x fps
    np.testing.assert_allclose(paths.objects[1].times, [0.0, 3.5, 7.0])  # keypoints spread over the frames
    spec = paths.spec()
    torch.testing.assert_close(spec.objects[0].positions[[2, 5]], torch.tensor([[28.0, 28.0], [4.0, 28.0]]))
    torch.testing.assert_close(spec.objects[1].positions[[0, 7]], torch.tensor([[4.0, 8.0], [28.0, 8.0]]))


def test_a_speed_profile_retimes_the_object_along_its_path(tmp_path):
    uneven = obj(curve="linear", points=[[4, 16], [6, 16], [28, 16]], times=[0, 3, 7])
    as_timed = load_trajectories(write(tmp_path, {**TWO_BALLS, "objects": [uneven]})).positions()[0]
    steady = load_trajectories(write(tmp_path, {**TWO_BALLS, "objects": [{**uneven, "speed": "constant"}]}))
    torch.testing.assert_close(as_timed[3], torch.tensor([6.0, 16.0]))
    torch.testing.assert_close(steady.positions()[0, :, 0], torch.linspace(4.0, 28.0, 8))


def test_resized_scales_space_and_resamples_time(tmp_path):
    spec = load_trajectories(write(tmp_path, TWO_BALLS))
    big = spec.resized(64, 15)
    assert (big.size, big.num_frames) == (64, 15)
    assert big.objects[0].radius == 7.0 and big.objects[1].description == "a small blue ball"
    torch.testing.assert_close(big.positions()[:, ::2], spec.positions() * 2)  # old frame k is new frame 2k
    torch.testing.assert_close(big.positions()[:, 1], (spec.positions()[:, 0] + spec.positions()[:, 1]))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_fits_the_shipped_model_and_keeps_objects_apart(example):
    paths = read_trajectory_file(example)
    assert (paths.size, paths.num_frames) == (32, 8)
    spec = paths.spec()
    assert all(o.colour is not None for o in spec.objects)
    p = spec.resized(64, 8).positions().numpy()
    assert np.all((p >= 0) & (p <= 64))
    assert min_separation(spec.positions().numpy(), np.array([o.radius for o in spec.objects])) > 0
    steps = np.linalg.norm(np.diff(spec.positions().numpy(), axis=1), axis=-1)
    assert steps.max() < 8  # within what the 32x32 model's balls do in a frame
    assert {p.kind for p in paths.objects} <= {"linear", "bezier", "bspline", "fourier", "min_acceleration", "min_jerk"}


def test_there_is_an_example_of_every_curve_type():
    kinds = {o.kind for example in EXAMPLES for o in read_trajectory_file(example).objects}
    assert kinds == {"linear", "bezier", "bspline", "fourier", "min_acceleration", "min_jerk"}
    assert any(len(read_trajectory_file(e).objects) > 1 for e in EXAMPLES)


BAD_FILES = [
    ({"size": 32, "objects": [obj()]}, "missing key num_frames"),
    ({**TWO_BALLS, "objects": [obj(points=None)]}, "missing key objects[0].points"),
    ({**TWO_BALLS, "objects": [obj(curve="spiral")]}, "objects[0].curve: unknown curve 'spiral'"),
    ({**TWO_BALLS, "objects": [obj(points=[[4, 8], [40, 20], [28, 8]])]}, "objects[0].points[1] = [40, 20] is "
                                                                          "outside"),
    ({**TWO_BALLS, "objects": [obj(times=[0, 5, 3])]}, "objects[0].times are out of order"),
    ({**TWO_BALLS, "objects": [obj(times=[0, 3, 9])]}, "objects[0].times must lie in frames 0..7"),
    ({**TWO_BALLS, "objects": [obj(times=[0, 7])]}, "objects[0].times must be one number per point (3)"),
    ({**TWO_BALLS, "objects": [obj(curve="bspline", degree=3)]}, "objects[0]: a degree-3 bspline needs at least 4"),
    ({**TWO_BALLS, "objects": [obj(points=[[4, 8]], times=[0])]}, "objects[0]: a min_acceleration curve needs at "
                                                                  "least 2 points"),
    ({**TWO_BALLS, "objects": [obj(), obj(radius=2)]}, "objects[1].description 'the red ball' repeats objects[0]"),
    ({**TWO_BALLS, "objects": [obj(colour="blue")]}, "objects[0].colour is 'blue' but the description names 'red'"),
    ({**TWO_BALLS, "objects": [obj(colour="teal", description="a ball")]}, "objects[0].colour: unknown colour 'teal'"),
    ({**TWO_BALLS, "objects": [obj(speed="warp")]}, "objects[0].speed: unknown speed profile 'warp'"),
    ({**TWO_BALLS, "objects": [obj(harmonics=3)]}, "unknown key objects[0].harmonics"),
    ({**TWO_BALLS, "objects": [obj(radius=0)]}, "objects[0].radius must be a number in"),
    ({**TWO_BALLS, "num_frames": 1}, "num_frames must be a whole number >= 2"),
    ({**TWO_BALLS, "objects": []}, "objects must be a non-empty list"),
    ({**TWO_BALLS, "objects": [obj(curve="fourier", points=[[2, 2], [30, 30], [2, 30]])]},
     "objects[0]: the fourier curve leaves the 32x32 frame at frame"),
]


@pytest.mark.parametrize("data, message", BAD_FILES, ids=[m.split(":")[0][:40] for _, m in BAD_FILES])
def test_bad_files_are_one_line_errors_naming_the_file_and_key(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(KinemaError) as error:
        load_trajectories(path)
    text = str(error.value)
    assert "\n" not in text and text.startswith(f"{path}: ") and message in text, text


def test_unreadable_files_are_one_line_errors(tmp_path):
    for name, content, message in [("broken.yaml", "size: [32", "not valid YAML"),
                                   ("broken.json", "{\"size\": 32,", "not valid JSON"),
                                   ("list.yaml", "- 1\n- 2\n", "expected a mapping")]:
        (tmp_path / name).write_text(content)
        with pytest.raises(KinemaError, match=message) as error:
            load_trajectories(tmp_path / name)
        assert "\n" not in str(error.value)
    with pytest.raises(KinemaError, match="cannot read trajectory file"):
        load_trajectories(tmp_path / "missing.yaml")
