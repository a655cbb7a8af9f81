"""Apply parsed records to a store in ONE transaction: clean, write, re-derive kinds and aliases, re-hash.

A malformed file never reaches this point (readers parse everything first); an exception or a killed
process inside the transaction leaves the KB exactly as it was.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from ktune.errors import ConfigError
from ktune.kb.aliases import alias_rows
from ktune.kb.clean import clean_name, clean_values
from ktune.kb.readers import Record
from ktune.kb.schema import Schema
from ktune.kb.store import KnowledgeStore, _now

log = logging.getLogger(__name__)
MODES = ("upsert", "replace", "delete")


@dataclass
class ImportReport:
    source: str
    mode: str
    records: int = 0
    facts_read: int = 0  # values in the source, before cleaning
    facts_written: int = 0
    facts_deleted: int = 0
    entities_before: int = 0
    entities_after: int = 0
    version_before: str = ""
    version_after: str = ""
    cleaning: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


def apply_records(
    store: KnowledgeStore,
    schema: Schema,
    records: list[Record],
    *,
    mode: str = "upsert",
    source: str = "",
    source_sha256: str = "",
    progress: bool = False,
    extra_meta: dict[str, str] | None = None,
) -> ImportReport:
    """Write `records` in one transaction and return what happened (counts, cleaning, versions)."""
    if mode not in MODES:
        raise ConfigError(f"unknown import mode {mode!r}; choose one of {', '.join(MODES)}")
    t0 = time.perf_counter()
    report = ImportReport(source=source, mode=mode, records=len(records))
    report.entities_before = store.counts()["entities"]
    report.version_before = store.get_meta().get("version", "empty")
    counts: Counter = Counter()
    with store.transaction():
        log.info("writing %d records from %s (%s)", len(records), source, mode)  # inside the transaction
        if mode == "replace":
            store.clear()
        ids = store.entity_ids()
        for rec in tqdm(records, desc="import", unit="rec", disable=not progress, mininterval=1.0):
            name = clean_name(rec.entity)
            if mode == "delete":
                report.facts_deleted += store.delete(name, list(rec.facts) or None, ids)
                continue
            report.facts_read += sum(map(len, rec.facts.values()))
            facts = {clean_name(p): clean_values(vs, counts) for p, vs in rec.facts.items()}
            facts = {p: vs for p, vs in facts.items() if vs}
            store.upsert_entity(name, facts, ids)
            report.facts_written += sum(map(len, facts.values()))
        store.drop_empty_entities()
        _derive(store, schema)
        version = store.content_hash()
        store.set_meta(_meta(store, schema, version, source, source_sha256, mode) | (extra_meta or {}))
    report.version_after = version
    report.entities_after = store.counts()["entities"]
    report.cleaning = dict(sorted(counts.items()))
    report.seconds = round(time.perf_counter() - t0, 2)
    return report


def _derive(store: KnowledgeStore, schema: Schema) -> None:
    """Entity kinds from their predicates; alias rows from name predicates and drug product names."""
    kinds = {name: schema.classify(ps) for name, ps in store.predicates_by_entity().items()}
    store.set_kinds(kinds)
    alias_facts = store.facts_with_predicates(schema.alias_predicates)
    store.replace_aliases(alias_rows(sorted(kinds.items()), alias_facts, schema.alias_predicates))


def _meta(store, schema: Schema, version: str, source: str, sha: str, mode: str) -> dict[str, str]:
    old = store.get_meta()
    sources = json.loads(old.get("sources", "[]"))
    if mode == "replace":
        sources = []
    sources.append({"source": source, "sha256": sha, "mode": mode, "at": _now()})
    return {
        "version": version,
        "source": source,
        "source_sha256": sha,
        "sources": json.dumps(sources[-50:], ensure_ascii=False),
        "schema_version": schema.version,
        "updated_at": _now(),
    }
