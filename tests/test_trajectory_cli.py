"""`kinema trajectory FILE --plot out.png`: one line per object (curve, length, mean speed), a PNG drawing each
curve in its object's colour; a bad file is one line on stderr and exit code 2."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from kinema.cli import app
from kinema.data.physics_balls import BALL_COLORS

EXAMPLES = Path(__file__).parents[1] / "examples" / "trajectories"
runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def colour_pixels(image: np.ndarray, name: str) -> int:
    """How many pixels are (close to) a BALL_COLORS colour."""
    target = np.array(BALL_COLORS[name]) * 255
    return int((np.abs(image[..., :3].astype(float) - target).max(-1) < 30).sum())


def test_plot_draws_each_curve_in_its_colour_and_prints_one_line_per_object(tmp_path):
    out = tmp_path / "paths.png"
    code, output = run("trajectory", EXAMPLES / "two_balls.yaml", "--plot", out)
    assert code == 0, output
    lines = output.strip().splitlines()
    assert lines[0].startswith("the red ball: bezier, length ") and "px/frame" in lines[0]
    assert lines[1].startswith("the blue ball: min_acceleration, length ")
    assert lines[2] == f"wrote {out}"
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert colour_pixels(image, "red") > 100 and colour_pixels(image, "blue") > 100
    assert colour_pixels(image, "green") == 0


def test_size_scales_lengths_and_speeds(tmp_path):
    _, small = run("trajectory", EXAMPLES / "linear.yaml")
    _, large = run("trajectory", EXAMPLES / "linear.yaml", "--size", 64)
    length = [float(text.split("length ")[1].split(" px")[0]) for text in (small, large)]
    assert length[1] == pytest.approx(2 * length[0], abs=0.11)
    assert small.strip() == "the red ball: linear, length 26.9 px, mean speed 3.85 px/frame"  # 10*sqrt(2) + sqrt(164)


@pytest.mark.parametrize("content, needle", [
    ("size: 32\nobjects: []\n", "missing key num_frames"),
    ("size: 32\nnum_frames: 8\nobjects:\n  - {description: a red ball, radius: 3, curve: linear, "
     "points: [[1, 1], [40, 2]]}\n", "objects[0].points[1] = [40, 2] is outside the 32x32 frame"),
    ("size: 32\nnum_frames: 8\nobjects:\n  - {description: a red ball, radius: 3, curve: linear, "
     "points: [[1, 1], [4, 2]], times: [5, 2]}\n", "objects[0].times are out of order"),
])
def test_a_bad_file_is_one_line_and_exit_2(tmp_path, content, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code, output = run("trajectory", path, "--plot", tmp_path / "out.png")
    assert code == 2, output
    assert output.strip().count("\n") == 0 and output.startswith("error: ") and needle in output, output
    assert not (tmp_path / "out.png").exists()


def test_missing_file_and_bad_size_are_one_line_errors(tmp_path):
    code, output = run("trajectory", tmp_path / "none.yaml")
    assert code == 2 and output.strip().count("\n") == 0 and "cannot read trajectory file" in output
    code, output = run("trajectory", EXAMPLES / "linear.yaml", "--size", 0)
    assert code == 2 and output.strip().count("\n") == 0 and "--size must be at least 1" in output


def test_an_unwritable_plot_fails_before_any_work(tmp_path):
    code, output = run("trajectory", EXAMPLES / "linear.yaml", "--plot", tmp_path)
    assert code == 2 and output.strip().count("\n") == 0 and output.startswith("error: cannot write"), output


def test_generated_paths_are_drawn_and_described_too(tmp_path):
    from kinema.control.multi_object import avoiding_paths
    from kinema.control.plot import describe_paths, plot_trajectories

    spec = avoiding_paths(3, 8, 32, seed=1)
    lines = describe_paths(spec, size=64)
    steps = np.linalg.norm(np.diff(spec.positions().numpy(), axis=1), axis=-1).sum(1) * 2
    assert [line.split(":")[0] for line in lines] == ["the red ball", "the green ball", "the blue ball"]
    assert [float(line.split("length ")[1].split(" px")[0]) for line in lines] == pytest.approx(steps, abs=0.06)
    image = np.asarray(Image.open(plot_trajectories(spec, tmp_path / "crossing.png")).convert("RGB"))
    assert all(colour_pixels(image, name) > 50 for name in ("red", "green", "blue"))
