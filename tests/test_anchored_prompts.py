"""Time-anchored prompts (kinema.conditioning.anchored): "first A, then B" and FRAME:TEXT anchors give each phrase its
frames, weights cross-fade at the joins and sum to one, and the pipeline blends the phrases' estimates by them."""

from dataclasses import replace

import pytest
import torch
from denoisers import tiny_denoiser, tiny_run_config

from kinema.conditioning.anchored import ownership, plan_prompts, split_sequence
from kinema.config import DiffusionConfig
from kinema.errors import KinemaError
from kinema.pipelines.text_to_video import TextToVideoPipeline


def test_then_sequences_split_into_phrases():
    assert split_sequence("first a red ball falls, then a blue ball bounces to the left") == [
        "a red ball falls", "a blue ball bounces to the left"]
    assert split_sequence("a red ball falls and then a green ball rolls; then nothing") == [
        "a red ball falls", "a green ball rolls", "nothing"]
    assert split_sequence("a red ball bounces") == ["a red ball bounces"]
    assert split_sequence("the ball thens") == ["the ball thens"]


def test_phrases_own_their_ranges_and_weights_sum_to_one():
    plan = plan_prompts(["first a red ball falls, then a blue ball bounces", [(0, "green"), (10, "yellow")]], 16,
                        blend=4)
    assert plan.texts == [["a red ball falls", "green"], ["a blue ball bounces", "yellow"]]
    torch.testing.assert_close(plan.weights.sum(1), torch.ones(2, 16))
    assert (plan.weights[0, 0, :6] == 1).all() and (plan.weights[0, 1, 10:] == 1).all()
    ramp = plan.weights[0, 1, 6:10]
    assert (ramp.diff() > 0).all() and 0 < ramp[0] and ramp[-1] < 1  # a smooth hand-over around frame 8
    assert (plan.weights[1, 1, 12:] == 1).all() and plan.weights[1, 1, 7] == 0


def test_hard_joins_and_single_prompts():
    weights = ownership([0, 3], 6, blend=0)
    assert weights.tolist() == [[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]]
    plan = plan_prompts(["a ball", "first a, then b, then c"], 9)
    assert len(plan.texts) == 3 and plan.texts[2] == ["a ball", "c"]
    assert (plan.weights[0, 0] == 1).all() and (plan.weights[0, 1:] == 0).all()  # the padding owns nothing
    texts, window = plan.window(0, 1)  # the blend into "b" (frames 1..4 around its start at 3) has not begun
    assert texts == [["a ball", "a"]] and window.shape == (2, 1, 1)
    assert len(plan.window(0, 2)[0]) == 2


@pytest.mark.parametrize("anchors,match", [
    ([(20, "late")], "outside the video's 16 frames"),
    ([(0, "a"), (0, "b")], "same frame"),
    ([], "at least one"),
])
def test_bad_anchors_are_named(anchors, match):
    with pytest.raises(KinemaError, match=match):
        plan_prompts([anchors], 16)


def test_the_pipeline_blends_each_frame_by_its_phrases(text_encoder):
    model = tiny_denoiser("video_unet", text_dim=text_encoder.dim, perturb=0.3).eval()
    config = replace(tiny_run_config(model, "video_unet"), diffusion=DiffusionConfig(prediction="x0"))
    pipe = TextToVideoPipeline(model, config, text_encoder)
    one_step = dict(steps=1, sampler="ddim", num_frames=4, height=8, width=8, progress=False, guidance=1.0)
    red, blue = pipe("a red ball", **one_step), pipe("a blue ball", **one_step)
    assert (red - blue).abs().max() > 1e-2
    mixed = pipe([(0, "a red ball"), (2, "a blue ball")], prompt_blend=0, **one_step)
    torch.testing.assert_close(mixed[:, :, :2], red[:, :, :2])
    torch.testing.assert_close(mixed[:, :, 2:], blue[:, :, 2:])
