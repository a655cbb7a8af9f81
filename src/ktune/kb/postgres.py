"""PostgreSQL backend for the KB (psycopg 3): same tables, named migrations, one transaction per import.

Open it with `KnowledgeBase.open("postgresql://user@host:port/db")`. Writes buffer new facts in memory and
send them with COPY when the transaction commits (or before any read inside it), so a full CMeKG import is
a few bulk statements. Text columns compare bytewise (COLLATE "C") so that every ORDER BY, and therefore
`content_hash`, matches the SQLite store: the KB version does not depend on the backend.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors

from ktune.errors import KBError
from ktune.kb.migrations import POSTGRES_MIGRATIONS
from ktune.kb.store import EMPTY_VERSION, SnapshotReads, _now, redact

LOCK_KEY = 0x6B74756E  # "ktun": advisory lock serialising writers and migrations within one database
_KB_TABLES = {"meta", "entities", "facts", "aliases"}
_START_FIX = "start a local server with `scripts/postgres.sh` (it prints the URL) or check the URL"

_FACTS = "FROM facts f JOIN entities e ON e.id=f.entity_id"


class PostgresStore(SnapshotReads):
    """PostgreSQL backend. Readers see the last committed import (MVCC); one writer at a time. A snapshot is
    one REPEATABLE READ, READ ONLY transaction on a pooled reader connection.

    `read_only`: a session that cannot write (default_transaction_read_only; serving processes); the
    tables must be migrated already (any writable open, e.g. `ktune kb import`, migrates them)."""

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        migrations: list[tuple[str, str]] | None = None,
        busy_timeout: float = 30.0,
        read_only: bool = False,
    ):
        self.url, self.path = url, redact(url)
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self._init_snapshots()
        self._conn = self._connect()
        self._cursor_ids = itertools.count()
        self._writing = False
        self._reset_pending()
        migrations = POSTGRES_MIGRATIONS if migrations is None else migrations
        try:
            self._check_is_kb(create and not read_only)
            if read_only:
                self._check_migrated(migrations)
            else:
                self._migrate(migrations)
        except psycopg.Error as exc:
            self.conn.close()
            raise KBError(
                f"cannot set up the KB tables at {self.path} ({_first_line(exc)}); check that the database "
                "(and the schema in search_path) exists and that the user may create tables in it"
            ) from exc
        except KBError:
            self.conn.close()
            raise

    def _connect(self, read_only: bool | None = None) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            if self.read_only if read_only is None else read_only:
                conn.execute("SET default_transaction_read_only = on")
            return conn
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())
            raise KBError(f"cannot connect to PostgreSQL at {self.path} ({reason}); {_START_FIX}") from exc

    # --- snapshots ----------------------------------------------------------------------------
    def _open_reader(self) -> psycopg.Connection:
        return self._connect(read_only=True)

    def _begin_read(self, conn) -> None:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")  # the snapshot: the first read's state

    def _end_read(self, conn) -> bool:
        try:
            conn.execute("ROLLBACK")
            return True
        except psycopg.Error:
            return False

    # --- schema -------------------------------------------------------------------------------
    def _check_migrated(self, migrations: list[tuple[str, str]]) -> None:
        applied = set(self.applied_migrations()) if "migrations" in self._tables() else set()
        missing = [name for name, _ in migrations if name not in applied]
        if missing:
            raise KBError(f"{self.path} lacks schema migrations {missing} and is opened read-only; run "
                          "`ktune kb stats --kb URL` or an import once to migrate it")

    def _tables(self) -> set[str]:
        rows = self.conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {r[0] for r in rows}

    def _check_is_kb(self, create: bool) -> None:
        tables = self._tables()
        if "migrations" in tables:
            return
        if tables & _KB_TABLES:
            raise KBError(
                f"{self.path} has tables {sorted(tables & _KB_TABLES)} but is not a ktune knowledge base (no "
                "`migrations` table); use another database, or another schema with ?options=-csearch_path%3DNAME"
            )
        if not create:
            raise KBError(f"no knowledge base at {self.path}; create one with `ktune kb import cmekg --kb {self.path}`")

    @contextmanager
    def _locked(self):
        """A transaction holding the writer lock; waits up to busy_timeout for another writer."""
        with self.conn.transaction():
            self.conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(self.busy_timeout * 1000)}ms",))
            try:
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            except pg_errors.LockNotAvailable as exc:
                raise KBError(
                    f"{self.path} is busy: another process is writing to it; retry when it has finished"
                ) from exc
            yield

    def _migrate(self, migrations: list[tuple[str, str]]) -> None:
        applied = set(self.applied_migrations()) if "migrations" in self._tables() else set()
        for name, sql in migrations:
            if name in applied:
                continue
            with self._locked():
                self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS migrations(name TEXT COLLATE \"C\" PRIMARY KEY, applied_at TEXT NOT NULL)"
                )
                # re-check under the lock: another process may have applied it meanwhile
                if self.conn.execute("SELECT 1 FROM migrations WHERE name=%s", (name,)).fetchone():
                    continue
                for stmt in filter(str.strip, sql.split(";")):
                    self.conn.execute(stmt)
                self.conn.execute("INSERT INTO migrations VALUES(%s, %s)", (name, _now()))

    @contextmanager
    def transaction(self):
        """All-or-nothing: on any exception (or a dropped connection) the KB is left as it was."""
        self._check_writable()
        if self._writing:
            raise KBError(f"{self.path}: a write transaction is already open on this store; nest no transactions")
        try:
            with self._locked():
                self._writing = True
                try:
                    yield self
                    self._flush()
                finally:
                    self._writing = False
                    self._reset_pending()
        except psycopg.Error as exc:
            raise KBError(f"{self.path}: PostgreSQL error while writing ({_first_line(exc)}); nothing was changed") from exc

    def close(self) -> None:
        self._close_readers()
        self._conn.close()

    # --- write buffer -------------------------------------------------------------------------
    def _reset_pending(self) -> None:
        self._next_id: int | None = None
        self._new: list[tuple[int, str]] = []  # entities created in this transaction, not yet sent
        self._new_ids: set[int] = set()
        self._values: dict[tuple[int, str], list[str]] = {}  # (entity id, predicate) -> values to insert
        self._stale: set[tuple[int, str]] = set()  # stored (entity id, predicate) rows to delete first

    def _flush(self) -> None:
        """Send buffered writes: deletes of replaced predicates, then COPY entities and facts."""
        if not (self._new or self._values or self._stale):
            return
        with self.conn.cursor() as cur:
            if self._stale:
                eids, preds = zip(*self._stale, strict=True)
                self._check_stored(set(eids))
                cur.execute(
                    "DELETE FROM facts f USING unnest(%s::bigint[], %s::text[]) AS d(eid, pred) "
                    "WHERE f.entity_id=d.eid AND f.predicate=d.pred",
                    (list(eids), list(preds)),
                )
            if self._new:
                with cur.copy("COPY entities(id, name, kind) FROM STDIN") as cp:
                    for eid, name in self._new:
                        cp.write_row((eid, name, ""))
            if self._values:
                with cur.copy("COPY facts(entity_id, predicate, ord, value) FROM STDIN") as cp:
                    for (eid, pred), values in self._values.items():
                        for i, v in enumerate(values):
                            cp.write_row((eid, pred, i, v))
        next_id = self._next_id
        self._reset_pending()
        self._next_id = next_id

    def _check_stored(self, eids: set[int]) -> None:
        """Refuse facts for entity ids that are not stored (a stale `ids` dict, e.g. one taken before clear())."""
        found = self.conn.execute("SELECT COUNT(*) FROM entities WHERE id = ANY(%s)", (sorted(eids),)).fetchone()[0]
        if found != len(eids):
            raise KBError(
                f"{self.path}: {len(eids) - found} entity id(s) passed to upsert_entity are not in the KB; "
                "take `ids` from store.entity_ids() inside the same transaction"
            )

    def _allocate_id(self) -> int:
        if self._next_id is None:  # safe: we hold the writer lock
            self._next_id = self.conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM entities").fetchone()[0]
        eid, self._next_id = self._next_id, self._next_id + 1
        return eid

    # --- reads --------------------------------------------------------------------------------
    def _rows(self, sql: str, params=()) -> list[tuple]:
        self._flush()
        return self.conn.execute(sql, params).fetchall()

    def _stream(self, sql: str, params=()) -> Iterator[tuple]:
        """Rows in batches through a server-side cursor (other queries may run while iterating)."""
        self._flush()
        with self.conn.cursor(name=f"ktune_{next(self._cursor_ids)}", withhold=True) as cur:
            cur.itersize = 5000
            cur.execute(sql, params)
            yield from cur

    def get_meta(self) -> dict[str, str]:
        return dict(self._rows("SELECT key, value FROM meta"))

    def kind(self, entity: str) -> str | None:
        rows = self._rows("SELECT kind FROM entities WHERE name=%s", (entity,))
        return rows[0][0] if rows else None

    def facts(self, entity: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for pred, value in self._rows(
            f"SELECT f.predicate, f.value {_FACTS} WHERE e.name=%s ORDER BY f.predicate, f.ord", (entity,)
        ):
            out.setdefault(pred, []).append(value)
        return out

    def iter_entities(self) -> Iterator[tuple[str, str]]:
        yield from self._stream("SELECT name, kind FROM entities ORDER BY name")

    def iter_facts(self) -> Iterator[tuple[str, str, str]]:
        yield from self._stream(f"SELECT e.name, f.predicate, f.value {_FACTS} ORDER BY e.name, f.predicate, f.ord")

    def iter_aliases(self) -> Iterator[tuple[str, str, str]]:
        yield from self._stream(
            "SELECT a.surface, e.name, a.predicate FROM aliases a JOIN entities e ON e.id=a.entity_id "
            "ORDER BY a.surface, e.name, a.predicate"
        )

    def predicates_by_entity(self) -> dict[str, set[str]]:
        """entity -> the predicates it has facts for."""
        out: dict[str, set[str]] = {}
        for name, pred in self._rows(f"SELECT DISTINCT e.name, f.predicate {_FACTS}"):
            out.setdefault(name, set()).add(pred)
        return out

    def facts_with_predicates(self, predicates: Iterable[str]) -> list[tuple[str, str, str]]:
        """(entity, predicate, value) for the given predicates, in (entity, predicate, order) order."""
        preds = sorted(set(predicates))
        if not preds:
            return []
        return self._rows(
            f"SELECT e.name, f.predicate, f.value {_FACTS} WHERE f.predicate = ANY(%s) "
            "ORDER BY e.name, f.predicate, f.ord",
            (preds,),
        )

    def fact_counts(self) -> dict[str, int]:
        return dict(self._rows(f"SELECT e.name, COUNT(*) {_FACTS} GROUP BY e.name"))

    def predicate_counts(self) -> dict[str, int]:
        return dict(self._rows("SELECT predicate, COUNT(*) FROM facts GROUP BY predicate"))

    def counts(self) -> dict[str, int]:
        (row,) = self._rows(
            "SELECT (SELECT COUNT(*) FROM entities), (SELECT COUNT(*) FROM facts), "
            "(SELECT COUNT(*) FROM aliases), (SELECT COUNT(*) FROM (SELECT DISTINCT predicate FROM facts) p)"
        )
        return dict(zip(("entities", "facts", "aliases", "predicates"), row, strict=True))

    def kind_counts(self) -> dict[str, int]:
        return dict(self._rows("SELECT kind, COUNT(*) FROM entities GROUP BY kind ORDER BY 2 DESC, 1"))

    def content_hash(self) -> str:
        """sha256 over every (entity, kind, predicate, value) in order: equal to SQLiteStore's for equal content."""
        if not self._rows("SELECT 1 FROM facts LIMIT 1"):
            return EMPTY_VERSION
        h = hashlib.sha256()
        # One text column per fact, already joined as the SQLite store hashes it; COPY sends one row per
        # message, so each block is that text, COPY-escaped, plus a newline.
        sep = "chr(31)"
        row = f"e.name || {sep} || e.kind || {sep} || f.predicate || {sep} || f.value || chr(30)"
        sql = f"COPY (SELECT {row} {_FACTS} ORDER BY e.name, f.predicate, f.ord) TO STDOUT"
        with self.conn.cursor() as cur, cur.copy(sql) as cp:
            for block in cp:
                data = bytes(block).replace(b"\n", b"")
                h.update(_unescape(data) if b"\\" in data else data)
        return h.hexdigest()[:16]

    # --- writes (call inside `transaction()`) -------------------------------------------------
    def _execute(self, sql: str, params=()) -> int:
        self._flush()
        return self.conn.execute(sql, params).rowcount

    def clear(self) -> None:
        self._reset_pending()  # DELETE, not TRUNCATE: readers keep seeing the old KB until commit
        for table in ("aliases", "facts", "entities"):
            self._execute(f"DELETE FROM {table}")

    def entity_ids(self) -> dict[str, int]:
        return dict(self._rows("SELECT name, id FROM entities"))

    def upsert_entity(self, name: str, facts: dict[str, list[str]], ids: dict[str, int]) -> None:
        """Set `facts` for `name`: each given predicate's values replace the stored ones (buffered)."""
        if not self._writing:
            raise KBError(f"{self.path}: writes go inside `with store.transaction():`")
        eid = ids.get(name)
        if eid is None:
            eid = ids[name] = self._allocate_id()
            self._new.append((eid, name))
            self._new_ids.add(eid)
        for pred, values in facts.items():
            if eid not in self._new_ids:
                self._stale.add((eid, pred))
            self._values[(eid, pred)] = list(values)

    def delete(self, name: str, predicates: Iterable[str] | None, ids: dict[str, int]) -> int:
        """Delete an entity (predicates None) or some of its predicates. Returns facts removed."""
        eid = ids.get(name)
        if eid is None:
            return 0
        if predicates is None:
            n = self._execute("DELETE FROM facts WHERE entity_id=%s", (eid,))
            self._execute("DELETE FROM aliases WHERE entity_id=%s", (eid,))
            self._execute("DELETE FROM entities WHERE id=%s", (eid,))
            del ids[name]
            return n
        return self._execute(
            "DELETE FROM facts WHERE entity_id=%s AND predicate = ANY(%s)", (eid, sorted(set(predicates)))
        )

    def drop_empty_entities(self) -> int:
        empty = "NOT EXISTS (SELECT 1 FROM facts f WHERE f.entity_id={}.{})"
        self._execute("DELETE FROM aliases a WHERE " + empty.format("a", "entity_id"))
        return self._execute("DELETE FROM entities e WHERE " + empty.format("e", "id"))

    def set_kinds(self, kinds: dict[str, str]) -> None:
        self._execute(
            "UPDATE entities e SET kind=k.kind FROM unnest(%s::text[], %s::text[]) AS k(name, kind) "
            "WHERE e.name=k.name AND e.kind IS DISTINCT FROM k.kind",
            (list(kinds), list(kinds.values())),
        )

    def replace_aliases(self, rows: Iterable[tuple[str, str, str]]) -> None:
        ids = self.entity_ids()
        self._execute("DELETE FROM aliases")
        keep = {(s, ids[e], p) for s, e, p in rows if e in ids}  # a set: duplicates are ignored
        with self.conn.cursor() as cur, cur.copy("COPY aliases(surface, entity_id, predicate) FROM STDIN") as cp:
            for row in sorted(keep):
                cp.write_row(row)

    def set_meta(self, values: dict[str, str]) -> None:
        self._flush()
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO meta(key, value) VALUES(%s, %s) ON CONFLICT (key) DO UPDATE SET value=EXCLUDED.value",
                list(values.items()),
            )


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


_COPY_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def _unescape(data: bytes) -> bytes:
    """Undo COPY text-format escaping (backslash sequences for backslash and control characters)."""
    return re.sub(rb"\\(.)", lambda m: _COPY_ESCAPES.get(m.group(1), m.group(1)), data, flags=re.S)
