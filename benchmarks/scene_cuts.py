"""Scene-cut recall and precision on synthetic clips with known cuts: adaptive vs fixed-threshold detection.

Each clip strings together 2-4 shots of slowly panning noise texture (natural-image spectrum) with
a colour tint and sensor grain (luma only: codecs smooth away chroma noise); a shot is bright or
dark, high or low contrast, so cuts come in every combination (cuts into dark, low-contrast, nearly
grey shots are the hard ones). Some shots hold changes that are not cuts: a fade of the light to a
third and back, a fast pan (7 px per frame at 64 px width), or a bright object crossing the frame.
A detected cut within one frame of a true cut is a hit; each true cut counts once.

Rows: Kinema's `CutDetector` (`kinema prep`'s: adaptive ratio 3 over soft HSV-histogram distances);
PySceneDetect's AdaptiveDetector (the same rule over mean per-pixel HSV differences, ratio 3, minimum
change 15) and fixed-threshold ContentDetector (threshold 27), both with a 4-frame minimum shot; and the
fixed-threshold detector `kinema prep` used before (Bhattacharyya distance of 16x4x4 HSV histograms
above 0.35 and 3x the median of the 8 frames before). Prints a table and writes JSON. The
PySceneDetect rows need `pip install -e .[bench]`.

    python benchmarks/scene_cuts.py --clips 80             # -> benchmarks/results/scene_cuts.json
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import cv2
import numpy as np

from kinema.data.camera import noise_texture
from kinema.data.scenes import CutDetector, detect_cuts

FPS = 15.0
HEIGHT, WIDTH = 48, 64
STYLES = {  # name -> (mean level, texture amplitude in [0, 1], tint spread: 0 = grey)
    "bright, high contrast": (0.55, 0.35, 0.3),
    "bright, low contrast": (0.6, 0.06, 0.3),
    "dark, high contrast": (0.14, 0.1, 0.3),
    "dark, low contrast": (0.08, 0.05, 0.03),  # night shots: little light, little colour
}
EVENTS = ("none", "fade", "fast pan", "object")  # changes inside a scene that are not cuts


def scene(rng: np.random.Generator, length: int, style: str, event: str) -> np.ndarray:
    """One shot `[T, H, W, 3]` uint8: tinted texture panning 1 px per frame, with an optional non-cut event."""
    mean, amplitude, spread = STYLES[style]
    texture = noise_texture(160, rng)[0].numpy()  # [-1, 1]
    tint = rng.uniform(1 - spread, 1 + spread, size=3)
    speed = 7 if event == "fast pan" else 1
    frames = []
    for t in range(length):
        view = np.roll(texture, -speed * t, axis=1)[:HEIGHT, :WIDTH]
        level = (mean + amplitude * view)[..., None] * tint
        if event == "fade":  # light dims to a third and comes back over the middle of the shot
            level = level * (1 - 2 / 3 * np.sin(np.pi * min(1.0, max(0.0, (t - 2) / (length - 4)))))
        if event == "object":  # a bright square crossing the frame
            x = int((t / length) * (WIDTH + 12)) - 12
            level[14:26, max(0, x):max(0, x + 12)] = 0.9
        noisy = level * 255 + rng.normal(0, 1.0, size=level.shape[:2])[..., None]  # grain in luma only, as codecs keep
        frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return np.stack(frames)


def synthetic_clip(rng: np.random.Generator) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """A clip of 2-4 shots: (frames `[T, H, W, 3]`, indices of the frames starting a shot, (style, event) per shot)."""
    count = int(rng.integers(2, 5))
    shots = [(str(rng.choice(list(STYLES))), str(rng.choice(EVENTS))) for _ in range(count)]
    pieces, cuts, start = [], [], 0
    for index, (style, event) in enumerate(shots):
        length = int(rng.integers(14, 26))
        pieces.append(scene(rng, length, style, event))
        if index:
            cuts.append(start)
        start += length
    return np.concatenate(pieces), cuts, shots


def synthetic_set(count: int, seed: int = 0) -> list[tuple[np.ndarray, list[int], list[str]]]:
    """`count` synthetic clips with known cuts."""
    rng = np.random.default_rng(seed)
    return [synthetic_clip(rng) for _ in range(count)]


def histogram_cuts(frames: np.ndarray, threshold: float = 0.35, contrast: float = 3.0, min_gap: int = 4) -> list[int]:
    """The previous fixed-threshold detector: HSV-histogram distance over `threshold` and `contrast` x recent median."""
    cuts, recent, previous, since = [], [], None, 0
    for index, rgb in enumerate(frames):
        hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
        histogram = cv2.calcHist([hsv], [0, 1, 2], None, [16, 4, 4], [0, 180, 0, 256, 0, 256])
        histogram = cv2.normalize(histogram, histogram).flatten()
        distance = 0.0 if previous is None else cv2.compareHist(previous, histogram, cv2.HISTCMP_BHATTACHARYYA)
        previous, since = histogram, since + 1
        typical = float(np.median(recent[-8:])) if recent else 0.0
        if distance > threshold and distance > contrast * typical and since >= min_gap:
            cuts.append(index)
            since = 0
        recent.append(distance)
    return cuts


def pyscenedetect_cuts(frames: np.ndarray, adaptive: bool) -> list[int]:
    """PySceneDetect's AdaptiveDetector or fixed-threshold ContentDetector (their defaults, 4-frame minimum shot)."""
    from scenedetect.common import FrameTimecode
    from scenedetect.detectors import AdaptiveDetector, ContentDetector

    detector = AdaptiveDetector(min_scene_len=4) if adaptive else ContentDetector(min_scene_len=4)
    cuts = []
    for index, rgb in enumerate(frames):
        cuts += detector.process_frame(FrameTimecode(index, FPS), np.ascontiguousarray(rgb[..., ::-1]))
    return [c.frame_num for c in cuts]


def score(clips, detect) -> dict:
    """Recall and precision of `detect(frames) -> cut indices` (a hit is within one frame of a true cut)."""
    hits = found = true = 0
    for frames, cuts, _ in clips:
        detected = detect(frames)
        found += len(detected)
        true += len(cuts)
        hits += sum(any(abs(d - c) <= 1 for d in detected) for c in cuts)
    return {"recall": hits / max(1, true), "precision": hits / max(1, found), "true cuts": true,
            "detected": found, "hits": hits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results/scene_cuts.json")
    args = parser.parse_args()
    clips = synthetic_set(args.clips, args.seed)
    dark = [(frames, [c for c, (style, _) in zip(cuts, shots[1:]) if style == "dark, low contrast"], shots)
            for frames, cuts, shots in clips]
    defaults = CutDetector()
    rows = {
        f"Kinema CutDetector (adaptive ratio {defaults.threshold:g}, min change {defaults.min_change:g})": detect_cuts,
        "PySceneDetect AdaptiveDetector (ratio 3, min change 15)": lambda frames: pyscenedetect_cuts(frames, True),
        "PySceneDetect ContentDetector (fixed threshold 27)": lambda frames: pyscenedetect_cuts(frames, False),
        "previous Kinema detector (histogram distance > 0.35)": histogram_cuts,
    }
    results = {}
    print(f"{args.clips} clips, {sum(len(c) for _, c, _ in clips)} cuts, {HEIGHT}x{WIDTH} at {FPS:g} fps\n")
    print("| detector | recall | precision | recall on cuts into dark low-contrast shots |")
    print("|---|---|---|---|")
    for name, detect in rows.items():
        overall = score(clips, detect)
        hard = score(dark, detect)
        results[name] = {"all": overall,
                         "into dark low contrast": {"recall": hard["recall"], "true cuts": hard["true cuts"]}}
        print(f"| {name} | {overall['recall']:.3f} | {overall['precision']:.3f} | {hard['recall']:.3f} "
              f"({hard['hits']}/{hard['true cuts']}) |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"clips": args.clips, "seed": args.seed, "fps": FPS, "size": [HEIGHT, WIDTH],
                                     "machine": platform.platform(), "results": results}, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
