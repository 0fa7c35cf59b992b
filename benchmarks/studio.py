"""Kinema Studio on this machine (the shipped models unless --model): start-up, click to video against `kinema
generate` and the pipeline call, and the server's memory over many generations. Prints tables, writes JSON.

1. Start-up: seconds from starting `kinema studio --port 0 --gallery TMP` (a subprocess) to the address it prints
   and to the page served and usable in Chromium (the Generate button visible; the browser is started beforehand and
   not counted). `--runs` servers, median.
2. Click to video: in Chromium (Playwright), type the prompt and a seed (0, 1, ...), click Generate and wait for the
   result video's src (and, as well, until the browser has its first frame); `--runs` clicks on one server, median.
   The studio loads a model on its first job, so the first click includes loading it. The peers, the same prompt,
   seeds and steps: `kinema generate PROMPT -o x.mp4 --seed S` (a subprocess: start-up and model loading included)
   and the pipeline call alone, in this process, on a pipeline loaded once; the three take turns per seed, so that
   load on the machine falls on all alike. Wall seconds, and CPU seconds (the server's for the studio), which a busy
   machine skews less. The studio writes mp4, gif, webm and a contact sheet per result; the CLI writes the mp4 only.
3. Memory: a fresh server driven by gradio_client over its /text_to_video endpoint with `--memory-steps` sampler
   steps (few, to keep it short): its resident memory (VmRSS of the server and its child processes) before any job,
   after the first generation and after `--generations`, the entries in the gallery folder, the size of Gradio's
   file cache on disk, and the seconds of each request.

The server and the CLI run with OMP_NUM_THREADS=--threads and this process with as many torch threads.

    python benchmarks/studio.py                                   # shipped models, one thread, 3 runs, 50 generations
    python benchmarks/studio.py --runs 1 --generations 3 --json studio_quick.json   # a quick look
    MALLOC_ARENA_MAX=2 python benchmarks/studio.py --parts memory --json studio_arenas2.json   # glibc's arenas capped
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cascade import table  # noqa: E402
from model_timing import machine_info  # noqa: E402

from kinema.pipelines.text_to_video import TextToVideoPipeline  # noqa: E402
from kinema.studio.models import Pipelines  # noqa: E402

KINEMA = [sys.executable, "-m", "kinema.cli"]  # what the `kinema` command runs
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]  # as tests/test_studio_browser.py starts it
ENDPOINT = "/text_to_video"  # the Generate button's event, as gradio_client's view_api() names it
TIMEOUT_S = 600
PARTS = ["start-up", "clicks", "memory"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the shipped models)")
    parser.add_argument("--prompt", default="a red ball bounces")
    parser.add_argument("--runs", type=int, default=3, help="start-ups, and clicks (seeds 0..runs-1), each median")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps of the clicks and peers "
                        "(default: the model's)")
    parser.add_argument("--generations", type=int, default=50, help="generations of the memory run")
    parser.add_argument("--memory-steps", type=int, default=4, help="sampler steps of the memory run's generations")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the server and the CLI, torch "
                        "threads here (0: PyTorch's default)")
    parser.add_argument("--chromium", default=os.environ.get("KINEMA_CHROMIUM") or shutil.which("chromium")
                        or shutil.which("chromium-browser"), help="Chromium executable")
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS, help="what to measure")
    parser.add_argument("--json", default="benchmarks/results/studio.json")
    return parser.parse_args(argv)


def _environment(threads: int, cache: Path) -> dict:
    """The environment of the server and the CLI: `threads` CPU threads, Gradio's file cache in `cache`."""
    env = {**os.environ, "GRADIO_TEMP_DIR": str(cache)}
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


@contextmanager
def studio_server(args: argparse.Namespace, folder: Path):
    """A `kinema studio` serving in `folder` (gallery/, gradio-cache/, server.log): yields (process, address,
    seconds from its start to the printed address); stopped on exit."""
    gallery, cache = folder / "gallery", folder / "gradio-cache"
    command = [*KINEMA, "studio", "--port", "0", "--gallery", str(gallery), "--device", "cpu"]
    command += ["--model", args.model] if args.model else []
    folder.mkdir(parents=True)
    log = (folder / "server.log").open("w")
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True,
                               env=_environment(args.threads, cache))
    try:
        line = process.stdout.readline()
        seconds = time.perf_counter() - began
        found = re.search(r"at (http://\S+?)/? ", line)
        if not found:
            raise RuntimeError(f"kinema studio printed {line!r}; see {folder / 'server.log'}")
        threading.Thread(target=process.stdout.read, daemon=True).start()  # keep its stdout from filling up
        yield process, found.group(1), seconds
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def start_up(args: argparse.Namespace, browser, tmp: Path) -> dict:
    """Seconds to the printed address and to a usable page, per start-up."""
    to_address, to_page = [], []
    for run in range(args.runs):
        with studio_server(args, tmp / f"start-{run}") as (_, url, address_s):
            printed = time.perf_counter()
            context = browser.new_context()
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector("#generate", state="visible", timeout=TIMEOUT_S * 1000)
            to_page.append(address_s + time.perf_counter() - printed)
            to_address.append(address_s)
            context.close()
    return {"to_address_s": to_address, "to_usable_page_s": to_page,
            "median_to_address_s": statistics.median(to_address),
            "median_to_usable_page_s": statistics.median(to_page)}


def speed(args: argparse.Namespace, browser, tmp: Path) -> dict:
    """Per seed, in turns (so that load on the machine falls on all three alike): the studio's click to the result
    video's src and to its first frame shown, `kinema generate`, and the pipeline call alone; seconds and medians."""
    began = time.perf_counter()
    pipe = TextToVideoPipeline.from_pretrained(_text_model(args))
    load_s = time.perf_counter() - began
    runs = {"studio_click_to_src_s": [], "studio_click_to_first_frame_s": [], "cli_s": [], "pipeline_call_s": [],
            "studio_server_cpu_s": [], "cli_cpu_s": [], "pipeline_call_cpu_s": []}
    with studio_server(args, tmp / "clicks") as (server, url, _):
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("#generate", state="visible", timeout=TIMEOUT_S * 1000)
        for seed in range(args.runs):
            cpu = cpu_seconds(server.pid)
            to_src, to_frame = _click(page, args, seed)
            runs["studio_server_cpu_s"].append(cpu_seconds(server.pid) - cpu)
            page.evaluate("() => document.querySelector('#result video').pause()")  # no decoding while peers run
            runs["studio_click_to_src_s"].append(to_src)
            runs["studio_click_to_first_frame_s"].append(to_frame)
            cpu = _children_cpu_seconds()
            runs["cli_s"].append(_cli_seconds(args, tmp, seed))
            runs["cli_cpu_s"].append(_children_cpu_seconds() - cpu)
            began, cpu = time.perf_counter(), time.process_time()
            pipe([args.prompt], seed=seed, steps=args.steps, progress=False)
            runs["pipeline_call_s"].append(time.perf_counter() - began)
            runs["pipeline_call_cpu_s"].append(time.process_time() - cpu)
        context.close()
    return {"seeds": list(range(args.runs)), "pipeline_load_s": load_s, **runs,
            **{"median_" + name: statistics.median(values) for name, values in runs.items()}}


def _click(page, args: argparse.Namespace, seed: int) -> tuple[float, float]:
    """Type the prompt and `seed`, click Generate: seconds to the result video's src and to its first frame shown."""
    page.locator("#prompt textarea").fill(args.prompt)
    page.locator("#seed input").fill(str(seed))
    if args.steps:
        page.locator("#steps input").fill(str(args.steps))
    before = page.evaluate("() => document.querySelector('#result video')?.src ?? null")
    began = time.perf_counter()
    page.locator("#generate").click()
    page.wait_for_function("before => { const v = document.querySelector('#result video');"
                           " return v && v.src && v.src !== before; }", arg=before, timeout=TIMEOUT_S * 1000)
    to_src = time.perf_counter() - began
    page.wait_for_function("() => document.querySelector('#result video').readyState >= 2", timeout=TIMEOUT_S * 1000)
    to_frame = time.perf_counter() - began
    settings = page.locator("#settings").inner_text()
    if f"--seed {seed}" not in settings:
        raise RuntimeError(f"the studio did not read seed {seed} from the page: {settings!r}")
    return to_src, to_frame


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's finished child processes."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _text_model(args: argparse.Namespace) -> str:
    """The model directory the studio's text-to-video tab runs (`--model`, else the shipped 32x32 text model)."""
    return args.model or str(Pipelines.directory(None))


def _cli_seconds(args: argparse.Namespace, tmp: Path, seed: int) -> float:
    """Wall seconds of `kinema generate PROMPT -o x.mp4 --seed S` (start-up and model loading included)."""
    command = [*KINEMA, "generate", args.prompt, "-o", str(tmp / "x.mp4"), "--seed", str(seed), "--device", "cpu"]
    command += ["--checkpoint", _text_model(args)] + (["--steps", str(args.steps)] if args.steps else [])
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=_environment(args.threads, tmp / "cache"))
    return time.perf_counter() - began


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of process `pid` and all its descendants, in MB."""
    return sum(_status(current, "VmRSS") for current in _tree(pid)) / 1024


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) that process `pid` and its living descendants have used."""
    total = 0
    for current in _tree(pid):
        fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (proc(5) fields 14 and 15) in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """Process `pid` and all its living descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
        found.append(current)
    return found


def _status(pid: int, key: str) -> int:
    """The number after `key:` in /proc/PID/status (kB for memory; 0 where it has none, as a zombie has no VmRSS)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next((int(line.split()[1]) for line in lines if line.startswith(key + ":")), 0)


def _folder_mb(folder: Path) -> float:
    """Bytes of the files under `folder`, in MB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2 ** 20 if folder.is_dir() else 0.0


def memory(args: argparse.Namespace, tmp: Path) -> dict:
    """The server's resident memory over `args.generations` generations driven through its API."""
    from gradio_client import Client

    folder = tmp / "memory"
    with studio_server(args, folder) as (process, url, _):
        client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
        if ENDPOINT not in client.view_api(print_info=False, return_format="dict")["named_endpoints"]:
            raise RuntimeError(f"the studio has no {ENDPOINT} endpoint any more: see client.view_api()")
        before = rss_mb(process.pid)
        rss, seconds, threads = [], [], []
        for seed in range(args.generations):
            began = time.perf_counter()
            client.predict(text=args.prompt, negative_text="", seed_value=seed, steps_value=args.memory_steps,
                           api_name=ENDPOINT)  # the rest: the page's defaults
            seconds.append(time.perf_counter() - began)
            rss.append(rss_mb(process.pid))
            threads.append(_status(process.pid, "Threads"))
        entries = sum(1 for p in (folder / "gallery").iterdir() if p.is_dir() and not p.name.startswith("."))
    return {"steps": args.memory_steps, "generations": args.generations, "rss_before_mb": before,
            "rss_after_first_mb": rss[0], "rss_after_last_mb": rss[-1], "growth_mb": rss[-1] - rss[0],
            "model_footprint_mb": rss[0] - before, "rss_mb": rss, "server_threads": threads, "request_s": seconds,
            "gallery_entries": entries,
            "gallery_mb": _folder_mb(folder / "gallery"), "gradio_cache_mb": _folder_mb(folder / "gradio-cache")}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"model": args.model or "shipped", "prompt": args.prompt, "steps": args.steps, "threads": args.threads,
              "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX")}
    with tempfile.TemporaryDirectory(prefix="kinema-studio-bench-") as name:
        tmp = Path(name)
        if {"start-up", "clicks"} & set(args.parts):
            from playwright.sync_api import sync_playwright

            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                if "start-up" in args.parts:
                    report["start_up"] = start_up(args, browser, tmp)
                if "clicks" in args.parts:
                    report["click_to_video"] = speed(args, browser, tmp)
                    report["speed"] = speed_rows(report["click_to_video"])
                browser.close()
        if "memory" in args.parts:
            report["memory"] = memory(args, tmp)
    print_tables(report)
    report["machine"] = machine_info(torch.device("cpu"))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json}")
    return report


def speed_rows(runs: dict) -> list[dict]:
    """The studio's click to video against the CLI and the pipeline call: medians, each run, studio / peer."""
    rows = [("studio: click to video src", "studio_click_to_src_s", "studio_server_cpu_s"),
            ("studio: click to first frame shown", "studio_click_to_first_frame_s", None),
            ("kinema generate (subprocess)", "cli_s", "cli_cpu_s"),
            ("pipeline call (in process)", "pipeline_call_s", "pipeline_call_cpu_s")]
    studio_s, studio_cpu = runs["median_studio_click_to_src_s"], runs["median_studio_server_cpu_s"]
    return [{"video": what, "median_s": runs["median_" + name], "each_s": _rounded(runs[name]),
             **({"median_cpu_s": runs["median_" + cpu]} if cpu else {}),
             **({"studio_over_this": studio_s / runs["median_" + name],
                 "studio_over_this_cpu": studio_cpu / runs["median_" + cpu]} if name in ("cli_s", "pipeline_call_s")
                else {})} for what, name, cpu in rows]


def print_tables(report: dict) -> None:
    """The report's start-up, speed and memory tables, for the parts it has."""
    if "start_up" in report:
        started = report["start_up"]
        print(table([{"start-up": "to the printed address", "median_s": started["median_to_address_s"],
                      "each_s": _rounded(started["to_address_s"])},
                     {"start-up": "to a usable page (Generate visible)",
                      "median_s": started["median_to_usable_page_s"], "each_s": _rounded(started["to_usable_page_s"])}],
                    ["start-up", "median_s", "each_s"]) + "\n")
    if "speed" in report:
        print(table(report["speed"], ["video", "median_s", "each_s", "studio_over_this", "median_cpu_s",
                                      "studio_over_this_cpu"]) + "\n")
    if "memory" in report:
        held = report["memory"]
        print(table([{"server RSS MB": "before any job", "value": held["rss_before_mb"]},
                     {"server RSS MB": "after the 1st generation", "value": held["rss_after_first_mb"]},
                     {"server RSS MB": f"after {held['generations']} generations", "value": held["rss_after_last_mb"]},
                     {"server RSS MB": "growth, 1st to last", "value": held["growth_mb"]},
                     {"server RSS MB": "lowest / highest after the 1st",
                      "value": f"{min(held['rss_mb']):.1f} / {max(held['rss_mb']):.1f}"},
                     {"server RSS MB": "gallery entries / gallery MB / Gradio cache MB on disk",
                      "value": f"{held['gallery_entries']} / {held['gallery_mb']:.1f} / {held['gradio_cache_mb']:.1f}"},
                     {"server RSS MB": "request s: 1st / 2nd / last",
                      "value": " / ".join(f"{s:.2f}" for s in [*held["request_s"][:2], held["request_s"][-1]])}],
                    ["server RSS MB", "value"]))


def _rounded(seconds: list[float]) -> list[float]:
    return [round(s, 2) for s in seconds]


if __name__ == "__main__":
    main()
