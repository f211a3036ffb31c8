"""table skill for Python: format rows (dicts or lists) as a compact Markdown table.

    from skills.table import markdown_table
    print(markdown_table([{"id": 1, "name": "ada"}, {"id": 2, "name": "grace"}]))
"""
from __future__ import annotations

import json as _json
from typing import Any, Mapping, Sequence

__all__ = ["markdown_table"]


def _cell(value: Any, max_width: int) -> str:
    if value is None:
        text = ""
    elif isinstance(value, (dict, list)):
        text = _json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    one = text.replace("|", "\\|").replace("\n", " ")
    return one[: max_width - 1] + "…" if len(one) > max_width else one


def markdown_table(rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]], max_width: int = 60) -> str:
    """Dicts (columns from their keys) or lists (first row = header) as a Markdown table."""
    if not rows:
        return "(no rows)"
    if isinstance(rows[0], Mapping):
        header: list[str] = []
        for r in rows:
            header.extend(k for k in r.keys() if k not in header)
        body = [[r.get(h) for h in header] for r in rows]  # type: ignore[union-attr]
    else:
        header = [str(h) for h in rows[0]]
        body = [list(r) for r in rows[1:]]
    lines = ["| " + " | ".join(_cell(h, max_width) for h in header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for r in body:
        lines.append("| " + " | ".join(_cell(r[i] if i < len(r) else None, max_width) for i in range(len(header))) + " |")
    return "\n".join(lines)
