"""SQLite backend for the KB (WAL, one transaction per import): a file path, or ":memory:"."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ktune.errors import KBError
from ktune.kb.migrations import SQLITE_MIGRATIONS
from ktune.kb.store import EMPTY_VERSION, SnapshotReads, _now

_NOT_A_KB_FIX = "pass a KB file made by `ktune kb import`, or a new path to create one"


class SQLiteStore(SnapshotReads):
    """SQLite backend. Readers never block the single writer (WAL); a snapshot is one read transaction.

    `read_only`: opened as an SQLite URI with mode=ro (serving processes): every write fails, the schema
    must be migrated already (any writable open, e.g. `ktune kb import`, migrates it)."""

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = True,
        migrations: list[tuple[str, str]] | None = None,
        busy_timeout: float = 30.0,
        read_only: bool = False,
    ):
        self.path = str(path)
        self.read_only = read_only
        self.busy_timeout = busy_timeout
        self._init_snapshots()
        self._conn = _connect(self.path, create and not read_only, busy_timeout, read_only)
        migrations = SQLITE_MIGRATIONS if migrations is None else migrations
        if read_only:
            self._check_migrated(migrations)
        else:
            self._migrate(migrations)

    # --- snapshots ----------------------------------------------------------------------------
    def _open_reader(self) -> sqlite3.Connection:
        return _connect(self.path, False, self.busy_timeout, True, check=False)

    def _begin_read(self, conn) -> None:
        conn.execute("BEGIN")  # deferred: the snapshot is the state at the first read (KnowledgeBase reads meta)

    def _end_read(self, conn) -> bool:
        try:
            conn.execute("ROLLBACK")
            return True
        except sqlite3.Error:
            return False

    @contextmanager
    def snapshot(self):
        if self.path == ":memory:":  # one connection is the whole database; nothing else can change it
            yield self
            return
        with super().snapshot():
            yield self

    # --- schema -------------------------------------------------------------------------------
    def _check_migrated(self, migrations: list[tuple[str, str]]) -> None:
        try:
            applied = set(self.applied_migrations())
        except sqlite3.DatabaseError:
            applied = set()
        missing = [name for name, _ in migrations if name not in applied]
        if missing:
            self._conn.close()
            raise KBError(f"{self.path} lacks schema migrations {missing} and is opened read-only; open it once "
                          "writable (`ktune kb stats --kb PATH`) or re-import it to migrate it")

    def _migrate(self, migrations: list[tuple[str, str]]) -> None:
        c = self.conn
        c.execute("CREATE TABLE IF NOT EXISTS migrations(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        for name, sql in migrations:
            if c.execute("SELECT 1 FROM migrations WHERE name=?", (name,)).fetchone():
                continue
            with self.transaction():
                # re-check under the write lock: another process may have applied it meanwhile
                if c.execute("SELECT 1 FROM migrations WHERE name=?", (name,)).fetchone():
                    continue
                for stmt in filter(str.strip, sql.split(";")):
                    c.execute(stmt)
                c.execute("INSERT INTO migrations VALUES(?, ?)", (name, _now()))

    @contextmanager
    def transaction(self):
        """All-or-nothing: on any exception (or a killed process) the KB is left as it was."""
        self._check_writable()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise KBError(
                f"{self.path} is busy ({exc}): another process is writing to it; retry when it has finished"
            ) from exc
        try:
            yield self
        except BaseException as exc:
            if self.conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError):
                raise KBError(f"{self.path}: SQLite error while writing ({exc}); nothing was changed") from exc
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self._close_readers()
        self._conn.close()

    # --- reads --------------------------------------------------------------------------------
    def get_meta(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT key, value FROM meta"))

    def kind(self, entity: str) -> str | None:
        row = self.conn.execute("SELECT kind FROM entities WHERE name=?", (entity,)).fetchone()
        return row[0] if row else None

    def facts(self, entity: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        rows = self.conn.execute(
            "SELECT f.predicate, f.value FROM facts f JOIN entities e ON e.id=f.entity_id "
            "WHERE e.name=? ORDER BY f.predicate, f.ord",
            (entity,),
        )
        for pred, value in rows:
            out.setdefault(pred, []).append(value)
        return out

    def iter_entities(self) -> Iterator[tuple[str, str]]:
        yield from self.conn.execute("SELECT name, kind FROM entities ORDER BY name")

    def iter_facts(self) -> Iterator[tuple[str, str, str]]:
        yield from self.conn.execute(
            "SELECT e.name, f.predicate, f.value FROM facts f JOIN entities e ON e.id=f.entity_id "
            "ORDER BY e.name, f.predicate, f.ord"
        )

    def iter_aliases(self) -> Iterator[tuple[str, str, str]]:
        yield from self.conn.execute(
            "SELECT a.surface, e.name, a.predicate FROM aliases a JOIN entities e ON e.id=a.entity_id "
            "ORDER BY a.surface, e.name, a.predicate"
        )

    def predicates_by_entity(self) -> dict[str, set[str]]:
        """entity -> the predicates it has facts for."""
        out: dict[str, set[str]] = {}
        rows = self.conn.execute(
            "SELECT DISTINCT e.name, f.predicate FROM facts f JOIN entities e ON e.id=f.entity_id"
        )
        for name, pred in rows:
            out.setdefault(name, set()).add(pred)
        return out

    def facts_with_predicates(self, predicates: Iterable[str]) -> list[tuple[str, str, str]]:
        """(entity, predicate, value) for the given predicates, in (entity, predicate, order) order."""
        preds = sorted(set(predicates))
        if not preds:
            return []
        marks = ",".join("?" * len(preds))
        return self.conn.execute(
            "SELECT e.name, f.predicate, f.value FROM facts f JOIN entities e ON e.id=f.entity_id "
            f"WHERE f.predicate IN ({marks}) ORDER BY e.name, f.predicate, f.ord",
            preds,
        ).fetchall()

    def fact_counts(self) -> dict[str, int]:
        """entity -> how many facts it has (the linker prefers richer entries on ties)."""
        return dict(
            self.conn.execute("SELECT e.name, COUNT(*) FROM facts f JOIN entities e ON e.id=f.entity_id GROUP BY e.id")
        )

    def predicate_counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT predicate, COUNT(*) FROM facts GROUP BY predicate"))

    def counts(self) -> dict[str, int]:
        q = self.conn.execute
        return {
            "entities": q("SELECT COUNT(*) FROM entities").fetchone()[0],
            "facts": q("SELECT COUNT(*) FROM facts").fetchone()[0],
            "aliases": q("SELECT COUNT(*) FROM aliases").fetchone()[0],
            "predicates": q("SELECT COUNT(DISTINCT predicate) FROM facts").fetchone()[0],
        }

    def kind_counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT kind, COUNT(*) FROM entities GROUP BY kind ORDER BY 2 DESC, 1"))

    # --- writes (call inside `transaction()`) -------------------------------------------------
    def clear(self) -> None:
        for table in ("aliases", "facts", "entities"):
            self.conn.execute(f"DELETE FROM {table}")

    def entity_ids(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT name, id FROM entities"))

    def upsert_entity(self, name: str, facts: dict[str, list[str]], ids: dict[str, int]) -> None:
        """Set `facts` for `name`: each given predicate's values replace the stored ones."""
        eid = ids.get(name)
        if eid is None:
            eid = self.conn.execute("INSERT INTO entities(name, kind) VALUES(?, '')", (name,)).lastrowid
            ids[name] = eid
        else:
            self.conn.executemany(
                "DELETE FROM facts WHERE entity_id=? AND predicate=?", [(eid, p) for p in facts]
            )
        self.conn.executemany(
            "INSERT INTO facts(entity_id, predicate, ord, value) VALUES(?, ?, ?, ?)",
            [(eid, p, i, v) for p, vs in facts.items() for i, v in enumerate(vs)],
        )

    def delete(self, name: str, predicates: Iterable[str] | None, ids: dict[str, int]) -> int:
        """Delete an entity (predicates None) or some of its predicates. Returns facts removed."""
        eid = ids.get(name)
        if eid is None:
            return 0
        if predicates is None:
            n = self.conn.execute("DELETE FROM facts WHERE entity_id=?", (eid,)).rowcount
            self.conn.execute("DELETE FROM aliases WHERE entity_id=?", (eid,))
            self.conn.execute("DELETE FROM entities WHERE id=?", (eid,))
            del ids[name]
            return n
        return sum(
            self.conn.execute("DELETE FROM facts WHERE entity_id=? AND predicate=?", (eid, p)).rowcount
            for p in predicates
        )

    def drop_empty_entities(self) -> int:
        self.conn.execute("DELETE FROM aliases WHERE entity_id NOT IN (SELECT DISTINCT entity_id FROM facts)")
        return self.conn.execute(
            "DELETE FROM entities WHERE id NOT IN (SELECT DISTINCT entity_id FROM facts)"
        ).rowcount

    def set_kinds(self, kinds: dict[str, str]) -> None:
        self.conn.executemany("UPDATE entities SET kind=? WHERE name=?", [(k, n) for n, k in kinds.items()])

    def replace_aliases(self, rows: Iterable[tuple[str, str, str]]) -> None:
        ids = self.entity_ids()
        self.conn.execute("DELETE FROM aliases")
        self.conn.executemany(
            "INSERT OR IGNORE INTO aliases(surface, entity_id, predicate) VALUES(?, ?, ?)",
            [(s, ids[e], p) for s, e, p in rows if e in ids],
        )

    def set_meta(self, values: dict[str, str]) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", list(values.items()))

    def content_hash(self) -> str:
        """sha256 over every (entity, kind, predicate, value) in order: equal content, equal hash."""
        n = self.conn.execute("SELECT COUNT(*) FROM facts").fetchone()[0]
        if n == 0:
            return EMPTY_VERSION
        h = hashlib.sha256()
        rows = self.conn.execute(
            "SELECT e.name, e.kind, f.predicate, f.value FROM facts f JOIN entities e ON e.id=f.entity_id "
            "ORDER BY e.name, f.predicate, f.ord"
        )
        for row in rows:
            h.update("\x1f".join(row).encode())
            h.update(b"\x1e")
        return h.hexdigest()[:16]


def _connect(path: str, create: bool, busy_timeout: float, read_only: bool = False,
             check: bool = True) -> sqlite3.Connection:
    """Open (or create) the SQLite file; refuse folders, missing files and databases that are not KBs.
    `read_only`: an SQLite URI with mode=ro (the file must be a KB in WAL mode, as `ktune kb import` writes it)."""
    if read_only and path != ":memory:":
        p = Path(path)
        if not p.is_file():
            raise KBError(f"no knowledge base at {p}; create one with `ktune kb import cmekg --kb {p}`")
        try:
            conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False, timeout=busy_timeout)
            if check:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if "migrations" not in tables:
                    conn.close()
                    raise KBError(f"{path} is not a ktune knowledge base (no `migrations` table); {_NOT_A_KB_FIX}")
        except sqlite3.DatabaseError as exc:
            raise KBError(f"{path} cannot be read as a ktune knowledge base ({exc}); {_NOT_A_KB_FIX}") from exc
        return conn
    fresh = True
    if path != ":memory:":
        p = Path(path)
        if p.is_dir():
            raise KBError(f"{p} is a folder; pass a knowledge base file such as {p / 'cmekg.sqlite'}")
        if not p.exists() and not create:
            raise KBError(f"no knowledge base at {p}; create one with `ktune kb import cmekg --kb {p}`")
        fresh = not p.exists() or p.stat().st_size == 0
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not fresh and tables and "migrations" not in tables:
            conn.close()
            raise KBError(f"{path} is an SQLite database but not a ktune knowledge base; {_NOT_A_KB_FIX}")
        conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as exc:
        raise KBError(f"{path} is not a ktune knowledge base ({exc}); {_NOT_A_KB_FIX}") from exc
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn
