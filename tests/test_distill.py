"""Progressive distillation: one student DDIM step lands where two teacher steps do (exactly checkable on a Gaussian,
whose optimal denoiser is known in closed form), guidance is distilled in, and `kinema distill` writes a model
directory that `kinema generate` samples in its few steps."""

import itertools
import json
import time
from copy import deepcopy

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

from denoisers import denoiser_inputs, tiny_denoiser, tiny_vae
from kinema.cli import app
from kinema.conditioning.conditioning import Conditioning
from kinema.diffusion import build_schedule, classifier_free_guidance
from kinema.diffusion.samplers import sample_ddim
from kinema.diffusion.time_grids import time_grid
from kinema.models.pretrained import save_pretrained
from kinema.models.registry import build_model
from kinema.pipelines.text_to_video import TextToVideoPipeline
from kinema.training.distill import (Batch, DistillOptions, distill, distill_round, distillation_loss,
                                     first_teacher_steps, round_steps)

MU, STD = 0.3, 0.5  # the toy data: every pixel ~ N(MU, STD^2)
BINS = 1001


class GaussianDenoiser(nn.Module):
    """x0 prediction for data ~ N(MU, STD^2) per pixel (-MU for the null class -1): the exact posterior mean
    E[x0 | x_t] plus a trainable affine correction per time bin (zero: the exact denoiser, the teacher)."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule
        self.correction = nn.Parameter(torch.zeros(BINS, 2))

    def forward(self, x, t, cond):
        alpha, sigma = self.schedule.alpha_sigma_like(t, x)
        mu = torch.where(cond.labels >= 0, MU, -MU)[:, None, None, None, None]
        exact = mu + alpha * STD**2 / (alpha**2 * STD**2 + sigma**2) * (x - alpha * mu)
        shift, gain = self.correction[(t * (BINS - 1)).round().long()].T[..., None, None, None, None]
        return exact + shift + gain * x


ROWS = 16
COND = Conditioning(labels=torch.zeros(ROWS, dtype=torch.long))
UNCOND = Conditioning(labels=torch.full((ROWS,), -1))
PAIR = Conditioning.cat([COND, UNCOND])


def gaussian_batches(generator):
    while True:
        yield Batch(MU + STD * torch.randn(ROWS, 1, 2, 4, 4, generator=generator), COND, PAIR)


def ddim(denoise, schedule, x, grid):
    """DDIM of an x0 denoiser from x over a 1-D grid ([steps + 1], which may end above 0)."""
    per_frame = grid[:, None].expand(len(grid), x.shape[2])
    return sample_ddim(denoise, x, per_frame, schedule)


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_one_student_step_matches_two_guided_teacher_steps_on_a_gaussian(guidance):
    schedule = build_schedule("cosine")
    teacher = GaussianDenoiser(schedule)
    student = deepcopy(teacher)
    generator = torch.Generator().manual_seed(0)
    losses = distill_round(teacher, student, gaussian_batches(generator), schedule, "x0", steps=4, iterations=300,
                           lr=0.05, guidance=guidance, generator=generator)
    assert losses[-1] < 1e-3 * losses[0]
    # the teacher sampled as the pipeline does (u + w (c - u)), the student with its condition alone
    teacher_fn = classifier_free_guidance(lambda z, t: teacher(z, t, COND), lambda z, t: teacher(z, t, UNCOND),
                                          guidance) if guidance != 1 else (lambda z, t: teacher(z, t, COND))

    def student_fn(z, t):
        return student(z, t, COND)

    x = torch.randn(ROWS, 1, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    for i in range(4, 0, -1):  # each student step t -> t - 1/4 against teacher steps t -> t - 1/8 -> t - 1/4
        t = i / 4
        z_t = schedule.alpha_sigma(torch.tensor(t))[0] * MU + x  # a point off the data mean
        two = ddim(teacher_fn, schedule, z_t, torch.tensor([t, t - 1 / 8, t - 1 / 4], dtype=torch.float64))
        one = ddim(student_fn, schedule, z_t, torch.tensor([t, t - 1 / 4], dtype=torch.float64))
        undistilled = ddim(teacher_fn, schedule, z_t, torch.tensor([t, t - 1 / 4], dtype=torch.float64))
        gap = (undistilled - two).norm()
        assert gap > 1e-3 * two.norm()  # one teacher step is not two: there is something to learn
        assert (one - two).norm() < 0.02 * gap, f"step from t={t}"
    # and the student's whole 4-step chain lands where the teacher's 8 steps do
    student_video = sample_ddim(student_fn, x, time_grid(schedule, 4), schedule)
    teacher_video = sample_ddim(teacher_fn, x, time_grid(schedule, 8), schedule)
    teacher_4 = sample_ddim(teacher_fn, x, time_grid(schedule, 4), schedule)
    assert (student_video - teacher_video).norm() < 0.02 * (teacher_4 - teacher_video).norm()


def test_distillation_loss_falls_on_a_tiny_video_model_with_guidance():
    teacher = tiny_denoiser("video_unet", perturb=0.05, seed=0)
    student = deepcopy(teacher)
    x, _, cond = denoiser_inputs(teacher, batch=2, frames=4, size=8)
    uncond = deepcopy(cond)
    uncond.text = torch.zeros_like(cond.text)
    pair = Conditioning.cat([cond, uncond])
    schedule = build_schedule("cosine")
    generator = torch.Generator().manual_seed(0)
    losses = distill_round(teacher, student, itertools.repeat(Batch(x, cond, pair)), schedule, "v", steps=2,
                           iterations=40, lr=3e-3, guidance=3.0, generator=generator)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    assert not torch.equal(next(student.parameters()), next(teacher.parameters()))


def test_rounds_halve_from_the_least_power_of_two_multiple_reaching_the_teachers_steps():
    assert first_teacher_steps(4, None, 25) == 32 and first_teacher_steps(4, None, 8) == 8
    assert first_teacher_steps(4, None, 2) == 8 and first_teacher_steps(4, 16, 25) == 16
    assert round_steps(4, 32) == [16, 8, 4]
    assert round_steps(1, 2) == [1]


def test_a_deadline_ends_the_round_after_the_iteration_it_passes():
    schedule = build_schedule("cosine")
    teacher = GaussianDenoiser(schedule)
    losses = distill_round(teacher, deepcopy(teacher), gaussian_batches(torch.Generator().manual_seed(0)), schedule,
                           "x0", steps=4, iterations=1000, lr=0.05, deadline=time.perf_counter())
    assert len(losses) == 1


def test_known_frames_stay_clean_and_known_pixels_carry_no_loss():
    schedule = build_schedule("cosine")
    x0 = torch.rand(2, 3, 4, 6, 6) * 2 - 1
    known = torch.zeros(2, 1, 4, 6, 6, dtype=torch.bool)
    known[:, :, 0] = True           # frame 0 given whole
    known[1, :, 2, :3] = True       # and part of frame 2 of the second video
    seen = {}

    def teacher_fn(x, t):
        return torch.zeros_like(x)

    def student_fn(x, t, offset=0.0):
        seen["x"], seen["t"] = x, t
        return torch.where(known, offset, torch.zeros_like(x))

    generator = torch.Generator().manual_seed(0)
    loss = distillation_loss(student_fn, teacher_fn, x0, 4, schedule, generator, known)
    assert torch.equal(seen["x"][:, :, 0], x0[:, :, 0])  # the given frame goes in clean, at t = 0
    assert (seen["t"][:, 0] == 0).all() and (seen["t"][:, 1:] > 0).all()
    moved = distillation_loss(lambda x, t: student_fn(x, t, 5.0), teacher_fn, x0, 4, schedule,
                              torch.Generator().manual_seed(0), known)
    assert torch.isfinite(loss) and torch.allclose(loss, moved)


@pytest.fixture
def teacher_dir(tmp_path, tiny_config):
    config = tiny_config("sample.guidance=3.0", "sample.steps=8", "sample.direction_guidance=0.3")
    torch.manual_seed(0)
    model = build_model(config.model_name, config.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return save_pretrained(tmp_path / "teacher", model, config, {"step": 7})


def test_distilled_directory_samples_in_four_steps_without_guidance(tmp_path, teacher_dir, text_encoder):
    out = distill(teacher_dir, tmp_path / "student", DistillOptions(steps=4, iterations_per_round=2, batch_size=2),
                  text_encoder=text_encoder, progress=False, log=lambda line: None)
    stored = json.loads((out / "config.json").read_text())
    defaults = stored["sampling"]["defaults"]
    assert (defaults["sampler"], defaults["steps"], defaults["guidance"], defaults["time_grid"]) == \
        ("ddim", 4, 1.0, "uniform")
    assert defaults["direction_guidance"] == 0.0  # steering through a student's long jumps breaks its videos
    record = stored["distillation"]
    assert record["teacher_steps"] == 8 and record["teacher_guidance"] == 3.0
    assert [r["steps"] for r in record["rounds"]] == [4] and record["rounds"][0]["iterations"] == 2
    pipe = TextToVideoPipeline.from_pretrained(out, text_encoder=text_encoder)
    calls = []
    forward = pipe.model.forward
    pipe.model.forward = lambda x, t, cond: calls.append(len(x)) or forward(x, t, cond)
    video = pipe(["a red ball bounces"], retries=0, progress=False)
    assert calls == [1, 1, 1, 1]  # four steps, one network call each: guidance is in the weights
    assert video.shape == (1, 3, 4, 16, 16) and torch.isfinite(video).all()
    code = CliRunner().invoke(app, ["generate", "a red ball bounces", "-c", str(out), "-o", str(tmp_path / "v.mp4")])
    assert code.exit_code == 0, code.output
    assert (tmp_path / "v.mp4").stat().st_size > 0


def test_a_latent_teacher_is_distilled_on_latents_and_its_student_keeps_the_autoencoder(tmp_path, tiny_config,
                                                                                       text_encoder, monkeypatch):
    from kinema.autoencoder import LatentNormalization, save_autoencoder
    from kinema.autoencoder.latent_space import LatentSpace
    from kinema.training import distill as distill_module

    vae_dir = save_autoencoder(tmp_path / "vae", tiny_vae(), LatentNormalization(scale=0.5, shift=0.1))
    config = tiny_config("model.in_channels=4", "data.num_frames=5", "data.size=16", "sample.steps=8",
                         f"model.autoencoder={vae_dir}")
    torch.manual_seed(0)
    teacher = save_pretrained(tmp_path / "teacher", build_model(config.model_name, config.model), config, {"step": 1})
    cleans, loss = [], distill_module.distillation_loss
    monkeypatch.setattr(distill_module, "distillation_loss", lambda student, teacher, video, *args: cleans.append(
        video) or loss(student, teacher, video, *args))
    encoded, encode = [], LatentSpace.encode
    monkeypatch.setattr(LatentSpace, "encode", lambda self, video, generators=None: encoded.append(
        (video, encode(self, video, generators))) or encoded[-1][1])
    out = distill(teacher, tmp_path / "student", DistillOptions(steps=4, iterations_per_round=2, batch_size=2),
                  text_encoder=text_encoder, progress=False, log=lambda line: None)
    assert [tuple(x.shape) for x in cleans] == [(2, 4, 3, 4, 4)] * 2  # the clips' latents, not their pixels
    assert tuple(encoded[0][0].shape) == (2, 3, 5, 16, 16) and torch.equal(cleans[0], encoded[0][1])
    assert (out / "autoencoder" / "config.json").is_file()
    video = TextToVideoPipeline.from_pretrained(out, text_encoder=text_encoder)(["a red ball"], progress=False)
    assert video.shape == (1, 3, 5, 16, 16)


def test_data_loading_processes_leave_the_student_unchanged(tmp_path, teacher_dir, text_encoder):
    students = [load_file(distill(teacher_dir, tmp_path / f"student{workers}", DistillOptions(
        steps=4, iterations_per_round=3, batch_size=2, workers=workers), text_encoder=text_encoder, progress=False,
        log=lambda line: None) / "model.safetensors") for workers in (0, 2)]
    assert students[0].keys() == students[1].keys()
    assert all(torch.equal(students[0][k], students[1][k]) for k in students[0])


def test_export_changes_a_students_sampling_defaults_and_keeps_its_distillation_record(tmp_path, teacher_dir,
                                                                                       text_encoder):
    out = distill(teacher_dir, tmp_path / "student", DistillOptions(steps=4, iterations_per_round=1, batch_size=2),
                  text_encoder=text_encoder, progress=False, log=lambda line: None)
    result = CliRunner().invoke(app, ["export", str(out), str(tmp_path / "again"), "sample.direction_guidance=0.5"])
    assert result.exit_code == 0, result.output
    before, after = (json.loads((d / "config.json").read_text()) for d in (out, tmp_path / "again"))
    assert after["distillation"] == before["distillation"] and after["step"] == before["step"]
    assert after["sampling"]["defaults"] == {**before["sampling"]["defaults"], "direction_guidance": 0.5}


@pytest.mark.parametrize("args, needle", [
    (["--workers", "-1"], "--workers must be at least 0"),
    (["--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N"),
    (["--steps", "3", "--teacher-steps", "8"], "--teacher-steps must be --steps times a power of two"),
    (["--steps", "4", "--teacher-steps", "4"], "--teacher-steps must be --steps times a power of two"),
    (["--iterations-per-round", "0"], "--iterations-per-round must be at least 1"),
    (["--steps", "0"], "--steps must be a whole number >= 1"),
])
def test_bad_distill_options_are_one_line_errors(tmp_path, teacher_dir, args, needle):
    result = CliRunner().invoke(app, ["distill", str(teacher_dir), "-o", str(tmp_path / "out"), *args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and needle in lines[0], result.output
    assert not (tmp_path / "out").exists()


def test_distill_refuses_a_missing_teacher_an_eps_teacher_and_a_used_output(tmp_path, tiny_config, teacher_dir):
    config = tiny_config("diffusion.prediction=eps")
    eps_dir = save_pretrained(tmp_path / "eps", build_model(config.model_name, config.model), config)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    for teacher, output, needle in [(tmp_path / "nothing", tmp_path / "a", "checkpoint not found"),
                                    (eps_dir, tmp_path / "b", "predicts eps"),
                                    (teacher_dir, tmp_path / "used", "is not an empty directory")]:
        result = CliRunner().invoke(app, ["distill", str(teacher), "-o", str(output)])
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and needle in lines[0], result.output
    assert (tmp_path / "used" / "notes.txt").read_text() == "mine"
