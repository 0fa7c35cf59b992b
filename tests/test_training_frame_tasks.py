"""Training with frame tasks (`train.frame_tasks`): the trainer hands each sample's known pixels to the model and the
loss, a frame-conditioned model learns to read them, and pixel tasks need a model that can."""


import pytest
import torch
from denoisers import tiny_denoiser

from kinema.conditioning.conditioning import Conditioning
from kinema.diffusion import DiffusionLoss, build_schedule
from kinema.diffusion.frame_tasks import draw_frame_tasks
from kinema.errors import KinemaError
from kinema.training.trainer import Trainer
from test_training_resume import one_thread  # noqa: F401  (autouse fixture)


def test_the_trainer_gives_known_pixels_to_model_and_loss(tiny_config, text_encoder):
    config = tiny_config("train.steps=2", "model.frame_conditioning=true", "train.frame_tasks=[first,box]")
    trainer = Trainer(config, text_encoder=text_encoder, progress=False)
    seen = []
    forward = trainer.model.forward
    trainer.model.forward = lambda x, t, cond: seen.append((x, t, cond)) or forward(x, t, cond)
    trainer.train()
    assert len(seen) == 2
    for x, t, cond in seen:
        assert cond.frame_mask is not None and cond.frame_mask.any() and not cond.frame_mask.all()
        whole = cond.frame_mask.flatten(3).all(3)[:, 0]
        assert t.shape == x.shape[:1] + x.shape[2:3] and (t[whole] == 0).all() and (t[~whole] > 0).all()
        mask = cond.frame_mask.expand_as(x)
        assert torch.equal(x[whole[:, None].expand(x.shape[:3])], cond.frames[whole[:, None].expand(x.shape[:3])])
        assert not torch.equal(x[mask], cond.frames[mask]) or whole.all()  # box pixels stay noisy in x


def test_pixel_tasks_need_a_frame_conditioned_model(tiny_config, text_encoder):
    with pytest.raises(KinemaError, match="model.frame_conditioning=true"):
        Trainer(tiny_config("train.frame_tasks=[none,box]"), text_encoder=text_encoder, progress=False)


def test_a_frame_conditioned_model_learns_to_read_the_known_pixels():
    """Static videos of smooth random images with holes: only the given pixels tell the model what the holes hold."""
    torch.manual_seed(0)
    model = tiny_denoiser("video_unet", text_dim=0, frame_conditioning=True, perturb=0).train()
    loss_fn = DiffusionLoss(build_schedule("cosine"), "x0")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def batch(seed: int):
        generator = torch.Generator().manual_seed(seed)
        coarse = torch.rand(4, 3, 2, 2, generator=generator) * 2 - 1  # smooth: a hole can be read from its rim
        image = torch.nn.functional.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=True)
        video = image[:, :, None].expand(4, 3, 4, 8, 8).contiguous()
        generators = [torch.Generator().manual_seed(seed * 10 + i) for i in range(4)]
        known, _ = draw_frame_tasks(["box"], video.shape, generators)
        known = known.all(dim=2, keepdim=True).expand_as(known)  # the hole in every frame: no frame is whole
        return video, known, generators

    def loss(seed: int, read: bool, levels: torch.Tensor | None = None) -> torch.Tensor:
        video, known, generators = batch(seed)
        cond = Conditioning(frames=video, frame_mask=known) if read else Conditioning()
        return loss_fn(lambda x, t: model(x, t, cond), video, generator=generators, known=known, levels=levels)

    for step in range(120):
        optimizer.zero_grad()
        loss(step, True).backward()
        optimizer.step()
    model.eval()
    noisy = torch.full((4, 4), 0.9)  # where x_t itself no longer tells what the holes hold
    with torch.no_grad():
        reading = sum(loss(1000 + s, True, noisy).item() for s in range(4))
        blind = sum(loss(1000 + s, False, noisy).item() for s in range(4))
    assert reading < 0.8 * blind, (reading, blind)  # ignoring the given pixels, both would be equal
