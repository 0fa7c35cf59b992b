"""Edits from a DDIM inversion guided from the source prompt (negative-prompt inversion, Miyake et al. 2023)."""

from __future__ import annotations

import pytest
import torch
from denoisers import tiny_denoiser, tiny_run_config

from kinema.pipelines.text_to_video import TextToVideoPipeline

OPTIONS = dict(num_frames=4, height=8, width=8, strength=0.5, steps=40, sampler="ddim", guidance=5.0, progress=False)


@pytest.fixture(scope="module")
def pipe(text_encoder):
    model = tiny_denoiser(text_dim=text_encoder.dim, perturb=0.1).eval()
    return TextToVideoPipeline(model, tiny_run_config(model, "video_unet"), text_encoder)


def clips(count: int) -> torch.Tensor:
    return torch.rand(count, 3, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1


def test_an_edit_to_its_own_source_returns_the_video_at_any_guidance(pipe):
    # u = c when the negative prompt is the source: guidance then leaves the inversion's path, whatever its scale
    clip = clips(1)
    options = {**OPTIONS, "init_video": clip, "source_prompt": "a red ball bounces"}
    kept, unguided = (pipe("a red ball bounces", **{**options, "guidance": scale}) for scale in (5.0, 1.0))
    pushed = pipe("a red ball bounces", negative_prompt="a blue ball bounces", **options)
    error_kept, error_pushed = ((video - clip).abs().mean().item() for video in (kept, pushed))
    assert torch.allclose(kept, unguided, atol=1e-5)
    assert error_kept < 0.03 and error_pushed > 10 * error_kept


def test_each_video_is_guided_from_its_own_source(pipe):
    clip, sources = clips(2), ["a red ball bounces", "a green ball and a white ball move"]
    videos = pipe(sources, init_video=clip, source_prompt=sources, **OPTIONS)
    assert (videos - clip).abs().mean(dim=(1, 2, 3, 4)).max().item() < 0.03


def test_an_edit_moves_along_the_target_minus_source_direction(pipe):
    # guidance amplifies the edit: a larger scale moves the video further from the source along the same direction
    clip, source, target = clips(1), "a red ball bounces", "a blue ball bounces"
    options = {**OPTIONS, "source_prompt": source, "init_video": clip}
    weak, strong = (pipe(target, **{**options, "guidance": scale}) - clip for scale in (1.0, 5.0))
    assert strong.norm() > 2 * weak.norm()
    assert torch.nn.functional.cosine_similarity(weak.flatten(), strong.flatten(), dim=0) > 0.5


def test_an_edit_takes_the_models_edit_guidance_unless_given(pipe):
    defaults = pipe.spec.defaults
    assert defaults.edit_guidance > defaults.guidance
    options = {**OPTIONS, "steps": 4, "init_video": clips(1), "source_prompt": "a red ball bounces"}
    del options["guidance"]
    edited = pipe("a blue ball bounces", **options)
    assert torch.equal(edited, pipe("a blue ball bounces", guidance=defaults.edit_guidance, **options))
    assert not torch.allclose(edited, pipe("a blue ball bounces", guidance=defaults.guidance, **options), atol=1e-3)


def test_an_edit_from_the_inversion_takes_all_its_steps_each_way(pipe):
    clip, noise = clips(1), torch.zeros(1, 3, 4, 8, 8)
    inverted = []

    def inverting(x, t):
        inverted.append(t[0].item())
        return x

    _, times = pipe.start(noise, 10, "uniform", init_video=clip, strength=0.5, inverting=inverting)
    assert len(times) == 11 and len(inverted) == 10  # one model call per step up, then 10 steps down
    _, noised = pipe.start(noise, 10, "uniform", init_video=clip, strength=0.5)
    assert len(noised) == 6  # SDEdit: round(steps * strength)
