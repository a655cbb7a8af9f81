"""`KnowledgeBase`: the one object the other stages use. Exact look-ups, linking, imports, stats."""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

from ktune.errors import KBError
from ktune.kb.cmekg import ATTRIBUTION, PICKLE_SHA256, fetch_cmekg, sha256_file
from ktune.kb.importer import ImportReport, apply_records
from ktune.kb.linker import EntityLinker, Link
from ktune.kb.readers import read_source
from ktune.kb.schema import Schema
from ktune.kb.store import KnowledgeStore, is_url, open_store
from ktune.paths import default_kb

log = logging.getLogger(__name__)

Knowledge = dict[str, dict[str, list[str]]]  # {entity: {raw_predicate: [values]}}
KEPT_VERSIONS = 2  # KB versions whose derived objects are kept (a snapshot may still read the previous one)


class KnowledgeBase:
    """The KB. Reads inside `snapshot()` see one committed version; objects derived from the content (the
    entity linker, a query grammar) are cached per version (`derived`) and rebuilt, never patched, when a
    snapshot sees a new one: a long-running process (`ktune serve`) picks up `ktune kb import` without restart."""

    def __init__(self, store: KnowledgeStore, schema: Schema | None = None):
        self.store = store
        self.schema = schema or Schema.load()
        self._local = threading.local()  # this thread's snapshot: version and its derived objects
        self._derived: OrderedDict[str, weakref.WeakKeyDictionary] = OrderedDict()  # version -> owner -> {name: obj}
        self._derived_lock = threading.Lock()  # guards the version -> cache map
        self._build_lock = threading.RLock()  # one build at a time: never two threads building the same object
        self._seen: str | None = None  # the version last read (what code outside a snapshot uses)

    @classmethod
    def open(cls, path: str | Path | None = None, *, schema: str | Path | None = None, create: bool = False,
             read_only: bool = False):
        """Open the KB at `path` (default: $KTUNE_KB or $KTUNE_HOME/kb/cmekg.sqlite).

        `path` is an SQLite file, or a `postgresql://user@host:port/db` URL (needs the `postgres` extra).
        `read_only`: every write fails (serving processes; the SQLite file is opened with mode=ro).
        """
        target = path or default_kb()
        store = open_store(target if is_url(target) else Path(target), create=create, read_only=read_only)
        kb = cls(store, Schema.load(schema))
        kb._check_schema_version()
        return kb

    def _check_schema_version(self) -> None:
        stored = self.meta.get("schema_version")
        if stored and stored != self.schema.version:
            log.warning(
                "the KB at %s was built with attribute schema %r but is opened with schema %r: kinds and "
                "aliases follow the old one until you re-import (`ktune kb import ... --schema FILE`)",
                self.store.path, stored, self.schema.version,
            )

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- identity -----------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, str]:
        return self.store.get_meta()

    @property
    def version(self) -> str:
        """Content hash: changes whenever any entity, kind, predicate or value changes. Inside `snapshot()`,
        the snapshot's version; outside it, the stored one now."""
        return getattr(self._local, "version", None) or self.meta.get("version", "empty")

    @property
    def current_version(self) -> str:
        """The version this thread's reads belong to: its snapshot's, else the version last seen (read once;
        refreshed by every snapshot and by imports through this object). No query after the first call."""
        version = getattr(self._local, "version", None) or self._seen
        if version is None:
            version = self._seen = self.version
        return version

    # --- snapshots and derived objects ---------------------------------------------------------
    @contextmanager
    def snapshot(self):
        """Yield the version every read of this thread sees until the block ends (one read transaction). A
        nested call joins the outer snapshot. An import committing meanwhile is seen by the next snapshot."""
        if getattr(self._local, "version", None) is not None:
            yield self._local.version
            return
        with self.store.snapshot():
            version = self.meta.get("version", "empty")
            self._local.version, self._local.derived = version, self._derived_for(version)
            self._seen = version
            try:
                yield version
            finally:
                self._local.version = self._local.derived = None

    def _derived_for(self, version: str) -> weakref.WeakKeyDictionary:
        with self._derived_lock:
            cache = self._derived.get(version)
            if cache is None:
                cache = self._derived[version] = weakref.WeakKeyDictionary()
                while len(self._derived) > KEPT_VERSIONS:
                    gone, _ = self._derived.popitem(last=False)
                    log.info("KB version %s: its derived indexes are released", gone)
            else:
                self._derived.move_to_end(version)
            return cache

    def derived(self, owner, name: str, build):
        """`build()`'s result for this KB version, cached per (version, owner, name): the linker, a query
        grammar, any index computed from the KB's content. Inside a snapshot, the snapshot's version (built
        from the snapshot's reads); outside, the version last seen. A new version gets new objects; the old
        ones stay as they are for whoever still holds them. `owner` (weakly referenced) scopes the name."""
        cache = getattr(self._local, "derived", None)
        if cache is None:  # outside a snapshot: the version last seen; a missing object is built in a
            items = self._derived_for(self.current_version).get(owner)  # snapshot, filed under its version
            if items is not None and name in items:
                return items[name]
            with self.snapshot():
                return self.derived(owner, name, build)
        items = cache.get(owner)
        if items is None or name not in items:
            with self._build_lock:  # built once per version, even when several threads ask at once
                items = cache.setdefault(owner, {})
                if name not in items:
                    items[name] = build()
        return items[name]

    # --- look-ups -----------------------------------------------------------------------------
    def has_entity(self, entity: str) -> bool:
        return self.store.kind(entity) is not None

    def kind(self, entity: str) -> str | None:
        return self.store.kind(entity)

    def get(self, entity: str) -> dict[str, list[str]]:
        """All facts of an entity ({} when the KB does not have it)."""
        return self.store.facts(entity)

    def acquire_knowledge(self, entity: str, attribute: str, fallback: bool = False) -> Knowledge:
        """`{entity: {raw_predicate: [values]}}` for the predicates `attribute` gathers; {} when none.

        With `fallback`, an attribute the entity has no value for is answered by the first attribute of the same
        intent that has one (the schema's `fallback` list: 治疗方案 -> 药物治疗); the raw predicate names in the
        result say which facts were used. Raises UnknownAttributeError for an attribute outside the schema.
        Never returns another entity's entry.
        """
        facts = self.store.facts(entity)
        for name in self.schema.intent(attribute) if fallback else (self.schema.attribute(attribute).name,):
            hit = {p: facts[p] for p in self.schema.attribute(name).predicates if p in facts}
            if hit:
                return {entity: hit}
        return {}

    def attributes_of(self, entity: str) -> list[str]:
        """Schema attributes for which `entity` has at least one value."""
        return self._attributes(set(self.store.facts(entity)))

    def attributes_table(self) -> dict[str, list[str]]:
        """`attributes_of` for every entity, from one query (indexes over the whole KB: one query, not 27k)."""
        return {e: self._attributes(preds) for e, preds in self.store.predicates_by_entity().items()}

    def _attributes(self, have: set[str]) -> list[str]:
        return [a.name for a in self.schema.attributes.values() if have.intersection(a.predicates)]

    @property
    def linker(self) -> EntityLinker:
        """The entity linker of this KB version (see `derived`)."""
        return self.derived(self, "linker", lambda: EntityLinker.from_store(self.store))

    def link(self, text: str, k: int = 5) -> list[Link]:
        return self.linker.link(text, k)

    def entities(self, kind: str | None = None) -> list[str]:
        return [n for n, k in self.store.iter_entities() if kind is None or k == kind]

    # --- writes -------------------------------------------------------------------------------
    def import_file(self, path, fmt: str = "auto", mode: str = "upsert", progress: bool = False) -> ImportReport:
        records = read_source(path, fmt)
        return self._apply(records, str(path), sha256_file(Path(path)), mode, progress)

    def import_cmekg(self, source=None, mode: str = "upsert", progress: bool = False) -> ImportReport:
        pkl = fetch_cmekg(source)
        records = read_source(pkl, "cmekg")
        return self._apply(records, "cmekg:pycmekg==0.2.5", PICKLE_SHA256, mode, progress, {"attribution": ATTRIBUTION})

    def delete(self, entity: str, predicates: list[str] | None = None) -> ImportReport:
        """Delete an entity, or only some of its predicates (one transaction)."""
        from ktune.kb.readers import Record

        rec = Record(entity, {p: [] for p in predicates or []})
        return self._apply([rec], f"delete:{entity}", "", "delete", False)

    def _apply(self, records, source, sha, mode, progress, extra_meta=None) -> ImportReport:
        report = apply_records(
            self.store, self.schema, records, mode=mode, source=source, source_sha256=sha, progress=progress,
            extra_meta=extra_meta,
        )
        with self._derived_lock:  # this object wrote: what it derived is stale
            self._derived.clear()
            self._seen = report.version_after
        return report

    # --- reporting ----------------------------------------------------------------------------
    def stats(self) -> dict:
        counts = self.store.counts()
        pcounts = self.store.predicate_counts()
        mapped = self.schema.predicate_attribute()
        return {
            "path": self.store.path,
            "version": self.version,
            **counts,
            "kinds": self.store.kind_counts(),
            "schema_version": self.schema.version,
            "facts_in_queryable_predicates": sum(n for p, n in pcounts.items() if p in mapped),
            "unmapped_predicates_20plus": self.schema.unmapped_predicates(pcounts),
            "meta": self.meta,
        }

    def export(self):
        """Yield cMeKG-style records `{"中心词": name, predicate: [values], ...}` in name order."""
        current, rec = None, {}
        for name, pred, value in self.store.iter_facts():
            if name != current:
                if current is not None:
                    yield rec
                current, rec = name, {"中心词": name}
            rec.setdefault(pred, []).append(value)
        if current is not None:
            yield rec


def require_nonempty(kb: KnowledgeBase) -> None:
    if kb.store.counts()["entities"] == 0:
        raise KBError(f"the knowledge base at {kb.store.path} is empty; run `ktune kb import cmekg` first")
