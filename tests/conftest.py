"""Shared fixtures: tiny configs and one text encoder per session (loading it takes seconds)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))  # 2 cores on CI; fewer when shared

TINY_OVERRIDES = [
    "model.channels=8", "model.channel_mult=[1,2]", "model.attention=[temporal,joint]", "model.heads=2",
    "model.norm_groups=4", "model.patch_size=1",
    "data.num_frames=4", "data.size=16", "data.radius_range=[2.0,3.0]",
    "train.batch_size=2", "train.warmup_steps=2", "train.sample_every=0", "train.log_every=1",
    "sample.steps=2", "sample.prompts=[a red ball bounces]",
]


@pytest.fixture(scope="session")
def text_encoder():
    from kinema.conditioning.text import TextEncoder

    return TextEncoder()


@pytest.fixture
def tiny_config(tmp_path):
    """A factory: tiny_config('train.steps=4', ...) -> Config writing into tmp_path."""
    from kinema.config import load_config

    def make(*overrides: str):
        return load_config(None, [*TINY_OVERRIDES, f"train.output_dir={tmp_path / 'run'}", *overrides])

    return make
