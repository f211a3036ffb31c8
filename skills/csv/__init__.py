"""csv skill for Python: parse CSV text into rows or records, and turn rows back into CSV.

    from skills.csv import parse_csv, parse_csv_records, to_csv
    rows = parse_csv('a,b\n1,"x, y"')             # [["a", "b"], ["1", "x, y"]]
    records = parse_csv_records("name,age\nada,36")  # [{"name": "ada", "age": "36"}]
    print(to_csv(rows))

Backed by the standard library's csv module (RFC 4180 quoting).
"""
from __future__ import annotations

import csv as _csv
import io as _io
from typing import Any, Iterable

__all__ = ["parse_csv", "parse_csv_records", "to_csv"]


def parse_csv(text: str, delimiter: str = ",") -> list[list[str]]:
    """Parses CSV (quoted fields, doubled quotes, CRLF or LF) into rows of strings."""
    return [row for row in _csv.reader(_io.StringIO(text, newline=""), delimiter=delimiter)]


def parse_csv_records(text: str, delimiter: str = ",") -> list[dict[str, str]]:
    """Parses CSV whose first row is a header into dicts keyed by the header."""
    rows = parse_csv(text, delimiter)
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    return [{h: (r[i] if i < len(r) else "") for i, h in enumerate(header)} for r in body]


def to_csv(rows: Iterable[Iterable[Any]], delimiter: str = ",") -> str:
    """Turns rows into CSV text, quoting fields that need it."""
    out = _io.StringIO()
    writer = _csv.writer(out, delimiter=delimiter, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue().rstrip("\n")
