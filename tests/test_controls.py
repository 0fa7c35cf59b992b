"""Trained motion controls (kinema.conditioning.controls): zero-initialised control layers and knob embeddings, the
maps and knobs training makes from ground truth, learning to use a control, and the training / sampling wiring."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from denoisers import denoiser_inputs, tiny_denoiser

from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.controls import (BRIGHTNESS_RANGE, low_resolution, motion_amount, sampling_attributes,
                                          sampling_controls, training_controls, trajectory_map)
from kinema.data.physics_balls import BALL_COLORS, BouncingBalls, BouncingBallsConfig
from kinema.diffusion import DiffusionLoss, build_schedule
from kinema.errors import KinemaError
from kinema.nn.embeddings import AttributeEmbedding
from kinema.pipelines.known import KnownPixels
from kinema.pipelines.text_to_video import TextToVideoPipeline
from kinema.training.trainer import Trainer

CONTROLLED = dict(controls=("low_res_x2",), attributes=("speed", "brightness"))


@pytest.mark.parametrize("name", ["video_unet", "video_dit"])
def test_a_model_gaining_controls_starts_as_the_model_without_them(name):
    plain = tiny_denoiser(name, text_dim=0).eval()
    controlled = tiny_denoiser(name, perturb=0, text_dim=0, **CONTROLLED).eval()
    missing, unexpected = controlled.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all("control" in k or "attribute" in k for k in missing)
    x, t, cond = denoiser_inputs(controlled)
    assert cond.control is not None and cond.attributes is not None
    with torch.no_grad():
        torch.testing.assert_close(controlled(x, t, cond), plain(x, t, Conditioning()))


@pytest.mark.parametrize("name", ["video_unet", "video_dit"])
def test_missing_controls_read_as_zero_maps_and_unknown_knobs(name):
    model = tiny_denoiser(name, text_dim=0, **CONTROLLED).eval()
    x, t, cond = denoiser_inputs(model)
    with torch.no_grad():
        nothing = model(x, t, Conditioning())
        zeros = replace(cond, control=torch.zeros_like(cond.control), attributes=torch.full_like(cond.attributes,
                                                                                                   float("nan")))
        torch.testing.assert_close(model(x, t, zeros), nothing)
        assert not torch.allclose(model(x, t, cond), nothing)
        half = cond.attributes.clone()
        half[:, 1] = float("nan")  # one knob given, one not: differs from both
        assert not torch.allclose(model(x, t, replace(cond, attributes=half)), model(x, t, cond))


def test_attribute_embedding_starts_at_zero_and_tells_values_apart():
    embed = AttributeEmbedding(8, [100.0, 500.0])
    assert embed(torch.tensor([[1.0, float("nan")]])).abs().max() == 0
    torch.nn.init.normal_(embed.mlp[-1].weight)
    one, two, zero, unknown = embed(torch.tensor([[1.0, 1.0], [2.0, 1.0], [0.0, 1.0], [float("nan"), 1.0]]))
    assert not torch.allclose(one, two) and not torch.allclose(one, unknown)
    assert not torch.allclose(zero, unknown)  # "not given" is a value of its own


def test_bad_controls_are_one_line_errors():
    model = tiny_denoiser("video_unet", text_dim=0, **CONTROLLED)
    x, t, cond = denoiser_inputs(model)
    for bad, needle in [(replace(cond, control=cond.control[:, :2]), r"cond.control must be \[B, 3"),
                        (replace(cond, attributes=cond.attributes[:, :1]), r"cond.attributes must be \[B, 2\]")]:
        with pytest.raises(KinemaError, match=needle) as error:
            model(x, t, bad)
        assert "\n" not in str(error.value)
    with pytest.raises(KinemaError, match="model.controls.*unknown 'heatmap'"):
        tiny_denoiser("video_unet", controls=("heatmap",))
    with pytest.raises(KinemaError, match="model.attributes.*unknown 'loudness'"):
        tiny_denoiser("video_dit", attributes=("loudness",))
    with pytest.raises(KinemaError, match="reads no control camera"):
        sampling_controls(("low_res_x2",), {"camera": torch.zeros(1, 2, 4, 8, 8)}, 1, (4, 8, 8))
    with pytest.raises(KinemaError, match=r"control 'low_res_x2' must be \[B, 3, 4, 8, 8\]"):
        sampling_controls(("low_res_x2",), {"low_res_x2": torch.zeros(1, 3, 4, 4, 4)}, 1, (4, 8, 8))
    with pytest.raises(KinemaError, match="reads no knob speed"):
        sampling_attributes(("brightness",), {"speed": 2.0}, 1)


def balls_batch(count: int = 4, size: int = 16, frames: int = 6) -> tuple[dict, BouncingBalls]:
    data = BouncingBalls(BouncingBallsConfig(num_frames=frames, size=size, radius_range=(2.0, 3.0)), seed=3)
    items = [data[i] for i in range(count)]
    return {key: torch.stack([item[key] for item in items]) for key in items[0] if key != "caption"}, data


def test_training_knobs_are_measured_from_the_clips_ground_truth():
    batch, data = balls_batch()
    generators = [torch.Generator().manual_seed(i) for i in range(4)]
    video, _, knobs = training_controls((), ("speed", "brightness"), batch, batch["video"], generators, 0.0)
    for i in range(4):
        clip = data.clip(i)
        steps = np.linalg.norm(np.diff(clip.positions.numpy(), axis=0), axis=-1)  # [T-1, N]
        assert knobs[i, 0].item() == pytest.approx(steps.mean(), rel=1e-5)
        gain = knobs[i, 1].item()
        assert BRIGHTNESS_RANGE[0] <= gain <= BRIGHTNESS_RANGE[1]
        expected = ((clip.video + 1) / 2 * gain).clamp(0, 1) * 2 - 1
        torch.testing.assert_close(video[i], expected)
    assert knobs[:, 1].std() > 0.05  # each clip draws its own gain


def test_control_dropout_zeroes_maps_and_forgets_knobs_per_sample():
    batch, _ = balls_batch()
    generators = [torch.Generator().manual_seed(i) for i in range(4)]
    _, control, knobs = training_controls(("low_res_x2",), ("motion_amount",), batch, batch["video"], generators, 1.0)
    assert control.abs().max() == 0 and knobs.isnan().all()
    _, control, knobs = training_controls(("low_res_x2",), ("motion_amount",), batch, batch["video"], generators, 0.0)
    torch.testing.assert_close(control, low_resolution(batch["video"], 2))
    torch.testing.assert_close(knobs[:, 0], (batch["video"][:, :, 1:] - batch["video"][:, :, :-1]).abs().mean(
        (1, 2, 3, 4)) / 2)
    assert torch.equal(motion_amount(batch["video"]), knobs[:, 0])


def test_noise_augmentation_noises_the_low_res_condition_by_its_knob():
    batch, _ = balls_batch()
    generators = [torch.Generator().manual_seed(i) for i in range(4)]
    _, control, knobs = training_controls(("low_res_x2",), ("noise_aug",), batch, batch["video"], generators, 0.0)
    residual = (control - low_resolution(batch["video"], 2)).flatten(1).std(1)
    torch.testing.assert_close(residual, knobs[:, 0], rtol=0.1, atol=0.01)


def test_a_super_resolution_model_learns_to_use_its_low_res_condition():
    """Random smooth clips at high noise: only the low-res condition says which clip it is."""
    torch.manual_seed(0)
    videos = torch.nn.functional.interpolate(torch.rand(8, 3, 4, 4, 4) * 2 - 1, size=(4, 8, 8), mode="nearest")
    loss_fn, t = DiffusionLoss(build_schedule("cosine"), "x0"), torch.full((8,), 0.95)

    def trained_loss(model, cond: Conditioning) -> float:
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        generator = torch.Generator().manual_seed(0)

        def loss() -> torch.Tensor:
            x_t, target = loss_fn.noise_and_target(videos, t, torch.randn(videos.shape, generator=generator))
            return (model(x_t, t, cond) - target).square().mean()

        for _ in range(40):
            optimizer.zero_grad()
            loss().backward()
            optimizer.step()
        with torch.no_grad():
            return sum(loss().item() for _ in range(4)) / 4

    low = low_resolution(videos, 2)
    with_control = trained_loss(tiny_denoiser("video_unet", perturb=0, text_dim=0, controls=("low_res_x2",)),
                                Conditioning(control=low))
    without = trained_loss(tiny_denoiser("video_unet", perturb=0, text_dim=0), Conditioning())
    assert with_control < 0.5 * without, (with_control, without)


def test_kinema_train_with_controls_and_knobs_then_sampling_with_them(tiny_config, text_encoder):
    config = tiny_config("model.text_dim=384", "model.controls=[low_res_x2]", "model.attributes=[speed,brightness]",
                         "train.steps=2", "train.control_dropout=0.5")
    trainer = Trainer(config, text_encoder=text_encoder, progress=False)
    seen = []
    trainer.model.register_forward_pre_hook(lambda module, args: seen.append(args[2]))
    trainer.train()
    assert seen and all(c.control.shape == (2, 3, 4, 16, 16) and c.attributes.shape == (2, 2) for c in seen)
    model = trainer.model.eval()
    pipe = TextToVideoPipeline(model, config, text_encoder)
    seen.clear()
    low = torch.rand(1, 3, 4, 16, 16)
    pipe(["a red ball", "a blue ball"], steps=1, guidance=2.0, progress=False, controls={"low_res_x2": low},
         attributes={"speed": 1.5})
    cond = seen[0]
    assert torch.equal(cond.control, low.expand(4, -1, -1, -1, -1))  # both guidance branches see the control
    assert cond.attributes[:, 0].eq(1.5).all() and cond.attributes[:, 1].isnan().all()
    with pytest.raises(KinemaError, match="reads no knob fps"):
        pipe("a red ball", steps=1, progress=False, attributes={"fps": 4.0})


def test_a_dropped_augmentation_knob_leaves_the_clip_as_it_is():
    batch, _ = balls_batch()
    generators = [torch.Generator().manual_seed(i) for i in range(4)]
    video, _, knobs = training_controls((), ("brightness",), batch, batch["video"], generators, 1.0)
    assert torch.equal(video, batch["video"]) and knobs.isnan().all()


def test_the_trajectory_map_paints_each_path_in_its_objects_colour():
    positions = torch.tensor([[[[4.5, 4.5], [10.5, 4.5]], [[12.5, 12.5], [11.5, 13.5]]]])  # [1, K=2, T=2, 2]
    colours = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    radii = torch.tensor([[2.0, 2.0]])
    heat = trajectory_map(positions, radii, colours, 16, 16)[0]  # [3, T, H, W]
    assert heat.shape == (3, 2, 16, 16)
    for k, colour in enumerate(colours[0]):
        for t in range(2):
            x, y = positions[0, k, t].long().tolist()
            torch.testing.assert_close(heat[:, t, y, x], colour, atol=1e-4, rtol=0)
    assert heat[:, :, 0, 15].abs().max() < 1e-3  # far from both paths
    batch, _ = balls_batch()
    _, control, _ = training_controls(("trajectory",), (), batch, batch["video"], [torch.Generator()] * 4, 0.0)
    expected = trajectory_map(batch["positions"].transpose(1, 2), batch["radii"], batch["colors"], 16, 16)
    torch.testing.assert_close(control, expected)


def test_the_camera_map_is_the_flow_of_each_clips_camera_step():
    from kinema.control.camera import camera_flow, camera_steps
    from kinema.data.camera import CameraMotion, CameraMotionConfig

    data = CameraMotion(CameraMotionConfig(num_frames=4, size=16), seed=0)
    items = [data[i] for i in range(3)]
    batch = {"video": torch.stack([it["video"] for it in items]), "camera": torch.stack([it["camera"] for it in items])}
    _, control, _ = training_controls(("camera",), (), batch, batch["video"], [torch.Generator()] * 3, 0.0)
    assert control.shape == (3, 2, 4, 16, 16) and control[:, :, 0].abs().max() == 0  # frame 0 has no step before it
    for i, item in enumerate(items):
        flow = camera_flow(camera_steps(item["camera"], 4)[0], 16, 16) / 4  # in units of 4 px
        for t in range(1, 4):
            torch.testing.assert_close(control[i, :, t], flow)
        assert control[i].abs().max() > 0


def test_a_trajectory_or_camera_reaches_a_model_trained_with_them_as_its_control_map(tiny_config, text_encoder):
    from kinema.control.camera import camera_flow, parse_camera
    from kinema.control.trajectory import ObjectPath, TrajectorySpec

    config = tiny_config("model.text_dim=384", "model.controls=[trajectory,camera]")
    model = tiny_denoiser("video_unet", perturb=0, **{"text_dim": 384, "controls": ("trajectory", "camera")})
    pipe = TextToVideoPipeline(model.eval(), config, text_encoder)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[2].control.clone()))
    path = torch.tensor([[2.5 + 3 * t, 8.5] for t in range(4)])
    spec = TrajectorySpec(16, 4, (ObjectPath("the blue ball", "blue", path, 2.0),))
    pipe("a blue ball bounces", steps=1, progress=False, trajectory=spec, trajectory_guidance=0.0,
         camera="pan-right:1")
    drawn = seen[0]
    assert len(drawn) == 2 and torch.equal(drawn[0], drawn[1])  # both guidance branches read the maps
    blue = torch.tensor([[BALL_COLORS["blue"]]])
    expected = trajectory_map(path[None, None], torch.tensor([[2.0]]), blue, 16, 16)
    torch.testing.assert_close(drawn[:1, :3], expected)
    flow = camera_flow(parse_camera("pan-right:1", 4), 16, 16) / 4
    torch.testing.assert_close(drawn[0, 3:, 1:], flow.transpose(0, 1))
    with pytest.raises(KinemaError, match="not named in the prompt"):
        pipe("a red ball bounces", steps=1, progress=False, trajectory=spec)


def test_camera_knobs_are_the_clips_camera_vector_in_training_and_the_moves_mean_in_sampling(tiny_config,
                                                                                               text_encoder):
    from kinema.data.camera import CameraMotion, CameraMotionConfig

    knobs = ("camera_pan", "camera_tilt", "camera_zoom", "camera_roll")
    data = CameraMotion(CameraMotionConfig(num_frames=4, size=16, texture="noise"), seed=0)
    items = [data[i] for i in range(3)]
    batch = {"video": torch.stack([it["video"] for it in items]), "camera": torch.stack([it["camera"] for it in items])}
    _, _, values = training_controls((), knobs, batch, batch["video"], [torch.Generator()] * 3, 0.0)
    torch.testing.assert_close(values, batch["camera"])
    with pytest.raises(KinemaError, match="knob 'camera_pan' needs per-clip camera motion"):
        training_controls((), knobs, {"video": batch["video"]}, batch["video"], [torch.Generator()] * 3, 0.0)
    config = tiny_config("model.text_dim=384", f"model.attributes=[{','.join(knobs)}]")
    model = tiny_denoiser("video_unet", perturb=0, **{"text_dim": 384, "attributes": knobs})
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[2].attributes.clone()))
    pipe = TextToVideoPipeline(model.eval(), config, text_encoder)
    pipe("", steps=1, progress=False, camera="pan-left:2,zoom-in:1.02", camera_guidance=0.0)
    torch.testing.assert_close(seen[0][0], torch.tensor([-2.0, 0.0, math.log(1.02), 0.0]))


def test_camera_guidance_steers_a_model_without_the_camera_control(tiny_config, text_encoder):
    config = tiny_config("model.text_dim=384")
    pipe = TextToVideoPipeline(tiny_denoiser("video_unet", text_dim=384).eval(), config, text_encoder)
    plain = pipe("a red ball", steps=2, progress=False)
    steered = pipe("a red ball", steps=2, progress=False, camera="pan-left:2")  # guidance 1 by default
    assert not torch.allclose(plain, steered)
    torch.testing.assert_close(pipe("a red ball", steps=2, progress=False, camera="pan-left:2", camera_guidance=0.0),
                               plain)
    with pytest.raises(KinemaError, match=r"camera steps must be \[3, 4\]"):
        pipe("a red ball", steps=1, progress=False, camera=torch.zeros(5, 4))


def test_a_camera_warp_redraws_the_first_videos_frame_0_carried_along_the_move(tiny_config, text_encoder):
    from kinema.control.camera import camera_warped, parse_camera

    config = tiny_config("model.text_dim=384")
    pipe = TextToVideoPipeline(tiny_denoiser("video_unet", text_dim=384).eval(), config, text_encoder)
    move = parse_camera("pan-left:2", 4)
    first = pipe("a red ball", steps=4, progress=False, camera=move, camera_guidance=0.0)  # warp off: the first pass
    start = camera_warped(first, move)
    warped = pipe("a red ball", steps=4, progress=False, camera=move, camera_guidance=0.0, camera_warp=0.05)
    redrawn = pipe("a red ball", steps=4, progress=False, camera=move, camera_guidance=0.0, camera_warp=0.9)
    # noised only a little, the start comes back nearly as it was; noised to 0.9, the model redraws most of it
    assert (warped - start).abs().mean() < 0.2 * (first - start).abs().mean()
    assert (redrawn - start).abs().mean() > 3 * (warped - start).abs().mean()
    bad = (({"camera_warp": 0.5}, "give camera"), ({"camera": move, "camera_warp": 1.0}, r"in \[0, 1\)"),
           ({"camera": move, "camera_warp": 0.5, "init_video": first, "strength": 0.5}, "no init_video"),
           ({"camera": move, "camera_warp": 0.5, "known": KnownPixels.frames({0: first[0, :, 0]}, 4)},
            "or known pixels"))
    for options, match in bad:
        with pytest.raises(KinemaError, match=match):
            pipe("a red ball", steps=1, progress=False, **options)


def test_camera_view_carries_frame_0_along_the_move_and_marks_what_it_saw():
    from kinema.control.camera import camera_view, parse_camera

    picture = torch.rand(2, 3, 12, 16) * 2 - 1
    view = camera_view(picture, parse_camera("pan-right:2", 4)[None])  # the picture slides 2 px left a step
    assert view.shape == (2, 4, 4, 12, 16)
    torch.testing.assert_close(view[:, :3, 0], picture)
    assert bool((view[:, 3, 0] == 1).all())
    for t in range(1, 4):
        shift = 2 * t
        torch.testing.assert_close(view[:, :3, t, :, : 16 - shift], picture[:, :, :, shift:])
        assert bool((view[:, 3, t, :, : 16 - shift] == 1).all())
        assert bool((view[:, 3, t, :, 16 - shift + 1 :] == 0).all())
        assert view[:, :3, t, :, 16 - shift + 1 :].abs().max() == 0  # what came into view is unknown: zeros


def test_the_camera_view_map_is_each_clips_frame_0_seen_along_its_own_move():
    from kinema.data.camera import CameraMotion, CameraMotionConfig

    data = CameraMotion(CameraMotionConfig(num_frames=4, size=16, texture="noise"), seed=0)
    items = [data[i] for i in range(4)]
    batch = {"video": torch.stack([it["video"] for it in items]), "camera": torch.stack([it["camera"] for it in items])}
    _, control, _ = training_controls(("camera_view",), (), batch, batch["video"], [torch.Generator()] * 4, 0.0)
    assert control.shape == (4, 4, 4, 16, 16)
    torch.testing.assert_close(control[:, :3, 0], batch["video"][:, :, 0])  # frame 0 is the clip's, all in view
    seen = control[:, 3:, 1:] > 0
    assert seen.float().mean() > 0.5
    rendered, frames = control[:, :3, 1:], batch["video"][:, :, 1:]
    own = ((rendered - frames).abs() * seen).sum() / (seen.sum() * 3)
    others = ((rendered - frames.roll(1, dims=0)).abs() * seen).sum() / (seen.sum() * 3)
    assert own < 0.35 * others  # the render shows what the moving camera saw next, not another clip


def test_a_camera_view_model_reads_frame_0_of_a_first_video_or_the_given_frame_rendered_along_the_move(
        tiny_config, text_encoder):
    from kinema.control.camera import camera_view, parse_camera

    config = tiny_config("model.text_dim=384", "model.controls=[camera,camera_view]")
    model = tiny_denoiser("video_unet", **{"text_dim": 384, "controls": ("camera", "camera_view")})
    pipe = TextToVideoPipeline(model.eval(), config, text_encoder)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[2].control[:, 2:].clone()))
    move = parse_camera("pan-left:2", 4)
    first = pipe("a red ball", steps=2, progress=False, camera=move, camera_warp=0.0,
                 controls={"camera_view": torch.zeros(1, 4, 4, 16, 16)})  # the map given: one plain pass
    calls = len(seen)
    seen.clear()
    video = pipe("a red ball", steps=2, progress=False, camera=move, camera_warp=0.0)
    assert all(bool((maps == 0).all()) for maps in seen[:calls])  # the first pass: no render yet
    torch.testing.assert_close(seen[-1][0], camera_view(first[:, :, 0], move[None])[0])  # then frame 0's render
    assert not torch.allclose(video, first)
    seen.clear()
    frame = torch.rand(3, 16, 16) * 2 - 1
    pipe("a red ball", steps=2, progress=False, camera=move, camera_warp=0.0, known=KnownPixels.frames({0: frame}, 4))
    assert len(seen) == calls  # one pass, reading the given frame's render
    torch.testing.assert_close(seen[0][0], camera_view(frame[None], move[None])[0])


def test_init_from_keeps_the_trained_maps_of_a_model_that_reads_one_more(tmp_path, tiny_config):
    from kinema.models.pretrained import init_from_pretrained, save_pretrained

    base_config = tiny_config("model.controls=[camera]")
    base = tiny_denoiser("video_unet", text_dim=base_config.model.text_dim, controls=("camera",)).eval()
    save_pretrained(tmp_path / "base", base, base_config)
    for order in (("camera", "camera_view"), ("camera_view", "camera")):
        grown = tiny_denoiser("video_unet", perturb=0, text_dim=base_config.model.text_dim, controls=order).eval()
        assert init_from_pretrained(grown, tmp_path / "base") == []
        x, t, cond = denoiser_inputs(base)
        view = torch.zeros(*cond.control.shape[:1], 4, *cond.control.shape[2:])
        maps = {"camera": cond.control, "camera_view": view}
        with torch.no_grad():
            expected = base(x, t, cond)
            torch.testing.assert_close(grown(x, t, replace(cond, control=torch.cat([maps[n] for n in order], 1))),
                                       expected)
