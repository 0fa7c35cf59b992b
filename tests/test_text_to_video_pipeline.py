"""TextToVideoPipeline: classifier-free guidance over text and class labels equals u + s (c - u) computed from the
model by hand, labels from the API and the CLI, 0 is never a silent default, and the shape of the videos comes from
the model's sampling spec (aspect buckets included)."""

from dataclasses import replace

import pytest
import torch
from conftest import TINY_OVERRIDES
from denoisers import tiny_denoiser, tiny_run_config
from typer.testing import CliRunner

from kinema.cli import app
from kinema.conditioning.conditioning import Conditioning
from kinema.config import DiffusionConfig, load_config
from kinema.errors import KinemaError
from kinema.models.pretrained import read_config, save_pretrained
from kinema.models.sampling_spec import read_sampling_spec
from kinema.pipelines.text_to_video import TextToVideoPipeline
from kinema.training.trainer import Trainer
from kinema.video import from_uint8, read_video, write_video

NO_DATA = [o for o in TINY_OVERRIDES if not o.startswith("data.")]  # the tiny run, for any dataset
ONE_STEP = dict(steps=1, sampler="ddim", num_frames=4, height=8, width=8, progress=False)  # the video is x0_hat(x_1)


def x0_pipeline(model, name: str, text_encoder=None) -> TextToVideoPipeline:
    """A pipeline whose model predicts x0, so that one DDIM step from t = 1 returns the (guided) model output."""
    config = replace(tiny_run_config(model, name), diffusion=DiffusionConfig(prediction="x0"))
    return TextToVideoPipeline(model, config, text_encoder)


def first_noise(count: int, seed: int = 0) -> torch.Tensor:
    return torch.randn((count, 3, 4, 8, 8), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_text_guidance_is_uncond_plus_scale_times_the_difference(scale, text_encoder):
    model = tiny_denoiser("video_unet", text_dim=text_encoder.dim, perturb=0.3).eval()
    pipe = x0_pipeline(model, "video_unet", text_encoder)
    prompts = ["a red ball bounces", "two balls"]
    video = pipe(prompts, guidance=scale, negative_prompt="blue", **ONE_STEP)

    x, t = first_noise(2), torch.ones(2)

    def output(texts):
        tokens, mask = text_encoder.encode(texts)
        return model(x, t, Conditioning(text=tokens, text_mask=mask))

    with torch.no_grad():
        cond, uncond = output(prompts), output(["blue", "blue"])
    assert (cond - uncond).abs().max() > 1e-2 and (cond.abs() < 1).float().mean() > 0.5  # a test that can fail
    torch.testing.assert_close(video, (uncond + scale * (cond - uncond)).clamp(-1, 1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_class_guidance_contrasts_the_label_with_no_class(scale):
    model = tiny_denoiser("video_dit", text_dim=0, num_classes=3, perturb=0.3).eval()
    pipe = x0_pipeline(model, "video_dit")
    video = pipe(["", ""], labels=[0, 2], guidance=scale, **ONE_STEP)
    x, t = first_noise(2), torch.ones(2)
    with torch.no_grad():
        cond = model(x, t, Conditioning(labels=torch.tensor([0, 2])))
        uncond = model(x, t, Conditioning(labels=torch.tensor([-1, -1])))
    assert (cond - uncond).abs().max() > 1e-2
    torch.testing.assert_close(video, (uncond + scale * (cond - uncond)).clamp(-1, 1), atol=1e-5, rtol=1e-4)
    other = pipe(["", ""], labels=1, guidance=scale, **ONE_STEP)
    assert not torch.allclose(other, video)


def test_labels_are_indices_or_the_class_names_of_the_data():
    model = tiny_denoiser("video_dit", text_dim=0, num_classes=4)
    config = replace(tiny_run_config(model, "video_dit"), data_kind="camera")
    pipe = TextToVideoPipeline(model, config)
    assert pipe.spec.classes == ["pan", "tilt", "zoom", "roll"]
    assert pipe.class_labels(["zoom", "1", 3, "-1"], 4).tolist() == [2, 1, 3, -1]
    assert pipe.class_labels("roll", 2).tolist() == [3, 3]
    for bad, message in [("spin", "not a class"), (4, "0..3"), ([0, 1, 2], "3 labels for 2 videos")]:
        with pytest.raises(KinemaError, match=message):
            pipe.class_labels(bad, 2)
    with pytest.raises(KinemaError, match="num_classes=0"):
        TextToVideoPipeline(tiny_denoiser("video_dit", text_dim=0), config)([""], labels=1, **ONE_STEP)


@pytest.mark.parametrize("option", ["steps", "num_frames", "height", "width"])
def test_zero_is_an_error_never_the_default(option):
    pipe = TextToVideoPipeline(tiny_denoiser("video_unet", text_dim=0), tiny_run_config(
        tiny_denoiser("video_unet", text_dim=0), "video_unet"))
    with pytest.raises(KinemaError, match=f"{option} must be at least 1, got 0"):
        pipe([""], **{**ONE_STEP, option: 0})
    with pytest.raises(KinemaError, match="fps must be greater than 0"):
        pipe.save(torch.zeros(1, 3, 2, 8, 8), "never.mp4", fps=0)


def test_unset_options_take_the_sampling_spec_not_the_data_config(tmp_path):
    model = tiny_denoiser("video_unet", text_dim=0)
    config = tiny_run_config(model, "video_unet")
    config.sample.steps, config.sample.fps = 1, 5.0
    save_pretrained(tmp_path / "m", model, config)
    stored = read_config(tmp_path / "m")
    stored[1]["sampling"].update(num_frames=2, height=8, width=16)  # the spec, not data.num_frames / data.size
    pipe = TextToVideoPipeline(model, stored[0], spec=read_sampling_spec(*stored))
    assert pipe([""], progress=False).shape == (1, 3, 2, 8, 16)
    assert pipe([""], num_frames=4, height=16, progress=False).shape == (1, 3, 4, 16, 16)
    pipe.save(torch.zeros(1, 3, 2, 8, 16), tmp_path / "v.mp4", scale=1)
    assert read_video(tmp_path / "v.mp4")[1] == pytest.approx(5.0)  # written at the spec's fps


def test_a_model_trained_on_a_16x32_bucket_samples_16x32(tmp_path, text_encoder):
    for i in range(2):  # 32 x 64 clips: the bucket keeps their 1:2 aspect
        frames = torch.randint(0, 255, (4, 32, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(i))
        write_video(tmp_path / "videos" / f"clip{i}.mp4", from_uint8(frames.numpy()), fps=8)
    config = load_config(None, [*NO_DATA, "data.kind=folder", f"data.root={tmp_path / 'videos'}", "data.num_frames=4",
                                "data.buckets=[[16,32]]", "model.text_dim=0", "train.steps=1",
                                f"train.output_dir={tmp_path / 'run'}"])
    checkpoint = Trainer(config, text_encoder=text_encoder, progress=False).train()
    out = tmp_path / "s.mp4"
    result = CliRunner().invoke(app, ["sample", str(checkpoint), "-o", str(out), "--steps", "1", "--scale", "1"])
    assert result.exit_code == 0, result.output
    assert read_video(out)[0].shape == (3, 4, 16, 32)


@pytest.mark.parametrize("model", [["model.name=video_dit", "model.hidden_size=24", "model.depth=1", "model.heads=2"],
                                   ["model.channels=8", "model.channel_mult=[1,2]", "model.attention=[temporal,joint]",
                                    "model.heads=2", "model.norm_groups=4"]], ids=["video_dit", "video_unet"])
@pytest.mark.parametrize("classes", [0, 10])
def test_a_labelled_dataset_trains_and_a_class_model_samples_its_labels(model, classes, tmp_path, text_encoder):
    """Digits come with labels: a model without classes ignores them, a class model (here without text) reads them
    and samples the class asked for on the command line."""
    config = load_config(None, [o for o in NO_DATA if not o.startswith("model.")] + model + [
        "data.kind=digits", "data.num_frames=4", "data.size=16", "data.digit_size=8", f"model.num_classes={classes}",
        f"model.text_dim={0 if classes else 384}", "train.steps=1", f"train.label_dropout={0.5 if classes else 0}",
        f"train.output_dir={tmp_path / 'run'}"])
    checkpoint = Trainer(config, text_encoder=text_encoder, progress=False).train()
    if not classes:
        return
    args = ["sample", str(checkpoint), "-o", str(tmp_path / "s.mp4"), "--steps", "1", "--scale", "1", "--label", "7"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and (tmp_path / "s.mp4").is_file(), result.output
    result = CliRunner().invoke(app, [*args[:-1], "11"])
    assert result.exit_code == 2 and "0..9" in result.output, result.output


def test_label_dropout_replaces_labels_by_no_class_with_the_trainers_generator(tmp_path, text_encoder):
    config = load_config(None, [*NO_DATA, "model.num_classes=10", "data.kind=digits", "data.size=16",
                                "data.digit_size=8", "train.label_dropout=0.5", "train.batch_size=16",
                                f"train.output_dir={tmp_path}"])
    trainer = Trainer(config, text_encoder=text_encoder, progress=False)
    batch = next(iter(trainer._loader()))
    labels = trainer._conditioning(batch, trainer.sample_generators(0, 16)).labels
    generators = trainer.sample_generators(0, 16)  # one per sample
    for generator in generators:
        torch.rand(1, generator=generator)  # caption dropout's draw comes first
    dropped = torch.cat([torch.rand(1, generator=g) for g in generators]) < 0.5
    assert torch.equal(labels, batch["label"].masked_fill(dropped, -1))
    assert dropped.any() and not dropped.all()
