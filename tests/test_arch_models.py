"""Every architecture of the zoo (chapter 11.2) as a tiny model: forward shape, finite gradients, gradient
checkpointing with the same gradients, save/load with the same outputs; plus what defines VideoDiT (adaLN-Zero,
presets, static-token pruning) and inflation (the inflated model starts as the 2D model frame by frame)."""

import copy

import pytest
import torch
from denoisers import TINY_MODELS, denoiser_inputs, tiny_denoiser, tiny_run_config
from einops import rearrange
from typer.testing import CliRunner

from kinema.cli import app
from kinema.config import load_config
from kinema.errors import KinemaError
from kinema.models.inflate import InflatedUNet, InflatedUNetConfig, build_unet2d, inflate
from kinema.models.pretrained import load_pretrained, save_pretrained
from kinema.models.video_dit import VIDEO_DIT_PRESETS, VideoDiT, VideoDiTConfig
from kinema.training.trainer import Trainer
from kinema.video import read_video

UNET, DIT, INFLATED = TINY_MODELS["video_unet"], TINY_MODELS["video_dit"], TINY_MODELS["inflated_unet"]

VARIANTS = {
    **{f"unet-{conv}": ("video_unet", dict(UNET, conv=conv))
       for conv in ("factorized", "full3d", "p3d_a", "p3d_b", "p3d_c", "depthwise3d")},
    **{f"unet-{kind}": ("video_unet", dict(UNET, attention=(kind, kind)))
       for kind in ("joint", "parallel", "interleaved", "axial")},
    "unet-windowed": ("video_unet", dict(UNET, attention=("windowed", "windowed"), window=(2, 2, 2),
                                         window_overlap=(1, 1, 1), global_tokens=2)),
    "unet-causal-local": ("video_unet", dict(UNET, attention=("joint", "spatial"), temporal_mask="causal",
                                             temporal_window=2)),
    "unet-multiscale": ("video_unet", dict(UNET, temporal_scales=(1, 2, 0))),
    "unet-convgru": ("video_unet", dict(UNET, recurrent="convgru")),
    "unet-convlstm-bi": ("video_unet", dict(UNET, recurrent="convlstm", bidirectional=True)),
    "unet-gated-residual": ("video_unet", dict(UNET, recurrent="gated_residual")),
    "unet-pyramid": ("video_unet", dict(UNET, temporal_downsample=(True,))),
    "dit-factorized-sincos": ("video_dit", DIT),
    "dit-full-rope3d": ("video_dit", dict(DIT, attention="full", positions="rope3d")),
    "dit-cube-learned": ("video_dit", dict(DIT, patch_size=(2, 2, 2), positions="learned", max_grid=(4, 8, 8))),
    "dit-pruned-causal": ("video_dit", dict(DIT, attention="full", prune_static=0.5, temporal_mask="causal")),
    "dit-classes": ("video_dit", dict(DIT, num_classes=3)),
    "inflated-text": ("inflated_unet", INFLATED),
    "inflated-unconditional": ("inflated_unet", dict(INFLATED, base="unet2d", text_dim=0)),
    "inflated-frozen": ("inflated_unet", dict(INFLATED, freeze_2d=True)),
}


def make(name):
    model_name, fields = VARIANTS[name]
    model = tiny_denoiser(model_name, **fields)  # off the zero inits, so every branch contributes
    return model, tiny_run_config(model, model_name)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_forward_gradients_and_checkpointing(name):
    model, _ = make(name)
    x, t, cond = denoiser_inputs(model)
    grads = []
    for flag in (False, True):
        model.gradient_checkpointing = flag
        model.zero_grad()
        out = model(x, t, cond)
        assert out.shape == x.shape
        out.square().mean().backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0] and all(torch.isfinite(g).all() for g in grads[0].values())
    assert grads[0].keys() == grads[1].keys()
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key], msg=key)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_save_load_round_trip_gives_equal_outputs(name, tmp_path):
    model, config = make(name)
    save_pretrained(tmp_path / "m", model, config)
    loaded, loaded_config, _ = load_pretrained(tmp_path / "m")
    assert loaded_config.to_dict() == config.to_dict()
    x, t, cond = denoiser_inputs(model)
    torch.testing.assert_close(loaded(x, t, cond), model.eval()(x, t, cond))


def test_video_dit_starts_as_zero_output_with_identity_blocks():
    model = VideoDiT(VideoDiTConfig(**DIT))
    x, t, cond = denoiser_inputs(model)
    assert model(x, t, cond).abs().max() == 0
    tokens = torch.randn(2, 4 * 16, DIT["hidden_size"])
    positions = torch.zeros(64, 3, dtype=torch.long)
    out = model.blocks[0](tokens, torch.randn_like(tokens), (4, 16), positions, positions[:, 0], cond.text, None,
                          "bidirectional", None)
    torch.testing.assert_close(out, tokens)


def test_video_dit_presets_fill_sizes_and_reject_conflicts():
    config = load_config(None, ["model.name=video_dit", "model.preset=S/2x2x2"]).model
    assert (config.depth, config.hidden_size, config.heads, config.patch_size) == (12, 384, 6, (2, 2, 2))
    assert {"S/2", "B/2", "L/2", "S/4", "B/4", "L/4"} <= set(VIDEO_DIT_PRESETS)
    with pytest.raises(KinemaError, match="model.depth=3 conflicts with model.preset=B/2"):
        load_config(None, ["model.name=video_dit", "model.preset=B/2", "model.depth=3"])
    with pytest.raises(KinemaError, match="model.preset"):
        load_config(None, ["model.name=video_dit", "model.preset=Z/9"])


@pytest.mark.parametrize("overrides,key", [
    (["model.conv=p3d_z"], "model.conv"),
    (["model.attention=[temporal,sparse]"], "model.attention"),
    (["model.recurrent=lstm"], "model.recurrent"),
    (["model.name=video_dit", "model.positions=alibi"], "model.positions"),
    (["model.name=video_dit", "model.prune_static=0.5"], "model.prune_static"),
    (["model.name=inflated_unet", "model.base=unet3d"], "model.base"),
])
def test_bad_architecture_choices_name_their_key(overrides, key):
    with pytest.raises(KinemaError, match=key):
        load_config(None, overrides)


def test_token_pruning_keeps_frame_zero_and_the_moving_region():
    model = VideoDiT(VideoDiTConfig(**dict(DIT, attention="full", prune_static=0.75)))
    x = torch.zeros(1, 3, 4, 8, 8)
    x[:, :, 2, 4:6, 2:4] = 1.0  # one 2x2 patch (row 2, column 1) changes at frames 2 and 3
    kept = model._static_tokens(x, (4, 16))
    frame, cell = kept // 16, kept % 16
    assert kept.shape == (1, 16 + 12)  # frame 0 + a quarter of the other 48 tokens
    assert (frame == 0).sum() == 16
    assert {(2, 9), (3, 9)} <= set(zip(frame[0].tolist(), cell[0].tolist()))


def test_pruned_tokens_take_the_block_update_of_their_position_in_the_latest_kept_frame():
    frames, cells, width = 4, 3, 5
    inputs = torch.randn(1, frames * cells, width)
    keep = torch.tensor([[0, 1, 2, 4, 8, 9]])  # frame 0, then (1, 1), (2, 2), (3, 0)
    kept = torch.randn(1, keep.shape[1], width)
    updates = {(i // cells, i % cells): kept[0, k] - inputs[0, i] for k, i in enumerate(keep[0].tolist())}
    expected = inputs.clone()
    for frame in range(frames):
        for cell in range(cells):
            source = max(f for f in range(frame + 1) if (f, cell) in updates)  # latest kept frame at this cell
            expected[0, frame * cells + cell] += updates[(source, cell)]
    torch.testing.assert_close(VideoDiT._reuse_static(inputs, kept, keep, (frames, cells, 1)), expected)


def test_a_still_video_repeats_frame_zeros_output_at_every_pruned_token():
    """Rotary positions add nothing to the tokens, so in a still video a pruned token's input equals frame 0's at
    its position; taking frame 0's update, it must leave the model exactly as frame 0's token does."""
    model = tiny_denoiser("video_dit", attention="full", positions="rope3d", prune_static=0.99,
                         temporal_mask="causal")
    x = torch.rand(1, 3, 1, 8, 8).expand(1, 3, 4, 8, 8).clone()
    _, t, cond = denoiser_inputs(model, batch=1)
    with torch.no_grad():
        out = model.eval()(x, t, cond)
    kept = model._static_tokens(x, (4, 16))[0]
    later = {int(i) % 16 for i in kept if i >= 16}  # cells kept after frame 0 (to fill the budget)
    patches = rearrange(out, "b c t (h ph) (w pw) -> b t (h w) (c ph pw)", ph=2, pw=2)
    pruned = [cell for cell in range(16) if cell not in later]
    assert len(pruned) >= 15
    torch.testing.assert_close(patches[:, 1:, pruned], patches[:, :1, pruned].expand(-1, 3, -1, -1))
    assert patches[:, 0, pruned].abs().mean() > 1e-3  # frame 0's tokens were updated: the copy is not trivial


def test_inflated_unet_equals_the_2d_unet_frame_by_frame_at_initialisation():
    config = InflatedUNetConfig(**INFLATED)
    torch.manual_seed(0)
    unet2d = build_unet2d(config)
    x, t, cond = denoiser_inputs(InflatedUNet(config, copy.deepcopy(unet2d)))
    with torch.no_grad():
        images = [unet2d(x[:, :, frame], t * 1000, encoder_hidden_states=cond.text).sample for frame in range(4)]
        model = inflate(unet2d, motion_heads=2)
        torch.testing.assert_close(model(x, t, cond), torch.stack(images, dim=2), atol=1e-5, rtol=1e-4)
        for p in model.motion.parameters():  # trained motion modules do mix frames
            p.add_(0.1 * torch.randn_like(p))
        changed = x.clone()
        changed[:, :, 3] += 1.0
        assert not torch.allclose(model(x, t, cond)[:, :, 0], model(changed, t, cond)[:, :, 0])


def test_inflated_unet_takes_its_2d_weights_from_a_diffusers_directory(tmp_path):
    torch.manual_seed(0)
    unet2d = build_unet2d(InflatedUNetConfig(**INFLATED))
    unet2d.save_pretrained(tmp_path / "unet2d")
    torch.manual_seed(1)
    model = InflatedUNet(InflatedUNetConfig(**INFLATED, pretrained=str(tmp_path / "unet2d")))
    loaded = model.unet.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in unet2d.state_dict().items())
    assert model.config.unet_config["block_out_channels"] == [8, 16]  # recorded: checkpoints load without the dir


def test_frozen_inflated_unet_trains_only_its_motion_modules():
    model, _ = make("inflated-frozen")
    x, t, cond = denoiser_inputs(model)
    model(x, t, cond).square().mean().backward()
    assert all(p.grad is None for p in model.unet.parameters())
    assert all(p.grad is not None for p in model.motion.parameters())
    assert sorted({k.split(".")[0] for k in model.state_dict()}) == ["motion", "unet"]


SMALL_RUN = ["data.num_frames=4", "data.size=16", "data.radius_range=[2.0,3.0]", "train.batch_size=2",
             "train.warmup_steps=1", "train.sample_every=0", "train.steps=2", "sample.steps=2",
             "sample.prompts=[a red ball bounces]"]


@pytest.mark.parametrize("model", [
    ["model.name=video_dit", "model.hidden_size=24", "model.depth=1", "model.heads=2", "model.attention=full",
     "model.positions=rope3d"],
    ["model.name=inflated_unet", "model.block_out_channels=[8,16]", "model.norm_num_groups=4",
     "model.attention_head_dim=4", "model.motion_heads=2"],
    ["model.channels=8", "model.channel_mult=[1,2]", "model.attention=[windowed,axial]", "model.heads=2",
     "model.norm_groups=4", "model.conv=p3d_c", "model.recurrent=convgru", "model.temporal_downsample=[true]"],
], ids=["video_dit", "inflated_unet", "video_unet-zoo"])
def test_variant_trains_and_samples_from_the_command_line(model, tmp_path, text_encoder):
    config = load_config(None, [*SMALL_RUN, *model, f"train.output_dir={tmp_path / 'run'}"])
    checkpoint = Trainer(config, text_encoder=text_encoder, progress=False).train()
    out = tmp_path / "sample.mp4"
    result = CliRunner().invoke(app, ["sample", str(checkpoint), "-o", str(out), "--steps", "2", "--scale", "1",
                                      "--guidance", "1.0"])
    assert result.exit_code == 0, result.output
    video, _ = read_video(out)
    assert video.shape == (3, 4, 16, 16)
