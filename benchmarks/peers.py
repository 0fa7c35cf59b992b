"""Benchmark: Kinema's VideoUNet and VideoDiT against diffusers' UNet3DConditionModel and lucidrains'
video-diffusion-pytorch Unet3D, at matched parameter counts, in one process on the same inputs.

Every model gets the same inputs (a video batch [B, 3, T, H, W] in [-1, 1], text tokens [B, 12, 384]) and the
same measurements (`model_timing`: training steps/s timed in turns, peak memory of a training step in a fresh
process, seconds per video with DPM-Solver++(2M) and classifier-free guidance). Kinema's models run twice:
as shipped (the U-Net behind a 2x2 space-to-depth stem, the DiT on 1x2x2 patches) and at the full input
resolution (patch size 1), so that the comparison is not only the stem's. Peers run at full resolution.

lucidrains' Unet3D reads one pooled condition vector, so it gets the masked mean of the text tokens, and its
timestep is t * 1000. Its package imports torchvision (for data loading only); when torchvision is not
installed, a stand-in module is placed in `sys.modules` while it imports, and removed again.

    python benchmarks/peers.py                                    # full run: table + JSON
    python benchmarks/peers.py --models kinema_unet,lucidrains --size 16 --steps 1 --warmup 0 \\
        --sample-steps 1 --videos 1 --json /tmp/peers.json       # smoke test
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import torch
from model_timing import add_timing_options, check_timing_options, kinema_adapter, machine_info, measure

from kinema.config import load_config
from kinema.models.registry import build_model

ROOT = Path(__file__).resolve().parent.parent
BASELINE, EQUAL_RESOLUTION = "kinema_unet", "kinema_unet_p1"
LABELS = {"kinema_unet": "Kinema VideoUNet (2x2 stem)",
          "kinema_unet_p1": "Kinema VideoUNet (patch 1)",
          "kinema_dit": "Kinema VideoDiT (patch 1x2x2)",
          "kinema_dit_p1": "Kinema VideoDiT (patch 1)",
          "diffusers": "diffusers UNet3DConditionModel",
          "lucidrains": "lucidrains video-diffusion-pytorch Unet3D"}
# A VideoDiT sized to balls.yaml's U-Net (5.07M against 4.80M parameters).
DIT_SIZE = ["model.preset=''", "model.depth=6", "model.hidden_size=160", "model.heads=4"]
# lucidrains' Unet3D sized likewise (4.72M): channels 54-108-108, 4 heads of width 16.
LUCIDRAINS_SIZE = {"dim": 54, "dim_mults": (1, 2, 2), "attn_heads": 4, "attn_dim_head": 16}


def kinema_config(name: str):
    """Model config of a Kinema row: configs/balls.yaml's U-Net or the sized VideoDiT, with or without a stem."""
    if name.startswith("kinema_unet"):
        config = load_config(ROOT / "configs" / "balls.yaml", ["model.patch_size=1"] if name.endswith("p1") else [])
    elif name.startswith("kinema_dit"):
        patch = "[1,1,1]" if name.endswith("p1") else "[1,2,2]"
        config = load_config(ROOT / "configs" / "balls_dit.yaml", [*DIT_SIZE, f"model.patch_size={patch}"])
    else:
        config = load_config(ROOT / "configs" / "balls_diffusers_unet3d.yaml")
    return config.model_name, config.model


def lucidrains_unet3d(text_dim: int) -> torch.nn.Module:
    """lucidrains' Unet3D, imported with a stand-in torchvision when the real one is absent."""
    stand_in = importlib.util.find_spec("torchvision") is None
    if stand_in:
        torchvision = types.ModuleType("torchvision")
        torchvision.transforms = types.SimpleNamespace(ToTensor=lambda: None)  # a default argument at import
        torchvision.utils = None
        sys.modules["torchvision"] = torchvision
    try:
        from video_diffusion_pytorch.video_diffusion_pytorch import Unet3D
    finally:
        if stand_in:
            del sys.modules["torchvision"]  # diffusers and others must still see torchvision as absent
    return Unet3D(cond_dim=text_dim, **LUCIDRAINS_SIZE)


def build(name: str, args: argparse.Namespace):
    """The model called `name` and an adapter `fn(x, t [B] in [0, 1], text, mask) -> output like x`."""
    if name == "lucidrains":
        model = lucidrains_unet3d(args.text_dim)

        def fn(x, t, text, mask):
            weights = mask[..., None].to(text.dtype)
            pooled = (text * weights).sum(1) / weights.sum(1).clamp(min=1)
            return model(x, t * 1000, cond=pooled)
        return model, fn
    model = build_model(*kinema_config(name))
    return model, kinema_adapter(model)


def run(args: argparse.Namespace) -> dict:
    """Every model measured by `model_timing.measure`, with each model's speed and memory as a ratio to Kinema's."""
    results = measure(build, args.models, args)
    for reference in (BASELINE, EQUAL_RESOLUTION):
        if reference not in results:
            continue
        k = results[reference]
        for name in args.models:
            r = results[name]
            r[f"vs_{reference}"] = {"params": r["params"] / k["params"],
                                    "train_speed": r["train_steps_per_s"] / k["train_steps_per_s"],
                                    "peak_memory": r["peak_mb"] / k["peak_mb"] if k["peak_mb"] > 0 else None,
                                    "video_speed": k["s_per_video"] / r["s_per_video"]}
    return results


def table(results: dict, names: tuple[str, ...]) -> str:
    """Markdown table: one row per model, with speed ratios to Kinema's U-Net at full resolution when measured."""
    reference = EQUAL_RESOLUTION if EQUAL_RESOLUTION in results else BASELINE if BASELINE in results else None
    extra = f" | train x / {LABELS[reference]} | video x / {LABELS[reference]} |" if reference else " |"
    rows = ["| model | params | train steps/s | peak MB | s/video | CPU s/video" + extra,
            "|---|---|---|---|---|---|" + ("---|---|" if reference else "")]
    for name in names:
        r = results[name]
        row = (f"| {LABELS[name]} | {r['params'] / 1e6:.2f}M | {r['train_steps_per_s']:.3f} | {r['peak_mb']:.0f} | "
               f"{r['s_per_video']:.2f} | {r['cpu_s_per_video']:.2f} |")
        if reference:
            q = r[f"vs_{reference}"]
            row += f" {q['train_speed']:.2f}x | {q['video_speed']:.2f}x |"
        rows.append(row)
    first = results[names[0]]
    return "\n".join(rows) + (f"\n(every video: {first['network_calls_per_video']} network calls on "
                              f"{first['network_input_shape']}; ratios: above 1 means that row is faster than the "
                              "reference)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_timing_options(parser, batch=4, steps=4, warmup=1, sample_steps=8, videos=1)
    parser.add_argument("--models", default=",".join(LABELS), help=f"comma-separated, from {', '.join(LABELS)}")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "peers.json")
    args = parser.parse_args(argv)
    check_timing_options(parser, args)
    args.models = tuple(args.models.split(","))
    unknown = [m for m in args.models if m not in LABELS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)} (choose from {', '.join(LABELS)})")
    if args.size % 8:
        parser.error(f"--size {args.size} must be divisible by 8")
    args.text_dim = 384
    return args


def main() -> None:
    args = parse_args()
    results = run(args)
    print(table(results, args.models))
    params = {name: results[name]["params"] for name in args.models}
    if max(params.values()) > 1.12 * min(params.values()):
        print(f"warning: parameter counts differ by more than 12%: {params}", file=sys.stderr)
    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    report = {"machine": machine_info(torch.device(args.device)), "settings": settings,
              "labels": {name: LABELS[name] for name in args.models}, **results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
