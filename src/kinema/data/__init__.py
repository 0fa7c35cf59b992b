"""Datasets, clip sampling and synthetic video with ground truth (chapter 11.1); curation in `kinema.data.prep`."""

from kinema.data.buckets import BucketBatchSampler
from kinema.data.camera import MOTIONS, CameraMotion, CameraMotionConfig
from kinema.data.digits import MovingDigits, MovingDigitsConfig
from kinema.data.folder import VideoFolder, VideoFolderConfig
from kinema.data.manifest import read_manifest, write_manifest
from kinema.data.physics_balls import (
    BALL_COLORS,
    CAPTION_LEVELS,
    BallsClip,
    BouncingBalls,
    BouncingBallsConfig,
    caption_for,
    clip_from_state,
    render_balls,
    simulate_balls,
    simulate_trajectories,
)
from kinema.data.shards import ShardDataset, ShardsConfig, stream_shards, write_shards

__all__ = [
    "BALL_COLORS",
    "CAPTION_LEVELS",
    "MOTIONS",
    "BallsClip",
    "BouncingBalls",
    "BouncingBallsConfig",
    "BucketBatchSampler",
    "CameraMotion",
    "CameraMotionConfig",
    "MovingDigits",
    "MovingDigitsConfig",
    "ShardDataset",
    "ShardsConfig",
    "VideoFolder",
    "VideoFolderConfig",
    "caption_for",
    "clip_from_state",
    "read_manifest",
    "render_balls",
    "simulate_balls",
    "simulate_trajectories",
    "stream_shards",
    "write_manifest",
    "write_shards",
]
