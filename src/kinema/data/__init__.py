"""Datasets, clip sampling and synthetic video with ground truth (chapter 11.1)."""

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

__all__ = [
    "BALL_COLORS",
    "CAPTION_LEVELS",
    "BallsClip",
    "BouncingBalls",
    "BouncingBallsConfig",
    "caption_for",
    "clip_from_state",
    "render_balls",
    "simulate_balls",
    "simulate_trajectories",
]
