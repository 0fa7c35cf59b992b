"""Video manifests: CSV or JSON-lines tables with one row per video or shot (chapter 11.1.4).

A row needs `path` (a relative path is resolved against the manifest's folder, where `kinema prep`
writes it from, then against the dataset's root folder); optional columns are
`caption`, `start` and `end` (seconds), `fps` (the source rate), `label`, and anything else
(`kinema prep` adds frame numbers, size, codec, `scores` and `status` / `reason`). JSONL keeps
types and nested values; CSV holds flat text, so numbers are parsed back and empty cells are absent.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from kinema.atomic import write_text_atomic
from kinema.errors import KinemaError

MANIFEST_SUFFIXES = (".jsonl", ".csv")
NUMERIC_COLUMNS = ("start", "end", "fps")


def _manifest_kind(path: Path) -> str:
    """'jsonl' or 'csv' from the file suffix."""
    suffix = path.suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise KinemaError(f"manifest {path}: unknown suffix {suffix or '(none)'!r}; expected .jsonl or .csv")
    return suffix[1:]


def _parse_cell(value: str) -> Any:
    """A CSV cell as int, float or the string itself."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _check_row(row: dict, path: Path, line: int) -> dict:
    """Validate one row: `path` is a non-empty string; start/end/fps are numbers with start < end."""
    if not isinstance(row, dict) or not isinstance(row.get("path"), str) or not row["path"]:
        raise KinemaError(f"manifest {path}, row {line}: needs a non-empty 'path'")
    for key in NUMERIC_COLUMNS:
        if key in row and row[key] is not None and not isinstance(row[key], (int, float)):
            raise KinemaError(f"manifest {path}, row {line}: '{key}' must be a number, got {row[key]!r}")
    start, end = row.get("start"), row.get("end")
    if start is not None and end is not None and not 0 <= start < end:
        raise KinemaError(f"manifest {path}, row {line}: need 0 <= start < end, got {start}, {end}")
    if "caption" in row and not isinstance(row["caption"], str):
        row["caption"] = str(row["caption"])
    return row


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows of a .jsonl or .csv manifest as dicts (blank lines skipped); KinemaError naming the bad row."""
    path = Path(path)
    kind = _manifest_kind(path)
    if not path.is_file():
        raise KinemaError(f"manifest not found: {path}")
    text = path.read_text(encoding="utf-8")
    rows = []
    if kind == "jsonl":
        for line, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                rows.append(_check_row(json.loads(raw), path, line))
            except json.JSONDecodeError as error:
                raise KinemaError(f"manifest {path}, line {line}: not JSON ({error.msg})") from None
    else:
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise KinemaError(f"manifest {path}: the CSV header needs a 'path' column, got {reader.fieldnames}")
        for line, raw in enumerate(reader, start=2):
            row = {k: v if k in ("path", "caption") else _parse_cell(v) for k, v in raw.items() if v not in ("", None)}
            rows.append(_check_row(row, path, line))
    return rows


def write_manifest(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write rows as .jsonl (any values) or .csv (flat values; columns in first-seen order), atomically."""
    path = Path(path)
    kind = _manifest_kind(path)
    for line, row in enumerate(rows, start=1):
        _check_row(dict(row), path, line)
    if kind == "jsonl":
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    else:
        columns = list(dict.fromkeys(key for row in rows for key in row))
        nested = [key for row in rows for key, value in row.items() if isinstance(value, (dict, list))]
        if nested:
            raise KinemaError(f"manifest {path}: column '{nested[0]}' holds nested values; write .jsonl instead")
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    write_text_atomic(path, text)
    return path
