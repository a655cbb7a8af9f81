"""Readers for KB source files. Each yields `Record`s or raises ImportFormatError(`file:line: reason`).

Formats:
- records: JSON array or JSONL of cMeKG-style objects `{"中心词": "偏头痛", "相关症状": [...], ...}`
- triples: JSONL of `{"entity": ..., "attribute": ..., "value": ...}`
- csv: CSV with a header `head,relation,tail` (or `entity,attribute,value`)
- cmekg: the CMeKG pickle, loaded with a restricted unpickler
"""

from __future__ import annotations

import csv
import io
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from ktune.errors import ImportFormatError

ENTITY_KEYS = ("中心词", "entity", "name")
TRIPLE_KEYS = (("entity", "attribute", "value"), ("head", "relation", "tail"))
FORMATS = ("auto", "records", "triples", "csv", "cmekg")


@dataclass
class Record:
    entity: str
    facts: dict[str, list[str]] = field(default_factory=dict)
    line: int = 0


def read_source(path: str | Path, fmt: str = "auto") -> list[Record]:
    """Parse the whole file first, so a bad line stops the import before anything is written."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ImportFormatError(path, 0, f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise ImportFormatError(path, 0, "no such file")
    if fmt == "cmekg" or (fmt == "auto" and path.suffix == ".pkl"):
        return read_cmekg_pickle(path)
    text = _decode(path)
    if fmt == "csv" or (fmt == "auto" and path.suffix.lower() in (".csv", ".tsv")):
        return _read_csv(path, text)
    objects = _json_objects(path, text)
    if fmt == "auto":
        first = objects[0][1] if objects else {}
        fmt = "triples" if _triple_keys(first) else "records"
    return _group_triples(path, objects) if fmt == "triples" else _records(path, objects)


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImportFormatError(path, line, "not valid UTF-8 (re-save the file as UTF-8)") from exc


def _json_objects(path: Path, text: str) -> list[tuple[int, dict]]:
    """(line, object) pairs from a JSON array or from JSON Lines."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        items = _json_array(path, text)
    else:
        items = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append((i, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ImportFormatError(path, i, f"invalid JSON ({exc.msg})") from exc
    if not items:
        raise ImportFormatError(path, 1, "the file holds no records")
    for line, obj in items:
        if not isinstance(obj, dict):
            raise ImportFormatError(path, line, f"expected a JSON object, got {type(obj).__name__}")
    return items


def _json_array(path: Path, text: str) -> list[tuple[int, object]]:
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    out = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise ImportFormatError(path, text.count("\n") + 1, "unterminated JSON array (missing ']')")
        if text[pos] == "]":
            return out
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(path, exc.lineno, f"invalid JSON ({exc.msg})") from exc
        out.append((line, obj))


def _entity_name(path: Path, line: int, obj: dict) -> str:
    for key in ENTITY_KEYS:
        if key in obj:
            name = obj[key]
            if not isinstance(name, str) or not name.strip():
                raise ImportFormatError(path, line, f"empty or non-string entity name in {key!r}")
            return name.strip()
    raise ImportFormatError(path, line, f"missing entity name (one of {', '.join(ENTITY_KEYS)})")


def _values(path: Path, line: int, pred: str, raw) -> list[str]:
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        return [str(raw)]
    if isinstance(raw, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in raw):
        return [str(v) for v in raw]
    raise ImportFormatError(path, line, f"values of {pred!r} must be a string or a list of strings")


def _records(path: Path, objects) -> list[Record]:
    out = []
    for line, obj in objects:
        name = _entity_name(path, line, obj)
        facts = {}
        for pred, raw in obj.items():
            if pred in ENTITY_KEYS:
                continue
            if not pred.strip():
                raise ImportFormatError(path, line, "empty predicate name")
            facts[pred.strip()] = _values(path, line, pred, raw)
        out.append(Record(name, facts, line))
    return out


def _triple_keys(obj: dict) -> tuple[str, str, str] | None:
    return next((keys for keys in TRIPLE_KEYS if all(k in obj for k in keys)), None)


def _group_triples(path: Path, rows) -> list[Record]:
    """Triples -> one Record per entity, values appended in file order."""
    by_entity: dict[str, Record] = {}
    for line, obj in rows:
        keys = _triple_keys(obj)
        if keys is None:
            raise ImportFormatError(path, line, "a triple needs the fields entity, attribute, value")
        _add_triple(path, line, by_entity, *(obj[k] for k in keys))
    return list(by_entity.values())


def _add_triple(path: Path, line: int, by_entity: dict, head, rel, tail) -> None:
    for what, v in (("entity", head), ("attribute", rel)):
        if not isinstance(v, str) or not v.strip():
            raise ImportFormatError(path, line, f"empty or non-string {what}")
    values = _values(path, line, rel, tail)
    rec = by_entity.setdefault(head.strip(), Record(head.strip(), {}, line))
    rec.facts.setdefault(rel.strip(), []).extend(values)


def _read_csv(path: Path, text: str) -> list[Record]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]
    keys = next((k for k in TRIPLE_KEYS if all(c in header for c in k)), None)
    if keys is None:
        raise ImportFormatError(path, 1, f"header must name the columns head,relation,tail; got {header}")
    idx = [header.index(k) for k in keys]
    by_entity: dict[str, Record] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise ImportFormatError(path, line, f"expected {len(header)} columns, got {len(row)}")
        _add_triple(path, line, by_entity, *(row[i] for i in idx))
    if not by_entity:
        raise ImportFormatError(path, 1, "the file holds no triples")
    return list(by_entity.values())


class _NoCodeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only dicts, lists and str are allowed")


def read_cmekg_pickle(path: Path) -> list[Record]:
    """{entity: {predicate: [values]}} from a pickle that may hold only plain containers."""
    try:
        with open(path, "rb") as f:
            data = _NoCodeUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ImportFormatError(path, 0, f"not a plain-data CMeKG pickle ({exc})") from exc
    if not isinstance(data, dict):
        raise ImportFormatError(path, 0, "expected a dict {entity: {predicate: [values]}}")
    out = []
    for i, (name, preds) in enumerate(data.items(), 1):
        if not isinstance(name, str) or not name.strip():
            raise ImportFormatError(path, i, "empty or non-string entity name")
        if not isinstance(preds, dict):
            raise ImportFormatError(path, i, f"entry {name!r} is not a dict of predicates")
        out.append(Record(name.strip(), {p: _values(path, i, p, v) for p, v in preds.items()}, i))
    return out
