"""Physical paths through sparse keyframes (kinema.control.keyframe_physics and the pipeline's `keyframe_physics`):
the candidate paths pass through the given positions and include the true one, a ball drawn off its path between
the keyframes is moved onto the nearest path, and the pipeline does so by default only when keyframes are sparse."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import TINY_OVERRIDES
from denoisers import tiny_denoiser, tiny_run_config
from PIL import Image
from typer.testing import CliRunner

from kinema.cli import app
from kinema.config import DiffusionConfig, load_config
from kinema.control.keyframe_physics import FIT_TOLERANCE, is_sparse, keyframe_paths, onto_keyframe_paths
from kinema.control.readout import object_positions
from kinema.data.physics_balls import BouncingBallsConfig, render_balls, simulate_balls
from kinema.errors import KinemaError
from kinema.models.pretrained import save_pretrained
from kinema.models.registry import build_model
from kinema.pipelines.known import KnownPixels
from kinema.pipelines.text_to_video import TextToVideoPipeline

CONFIG = BouncingBallsConfig(max_balls=1)
CLIP = simulate_balls(CONFIG, 5)  # one red ball bouncing off a wall: four paths reach frame 7 from frame 0


def given(*frames: int, length: int = 8) -> torch.Tensor:
    mask = torch.zeros(length, dtype=torch.bool)
    mask[list(frames)] = True
    return mask


def off_path(offset: float = 1.0) -> torch.Tensor:
    """The clip [1, 3, T, H, W] with its ball drawn `offset` px to the right in frames 1..6."""
    positions = CLIP.positions.clone()
    positions[1:-1, :, 0] += offset
    return render_balls(positions.numpy(), CLIP.radii.numpy(), CLIP.colors.numpy(), CLIP.size)[None]


def middle_error(video: torch.Tensor) -> float:
    """Largest distance (px) of the read-out ball from its true position over frames 1..6."""
    positions, _ = object_positions(video, CLIP.color_names)
    return float((positions[0, 0, 1:-1] - CLIP.positions[1:-1, 0]).norm(dim=-1).max())


def test_the_candidates_pass_through_the_keyframes_and_one_is_the_true_path():
    paths = keyframe_paths(CLIP.video, given(0, 7), CONFIG)
    (candidates,) = paths.candidates
    truth = CLIP.positions[:, 0].numpy()
    assert paths.colours == CLIP.color_names and abs(paths.radii[0] - CLIP.radii[0].item()) < 0.2
    assert len(candidates) > 1
    assert np.abs(candidates[:, [0, 7]] - truth[[0, 7]]).max() < FIT_TOLERANCE + 0.1
    assert np.linalg.norm(candidates - truth, axis=-1).mean(1).min() < 0.1
    inner = keyframe_paths(CLIP.video, given(1, 6), CONFIG).candidates[0]  # no path outside the given span
    assert np.isnan(inner[:, [0, 7]]).all() and np.isfinite(inner[:, 1:7]).all()


def test_sparse_keyframes_leave_several_unknown_frames_between_two_given_ones():
    assert is_sparse(given(0, 7)) and is_sparse(given(0, 2, 7))
    assert not is_sparse(given(0, 2, 4, 6, 7)) and not is_sparse(given(0)) and not is_sparse(given(0, 1))


def test_a_ball_off_its_path_is_moved_onto_the_nearest_path_through_the_keyframes():
    paths = [keyframe_paths(CLIP.video, given(0, 7), CONFIG)]
    broken = off_path()
    assert middle_error(broken) > 0.9
    assert middle_error(onto_keyframe_paths(broken, paths)) < 0.2
    assert 0.4 < middle_error(onto_keyframe_paths(broken, paths, strength=0.5)) < 0.6


@pytest.fixture(scope="module")
def pipe():
    """A tiny text-free pipeline on the balls data whose every estimate is the clip with its ball off its path."""
    model = tiny_denoiser("video_unet", text_dim=0, perturb=0.3).eval()
    pipe = TextToVideoPipeline(model, replace(tiny_run_config(model, "video_unet"),
                                              diffusion=DiffusionConfig(prediction="x0")))
    pipe._guided = lambda *args: lambda x, t: off_path().expand(len(x), -1, -1, -1, -1)
    return pipe


def test_the_pipeline_moves_objects_onto_physical_paths_between_sparse_keyframes_by_default(pipe):
    def run(frames, **options):
        known = KnownPixels.frames({i: CLIP.video[:, i] for i in frames}, 8)
        return pipe("", known=known, steps=4, sampler="ddim", num_frames=8, height=32, width=32, guidance=1.0,
                    progress=False, **options)

    assert middle_error(run([0, 7])) < 0.2
    assert middle_error(run([0, 7], keyframe_physics=0.0)) > 0.9
    assert middle_error(run([0, 2, 4, 6, 7])) > 0.9  # dense keyframes: the model's own frames
    with pytest.raises(KinemaError, match="keyframe physics"):
        run([0, 7], keyframe_physics=1.5)


def test_the_cli_takes_keyframe_physics_and_rejects_a_bad_share_in_one_line(tmp_path):
    config = load_config(None, [*TINY_OVERRIDES, f"train.output_dir={tmp_path / 'run'}"])
    torch.manual_seed(0)
    model = save_pretrained(tmp_path / "model", build_model(config.model_name, config.model), config, {"step": 1})
    frames = render_balls(np.array([[[4.0, 4.0]], [[12.0, 10.0]]]), np.array([2.5]), np.array([[1.0, 0.0, 0.0]]), 16)
    for t in range(2):
        image = ((frames[:, t].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
        Image.fromarray(image).save(tmp_path / f"{t}.png")

    def run(share: str):
        result = CliRunner().invoke(app, ["animate", "--keyframe", f"0:{tmp_path / '0.png'}", "--keyframe",
                                          f"-1:{tmp_path / '1.png'}", "--keyframe-physics", share, "-c", str(model),
                                          "--steps", "1", "-o", str(tmp_path / "out.gif")])
        return result.exit_code, result.output.strip().splitlines()

    code, lines = run("0.5")
    assert code == 0 and (tmp_path / "out.gif").exists(), lines
    code, lines = run("1.5")
    assert code == 2 and len(lines) == 1 and "keyframe physics must be in [0, 1]" in lines[0], lines
