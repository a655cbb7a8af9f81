"""Storage interface for the KB: the contract, the read snapshots its backends share, and `open_store`.

A backend stores entities (canonical name, kind), facts (entity, predicate, order, value), aliases
(surface form -> entity, with the predicate it came from) and metadata. `KnowledgeStore` is the
contract; tests/kb/store_contract.py is the suite every backend must pass. The backends are
ktune.kb.sqlite (a file) and ktune.kb.postgres (a URL); their tables are in ktune.kb.migrations.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from ktune.errors import KBError

EMPTY_VERSION = "empty"


class KnowledgeStore(Protocol):
    """What the rest of ktune needs from a KB backend."""

    path: str

    # reads
    def get_meta(self) -> dict[str, str]: ...
    def facts(self, entity: str) -> dict[str, list[str]]: ...
    def kind(self, entity: str) -> str | None: ...
    def iter_entities(self) -> Iterator[tuple[str, str]]: ...
    def iter_facts(self) -> Iterator[tuple[str, str, str]]: ...
    def iter_aliases(self) -> Iterator[tuple[str, str, str]]: ...
    def predicates_by_entity(self) -> dict[str, set[str]]: ...
    def facts_with_predicates(self, predicates: Iterable[str]) -> list[tuple[str, str, str]]: ...
    def fact_counts(self) -> dict[str, int]: ...
    def predicate_counts(self) -> dict[str, int]: ...
    def kind_counts(self) -> dict[str, int]: ...
    def counts(self) -> dict[str, int]: ...
    def content_hash(self) -> str: ...
    def applied_migrations(self) -> list[str]: ...
    def snapshot(self) -> AbstractContextManager: ...  # this thread's reads see one committed state
    # writes: call inside `with store.transaction():`
    def transaction(self) -> AbstractContextManager: ...
    def clear(self) -> None: ...
    def entity_ids(self) -> dict[str, int]: ...
    def upsert_entity(self, name: str, facts: dict[str, list[str]], ids: dict[str, int]) -> None: ...
    def delete(self, name: str, predicates: Iterable[str] | None, ids: dict[str, int]) -> int: ...
    def drop_empty_entities(self) -> int: ...
    def set_kinds(self, kinds: dict[str, str]) -> None: ...
    def replace_aliases(self, rows: Iterable[tuple[str, str, str]]) -> None: ...
    def set_meta(self, values: dict[str, str]) -> None: ...
    def close(self) -> None: ...


READ_ONLY_FIX = "serving processes open the KB read-only; change it with `ktune kb import` (it may run while they serve)"


class SnapshotReads:
    """Read snapshots for a store's backends: inside `snapshot()` the calling thread reads through a reader
    connection of its own, in one read-only transaction, so every read sees the same committed state (an
    import that commits meanwhile is seen by the next snapshot, never half way). Other threads, and code
    outside a snapshot, use the store's main connection (each statement sees the last commit).

    Reader connections are pooled: a thread takes one for the length of its snapshot and gives it back."""

    _conn = None  # the main connection (set by the backend)
    read_only = False
    path = ""

    def _init_snapshots(self) -> None:
        self._local = threading.local()
        self._idle: list = []
        self._idle_lock = threading.Lock()
        self._closed = False

    @property
    def conn(self):
        """The connection this thread reads through: its snapshot's, else the main one."""
        return getattr(self._local, "conn", None) or self._conn

    @property
    def in_snapshot(self) -> bool:
        return getattr(self._local, "conn", None) is not None

    @contextmanager
    def snapshot(self):
        """A consistent view for this thread until the block ends (re-entrant: a nested call joins it)."""
        if self.in_snapshot:
            yield self
            return
        with self._idle_lock:
            conn = self._idle.pop() if self._idle else None
        conn = conn or self._open_reader()
        healthy = False
        try:
            self._begin_read(conn)
            self._local.conn = conn
            try:
                yield self
            finally:
                self._local.conn = None
                healthy = self._end_read(conn)
        finally:
            with self._idle_lock:
                if healthy and not self._closed:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    def _check_writable(self) -> None:
        """A write transaction may start: the store is not read-only and this thread is in no read snapshot."""
        if self.read_only:
            raise KBError(f"{self.path} is opened read-only; {READ_ONLY_FIX}")
        if self.in_snapshot:
            raise KBError(f"{self.path}: a write inside a read snapshot; end the snapshot first")

    def applied_migrations(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM migrations ORDER BY name")]

    def _close_readers(self) -> None:
        with self._idle_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # backend hooks
    def _open_reader(self): raise NotImplementedError
    def _begin_read(self, conn) -> None: raise NotImplementedError
    def _end_read(self, conn) -> bool: raise NotImplementedError


def is_url(target) -> bool:
    """True for a PostgreSQL URL (postgresql://... or postgres://...), the one non-file KB location."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password (for logs, `kb stats` and error messages)."""
    return re.sub(r"^(postgres(?:ql)?://[^:/@]*):[^@]*@", r"\1:***@", url)


def open_store(target: str | Path, *, create: bool = False, read_only: bool = False) -> KnowledgeStore:
    """The backend for `target`: PostgresStore for a postgresql:// URL, else SQLiteStore for a file path.
    `read_only`: a store that cannot write (serving processes; imports go through `ktune kb import`)."""
    if is_url(target):
        try:
            from ktune.kb.postgres import PostgresStore
        except ModuleNotFoundError as exc:
            if not (exc.name or "").startswith("psycopg"):
                raise
            raise KBError(
                f"a PostgreSQL knowledge base ({target.split('@')[-1]}) needs psycopg 3, which is not installed; "
                'install it with `pip install -e ".[postgres]"`, or pass an SQLite file path instead'
            ) from exc
        return PostgresStore(target, create=create, read_only=read_only)
    from ktune.kb.sqlite import SQLiteStore

    return SQLiteStore(Path(target), create=create, read_only=read_only)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
