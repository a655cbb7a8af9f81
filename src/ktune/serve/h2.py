"""Expert rating of H2 in the browser: the blinded items of `ktune eval h2-export`, ratings kept in SQLite,
exported as the filled CSV that `ktune eval h2-import` reads.

`ktune serve --h2 DIR` serves the page at /h2 for the export in DIR (h2_items.csv, h2_key.json). The answers
of one question (one per system) are shown side by side under their item codes; which system wrote which
stays in the key on the server, never sent to the page. Ratings go to DIR/h2_ratings.sqlite, one row per
rater and code (a new rating replaces the old one), so several experts can rate at once and come back later.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

from ktune.errors import InputError
from ktune.eval.h2 import DIMENSIONS, RUBRIC, RUBRIC_VERSION
from ktune.eval.h2_experts import CSV_FIELDS

SCHEMA = """CREATE TABLE IF NOT EXISTS ratings (
    rater TEXT NOT NULL, code TEXT NOT NULL, helpfulness INTEGER, harmlessness INTEGER, comment TEXT NOT NULL,
    updated_at TEXT NOT NULL, PRIMARY KEY (rater, code))"""
MAX_RATER = 64
MAX_COMMENT = 2000


class RatingStore:
    """The blinded items of one H2 export and the experts' ratings of them."""

    def __init__(self, export_dir: str | Path, db_path: str | Path | None = None):
        out = Path(export_dir)
        items_csv, key_json = out / "h2_items.csv", out / "h2_key.json"
        if not items_csv.is_file() or not key_json.is_file():
            raise InputError(f"{out} holds no H2 export (h2_items.csv and h2_key.json); write one with "
                             "`ktune eval h2-export --answers EVAL_DIR --out DIR`")
        rows = list(csv.DictReader(io.StringIO(items_csv.read_text(encoding="utf-8-sig"))))
        key = json.loads(key_json.read_text(encoding="utf-8"))["items"]
        self.rows = {r["code"]: r for r in rows}
        groups: dict[str, list[str]] = {}
        for r in rows:  # codes were numbered after shuffling, so their order says nothing about the system
            if r["code"] not in key:
                raise InputError(f"{items_csv}: code {r['code']} is not in {key_json}; export both again")
            groups.setdefault(key[r["code"]]["id"], []).append(r["code"])
        self.groups = list(groups.values())
        self.db_path = Path(db_path) if db_path else out / "h2_ratings.sqlite"
        with closing(self._connect()) as conn:
            conn.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def items(self) -> dict:
        """What the page shows: the rubric and, per question, its answers under their codes (no systems)."""
        return {
            "rubric": RUBRIC, "rubric_version": RUBRIC_VERSION, "dimensions": list(DIMENSIONS),
            "items": [{"n": i + 1, "question": self.rows[codes[0]]["question"],
                       "answers": [{"code": c, "answer": self.rows[c]["answer"]} for c in codes]}
                      for i, codes in enumerate(self.groups)],
        }

    def rate(self, rater: str, code: str, scores: dict[str, int | None], comment: str = "") -> dict:
        rater = check_rater(rater)
        if code not in self.rows:
            raise InputError(f"unknown item code {code!r}")
        for d in DIMENSIONS:
            v = scores.get(d)
            if v is not None and (not isinstance(v, int) or not 1 <= v <= 5):
                raise InputError(f"{d} must be an integer 1-5 or empty, got {v!r}")
        if len(comment) > MAX_COMMENT:
            raise InputError(f"the comment has {len(comment)} characters, over the limit of {MAX_COMMENT}")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with closing(self._connect()) as conn:
            conn.execute(
                "INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (rater, code) DO UPDATE SET "
                "helpfulness = excluded.helpfulness, harmlessness = excluded.harmlessness, "
                "comment = excluded.comment, updated_at = excluded.updated_at",
                (rater, code, scores.get("helpfulness"), scores.get("harmlessness"), comment, now))
        return {"rater": rater, "code": code, **{d: scores.get(d) for d in DIMENSIONS}, "comment": comment}

    def ratings(self, rater: str) -> dict[str, dict]:
        rater = check_rater(rater)
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT code, helpfulness, harmlessness, comment FROM ratings WHERE rater = ?",
                                (rater,)).fetchall()
        return {code: {"helpfulness": h, "harmlessness": s, "comment": c} for code, h, s, c in rows}

    def export_csv(self, rater: str) -> str:
        """The rater's filled h2_items.csv (all items; unrated ones blank), as `ktune eval h2-import` reads it."""
        done = self.ratings(rater)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for code, row in self.rows.items():
            r = done.get(code, {})
            writer.writerow({"code": code, "question": row["question"], "answer": row["answer"],
                             "helpfulness": r.get("helpfulness") or "", "harmlessness": r.get("harmlessness") or "",
                             "comment": r.get("comment") or ""})
        return "\ufeff" + buf.getvalue()


def check_rater(rater: str) -> str:
    name = (rater or "").strip()
    if not name or len(name) > MAX_RATER or any(ch in name for ch in "/\\\n\r\t"):
        raise InputError(f"the rater name must be 1-{MAX_RATER} characters without slashes or line breaks; "
                         "it names the exported CSV (ktune eval h2-import reports raters by file name)")
    return name
