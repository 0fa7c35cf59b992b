"""Atomic writes: a crash or kill -9 never leaves a half-written file or checkpoint behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename, else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-", suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the usual mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: str | Path, keep_other_files: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it becomes `path` (replacing an old one), else it is removed.
    With `keep_other_files`, an existing `path` stays: each written file replaces its namesake in one rename, and
    files the writer did not write are kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield tmp
        mask = _umask()
        for file in tmp.rglob("*"):  # a folder inside (e.g. a latent model's autoencoder) too
            if file.is_dir():
                os.chmod(file, 0o777 & ~mask)
                continue
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(file, 0o666 & ~mask)  # some writers (safetensors) create 0600 files
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700
        if keep_other_files and path.is_dir():
            for file in sorted(tmp.iterdir(), key=lambda f: f.suffix == ".json"):  # config last: it names the rest
                if file.is_dir() and (path / file.name).is_dir():
                    shutil.rmtree(path / file.name)
                os.replace(file, path / file.name)
        elif path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a small text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def remove_leftovers(folder: str | Path, pattern: str = "*") -> list[Path]:
    """Clean up after atomic writes into `folder` that a kill -9 cut short: delete their `.NAME.tmp-*` temporaries;
    put back a `.NAME.old-*` whose `NAME` is gone (killed between the two renames of a replacement), else delete it.
    `pattern` (a glob) limits NAME. Returns what was removed; call it only while nothing else writes there."""
    folder, removed = Path(folder), []
    for leftover in sorted(folder.glob(f".{pattern}.tmp-*")) + sorted(folder.glob(f".{pattern}.old-*")):
        name = leftover.name[1:].rsplit(".old-", 1)[0] if ".old-" in leftover.name else None
        if name and not (folder / name).exists():
            os.replace(leftover, folder / name)
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
        removed.append(leftover)
    return removed


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block is done, then deliver it: a write it covers is never cut short.
    Outside the main thread (where signals cannot be caught) the block simply runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    if received:
        signal.raise_signal(signal.SIGINT)
