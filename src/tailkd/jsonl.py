"""JSON Lines input with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tailkd.errors import DataError


def read_objects(path: Path) -> Iterator[tuple[dict[str, Any], str, int]]:
    """``(row, where, line number)`` for every non-blank line; a :class:`DataError` for a line that is
    not UTF-8 text or not a JSON object. ``where`` reads "FILE line N", for the caller's own messages
    about the row."""
    with Path(path).open("rb") as handle:  # decoded line by line: a bad byte is named with its line
        yield from parse_objects(handle, str(path))


def read_rows(path: Path, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    """Every row of a JSON Lines file, read as :func:`read_objects` reads it; ``missing_ok``: none for a
    file that is not there (a run that wrote no signals.jsonl)."""
    if missing_ok and not Path(path).exists():
        return []
    return [row for row, _, _ in read_objects(path)]


def parse_objects(lines: Iterable[bytes | str], name: str) -> Iterator[tuple[dict[str, Any], str, int]]:
    """:func:`read_objects` for lines from elsewhere (bytes, or text already decoded), ``name`` naming
    their source in errors ("NAME line N")."""
    for number, raw in enumerate(lines, start=1):
        where = f"{name} line {number}"
        if isinstance(raw, bytes):
            line = _decode(raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw, where)
        else:
            line = raw.removeprefix("\ufeff") if number == 1 else raw
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from err
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield row, where, number


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: not UTF-8 text (byte 0x{raw[err.start]:02x} at byte {err.start + 1} of the line); "
                        f"save the file as UTF-8") from err
