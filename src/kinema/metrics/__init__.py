"""Evaluation metrics for generated video: distribution distances, frame, temporal, text and physics scores."""

from kinema.metrics.balls import (
    BallDetections,
    BallTracks,
    ball_scene_problem,
    detect_balls,
    detect_balls_in_clip,
    link_detections,
    track_balls,
)
from kinema.metrics.camera import CAMERA_SCORES, camera_scores, estimate_camera
from kinema.metrics.distances import (
    bootstrap_interval,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_stats,
    kernel_distance,
)
from kinema.metrics.features import I3D_PRESETS, I3DFeatures, KinemaVideoFeatures, VideoFeatureNet
from kinema.metrics.frame import PSNR_CAP_DB, load_lpips, lpips, lpips_distance, lpips_t, psnr, ssim
from kinema.metrics.physics import (
    IDENTITY_SCORES,
    PHYSICS_SCORES,
    STILL,
    TARGET_SCORES,
    BallScores,
    ball_scores,
    identity_scores,
    physics_scores,
    target_scores,
)
from kinema.metrics.temporal import TEMPORAL_SCORES, farneback_flow, temporal_scores

__all__ = [
    "CAMERA_SCORES", "camera_scores", "estimate_camera",
    "I3D_PRESETS", "IDENTITY_SCORES", "PHYSICS_SCORES", "PSNR_CAP_DB", "STILL", "TARGET_SCORES", "TEMPORAL_SCORES",
    "BallDetections", "BallScores", "BallTracks", "I3DFeatures", "KinemaVideoFeatures", "VideoFeatureNet",
    "ball_scene_problem", "ball_scores", "bootstrap_interval", "detect_balls", "detect_balls_in_clip",
    "farneback_flow", "frechet_distance", "frechet_distance_from_features", "gaussian_stats", "identity_scores",
    "kernel_distance", "link_detections", "load_lpips", "lpips", "lpips_distance", "lpips_t", "physics_scores",
    "psnr", "ssim", "target_scores", "temporal_scores", "track_balls",
]
