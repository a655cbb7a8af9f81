"""JSON Lines input shared by the stages: one object per line, errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

from ktune.errors import InputError


def read_jsonl(path: str | Path, *, fix: str = "fix or remove the line") -> list[dict]:
    """Every non-blank line of `path` as a JSON value; a bad line raises InputError(`path:line: ...; fix`)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{n}: not valid JSON ({exc.msg}); {fix}") from exc
    return records
