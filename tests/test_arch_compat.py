"""The architecture zoo keeps today's VideoUNet: same state_dict keys and shapes, same outputs for the same weights.

The reference JSON was recorded from VideoUNet before any zoo option existed; the shipped model's checkpoint
(configs/balls.yaml) must keep loading and producing the same videos.
"""

import json
from pathlib import Path

import torch

from kinema.conditioning.conditioning import Conditioning
from kinema.config import load_config
from kinema.models.video_unet import VideoUNet, VideoUNetConfig

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = json.loads((Path(__file__).with_name("test_arch_video_unet_reference.json")).read_text())


def shapes(model):
    return {key: list(value.shape) for key, value in model.state_dict().items()}


def test_default_and_shipped_video_unet_keep_their_state_dict_keys_and_shapes():
    assert shapes(VideoUNet(VideoUNetConfig())) == REFERENCE["default"]
    assert shapes(VideoUNet(load_config(ROOT / "configs" / "balls.yaml").model)) == REFERENCE["balls"]


def test_video_unet_with_recorded_weights_gives_the_recorded_output():
    config = VideoUNetConfig(channels=8, channel_mult=(1, 2), attention=("temporal", "joint"), heads=2, norm_groups=4,
                             text_dim=16)
    model = VideoUNet(config)
    with torch.no_grad():  # the recording's weights: each parameter seeded by its size
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 2, 4, 4, generator=generator)
    text = torch.randn(1, 3, 16, generator=generator)
    out = model(x, torch.tensor([0.3]), Conditioning(text=text))
    torch.testing.assert_close(out.flatten(), torch.tensor(REFERENCE["tiny_output"]), atol=1e-5, rtol=1e-4)
