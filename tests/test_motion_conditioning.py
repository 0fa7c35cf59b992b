"""Direction control from prompt words: parsing, the model's direction embedding, training and sampling wiring,
and fine-tuning a trained model into one that reads it (train.init_from)."""

import pytest
import torch
from denoisers import tiny_denoiser

from kinema.conditioning.conditioning import Conditioning
from kinema.conditioning.motion_words import direction_from_prompt, motion_from_prompts
from kinema.conditioning.prompts import prompt_conditioning
from kinema.diffusion import DiffusionLoss, build_schedule
from kinema.errors import KinemaError
from kinema.models.pretrained import init_from_pretrained, save_pretrained
from kinema.models.video_unet import VideoUNet
from kinema.nn.embeddings import DirectionEmbedding
from kinema.pipelines.text_to_video import TextToVideoPipeline
from kinema.training.trainer import Trainer


@pytest.mark.parametrize("prompt,direction", [
    ("a red ball falls and bounces to the left", (-1.0, 0.0)),
    ("A ball moves To The Right", (1.0, 0.0)),
    ("a ball rolls from left to right", (1.0, 0.0)),
    ("a ball rolls from right to left", (-1.0, 0.0)),
    ("a balloon drifts upwards", (0.0, -1.0)),            # image y points down
    ("a stone falls downward", (0.0, 1.0)),
    ("a red ball to the left and a blue ball to the right", (0.0, 0.0)),  # opposite words cancel
    ("a red ball bounces to the left and a blue ball bounces", (-1.0, 0.0)),
    ("a leftover ball on the right-hand side", (0.0, 0.0)),  # no direction phrase, only look-alike words
    ("", (0.0, 0.0)),
])
def test_direction_words_are_read_from_the_prompt(prompt, direction):
    assert direction_from_prompt(prompt) == direction


def test_motion_is_one_row_per_prompt():
    assert motion_from_prompts([]).shape == (0, 2)
    assert motion_from_prompts(["to the left", "a ball"]).tolist() == [[-1.0, 0.0], [0.0, 0.0]]


def test_prompt_conditioning_adds_motion_only_for_models_that_read_it(text_encoder):
    prompts = ["a ball bounces to the right", ""]
    assert prompt_conditioning(prompts, text_encoder, {"text", "text_mask"}).motion is None
    cond = prompt_conditioning(prompts, text_encoder, {"text", "text_mask", "motion"})
    assert cond.motion.tolist() == [[1.0, 0.0], [0.0, 0.0]] and cond.text.shape[0] == 2


def test_direction_embedding_tells_frames_apart_only_when_there_is_a_direction():
    torch.manual_seed(0)
    embed = DirectionEmbedding(8)
    assert embed(torch.tensor([[1.0, 0.0]]), 4).abs().max() == 0  # zero-initialised output layer
    torch.nn.init.normal_(embed.mlp[-1].weight)
    still, moving = embed(torch.tensor([[0.0, 0.0], [1.0, 0.0]]), 4)
    assert torch.allclose(still, still[:1].expand(4, -1))
    assert (moving[0] - moving[-1]).abs().max() > 1e-3
    assert not torch.allclose(embed(torch.tensor([[1.0, 0.0]]), 4), embed(torch.tensor([[-1.0, 0.0]]), 4))


def tiny(motion: bool, perturbed: bool = False) -> VideoUNet:
    return tiny_denoiser("video_unet", perturb=0.05 if perturbed else 0, motion=motion)


def text(batch: int = 2) -> Conditioning:
    return Conditioning(text=torch.randn(batch, 3, 16))


def test_model_checks_motion_field():
    x, t = torch.randn(2, 3, 4, 8, 8), torch.rand(2)
    with pytest.raises(KinemaError, match="motion"):
        tiny(motion=False)(x, t, Conditioning(text=torch.randn(2, 3, 16), motion=torch.zeros(2, 2)))
    with pytest.raises(KinemaError, match=r"cond.motion must be \[B, 2\]"):
        tiny(motion=True)(x, t, Conditioning(text=torch.randn(2, 3, 16), motion=torch.zeros(2, 3)))


def test_missing_motion_reads_as_no_direction():
    model = tiny(motion=True, perturbed=True)
    x, t, cond = torch.randn(2, 3, 4, 8, 8), torch.rand(2), text()
    moving = Conditioning(text=cond.text, motion=torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    still = Conditioning(text=cond.text, motion=torch.zeros(2, 2))
    torch.testing.assert_close(model(x, t, cond), model(x, t, still))
    assert not torch.allclose(model(x, t, cond), model(x, t, moving))


def test_a_motion_model_learns_what_text_cannot_tell_apart():
    """Two clips, the same caption, opposite directions in time (brightening, darkening): at high noise only the
    direction can say which clip it is, and only the per-frame direction embedding can say it frame by frame."""
    clip = torch.linspace(-0.8, 0.8, 4)[None, :, None, None].expand(3, 4, 8, 8)
    videos = torch.stack([clip, clip.flip(1)]).repeat(4, 1, 1, 1, 1)
    text, motion = torch.zeros(8, 3, 16), torch.tensor([[1.0, 0.0], [-1.0, 0.0]]).repeat(4, 1)
    loss_fn, t = DiffusionLoss(build_schedule("cosine"), "x0"), torch.full((8,), 0.95)

    def trained_loss(model: VideoUNet, cond: Conditioning) -> float:
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        generator = torch.Generator().manual_seed(0)

        def loss() -> torch.Tensor:
            x_t, target = loss_fn.noise_and_target(videos, t, torch.randn(videos.shape, generator=generator))
            return (model(x_t, t, cond) - target).square().mean()

        for _ in range(30):
            optimizer.zero_grad()
            loss().backward()
            optimizer.step()
        with torch.no_grad():
            return sum(loss().item() for _ in range(4)) / 4

    with_motion = trained_loss(tiny(motion=True), Conditioning(text=text, motion=motion))
    without = trained_loss(tiny(motion=False), Conditioning(text=text))
    assert with_motion < 0.25 * without, (with_motion, without)


def test_training_feeds_the_captions_directions_and_drops_them_with_the_caption(tiny_config, text_encoder):
    config = tiny_config("model.text_dim=384", "model.motion=true", "train.steps=1", "train.caption_dropout=0.5",
                         "train.batch_size=16")
    trainer = Trainer(config, text_encoder=text_encoder, progress=False)
    batch = next(iter(trainer._loader()))
    cond = trainer._conditioning(batch, trainer.sample_generators(0, 16))
    dropped = torch.cat([torch.rand(1, generator=g) for g in trainer.sample_generators(0, 16)]) < 0.5
    expected = motion_from_prompts(["" if d else c for c, d in zip(batch["caption"], dropped.tolist())])
    assert torch.equal(cond.motion, expected)
    assert expected.abs().sum() > 0 and dropped.any() and not dropped.all()


def test_guided_sampling_pairs_the_prompts_direction_with_an_undirected_negative(tiny_config, text_encoder):
    config = tiny_config("model.text_dim=384", "model.motion=true")
    model = VideoUNet(config.model)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[2].motion.clone()))
    pipe = TextToVideoPipeline(model, config, text_encoder)
    pipe(["a ball bounces to the left", "a ball bounces"], guidance=2.0, steps=1, progress=False)
    assert seen[0].tolist() == [[-1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]


def test_init_from_fine_tunes_a_trained_model_into_one_with_direction_control(tmp_path, tiny_config, text_encoder):
    base = tiny_config("model.text_dim=384")
    trained = VideoUNet(base.model)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_pretrained(tmp_path / "base", trained, base, {"step": 3})

    config = tiny_config("model.text_dim=384", "model.motion=true", f"train.init_from={tmp_path / 'base'}")
    trainer = Trainer(config, text_encoder=text_encoder, progress=False)
    for name, value in trained.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], value), name
    x, t = torch.randn(1, 3, 4, 16, 16), torch.rand(1)
    cond = Conditioning(text=torch.randn(1, 3, 384))
    model = trainer.model.eval()
    directed = Conditioning(text=cond.text, motion=torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(model(x, t, directed), trained.eval()(x, t, cond))  # starts as the trained model


def test_init_from_refuses_weights_that_do_not_fit(tmp_path, tiny_config):
    base = tiny_config("model.text_dim=384")
    save_pretrained(tmp_path / "base", VideoUNet(base.model), base, {"step": 1})
    wider = tiny_config("model.text_dim=384", "model.channels=16")
    with pytest.raises(KinemaError, match="train.init_from"):
        init_from_pretrained(VideoUNet(wider.model), tmp_path / "base")
