"""Sampler x time grid accuracy where the answer is known: Gaussian data and its exact probability-flow ODE.

For data x0 ~ N(mu, diag(s^2)) the denoiser E[x0 | x_t] is closed-form and the ODE carries x_1 to
mu + s (x_1 - alpha_1 mu) / sqrt(alpha_1^2 s^2 + sigma_1^2). Prints the mean absolute error of each
deterministic sampler's final sample on each grid and schedule (a markdown table, and JSON), in seconds.

    python benchmarks/sampler_grids.py --steps 10          # -> benchmarks/results/sampler_grids.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from kinema.diffusion import TIME_GRIDS, build_schedule, get_sampler, time_grid

MU = torch.tensor([0.5, -0.3, 0.0, 1.0], dtype=torch.float64)
STD = torch.tensor([0.3, 0.1, 1.0, 0.05], dtype=torch.float64)


def final_error(schedule_name: str, sampler: str, spacing: str, steps: int, samples: int = 256) -> float:
    """Mean |sample - exact ODE solution| over `samples` draws of 4-dimensional Gaussian data."""
    schedule = build_schedule(schedule_name)
    x1 = torch.randn(samples, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def denoise_fn(x_t, t):
        alpha, sigma = (v.item() for v in schedule.alpha_sigma(t[:1].double()))
        return MU + alpha * STD**2 / (alpha**2 * STD**2 + sigma**2) * (x_t - alpha * MU)

    alpha_1, sigma_1 = (v.item() for v in schedule.alpha_sigma(torch.ones(1, dtype=torch.float64)))
    exact = MU + STD * (x1 - alpha_1 * MU) / torch.sqrt(alpha_1**2 * STD**2 + sigma_1**2)
    out = get_sampler(sampler)(denoise_fn, x1, time_grid(schedule, steps, spacing), schedule)
    return (out - exact).abs().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results/sampler_grids.json")
    args = parser.parse_args()
    results = {}
    print(f"mean |error| of the final sample after {args.steps} steps")
    print("| schedule | sampler | " + " | ".join(TIME_GRIDS) + " |")
    print("|---|---|" + "---|" * len(TIME_GRIDS))
    for schedule_name in ("linear", "cosine", "flow"):
        for sampler in ("ddim", "euler", "heun", "dpmpp_2m"):
            errors = [final_error(schedule_name, sampler, spacing, args.steps) for spacing in TIME_GRIDS]
            results[f"{schedule_name}/{sampler}"] = dict(zip(TIME_GRIDS, errors))
            print(f"| {schedule_name} | {sampler} | " + " | ".join(f"{e:.4f}" for e in errors) + " |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"steps": args.steps, "machine": platform.platform(), "mean_abs_error": results},
                                    indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
