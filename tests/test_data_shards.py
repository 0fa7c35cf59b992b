"""Clip and latent shards: written once, read back equal at random and streamed, through the config."""

import tarfile

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from kinema.config import load_config
from kinema.data.digits import MovingDigits, MovingDigitsConfig
from kinema.data.registry import build_dataset
from kinema.data.shards import ShardDataset, stream_shards, write_shards
from kinema.errors import KinemaError


@pytest.fixture(scope="module")
def digits():
    return MovingDigits(MovingDigitsConfig(num_frames=4, size=16, digit_size=8), length=10, seed=1)


def assert_items_equal(a: dict, b: dict, video_atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == b[key].dtype or key == "video", key
            assert torch.allclose(value.float(), b[key].float(), atol=video_atol if key == "video" else 0), key
        else:
            assert value == b[key], key


def test_shards_read_back_equal_at_random_and_streamed(tmp_path, digits):
    shards = write_shards(digits, tmp_path / "shards", items_per_shard=4, video_dtype="float32")
    assert [s.name for s in shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    with tarfile.open(shards[0]) as tar:
        assert not any(name.endswith((".pth", ".pickle", ".pyd")) for name in tar.getnames())
    indexed = ShardDataset(str(tmp_path / "shards"))
    assert len(indexed) == 10
    for index in (7, 0, 9, 3):
        assert_items_equal(indexed[index], digits[index])
    streamed = list(stream_shards(str(tmp_path / "shards/shard-{000000..000002}.tar")))
    assert len(streamed) == 10
    for index, item in enumerate(streamed):
        assert_items_equal(item, digits[index])


def test_uint8_videos_are_exact_to_a_level_and_workers_read_them(tmp_path, digits):
    write_shards(digits, tmp_path / "shards", items_per_shard=3)
    config = load_config(None, ["data.kind=shards", f"data.urls={tmp_path / 'shards'}", "data.num_frames=4",
                                "data.size=16"]).data
    dataset = build_dataset("shards", config, seed=0)
    batches = list(DataLoader(dataset, batch_size=5, num_workers=2))
    videos = torch.cat([b["video"] for b in batches])
    expected = torch.stack([digits[i]["video"] for i in range(10)])
    assert (videos - expected).abs().max() <= 1 / 127.5 + 1e-6
    assert [c for b in batches for c in b["caption"]] == [digits[i]["caption"] for i in range(10)]
    streaming = build_dataset("shards", load_config(None, [
        "data.kind=shards", f"data.urls={tmp_path / 'shards'}", "data.num_frames=4", "data.size=16",
        "data.stream=true", "data.shuffle_buffer=4"]).data, seed=0)
    assert sorted(item["caption"] for item in streaming) == sorted(digits[i]["caption"] for i in range(10))
    with pytest.raises(KinemaError, match="num_frames"):
        build_dataset("shards", load_config(None, ["data.kind=shards", f"data.urls={tmp_path / 'shards'}"]).data, 0)


def test_latent_cache_stores_the_encoders_output(tmp_path, digits):
    def encode(video):  # a stand-in encoder: 2x spatial average pooling to 4 channels
        pooled = F.avg_pool3d(video, (1, 2, 2))
        return torch.cat([pooled, pooled.mean(1, keepdim=True)], dim=1)

    write_shards(digits, tmp_path / "latents", encode=encode, batch_size=4)
    cached = ShardDataset(str(tmp_path / "latents"))
    assert "video" not in cached[0]
    for index in range(10):
        expected = encode(digits[index]["video"][None])[0].half()
        assert cached[index]["latent"].dtype == torch.float16
        assert torch.equal(cached[index]["latent"], expected)
        assert cached[index]["caption"] == digits[index]["caption"]


def test_missing_shards_raise_naming_them(tmp_path):
    with pytest.raises(KinemaError, match="no .tar shards"):
        ShardDataset(str(tmp_path))
    with pytest.raises(KinemaError, match="shard-9.tar"):
        ShardDataset(str(tmp_path / "shard-9.tar"))
