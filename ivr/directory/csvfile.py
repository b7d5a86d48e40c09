"""Reading an HR or directory export: encoding and delimiter detected, every problem reported."""

from __future__ import annotations

import codecs
import csv
import difflib
import io
from collections.abc import Callable
from typing import Any

from ivr.directory.fields import _HEADER, COLUMNS, DELIMITERS, _header_key, build_entry
from ivr.directory.model import DirectoryImportError, Entry, ImportResult, Problem

# --------------------------------------------------------------------------- reading CSV


def decode(data: bytes) -> tuple[str, str]:
    """The text of a file and the encoding it was in (UTF-8 [BOM], UTF-16 BOM, Windows-1252)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8"), "UTF-8 with BOM"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), "UTF-16"
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        return data.decode("cp1252"), "Windows-1252"


def read_csv(data: bytes) -> tuple[list[tuple[int, Entry]], ImportResult]:
    """Parse and check a whole file: its entries with their line numbers, or DirectoryImportError."""
    try:
        text, encoding = decode(data)
    except UnicodeDecodeError as e:
        raise DirectoryImportError([Problem(0, "", f"not UTF-8 and not Windows-1252 text (byte "
                                                   f"{e.start}: {data[e.start:e.start + 1]!r})")]) from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(DELIMITERS, key=lambda d: (_known_columns(first, d), first.count(d)))
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    problems: list[Problem] = []
    fail = _failer(problems, encoding, delimiter)
    try:
        header, header_line = next(((row, rows.line_num) for row in rows if any(c.strip() for c in row)),
                                   ([], 0))
    except csv.Error as e:
        fail(Problem(rows.line_num, "", f"not CSV: {e}"))
    if not header:
        fail(Problem(0, "", "empty file: expected a header line and one line per entry"))
    columns: list[str | None] = []
    ignored: list[str] = []
    seen: dict[str, str] = {}
    for name in header:
        key = _HEADER.get(_header_key(name))
        if key is None:
            close = difflib.get_close_matches(_header_key(name), list(_HEADER), n=1, cutoff=0.75)
            if close and name.strip():
                problems.append(Problem(header_line, name, f'unknown column (did you mean '
                                                           f'"{COLUMNS[_HEADER[close[0]]][0]}"?)'))
            elif name.strip():
                ignored.append(name.strip())
        elif key in seen:
            problems.append(Problem(header_line, name, f'the same column as "{seen[key]}"'))
            key = None
        else:
            seen[key] = name
        columns.append(key)
    if not ({"name", "first_name", "last_name"} & seen.keys()):
        problems.append(Problem(header_line, "namn", f"missing column: no name column (namn/name) in the "
                                                     f"header, read with delimiter {DELIMITERS[delimiter]}"))
    if problems:
        fail()
    entries: list[tuple[int, Entry]] = []
    ids: dict[str, int] = {}
    order = {key: i for i, key in enumerate(columns) if key}
    start = rows.line_num + 1
    try:
        for row in rows:
            line, start = start, rows.line_num + 1
            if not any(c.strip() for c in row):
                continue
            if len(row) > len(header):
                problems.append(Problem(line, "", f"{len(row)} cells but the header has {len(header)} "
                                                  f"columns (a {DELIMITERS[delimiter]} too many?)"))
                continue
            values = {key: (row[i] if i < len(row) else "") for i, key in enumerate(columns) if key}
            entry, found = build_entry(values)
            for key, message in sorted(found, key=lambda p: order.get(p[0], -1)):
                problems.append(Problem(line, seen.get(key) or COLUMNS[key][0], message))
            if entry is None:
                continue
            if entry.id in ids:
                column = seen.get("id") or "id"
                problems.append(Problem(line, column, f'id "{entry.id}" is also on line {ids[entry.id]}'
                                        + ("" if "id" in seen else " (add an id column to tell them apart)")))
                continue
            ids[entry.id] = line
            entries.append((line, entry))
    except csv.Error as e:
        problems.append(Problem(rows.line_num, "", f"not CSV: {e}"))
    if not entries and not problems:
        problems.append(Problem(0, "", "no entries, only a header: importing it would empty the directory"))
    if problems:
        fail()
    result = ImportResult(entries=len(entries), added=0, updated=0, unchanged=0, removed=0,
                          encoding=encoding, delimiter=delimiter, ignored_columns=tuple(ignored))
    return entries, result


def _known_columns(line: str, delimiter: str) -> int:
    try:
        cells = next(csv.reader([line], delimiter=delimiter))
    except (csv.Error, StopIteration):
        return 0
    return sum(_header_key(c) in _HEADER for c in cells)


def _failer(problems: list[Problem], encoding: str, delimiter: str) -> Callable[..., Any]:
    def fail(*more: Problem) -> None:
        raise DirectoryImportError([*problems, *more], encoding=encoding, delimiter=delimiter)
    return fail


