"""The studio's models: one loaded pipeline per model directory (a few kept, one text encoder shared), and a card of
what each model was trained for, so that the page offers only the controls it can use."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from kinema.conditioning.text import TextEncoder
from kinema.models.pretrained import read_config
from kinema.models.sampling_spec import SamplingSpec, read_sampling_spec
from kinema.pipelines.text_to_video import (SHIPPED_CONTROL_MODEL, SHIPPED_FRAMES_MODEL, SHIPPED_PIXEL_MODEL,
                                            TextToVideoPipeline, shipped_model)

SHIPPED = "shipped"  # the page's name for the models Kinema ships (text, known frames, drawn paths and knobs)
SHIPPED_SET = (SHIPPED_PIXEL_MODEL, SHIPPED_FRAMES_MODEL, SHIPPED_CONTROL_MODEL)  # one size: the page's tabs share it


@dataclass(frozen=True)
class ModelCard:
    """What a model makes and reads: its video shape, and whether it takes text, classes, known frames, control maps
    and knobs (for the shipped models: the union of the three)."""

    name: str
    num_frames: int
    height: int
    width: int
    channels: int
    fps: float
    text: bool
    classes: tuple[str, ...]
    known_frames: bool
    controls: tuple[str, ...]
    attributes: tuple[str, ...]
    latent: bool
    sampler: str  # the sampling defaults
    steps: int
    guidance: float

    def markdown(self) -> str:
        """A short description for the page."""
        reads = ["text" if self.text else "no text"]
        reads += [f"classes ({', '.join(self.classes)})"] if self.classes else []
        reads += ["known frames (trained for them)" if self.known_frames else "known frames (by replacement)"]
        reads += [f"control maps: {', '.join(self.controls)}"] if self.controls else []
        reads += [f"knobs: {', '.join(self.attributes)}"] if self.attributes else []
        space = "latent (decoded by its autoencoder)" if self.latent else "pixels"
        return (f"**{self.name}**: {self.num_frames} frames of {self.width}x{self.height}, {self.channels} channels, "
                f"{self.fps:g} fps, in {space}; reads {'; '.join(reads)}.")


def _spec_and_config(path: Path):
    """(sampling spec, model config) of a model directory, read without its weights."""
    config, metadata = read_config(path)
    return read_sampling_spec(config, metadata), config.model


class Pipelines:
    """Loaded pipelines by model directory (the `keep` most recent), on `device`, sharing text encoders."""

    def __init__(self, device: str = "cpu", keep: int = 4):
        self.device, self.keep = device, keep
        self._loaded: OrderedDict[Path, TextToVideoPipeline] = OrderedDict()
        self._encoders: dict[str, TextEncoder] = {}
        self._lock = threading.Lock()

    @staticmethod
    def directory(model: str | None, frames: bool = False, controls: bool = False, camera: bool = False) -> Path:
        """The directory a job on `model` loads (None: the shipped 32x32 model, or the one made for known frames, for
        controls (SHIPPED_SET) or for camera moves, as `kinema generate` picks them; its plain text model is the
        32x32 one, not the 64x64 latent default: the page's tabs share one size)."""
        return Path(model) if model is not None else shipped_model(frames, controls, text=SHIPPED_PIXEL_MODEL,
                                                                   camera=camera)

    def get(self, model: str | None, frames: bool = False, controls: bool = False,
            camera: bool = False) -> TextToVideoPipeline:
        """The pipeline of `model` (see `directory`), loaded once."""
        path = self.directory(model, frames, controls, camera).resolve()
        with self._lock:
            if path not in self._loaded:
                spec = self.spec(str(path))
                encoder = None
                if spec.text_encoder:
                    encoder = self._encoders.setdefault(spec.text_encoder, TextEncoder(spec.text_encoder))
                self._loaded[path] = TextToVideoPipeline.from_pretrained(path, device=self.device,
                                                                         text_encoder=encoder)
                while len(self._loaded) > self.keep:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(path)
            return self._loaded[path]

    @staticmethod
    def spec(model: str | None) -> SamplingSpec:
        """The sampling spec of `model` (the shipped ones share theirs), read without its weights."""
        return _spec_and_config(Pipelines.directory(model))[0]

    def card(self, model: str | None) -> ModelCard:
        """What `model` was trained for; the shipped ones together."""
        paths = list(SHIPPED_SET) if model is None else [Path(model)]
        read = [_spec_and_config(path) for path in paths]
        spec = read[0][0]
        configs = [config for _, config in read]
        return ModelCard(
            name=SHIPPED if model is None else str(model), num_frames=spec.num_frames, height=spec.height,
            width=spec.width, channels=spec.channels, fps=spec.fps, text=bool(spec.text_encoder),
            classes=tuple(spec.classes) or tuple(str(i) for i in range(max(c.num_classes or 0 for c in configs))),
            known_frames=any(c.frame_conditioning for c in configs),
            controls=tuple(dict.fromkeys(name for c in configs for name in (c.controls or []))),
            attributes=tuple(dict.fromkeys(name for c in configs for name in (c.attributes or []))),
            latent=bool(spec.autoencoder), sampler=spec.defaults.sampler, steps=spec.defaults.steps,
            guidance=spec.defaults.guidance)
