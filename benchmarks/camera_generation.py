"""Camera-controlled generation measured against the asked moves: the camera maps alone, with camera guidance, with a
warped start, and guidance alone (chapter 11.3 camera control).

A model trained with the `camera` control (configs/camera_control.yaml) makes videos for held-out moves: pans and
tilts of 0.6-1.8 px per frame both ways, zooms of 2.5% and 5% in and out and rolls of 2 and 4 degrees both ways,
from sampling seeds that training never drew. Each move is given these ways:
- map: the move's flow field as the model's control map (camera guidance 0, `kinema generate --camera MOVE`);
- map + guidance: the same plus reconstruction guidance by the photometric camera energy at weight W
  (`--camera-guidance W`, default 1; kinema.control.camera.camera_energy);
- map + warped start: the map, in two passes: a first video's frame 0 is carried along the move and noised to time
  S, and the model denoises it again (`--camera-warp S`, default 0.6; kinema.control.camera.camera_warped);
- map + warped start + guidance: both;
- map + view, view (flow map at zeros), map + view + warped start (a model trained with the `camera_view` map too,
  configs/camera_view.yaml): a first video's frame 0 rendered along the move is the model's second map, and the
  model draws the video again from noise reading it (kinema.control.camera.camera_view), with and without the
  flow map and the warped start;
- warped start (no map): the warped start with the map at zeros, i.e. what the warp does without the trained map;
- guidance (no map): the same model with its map left at zeros ("no control", which training's control dropout
  taught it) and guidance W, i.e. what guidance alone does;
- unsteered: neither map nor guidance, the baseline the others must beat.
Every video's camera is estimated from its frames (kinema.metrics.camera.estimate_camera) and scored against the
asked move as in benchmarks/camera_control.py, whose helpers this reuses: the endpoint error of the two camera
flows in px per frame step (averaged over the frame) and whether the estimate moves the asked way along the
dominant motion. The floor row scores the dataset's own clips (held-out seed): no video can be measured closer than
that. Each variant's pixel noise (`pixel_step`, against the dataset clips') tells moving pictures from moving noise:
guidance can drag the pixel noise of a model that makes no pictures the asked way, which the camera estimator scores
as well as a picture. Issue targets: error <= 0.5 px/frame and the right direction in >= 95% of videos, by videos
whose pixel noise is at most MAX_PIXEL_NOISE times the data's. One thread.

    python benchmarks/camera_generation.py --model DIR     # -> benchmarks/results/camera_generation.json
    python benchmarks/camera_generation.py --model DIR --per-move 1 --steps 2 --json /tmp/camera.json  # smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from camera_control import dataset_clips, summary  # noqa: E402

from kinema.conditioning.controls import CONTROL_MAPS  # noqa: E402
from kinema.control.camera import parse_camera  # noqa: E402
from kinema.metrics.camera import estimate_camera  # noqa: E402
from kinema.pipelines.text_to_video import TextToVideoPipeline  # noqa: E402
from kinema.video import write_contact_sheet  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HELD_OUT_MOVES = (  # inside the training ranges (pans 0.5-2 px, zooms 1.5-6% in log scale, rolls 1.25-5 degrees)
    "pan-right:0.6", "tilt-down:0.8", "zoom-in:1.025", "roll-cw:2",
    "pan-left:0.6", "tilt-up:0.8", "zoom-out:1.025", "roll-ccw:2",
    "pan-right:1.4", "tilt-down:1.8", "zoom-in:1.05", "roll-cw:4",
    "pan-left:1.4", "tilt-up:1.8", "zoom-out:1.05", "roll-ccw:4",
)
VARIANTS = {  # name -> (camera guidance on, the move as the flow map, frame 0's render as the view map, warped start)
    "map": (False, True, False, False),
    "map + guidance": (True, True, False, False),
    "map + warped start": (False, True, False, True),
    "map + warped start + guidance": (True, True, False, True),
    "map + view": (False, True, True, False),
    "view (flow map at zeros)": (False, False, True, False),
    "map + view + warped start": (False, True, True, True),
    "guidance (no map)": (True, False, False, False),
    "warped start (no map)": (False, False, False, True),
    "unsteered (no map or guidance)": (False, False, False, False),
}
VIEWING = [name for name, (_, _, view, _) in VARIANTS.items() if view]  # for models trained with `camera_view`

MAX_PIXEL_NOISE = 2.0  # a video whose pixel_step is over twice the dataset clips' is noise, not a moving picture


def generate(pipe: TextToVideoPipeline, move: torch.Tensor, count: int, seed: int, steps: int | None,
             guidance: float, with_map: bool, with_view: bool, warp: float) -> torch.Tensor:
    """`count` videos [N, 3, T, H, W] of one camera move (steps [T-1, 4]); a map left out reads zeros; `with_view`
    renders a first video's frame 0 along the move as the `camera_view` map; `warp` > 0 starts from that frame 0
    carried along the move, noised to that time."""
    spec = pipe.spec
    zeros = {name: torch.zeros(1, CONTROL_MAPS[name].channels, spec.num_frames, spec.height, spec.width)
             for name in pipe.model.controls}
    controls = {name: zeros[name] for name, used in (("camera", with_map), ("camera_view", with_view))
                if not used and name in zeros}
    return pipe([""] * count, camera=move, camera_guidance=guidance, camera_warp=warp, controls=controls, seed=seed,
                steps=steps, progress=False)


def pixel_step(videos: torch.Tensor) -> float:
    """Mean |difference| of neighbouring pixels (across rows and columns) of videos [N, 3, T, H, W] in [-1, 1]: pixel
    noise, which the camera estimator reads as motion when guidance moves it, raises it far above a picture's."""
    return ((videos[..., 1:, :] - videos[..., :-1, :]).abs().mean() + (videos[..., 1:] - videos[..., :-1]).abs().mean()
            ).item() / 2


def print_rows(name: str, rows: dict[str, dict], seconds: float | None, noise: float) -> None:
    """Markdown table rows of one variant's `summary` (`noise`: its `pixel_step` over the dataset clips')."""
    took = "" if seconds is None else f"{seconds:.2f}"
    for motion, row in rows.items():
        print(f"| {name} | {motion} | {row['clips']} | {row['error_px_per_frame'][0]:.3f} | "
              f"{row['error_px_per_frame'][1]:.3f} | {row['direction']:.3f} | {noise:.2f} | {took} |")


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (command-line `argv`), print the table, write the JSON and return its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True,
                        help="a model directory or checkpoint trained with model.controls=[camera]")
    parser.add_argument("--moves", type=int, default=len(HELD_OUT_MOVES), help="the first N held-out moves")
    parser.add_argument("--per-move", type=int, default=2, help="videos per move and variant")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=1000, help="first sampling seed (and the floor clips' seed)")
    parser.add_argument("--variants", default=None, help="comma-separated subset of the variants (default: all "
                        "the model can run: the view rows need a model trained with model.controls=[..., camera_view])")
    parser.add_argument("--camera-guidance", type=float, default=1.0, help="the guided variants' weight W")
    parser.add_argument("--camera-warp", type=float, default=0.6, help="the warped-start variants' noise time S")
    parser.add_argument("--sheet", type=Path, default=None, help="also write a PNG contact sheet per variant here")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/camera_generation.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pipe = TextToVideoPipeline.from_pretrained(args.model)
    if "camera" not in pipe.model.controls:
        raise SystemExit(f"{args.model}: the model reads no camera map (train one with model.controls=[camera])")
    viewing = "camera_view" in pipe.model.controls
    variants = args.variants.split(",") if args.variants else [n for n in VARIANTS if viewing or n not in VIEWING]
    if not viewing and set(variants) & set(VIEWING):
        raise SystemExit(f"{args.model}: the model reads no camera_view map (train one with model.controls=[camera, "
                         f"camera_view]); leave out {', '.join(sorted(set(variants) & set(VIEWING)))}")
    spec = pipe.spec
    frames, size = spec.num_frames, spec.height
    names = HELD_OUT_MOVES[: args.moves]
    moves = [parse_camera(move, frames) for move in names]
    motions = [move.split("-")[0] for move in names for _ in range(args.per_move)]
    asked = torch.stack([move for move in moves for _ in range(args.per_move)])
    texture = getattr(pipe.config.data, "texture", "photo")  # the texture the model was trained on
    print(f"{len(moves)} held-out moves x {args.per_move} videos, {frames} frames of {size}x{size}, "
          f"model {args.model}, texture {texture}\n")
    print("| variant | motion | videos | error px/frame (mean) | max | direction | pixel noise x data | s/video |")
    print("|---|---|---|---|---|---|---|---|")
    floor_videos, floor_asked, floor_motions = dataset_clips(texture, len(asked), size, frames, args.seed)
    floor = summary(floor_asked, estimate_camera(floor_videos), floor_motions, size)
    data_step = pixel_step(floor_videos)
    print_rows("floor: dataset clips", floor, None, 1.0)
    results = {"floor: dataset clips": {"motions": floor, "seconds_per_video": None, "pixel_noise_vs_data": 1.0}}
    for name in variants:
        guided, with_map, with_view, warped = VARIANTS[name]
        guidance = args.camera_guidance if guided else 0.0
        start = time.perf_counter()
        videos = torch.cat([generate(pipe, move, args.per_move, args.seed + i, args.steps, guidance, with_map,
                                     with_view, args.camera_warp if warped else 0.0)
                            for i, move in enumerate(moves)])
        seconds = (time.perf_counter() - start) / len(videos)
        rows = summary(asked, estimate_camera(videos), motions, size)
        noise = pixel_step(videos) / data_step
        results[name] = {"motions": rows, "seconds_per_video": seconds, "pixel_noise_vs_data": noise,
                         "meets_targets": rows["all"]["error_px_per_frame"][0] <= 0.5
                         and rows["all"]["direction"] >= 0.95 and noise <= MAX_PIXEL_NOISE}
        print_rows(name, rows, seconds, noise)
        if args.sheet is not None:
            args.sheet.mkdir(parents=True, exist_ok=True)
            file = name.replace(" ", "_").replace("(", "").replace(")", "")
            write_contact_sheet(args.sheet / f"{file}.png", videos, scale=2)
    parameters = sum(p.numel() for p in pipe.model.parameters())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "config": {"model": str(args.model.resolve().relative_to(ROOT) if args.model.resolve().is_relative_to(ROOT)
                                else args.model.name), "parameters": parameters, "moves": list(names),
                   "videos_per_move": args.per_move, "sampler": spec.defaults.sampler,
                   "steps": args.steps or spec.defaults.steps, "seed": args.seed, "frames": frames, "size": size,
                   "texture": texture, "camera_guidance": args.camera_guidance,
                   "camera_warp": args.camera_warp},
        "targets": {"error_px_per_frame": 0.5, "direction": 0.95, "pixel_noise_vs_data": MAX_PIXEL_NOISE},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "processor": platform.processor() or platform.machine(), "threads": 1},
        "results": results,
    }, indent=2) + "\n")
    shown = args.json.resolve()
    print(f"\nwrote {shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else args.json}")
    return results


if __name__ == "__main__":
    main()
