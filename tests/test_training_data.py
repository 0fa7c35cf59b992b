"""The trainer reads every kind of dataset: streamed shards (resumed by skipping) and aspect-bucketed folders."""

import torch
from safetensors.torch import load_file

from kinema.config import config_from_dict
from kinema.data import BouncingBalls
from kinema.data.shards import write_shards
from kinema.training.trainer import Trainer
from test_data_folder import index_frames, write_frames
from test_training_resume import one_thread  # noqa: F401  (autouse fixture)


def with_data(config, **data):
    """The same config with its whole data section replaced."""
    values = config.to_dict()
    values["data"] = data
    return config_from_dict(values)


def final_weights(trainer_config, text_encoder, stop_at=None):
    trainer = Trainer(trainer_config, text_encoder=text_encoder, progress=False)
    if stop_at:
        trainer.train(until_step=stop_at)
        trainer = Trainer(trainer_config, resume=True, text_encoder=text_encoder, progress=False)
    return load_file(str(trainer.train() / "model.safetensors"))


def test_streamed_shards_train_and_resume_exactly(tmp_path, tiny_config, text_encoder):
    base = tiny_config()
    write_shards(BouncingBalls(base.data, length=12, seed=0), tmp_path / "shards", items_per_shard=4)
    urls = str(tmp_path / "shards/shard-{000000..000002}.tar")
    configs = [with_data(tiny_config("train.steps=3", "train.checkpoint_every=1", f"train.output_dir={tmp_path / n}"),
                         kind="shards", urls=urls, stream=True, num_frames=4, size=16) for n in ("a", "b")]
    straight = final_weights(configs[0], text_encoder)
    resumed = final_weights(configs[1], text_encoder, stop_at=2)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_bucketed_folder_trains_and_resumes_exactly(tmp_path, tiny_config, text_encoder):
    (tmp_path / "videos").mkdir()
    for name, (height, width) in {"wide.mp4": (16, 32), "tall.mp4": (32, 16), "wide2.mp4": (18, 32)}.items():
        write_frames(tmp_path / "videos" / name, index_frames(16, height, width), 24)
    configs = [with_data(tiny_config("train.steps=3", "train.checkpoint_every=1", f"train.output_dir={tmp_path / n}"),
                         kind="folder", root=str(tmp_path / "videos"), num_frames=4, buckets=[[16, 32], [32, 16]],
                         length=12) for n in ("a", "b")]
    straight = final_weights(configs[0], text_encoder)
    resumed = final_weights(configs[1], text_encoder, stop_at=2)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
