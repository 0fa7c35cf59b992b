"""Physics balls: a synthetic video dataset with exact ground truth (chapter 11.1.4).

Discs fly in a 2D box (pixel units, x right, y down, box [0, size]^2), one colour each:

- integration: `substeps` steps per frame, exact under constant acceleration
  (p += v dt + g dt^2 / 2, v += g dt), so free fall follows y0 + v0 t + g t^2 / 2;
- ball-ball: elastic (equal density, mass ~ r^2); the impulse along the line of centres
  exchanges momentum, then overlapping discs are pushed apart in inverse proportion to their
  masses, which keeps the centre of mass in place. Ball contacts are frictionless;
- walls: the normal velocity flips and is scaled by the restitution e, at the exact moment of
  impact within the substep; friction is Coulomb sliding friction at wall contacts (no spin, no
  air drag): the tangential speed drops by at most `friction` times the normal impulse (1 + e) |v_n|,
  so a ball sliding on the floor decelerates at friction * gravity.

Clips render as anti-aliased discs over black (coverage from the signed distance to the rim)
and captions are derived from the ground truth, e.g. "a red ball falls and bounces to the left".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from kinema.data.synthetic import SyntheticDataset
from kinema.errors import KinemaError

BALL_COLORS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.12, 0.1),
    "green": (0.1, 0.85, 0.15),
    "blue": (0.2, 0.4, 1.0),
    "yellow": (1.0, 0.92, 0.1),
    "magenta": (0.95, 0.2, 0.95),
    "cyan": (0.1, 0.9, 1.0),
    "white": (1.0, 1.0, 1.0),
    "orange": (1.0, 0.55, 0.0),
}

CAPTION_LEVELS: dict[str, float] = {  # detail level -> probability of drawing it
    "full": 0.5,  # per ball: verb and horizontal direction
    "motion": 0.25,  # per ball: verb only
    "colors": 0.25,  # the balls, then one verb shared by all of them
}

BOUNCE_MIN_SPEED = 0.5  # px per frame: slower wall impacts (a ball resting on the floor) are no bounce
DIRECTION_MIN_SPEED = 0.5  # px per frame: a slower mean x-velocity gets no "to the left/right"
OVERLAP_TOLERANCE = 1e-6  # px: discs closer than this count as touching
SEPARATION_PASSES = 8  # rounds of ball de-overlap and wall clamping per substep


@dataclass
class BouncingBallsConfig:
    """Scene, physics and clip settings of the physics-balls dataset (pixels and seconds)."""

    num_frames: int = 8  # T
    size: int = 32  # H = W; the box is [0, size]^2
    min_balls: int = 1
    max_balls: int = 2
    radius_range: tuple[float, float] = (3.0, 4.5)  # px, uniform
    colors: tuple[str, ...] = tuple(BALL_COLORS)  # names in BALL_COLORS; distinct within a clip
    gravity: float = 48.0  # px/s^2, pointing down (+y)
    restitution: float = 0.9  # wall bounce: v_n -> -e v_n
    friction: float = 0.1  # Coulomb coefficient at wall contacts
    fps: float = 8.0
    substeps: int = 8  # integration steps per frame
    speed_range: tuple[float, float] = (12.0, 36.0)  # initial speed, px/s, uniform; random direction

    def __post_init__(self):
        self.radius_range = tuple(float(r) for r in self.radius_range)
        self.speed_range = tuple(float(s) for s in self.speed_range)
        self.colors = tuple(self.colors)
        name = type(self).__name__
        for key in ("num_frames", "size", "min_balls", "substeps"):
            if getattr(self, key) < 1:
                raise KinemaError(f"{name}.{key} must be >= 1, got {getattr(self, key)}")
        unknown = [c for c in self.colors if c not in BALL_COLORS]
        if unknown or len(set(self.colors)) != len(self.colors):
            raise KinemaError(f"{name}.colors must be distinct names from {sorted(BALL_COLORS)}, got {self.colors}")
        if not self.min_balls <= self.max_balls <= len(self.colors):
            raise KinemaError(
                f"{name}: need min_balls <= max_balls <= len(colors), got {self.min_balls}, {self.max_balls}, "
                f"{len(self.colors)}"
            )
        low, high = self.radius_range
        if not 0.5 <= low <= high < self.size / 2:
            raise KinemaError(f"{name}.radius_range needs 0.5 <= low <= high < size / 2, got {self.radius_range}")
        rng = np.random.default_rng(0)  # checked now, not at the clip that fails: place the largest balls 32 times
        for _ in range(32):
            _place_without_overlap(np.full(self.max_balls, high), self.size, rng)
        if not 0.0 <= self.speed_range[0] <= self.speed_range[1]:
            raise KinemaError(f"{name}.speed_range must satisfy 0 <= low <= high, got {self.speed_range}")
        if not 0.0 <= self.restitution <= 1.0:
            raise KinemaError(f"{name}.restitution must be in [0, 1], got {self.restitution}")
        if self.friction < 0.0:
            raise KinemaError(f"{name}.friction must be >= 0, got {self.friction}")
        if self.fps <= 0.0:
            raise KinemaError(f"{name}.fps must be > 0, got {self.fps}")


@dataclass
class BallsClip:
    """One rendered clip with its ground truth; N balls, T frames, velocities in px/s."""

    video: Tensor  # [3, T, H, W] float32 in [-1, 1]
    positions: Tensor  # [T, N, 2] float32 ball centres (x, y) in px
    velocities: Tensor  # [T, N, 2] float32 px/s
    radii: Tensor  # [N] float32 px
    color_names: list[str]
    colors: Tensor  # [N, 3] float32 RGB in [0, 1]
    wall_hits: Tensor  # [T, N] bool: ball bounced off a wall between frames t-1 and t (>= BOUNCE_MIN_SPEED)
    fps: float
    caption: str

    @property
    def size(self) -> int:
        """Side of the square box in pixels."""
        return self.video.shape[-1]


# ---------------------------------------------------------------------------------------------
# Physics
# ---------------------------------------------------------------------------------------------


def _collide_balls(p: np.ndarray, v: np.ndarray, radii: np.ndarray, mass: np.ndarray, pairs) -> bool:
    """Resolve overlapping pairs in place (elastic impulse along the centre line, then de-overlap); any found?"""
    first, second = pairs
    gaps = np.hypot(*(p[second] - p[first]).T) - radii[first] - radii[second]
    touching = np.flatnonzero(gaps < -OVERLAP_TOLERANCE)
    for k in touching:  # few pairs touch at once; resolve them one after the other
        a, b = first[k], second[k]
        dx, dy = p[b] - p[a]
        dist = math.hypot(dx, dy)
        overlap = radii[a] + radii[b] - dist
        if overlap <= 0.0:
            continue
        normal = np.array([dx / dist, dy / dist]) if dist > 1e-12 else np.array([1.0, 0.0])
        share_a, share_b = mass[b] / (mass[a] + mass[b]), mass[a] / (mass[a] + mass[b])
        closing = float((v[b] - v[a]) @ normal)
        if closing < 0.0:  # v_a' = v_a + 2 m_b / (m_a + m_b) ((v_b - v_a) . n) n, and symmetrically
            v[a] += 2.0 * share_a * closing * normal
            v[b] -= 2.0 * share_b * closing * normal
        p[a] -= share_a * overlap * normal
        p[b] += share_b * overlap * normal
    return touching.size > 0


def _bounce_off_walls(
    p: np.ndarray,
    v: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    acceleration: np.ndarray,
    dt: float,
    restitution: float,
    friction: float,
) -> np.ndarray:
    """Bounce balls that crossed a wall during the last substep, in place; return impact speeds [N] (0: none).

    Per axis, with u the speed into the wall, a the acceleration into it and s the overshoot, the
    flight since impact is undone exactly: impact speed u_i = sqrt(u^2 - 2 a s), time since impact
    tau = 2 s / (u + u_i); the ball then leaves at e u_i and flies for tau under a.
    """
    below, above = p < low, p > high
    if not (below.any() or above.any()):
        return np.zeros(len(p))
    into = np.where(below, -1.0, 1.0)  # sign of the direction into the nearer crossed wall
    wall = np.where(below, low, high)
    speed, accel, overshoot = into * v, into * acceleration, into * (p - wall)
    hit = (below | above) & (speed > 0.0)  # [N, 2]: crossed while moving into the wall on that axis
    impact = np.where(hit, np.sqrt(np.maximum(speed * speed - 2.0 * accel * overshoot, 0.0)), 0.0)
    tau = np.where(hit, np.minimum(2.0 * overshoot / np.where(hit, speed + impact, 1.0), dt), 0.0)
    rebound = restitution * impact
    p[:] = np.where(hit, wall - into * np.maximum(rebound * tau - 0.5 * accel * tau * tau, 0.0), p)
    v[:] = np.where(hit, into * (accel * tau - rebound), v)
    # Coulomb friction: the wall along axis k slows the other axis by <= friction * (1 + e) * impact speed
    slowdown = friction * (1.0 + restitution) * impact[:, ::-1]
    v[:] = np.sign(v) * np.maximum(np.abs(v) - slowdown, 0.0)
    return impact.max(axis=1)


def simulate_trajectories(
    positions: np.ndarray, velocities: np.ndarray, radii: np.ndarray, config: BouncingBallsConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrate N balls from initial (x, y) px and px/s [N, 2] -> positions, velocities [T, N, 2], wall_hits [T, N]."""
    p = np.array(positions, dtype=np.float64)
    v = np.array(velocities, dtype=np.float64)
    radii = np.asarray(radii, dtype=np.float64)
    if radii.ndim != 1 or p.shape != (len(radii), 2) or v.shape != p.shape:
        shapes = f"{p.shape}, {v.shape}, {radii.shape}"
        raise KinemaError(f"simulate_trajectories: need positions, velocities [N, 2] and radii [N], got {shapes}")
    n = len(radii)
    low, high = radii[:, None], config.size - radii[:, None]
    pairs = np.triu_indices(n, k=1)
    if (p < low - 1e-6).any() or (p > high + 1e-6).any():
        raise KinemaError(f"simulate_trajectories: ball centres must lie in [r, size - r] for size {config.size}")
    if (np.hypot(*(p[pairs[1]] - p[pairs[0]]).T) < radii[pairs[0]] + radii[pairs[1]] - 1e-6).any():
        raise KinemaError("simulate_trajectories: initial balls overlap")
    dt = 1.0 / (config.fps * config.substeps)
    gravity = np.array([0.0, config.gravity])
    mass = radii**2
    min_impact = BOUNCE_MIN_SPEED * config.fps

    out_p, out_v = np.empty((config.num_frames, n, 2)), np.empty((config.num_frames, n, 2))
    wall_hits = np.zeros((config.num_frames, n), dtype=bool)
    out_p[0], out_v[0] = p, v
    for t in range(1, config.num_frames):
        for _ in range(config.substeps):
            p += v * dt + 0.5 * gravity * dt * dt
            v += gravity * dt
            impact = _bounce_off_walls(p, v, low, high, gravity, dt, config.restitution, config.friction)
            wall_hits[t] |= impact >= min_impact
            for _ in range(SEPARATION_PASSES):  # a ball pushed into a wall goes back and pushes on: repeat
                if not _collide_balls(p, v, radii, mass, pairs):
                    break
                np.minimum(np.maximum(p, low, out=p), high, out=p)
        out_p[t], out_v[t] = p, v
    return out_p, out_v, wall_hits


def _place_without_overlap(radii: np.ndarray, size: int, rng: np.random.Generator, candidates: int = 256) -> np.ndarray:
    """Random non-overlapping centres [N, 2] inside the box, one ball after the other (several tries)."""
    for _ in range(8):
        placed = np.empty((0, 2))
        for k, radius in enumerate(radii):
            cand = rng.uniform(radius, size - radius, size=(candidates, 2))
            gaps = np.linalg.norm(cand[:, None] - placed[None], axis=-1) - radius - radii[None, :k]
            free = np.flatnonzero((gaps > 0.0).all(axis=1))
            if free.size == 0:
                break
            placed = np.concatenate([placed, cand[free[:1]]])
        else:
            return placed
    raise KinemaError(
        f"BouncingBallsConfig: cannot place {len(radii)} balls of radius up to {radii.max():.1f} without overlap "
        f"in a {size}px box; lower max_balls or radius_range"
    )


# ---------------------------------------------------------------------------------------------
# Rendering and captions
# ---------------------------------------------------------------------------------------------


def render_balls(positions: np.ndarray, radii: np.ndarray, colors: np.ndarray, size: int) -> Tensor:
    """Anti-aliased discs over black: centres [T, N, 2] px, radii [N], RGB [N, 3] -> [3, T, H, W] in [-1, 1]."""
    positions = np.asarray(positions, dtype=np.float32)
    radii = np.asarray(radii, dtype=np.float32)
    colors = np.asarray(colors, dtype=np.float32)
    centres = np.arange(size, dtype=np.float32) + 0.5  # pixel (row i, col j) covers [j, j+1] x [i, i+1]
    dx = centres[None, None, None, :] - positions[:, :, 0, None, None]  # [T, N, 1, W]
    dy = centres[None, None, :, None] - positions[:, :, 1, None, None]  # [T, N, H, 1]
    # coverage of a pixel ~ signed distance from its centre to the rim, clamped to one pixel's width
    coverage = np.clip(radii[None, :, None, None] + 0.5 - np.sqrt(dx * dx + dy * dy), 0.0, 1.0)  # [T, N, H, W]
    image = np.zeros((3, positions.shape[0], size, size), dtype=np.float32)
    for alpha, rgb in zip(coverage.transpose(1, 0, 2, 3), colors):  # "over" compositing, ball after ball
        image += alpha * (rgb[:, None, None, None] - image)
    return torch.from_numpy(image * 2.0 - 1.0)


def _verb(falls: bool, bounces: bool, plural: bool) -> str:
    """'falls and bounces' / 'falls' / 'bounces' / 'moves', or the plural form."""
    words = [w for w, on in (("fall", falls), ("bounce", bounces)) if on] or ["move"]
    return " and ".join(w if plural else w + "s" for w in words)


def caption_for(clip: BallsClip, rng: np.random.Generator, level: str | None = None) -> str:
    """Caption from ground truth at a detail level drawn from CAPTION_LEVELS (or the given `level`).

    Balls are named left to right by initial x, joined by "and". A ball "falls" if it starts in the
    upper half moving down, "bounces" if it hit a wall or the floor in the clip (else it "moves");
    "full" adds "to the left/right" from the sign of its mean x-velocity when that is clear.
    """
    if level is None:
        level = str(rng.choice(list(CAPTION_LEVELS), p=list(CAPTION_LEVELS.values())))
    if level not in CAPTION_LEVELS:
        raise KinemaError(f"caption_for: unknown level {level!r}; expected one of {list(CAPTION_LEVELS)}")
    falls = (clip.positions[0, :, 1] < clip.size / 2) & (clip.velocities[0, :, 1] > 0)
    bounces = clip.wall_hits.any(dim=0)
    mean_vx = clip.velocities[:, :, 0].mean(dim=0) / clip.fps  # px per frame
    order = torch.argsort(clip.positions[0, :, 0], stable=True).tolist()
    names = [clip.color_names[i] for i in order]
    balls = [f"{'an' if name[0] in 'aeiou' else 'a'} {name} ball" for name in names]  # "an orange ball"
    if level == "colors":
        verbs = {_verb(bool(falls[i]), bool(bounces[i]), plural=len(order) > 1) for i in order}
        verb = verbs.pop() if len(verbs) == 1 else "move"
        return f"{' and '.join(balls)} {verb}"
    phrases = []
    for ball, i in zip(balls, order):
        phrase = f"{ball} {_verb(bool(falls[i]), bool(bounces[i]), plural=False)}"
        if level == "full" and abs(mean_vx[i]) >= DIRECTION_MIN_SPEED:
            phrase += " to the left" if mean_vx[i] < 0 else " to the right"
        phrases.append(phrase)
    return " and ".join(phrases)


# ---------------------------------------------------------------------------------------------
# Clips and the dataset
# ---------------------------------------------------------------------------------------------


def clip_from_state(
    config: BouncingBallsConfig,
    positions: np.ndarray,
    velocities: np.ndarray,
    radii: np.ndarray,
    color_names: list[str],
    rng: np.random.Generator,
) -> BallsClip:
    """Simulate, render and caption balls from a chosen initial state: centres px, velocities px/s [N, 2]."""
    unknown = [name for name in color_names if name not in BALL_COLORS]
    if unknown or len(color_names) != len(radii):
        raise KinemaError(f"clip_from_state: need one colour from {sorted(BALL_COLORS)} per ball, got {color_names}")
    positions, velocities, wall_hits = simulate_trajectories(positions, velocities, radii, config)
    colors = np.array([BALL_COLORS[name] for name in color_names], dtype=np.float32).reshape(-1, 3)
    clip = BallsClip(
        video=render_balls(positions, radii, colors, config.size),
        positions=torch.from_numpy(positions.astype(np.float32)),
        velocities=torch.from_numpy(velocities.astype(np.float32)),
        radii=torch.from_numpy(np.asarray(radii, dtype=np.float32)),
        color_names=list(color_names),
        colors=torch.from_numpy(colors),
        wall_hits=torch.from_numpy(wall_hits),
        fps=config.fps,
        caption="",
    )
    return dataclasses.replace(clip, caption=caption_for(clip, rng))


def simulate_balls(config: BouncingBallsConfig, seed: int) -> BallsClip:
    """Sample a scene from `seed` (ball count, radii, distinct colours, positions, velocities) and make its clip."""
    if seed < 0:
        raise KinemaError(f"simulate_balls: seed must be >= 0, got {seed}")
    rng = np.random.default_rng(seed)
    n = int(rng.integers(config.min_balls, config.max_balls + 1))
    radii = rng.uniform(*config.radius_range, size=n)
    names = [config.colors[k] for k in rng.choice(len(config.colors), size=n, replace=False)]
    positions = _place_without_overlap(radii, config.size, rng)
    angle, speed = rng.uniform(0.0, 2.0 * math.pi, size=n), rng.uniform(*config.speed_range, size=n)
    velocities = speed[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return clip_from_state(config, positions, velocities, radii, names, rng)


def _pad_balls(x: Tensor, max_balls: int, dim: int) -> Tensor:
    """Zero-pad the ball axis `dim` of `x` to `max_balls` entries."""
    shape = list(x.shape)
    shape[dim] = max_balls
    out = x.new_zeros(shape)
    out.narrow(dim, 0, x.shape[dim]).copy_(x)
    return out


class BouncingBalls(SyntheticDataset):
    """Map-style dataset of physics-ball clips, deterministic in (seed, index); ball axes padded to max_balls."""

    config_class = BouncingBallsConfig

    def clip(self, index: int) -> BallsClip:
        """The full ground truth of clip `index` (unpadded, with colour names)."""
        self.check_index(index)
        seed = int(np.random.SeedSequence([self.seed, index]).generate_state(1, dtype=np.uint64)[0])
        return simulate_balls(self.config, seed)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        """{"video", "caption", "positions", "velocities", "radii" (0: no ball), "colors", "wall_hits", "num_balls"}."""
        clip = self.clip(index)
        m = self.config.max_balls
        return {
            "video": clip.video,
            "caption": clip.caption,
            "positions": _pad_balls(clip.positions, m, dim=1),
            "velocities": _pad_balls(clip.velocities, m, dim=1),
            "radii": _pad_balls(clip.radii, m, dim=0),
            "colors": _pad_balls(clip.colors, m, dim=0),
            "wall_hits": _pad_balls(clip.wall_hits, m, dim=1),
            "num_balls": torch.tensor(clip.radii.shape[0]),
        }
