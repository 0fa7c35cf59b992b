"""Camera moves: `--camera` specs, camera flow fields, the dataset's convention and the camera energy
(kinema.control.camera)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from kinema.control.camera import (
    camera_energy,
    camera_flow,
    camera_from_matrix,
    camera_matrix,
    camera_steps,
    camera_warped,
    dataset_camera,
    parse_camera,
)
from kinema.data.camera import CameraMotion, CameraMotionConfig, noise_texture, render_camera
from kinema.errors import KinemaError
from kinema.video.flow import inside_frame, warp

H, W = 17, 21


def _divergence(flow: torch.Tensor) -> torch.Tensor:
    """Central-difference divergence du/dx + dv/dy of a flow [2, H, W] on its interior pixels."""
    du_dx = (flow[0, 1:-1, 2:] - flow[0, 1:-1, :-2]) / 2
    dv_dy = (flow[1, 2:, 1:-1] - flow[1, :-2, 1:-1]) / 2
    return du_dx + dv_dy


def test_a_pan_flow_is_a_constant_shift_against_the_camera():
    flow = camera_flow(torch.tensor([2.0, -1.5, 1.0, 0.0]), H, W)  # camera right 2 px, up 1.5 px
    torch.testing.assert_close(flow[0], torch.full((H, W), -2.0))
    torch.testing.assert_close(flow[1], torch.full((H, W), 1.5))


@pytest.mark.parametrize("scale", [1.05, 0.9])
def test_a_zoom_flow_has_the_divergence_of_the_formula(scale):
    # forward F(t -> t+1) = (s - 1)(p - c): div = 2 (s - 1); backward F(t+1 -> t) = (1/s - 1)(p - c): -2 (s - 1) / s
    forward = camera_flow(torch.tensor([0.0, 0.0, scale, 0.0], dtype=torch.float64), H, W)
    backward = camera_flow(torch.tensor([0.0, 0.0, 1 / scale, 0.0], dtype=torch.float64), H, W)
    torch.testing.assert_close(_divergence(forward), torch.full((H - 2, W - 2), 2 * (scale - 1), dtype=torch.float64))
    torch.testing.assert_close(_divergence(backward),
                               torch.full((H - 2, W - 2), -2 * (scale - 1) / scale, dtype=torch.float64))
    assert forward[:, H // 2, W // 2].abs().max() < 1e-12  # the centre stays


def test_a_roll_turns_the_picture_about_the_centre_against_the_camera():
    degrees = 3.0
    flow = camera_flow(torch.tensor([0.0, 0.0, 1.0, degrees], dtype=torch.float64), H, W)
    ys, xs = torch.meshgrid(torch.arange(H) - (H - 1) / 2, torch.arange(W) - (W - 1) / 2, indexing="ij")
    radius = torch.hypot(xs, ys).double()
    moved = torch.hypot(xs + flow[0], ys + flow[1])
    torch.testing.assert_close(moved, radius)  # a rotation keeps every distance to the centre
    assert flow[1, H // 2, -1] < 0  # right of the centre moves up: the picture turns anticlockwise
    omega = -math.radians(degrees)  # the chapter's small-angle field omega (-(y - c_y), x - c_x)
    torch.testing.assert_close(flow, omega * torch.stack([-ys, xs]).double(), atol=0.05, rtol=0)


def test_matrix_and_camera_round_trip_and_the_composition_order():
    camera = torch.tensor([[1.5, -0.5, 1.04, -2.0], [0.0, 0.0, 0.95, 7.0]], dtype=torch.float64)
    torch.testing.assert_close(camera_from_matrix(camera_matrix(camera)), camera)
    flow = camera_flow(camera[0], 9, 9)
    torch.testing.assert_close(flow[:, 4, 4], torch.tensor([-1.5, 0.5], dtype=torch.float64))  # pan at the centre


def test_dataset_vectors_convert_to_steps_and_back():
    camera = torch.tensor([[0.0, 0.0, 0.04, 0.0], [1.2, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, -3.0]])
    steps = camera_steps(camera, 6)
    assert steps.shape == (3, 5, 4)
    torch.testing.assert_close(steps[0, 0], torch.tensor([0.0, 0.0, math.exp(0.04), 0.0]))
    torch.testing.assert_close(dataset_camera(steps), camera)


@pytest.mark.parametrize("camera", [[1.5, 0.0, 0.0, 0.0], [0.0, -1.2, 0.0, 0.0], [0.0, 0.0, 0.05, 0.0],
                                    [0.0, 0.0, -0.05, 0.0], [0.0, 0.0, 0.0, 4.0]])
def test_the_flow_of_dataset_steps_warps_the_rendered_clip_onto_itself(camera):
    clip = render_camera(noise_texture(96, np.random.default_rng(0)), (48.0, 48.0), torch.tensor(camera), 3, 24)[None]
    asked = camera_steps(torch.tensor(camera), 3)[None]
    opposite = camera_steps(-torch.tensor(camera), 3)[None]
    still = camera_steps(torch.zeros(4), 3)[None]
    matched = camera_energy(asked)(clip)
    assert matched < 0.1 * camera_energy(opposite)(clip) and matched < 0.2 * camera_energy(still)(clip)


def test_camera_energy_is_small_for_the_asked_pan_larger_for_the_opposite_and_differentiable():
    data = CameraMotion(CameraMotionConfig(num_frames=5, size=16, motions=("pan",), texture="noise"), length=2, seed=3)
    video = torch.stack([data[i]["video"] for i in range(2)])
    asked = camera_steps(torch.stack([data[i]["camera"] for i in range(2)]), 5)
    flipped = asked.clone()
    flipped[..., 0] *= -1
    energy = camera_energy(asked)
    matched, opposite = energy(video), camera_energy(flipped)(video)
    assert matched.shape == (2,)
    assert (matched < 0.1 * opposite).all()
    point = video.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(energy(point).sum(), point)
    assert torch.isfinite(gradient).all()
    # closed form on the first frame, which enters one step only: dE/dI_0 = -2 HW m (warp(I_1) - I_0) / (C (T-1) sum m)
    flow = camera_flow(asked[:, 0], 16, 16)
    seen = inside_frame(flow).float()[:, None]
    warped = warp(video[:, :, 1], flow)
    expected = -2 * 16 * 16 * seen * (warped - video[:, :, 0]) / (3 * 4 * seen.sum((-2, -1), keepdim=True))
    torch.testing.assert_close(gradient[:, :, 0], expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(KinemaError, match=r"need \[2, 3, 4\]"):
        energy(video[:, :, :4])


@pytest.mark.parametrize("camera", [[1.5, 0.0, 0.0, 0.0], [0.0, -1.2, 0.0, 0.0], [0.0, 0.0, 0.05, 0.0],
                                    [0.0, 0.0, -0.05, 0.0], [0.0, 0.0, 0.0, 4.0]])
def test_a_warped_start_carries_frame_0_as_the_camera_renders_the_scene(camera):
    clip = render_camera(noise_texture(96, np.random.default_rng(1)), (48.0, 48.0), torch.tensor(camera), 5, 24)[None]
    still = clip[:, :, :1].expand_as(clip)  # frame 0 everywhere: what the warp must move
    warped = camera_warped(still, camera_steps(torch.tensor(camera), 5))
    backwards = camera_warped(still, camera_steps(-torch.tensor(camera), 5))
    torch.testing.assert_close(warped[:, :, 0], clip[:, :, 0])
    inner = (slice(None), slice(None), slice(1, None), slice(4, -4), slice(4, -4))  # away from what comes into view
    error = (warped - clip)[inner].abs().mean()  # the noise texture resampled twice: close, not exact
    assert error < 0.02 and error < 0.5 * (still - clip)[inner].abs().mean()
    assert error < 0.3 * (backwards - clip)[inner].abs().mean()


def test_what_comes_into_view_is_the_videos_own_frame_then_moves_with_the_camera():
    frames = torch.arange(5.0).view(1, 1, 5, 1, 1).expand(1, 1, 5, 16, 21).clone()  # frame t holds the value t
    frames[:, :, 0] = torch.rand(16, 21) + 10  # frame 0: a picture, far from the other frames' values
    warped = camera_warped(frames, parse_camera("pan-right:2", 5))
    assert warped[..., 1, :, -2:].eq(1).all() and warped[..., 1, :, :-2].ge(10).all()  # 2 new columns at frame 1
    for t in range(2, 5):  # each step's 2 new columns enter on the right and then slide left by 2 px a frame
        expected = torch.tensor([float(value) for value in range(t, 0, -1) for _ in range(2)])
        torch.testing.assert_close(warped[0, 0, t, 0, -2 * t:], expected.flip(0))
        assert warped[..., t, :, : -2 * t].ge(10).all()
    with pytest.raises(KinemaError, match=r"camera steps must be \[4, 4\] for 5 frames"):
        camera_warped(frames, parse_camera("pan-right:2", 4))


def test_parse_camera_words_give_per_step_rows():
    steps = parse_camera("pan-left:2,tilt-up:1,zoom-in:1.02,roll-cw:0.5", 4)
    torch.testing.assert_close(steps, torch.tensor([[-2.0, -1.0, 1.02, 0.5]]).expand(3, 4))
    other = parse_camera(" pan-right:1.5 , tilt-down:0.5, zoom-out:1.25, roll-ccw:2 ", 2)
    torch.testing.assert_close(other, torch.tensor([[1.5, 0.5, 0.8, -2.0]]))
    torch.testing.assert_close(parse_camera("zoom-in:1.1", 3)[:, [0, 1, 3]], torch.zeros(2, 3))  # the rest still


def test_parse_camera_reads_csv_and_json_files(tmp_path):
    csv_file = tmp_path / "moves.csv"
    csv_file.write_text("pan,tilt,zoom,roll\n1,0,1,0\n-1,0.5,1.1,2\n")
    torch.testing.assert_close(parse_camera(csv_file, 3), torch.tensor([[1.0, 0, 1, 0], [-1, 0.5, 1.1, 2]]))
    json_file = tmp_path / "moves.json"
    json_file.write_text(json.dumps([[1, 0, 1, 0], {"pan": -1, "zoom": 1.1}]))
    torch.testing.assert_close(parse_camera(str(json_file), 3), torch.tensor([[1.0, 0, 1, 0], [-1, 0, 1.1, 0]]))


@pytest.mark.parametrize(("spec", "match"), [
    ("pan-up:2", "'pan-up'"), ("pan-left", "'pan-left': expected pan-left:VALUE"), ("pan-left:-1", "'pan-left:-1'"),
    ("zoom-in:0.9", "zoom factor >= 1"), ("tilt-up:x", "'tilt-up:x'"), ("pan-left:1,pan-right:2", "pan already set"),
    ("", "empty"),
])
def test_parse_camera_bad_words_are_one_line_naming_the_part(spec, match):
    with pytest.raises(KinemaError, match=match) as error:
        parse_camera(spec, 4)
    assert "\n" not in str(error.value)


def test_parse_camera_bad_files_are_one_line_naming_the_file_and_row(tmp_path):
    cases = {"short.csv": ("1,0,1,0\n", "1 rows, need one per frame step"),
             "letters.csv": ("1,0,1,0\n1,a,1,0\n", "row 2"),
             "zoom.csv": ("1,0,1,0\n1,0,0,0\n", "zoom > 0"),
             "broken.json": ("[[1, 0, 1, 0]", "not valid JSON"),
             "key.json": ('[{"pan": 1}, {"swing": 2}]', "unknown key 'swing'"),
             "object.json": ('{"pan": 1}', "expected a list")}
    for name, (text, match) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(KinemaError, match=match) as error:
            parse_camera(tmp_path / name, 3)
        assert name in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(KinemaError, match="cannot read"):
        parse_camera(tmp_path / "missing.csv", 3)
    with pytest.raises(KinemaError, match="at least 2 frames"):
        parse_camera("pan-left:1", 1)


def test_the_example_camera_files_parse_for_eight_frames():
    examples = sorted(p for p in (Path(__file__).parent.parent / "examples/cameras").iterdir()
                      if p.suffix in (".csv", ".json"))
    assert {p.suffix for p in examples} == {".csv", ".json"}
    for path in examples:
        assert parse_camera(path, 8).shape == (7, 4)
    csv_example = Path(__file__).parent.parent / "examples/cameras/pan_left_zoom_in.csv"
    torch.testing.assert_close(parse_camera(csv_example, 8), parse_camera("pan-left:1.5,zoom-in:1.02", 8))
