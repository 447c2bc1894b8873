"""JSON Lines input with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tailkd.errors import DataError


def read_objects(path: Path) -> Iterator[tuple[dict[str, Any], str, int]]:
    """``(row, where, line number)`` for every non-blank line; a :class:`DataError` for a line that is
    not a JSON object. ``where`` reads "FILE line N", for the caller's own messages about the row."""
    with Path(path).open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from err
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield row, where, number
