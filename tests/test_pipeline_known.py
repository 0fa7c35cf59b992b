"""Known frames and pixels in the pipeline (chapter 11.3.2, 11.4, 11.5): given pixels come back bit-exact with every
model, a mask that covers nothing is plain generation, a frame-conditioned model reads them and starts unchanged
from one without, SDEdit's strength runs from the input (0) to a fresh sample (1), and motion strength 0 freezes."""

from dataclasses import replace

import pytest
import torch
from denoisers import tiny_denoiser, tiny_run_config

from kinema.conditioning.conditioning import Conditioning
from kinema.config import DiffusionConfig
from kinema.errors import KinemaError
from kinema.pipelines.known import KnownPixels
from kinema.pipelines.text_to_video import TextToVideoPipeline

SHAPE = dict(num_frames=4, height=8, width=8, steps=3, progress=False, guidance=1.0)


def pipeline(frame_conditioning: bool, name: str = "video_unet", prediction: str = "v") -> TextToVideoPipeline:
    model = tiny_denoiser(name, text_dim=0, frame_conditioning=frame_conditioning, perturb=0.2).eval()
    config = replace(tiny_run_config(model, name), diffusion=DiffusionConfig(prediction=prediction))
    return TextToVideoPipeline(model, config)


def clip(seed: int = 3, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, 4, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("frame_conditioning", [False, True])
@pytest.mark.parametrize("sampler", ["ddpm", "dpmpp_2m", "heun"])
def test_known_frames_and_pixels_come_back_bit_exact(frame_conditioning, sampler):
    pipe = pipeline(frame_conditioning)
    video = clip()
    mask = torch.zeros(1, 1, 4, 8, 8, dtype=torch.bool)
    mask[:, :, 0] = True            # a whole frame
    mask[:, :, 2, :3, 2:6] = True   # and a patch of another
    out = pipe("", known=KnownPixels(video, mask), sampler=sampler, **SHAPE)
    assert torch.equal(out[mask.expand_as(out)], video[mask.expand_as(video)])
    assert not torch.allclose(out[:, :, 1], video[:, :, 1])


@pytest.mark.parametrize("frame_conditioning", [False, True])
def test_a_mask_that_covers_nothing_is_plain_generation(frame_conditioning):
    pipe = pipeline(frame_conditioning)
    nothing = KnownPixels(clip(), torch.zeros(1, 1, 4, 8, 8, dtype=torch.bool))
    torch.testing.assert_close(pipe("", known=nothing, seed=5, **SHAPE), pipe("", seed=5, **SHAPE), rtol=0, atol=0)


def test_a_frame_conditioned_model_reads_the_known_frames():
    pipe = pipeline(True)
    mask = torch.zeros(1, 1, 4, 8, 8, dtype=torch.bool)
    mask[:, :, 0] = True
    first, second = (pipe("", known=KnownPixels(clip(seed), mask), seed=1, **SHAPE) for seed in (3, 4))
    assert (first[:, :, 1:] - second[:, :, 1:]).abs().max() > 1e-3  # the unknown frames depend on the known one


def test_a_fine_tuned_frame_conditioned_model_starts_as_its_parent():
    parent = tiny_denoiser("video_unet", text_dim=0, perturb=0.2).eval()
    child = tiny_denoiser("video_unet", text_dim=0, frame_conditioning=True, perturb=0).eval()
    missing = child.load_state_dict(parent.state_dict(), strict=False).missing_keys
    assert missing == ["frames_in.weight"]
    x, t = clip(), torch.full((1,), 0.5)
    cond = Conditioning(frames=clip(9), frame_mask=torch.ones(1, 1, 4, 8, 8, dtype=torch.bool))
    with torch.no_grad():
        torch.testing.assert_close(child(x, t, cond), parent(x, t, Conditioning()))


def test_known_frames_reach_a_frame_conditioned_model_at_time_zero():
    pipe = pipeline(True)
    seen = []
    forward = pipe.model.forward
    pipe.model.forward = lambda x, t, cond: seen.append((t.clone(), cond.frame_mask)) or forward(x, t, cond)
    mask = torch.zeros(1, 1, 4, 8, 8, dtype=torch.bool)
    mask[:, :, 3] = True
    pipe("", known=KnownPixels(clip(), mask), **SHAPE)
    t, frame_mask = seen[0]
    assert t.shape == (1, 4) and t[0, 3] == 0 and (t[0, :3] == 1).all() and torch.equal(frame_mask, mask)


def test_edit_strength_runs_from_the_input_to_a_fresh_sample():
    pipe = pipeline(False)
    video = clip()
    torch.testing.assert_close(pipe("", init_video=video, strength=0.0, **SHAPE), video)
    torch.testing.assert_close(pipe("", init_video=video, strength=1.0, seed=2, **SHAPE), pipe("", seed=2, **SHAPE))
    near, far = (pipe("", init_video=video, strength=s, seed=2, **SHAPE) for s in (0.2, 0.8))
    assert (near - video).abs().mean() < (far - video).abs().mean()


def test_motion_strength_zero_freezes_the_given_frame():
    pipe = pipeline(False)
    video = clip()
    known = KnownPixels.frames({0: video[0, :, 0]}, 4)
    still = pipe("", known=known, motion_strength=0.0, **SHAPE)
    torch.testing.assert_close(still, video[:, :, :1].expand_as(still).clamp(-1, 1))
    moving = pipe("", known=known, motion_strength=1.0, **SHAPE)
    assert (moving[:, :, 1:] - still[:, :, 1:]).abs().max() > 1e-2


@pytest.mark.parametrize("call,match", [
    (dict(strength=1.5, init_video=clip()), r"strength must be in \[0, 1\]"),
    (dict(strength=0.5), "give init_video"),
    (dict(init_video=clip()[:, :, :2], strength=0.5), "init video are"),
    (dict(known=KnownPixels(clip(batch=2), torch.zeros(2, 1, 4, 8, 8, dtype=torch.bool))), "known pixels are"),
    (dict(known=KnownPixels(clip(), torch.zeros(1, 1, 4, 8, 8, dtype=torch.bool)), motion_strength=0.5),
     "give a whole frame"),
])
def test_bad_known_inputs_are_one_line_errors(call, match):
    with pytest.raises(KinemaError, match=match):
        pipeline(False)("", **{**SHAPE, **call})


def test_keyframe_beyond_the_length_is_named():
    with pytest.raises(KinemaError, match="keyframe index 9"):
        KnownPixels.frames({0: torch.zeros(3, 8, 8), 9: torch.zeros(3, 8, 8)}, 4)
