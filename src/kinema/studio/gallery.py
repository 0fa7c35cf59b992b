"""The studio's gallery on disk: each result in its own folder (the video as mp4, gif and webm, a contact sheet, the
job's input files and settings.json with the equivalent `kinema` command), written whole or not at all."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from datetime import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kinema.atomic import atomic_directory
from kinema.studio.jobs import SHEET_FILE, VIDEO_FILE, Finished, Job
from kinema.video import write_contact_sheet, write_video

SETTINGS_FILE = "settings.json"
FORMATS = ("mp4", "gif", "webm")


@dataclass(frozen=True)
class Entry:
    """One result in the gallery: its folder and its settings."""

    folder: Path
    settings: dict

    @property
    def video(self) -> Path:
        """The mp4 the page plays."""
        return self.folder / VIDEO_FILE

    @property
    def sheet(self) -> Path:
        """The contact sheet: a column per frame."""
        return self.folder / SHEET_FILE

    @property
    def downloads(self) -> list[Path]:
        """The video in every format, and the contact sheet."""
        return [self.video.with_suffix(f".{suffix}") for suffix in FORMATS] + [self.sheet]

    @property
    def caption(self) -> str:
        """A line naming the entry in the page."""
        prompt = self.settings["prompt"]
        return f"{self.folder.name}: {self.settings['task']}" + (f" '{prompt}'" if prompt else "")

    def describe(self) -> str:
        """Its settings and the command that makes it again, as Markdown."""
        s = self.settings
        options = ", ".join(f"{name}={value}" for name, value in s["options"].items()) or "the model's defaults"
        return (f"**{s['task']}** {s['prompt']!r} on model `{s['model'] or 'shipped'}` with {options}: "
                f"{s['frames']} frames of {s['width']}x{s['height']} at {s['fps']:g} fps in {s['seconds']:.1f} s.\n\n"
                f"Make it again in `{self.folder}`:\n\n```bash\n{s['command']}\n```")


class Gallery:
    """Results kept in `folder`, one sub-folder per job, named by time so that they sort oldest first."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @contextlib.contextmanager
    def new_entry(self) -> Iterator[tuple[Path, str]]:
        """(a fresh folder to stage a job's inputs and outputs in, the entry's name): the folder joins the gallery
        under that name only when the block ends without an error, else it is removed."""
        name = f"{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}-{secrets.token_hex(2)}"
        with atomic_directory(self.folder / name) as staging:
            yield staging, name

    def save(self, staging: Path, job: Job, finished: Finished, seconds: float) -> None:
        """Write the job's video in every format, its contact sheet and its settings into `staging`."""
        for suffix in FORMATS:
            write_video(staging / Path(VIDEO_FILE).with_suffix(f".{suffix}"), finished.videos[0], fps=finished.fps,
                        scale=job.scale)
        write_contact_sheet(staging / SHEET_FILE, finished.videos, scale=max(1, job.scale // 2))
        _, _, frames, height, width = finished.videos.shape
        settings = dict(task=job.task, prompt=job.prompt, model=job.model, inputs=job.inputs, options=job.options,
                        command=job.command(), seconds=round(seconds, 2), frames=frames, height=height,
                        width=width, fps=finished.fps, created=time.strftime("%Y-%m-%dT%H:%M:%S"))
        (staging / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")

    def entries(self) -> list[Entry]:
        """Every finished entry, newest first; a folder without readable settings is left out."""
        if not self.folder.is_dir():
            return []
        found = []
        for folder in sorted(self.folder.iterdir(), reverse=True):
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            try:
                settings = json.loads((folder / SETTINGS_FILE).read_text())
            except (OSError, ValueError):
                continue
            if isinstance(settings, dict) and (folder / VIDEO_FILE).is_file():
                found.append(Entry(folder, settings))
        return found

    def entry(self, name: str) -> Entry | None:
        """The entry called `name`, if it is in the gallery."""
        return next((entry for entry in self.entries() if entry.folder.name == name), None)
