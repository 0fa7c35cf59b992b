"""Benchmark: few-step sampling. The teacher at its own sampling defaults (25 steps) against a student made by
`kinema distill` at its few steps, the teacher itself with DDIM at the distillation teacher's and the student's step
counts (what distillation must beat), and the student with int8 weights (`--quantize int8`; `--int8-teacher` adds
the teacher): the quality figures of shipped_model_quality.py (colour, count, direction, identity over its prompt
suite x seeds) and seconds per video, each score also as a ratio to the teacher's (the issue's target: within 10%).
Seconds per video come twice: over the scoring run of each row, and as the median of turns the rows take one after
another (`seconds_per_video_interleaved`, the fair comparison on a machine whose load changes).

    OMP_NUM_THREADS=1 kinema distill src/kinema/pretrained/balls -o runs/balls_distilled --steps 4 \\
        --teacher-steps 8 --iterations-per-round 100000 --batch-size 4 --lr 2e-4 --time-limit-minutes 14
    OMP_NUM_THREADS=1 python benchmarks/distill.py --student runs/balls_distilled
    python benchmarks/distill.py --student runs/balls_distilled --seeds 1 --prompts-per-family 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from shipped_model_quality import SCORES, evaluate, family_of, prompt_suite, relative

from kinema.conditioning.text import TextEncoder
from kinema.models.pretrained import read_config
from kinema.pipelines.text_to_video import TextToVideoPipeline, shipped_model


def runs(teacher: Path, student: Path, int8_teacher: bool) -> list[dict]:
    """The rows to measure: name, model directory, quantization, and sampler options (None: the model's own)."""
    distilled = read_config(student)[1].get("distillation", {})
    steps = read_config(student)[0].sample.steps
    teacher_guidance = distilled.get("teacher_guidance")
    rows = [
        {"name": "teacher", "checkpoint": teacher, "quantize": None},
        {"name": f"teacher, DDIM {steps} steps", "checkpoint": teacher, "quantize": None, "steps": steps,
         "sampler": "ddim", "guidance": teacher_guidance},
        {"name": f"student ({steps} steps)", "checkpoint": student, "quantize": None},
        {"name": f"student int8 ({steps} steps)", "checkpoint": student, "quantize": "int8"},
    ] + [{"name": "teacher int8", "checkpoint": teacher, "quantize": "int8"}] * int8_teacher
    if distilled.get("teacher_steps"):
        rows.insert(1, {"name": f"teacher, DDIM {distilled['teacher_steps']} steps (distillation's teacher)",
                        "checkpoint": teacher, "quantize": None, "steps": distilled["teacher_steps"],
                        "sampler": "ddim", "guidance": teacher_guidance})
    return rows


def pipeline(row: dict, text_encoder: TextEncoder) -> tuple[TextToVideoPipeline, dict]:
    """The pipeline of a row and its sampler options (guidance, steps, sampler)."""
    pipe = TextToVideoPipeline.from_pretrained(row["checkpoint"], text_encoder=text_encoder, quantize=row["quantize"])
    defaults = pipe.spec.defaults
    return pipe, {"guidance": row.get("guidance") or defaults.guidance, "steps": row.get("steps") or defaults.steps,
                  "sampler": row.get("sampler") or defaults.sampler}


def measure(row: dict, seeds: int, suite: list[dict], text_encoder: TextEncoder) -> dict:
    """shipped_model_quality scores and seconds per video of one row."""
    pipe, options = pipeline(row, text_encoder)
    result = evaluate(pipe, options["guidance"], options["steps"], options["sampler"], seeds, suite)
    return {"name": row["name"], "checkpoint": relative(Path(row["checkpoint"])), "quantize": row["quantize"],
            **result}


def interleaved_seconds(rows: list[dict], text_encoder: TextEncoder, repeats: int = 3) -> list[float]:
    """Median seconds per video of each row, the rows taking turns (two videos of a direction prompt per turn), so
    that a machine's changing load falls on all of them alike."""
    runs = [pipeline(row, text_encoder) for row in rows]
    seconds = [[] for _ in rows]
    for _ in range(repeats):
        for (pipe, options), times in zip(runs, seconds):
            started = time.perf_counter()
            pipe(["a red ball bounces to the left"] * 2, progress=False, **options)
            times.append((time.perf_counter() - started) / 2)
    return [statistics.median(times) for times in seconds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, default=shipped_model(), help="the teacher's model directory")
    parser.add_argument("--student", type=Path, required=True, help="the distilled model directory")
    parser.add_argument("--seeds", type=int, default=4, help="videos per prompt")
    parser.add_argument("--prompts-per-family", type=int, default=0, help="0: the whole suite")
    parser.add_argument("--int8-teacher", action="store_true", help="also the teacher with int8 weights (slow)")
    parser.add_argument("--json", default="benchmarks/results/distill.json")
    args = parser.parse_args()
    suite = prompt_suite()
    if args.prompts_per_family:
        suite = [w for family in ("colour", "count", "direction")
                 for w in [w for w in suite if family_of(w) == family][:args.prompts_per_family]]
    text_encoder = TextEncoder(read_config(args.teacher)[0].train.text_encoder)
    rows, results = runs(args.teacher, args.student, args.int8_teacher), []
    for row in rows:
        results.append(measure(row, args.seeds, suite, text_encoder))
        print(f"measured {row['name']}: {results[-1]['seconds_per_video']:.2f} s per video", flush=True)
    for result, seconds in zip(results, interleaved_seconds(rows, text_encoder)):
        result["seconds_per_video_interleaved"] = seconds
    teacher = results[0]
    for result in results:
        result["ratio_to_teacher"] = {key: result[key] / teacher[key] if teacher[key] else float("nan")
                                      for key in [*SCORES, "seconds_per_video_interleaved"]}
    header = ["run", "steps", "guidance", "s/video (interleaved)", *SCORES.values(), "worst score / teacher's"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        worst = min(r["ratio_to_teacher"][key] for key in SCORES)
        print("| " + " | ".join([r["name"], str(r["steps"]), f"{r['guidance']:g}",
                                 f"{r['seconds_per_video_interleaved']:.2f}", *(f"{r[key]:.3f}" for key in SCORES),
                                 f"{worst:.2f}"]) + " |")
    distilled = read_config(args.student)[1].get("distillation")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"teacher": relative(args.teacher), "student": relative(args.student),
                                           "distillation": distilled, "seeds": args.seeds,
                                           "prompts": [w["prompt"] for w in suite], "torch": torch.__version__,
                                           "threads": torch.get_num_threads(), "results": results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
