"""Rejection sampling: sample again with fresh noise while a check finds faults, keeping each video's best attempt
(a verifier over a sampler's draws; chapter 11.1.3 object permanence is what Kinema checks with it)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

RETRIES = 2  # fresh draws after the first, by default
_ATTEMPT_STRIDE = 15_485_863  # a prime: attempts of nearby seeds never share noise


def attempt_seed(seed: int, attempt: int) -> int:
    """The noise seed of the `attempt`-th draw (0: `seed` itself, so a first draw is the plain sample)."""
    return seed + attempt * _ATTEMPT_STRIDE


def fewest_faults(sample: Callable[[int], Tensor], faults: Callable[[Tensor], Tensor], retries: int = RETRIES
                  ) -> Tensor:
    """Videos [B, ...] from `sample(attempt)` for attempt 0, 1, .. `retries`, stopping once `faults(videos)` [B] is
    0 for every video at its best; each video is its attempt with the fewest faults (the earliest of equals)."""
    best = sample(0)
    fewest = faults(best).to(best.device)
    for attempt in range(1, retries + 1):
        if not fewest.any():
            break
        video = sample(attempt)
        count = faults(video).to(video.device)
        better = count < fewest
        best = torch.where(better.view(-1, *[1] * (video.ndim - 1)), video, best)
        fewest = torch.minimum(fewest, count)
    return best
