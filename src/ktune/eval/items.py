"""Test items: the dataset's test splits and labelled question files (the shipped real-style splits or a
user's own, `ktune eval --items FILE.jsonl`) in one typed record.

A labelled file holds one JSON object per line, in either of two forms:

- gold entries: `{"question": str, "gold_entities": [str, ...], "gold_predicates": [str, ...], "in_kb": bool}`;
  `gold_entities` are every KB entity whose facts answer the question (all products of a generic drug, a
  disease and a genuinely equivalent KB entity), `gold_predicates` the raw KB predicates that answer it
  (for "X怎么办": whichever of 治疗, 治疗方案, 药物治疗, 相关药物, ... apply), `in_kb` whether some gold entity
  has a value under some gold predicate (when left out it is read from the KB);
- single query: `{"question": str, "entity": str | null, "attribute": str | null}` (optionally
  `"alternatives": [str, ...]` and `"in_kb"`); the attribute stands for the raw predicates the schema
  gathers under it.

Optional fields in both: `id` (default `<file stem>-<line>`), `attribute` (the schema attribute closest to the
intent), `style`, `note`, `group`. Real-style items are scored by gold predicates: a system is right when it
looks up a gold entity and what it fetches includes a gold predicate, whatever attribute fetched it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ktune.data.dataset import Dataset, DatasetRecord
from ktune.errors import ConfigError, InputError

log = logging.getLogger(__name__)

TEST_SPLITS = ("test_seen", "test_unseen", "test_no_knowledge")
# The real-style question sets shipped with the package (written by hand, not by the dataset's templates;
# the 121 earlier human-style questions are part of real_dev). Tune on real_dev, report real_test.
REAL_SPLITS = {"real_dev": "realstyle_dev.jsonl", "real_test": "realstyle_test.jsonl"}
REAL_MAX_MISSING = 0.05  # above this share of questions whose gold entities a KB lacks, the KB is not CMeKG


@dataclass(frozen=True)
class TestItem:
    """One question with its gold KB entry; `knowledge` is exactly what the KB returns for it."""

    id: str
    question: str
    entity: str | None
    attribute: str | None
    knowledge: dict = field(default_factory=dict)
    kind: str = "in_kb"  # in_kb | no_knowledge
    split: str = ""
    template: str = ""
    surface: str = ""
    entity_kind: str | None = None
    answer: str = ""
    alternatives: tuple[str, ...] = ()  # other KB entities that answer the question as well
    # Labelled items: the raw predicates that answer the question. When set, retrieval is judged by them
    # (any attribute that fetches one of them is right), not by the gold attribute.
    gold_predicates: tuple[str, ...] = ()

    __test__ = False  # not a pytest class

    @property
    def should_refuse(self) -> bool:
        return self.kind == "no_knowledge" or not self.knowledge

    def accepts(self, entity: str | None) -> bool:
        """Whether looking up `entity` is the gold entity (or an accepted alternative)."""
        return entity is not None and (entity == self.entity or entity in self.alternatives)

    @property
    def gold_entities(self) -> tuple[str, ...]:
        return ((self.entity,) if self.entity else ()) + self.alternatives

    @property
    def surface_type(self) -> str:
        """How the question names the entity: canonical name, another surface form, or none."""
        if self.entity is None:
            return "not_in_kb"
        if not self.surface or self.surface == self.entity:
            return "canonical"
        if self.surface in self.entity:
            return "partial"
        return "alias_or_variant"

    @classmethod
    def from_record(cls, rec: DatasetRecord) -> TestItem:
        return cls(id=rec.id, question=rec.question, entity=rec.entity, attribute=rec.attribute,
                   knowledge=rec.knowledge, kind=rec.kind, split=rec.split, template=rec.template,
                   surface=rec.surface, entity_kind=rec.entity_kind, answer=rec.answer)


def load_split(data_dir: str | Path, split: str, limit: int | None = None) -> list[TestItem]:
    try:
        records = Dataset.load(data_dir).records(split, limit=limit, empty_ok=True)
    except ConfigError as exc:
        raise InputError(f"{exc}; build a dataset with `ktune data build --out {data_dir}`") from exc
    if any(not r.id for r in records):
        raise InputError(f"a record of {Path(data_dir) / split}.jsonl has no id; expected the dataset contract's fields")
    return [TestItem.from_record(r) for r in records]


# --- labelled question files --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Label:
    """One labelled question as written in the file, normalised to the gold-entries form."""

    id: str
    question: str
    gold_entities: tuple[str, ...]
    gold_predicates: tuple[str, ...]
    in_kb: bool | None  # None: not given, read from the KB
    attribute: str | None = None
    style: str = ""
    note: str = ""
    group: str = ""
    where: str = ""  # file:line, for messages


def _str_list(value, field_name: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InputError(f"{where}: {field_name} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def parse_label(rec, schema, where: str, default_id: str) -> Label:
    """A labelled record -> Label; InputError(`file:line: what is wrong; the fix`) for a malformed one."""
    if not isinstance(rec, dict):
        raise InputError(f"{where}: expected a JSON object with question, gold_entities, gold_predicates, in_kb")
    q = rec.get("question")
    if not isinstance(q, str) or not q.strip():
        raise InputError(f"{where}: the record needs a non-empty string `question`")
    attr = rec.get("attribute")
    if attr is not None and attr not in schema.attributes:
        raise InputError(f"{where}: attribute {attr!r} is not in the schema; use one of "
                         f"{', '.join(schema.attributes)} or leave it out")
    in_kb = rec.get("in_kb")
    if in_kb is not None and not isinstance(in_kb, bool):
        raise InputError(f"{where}: in_kb must be true or false, got {in_kb!r}")
    single = "entity" in rec
    if single and ("gold_entities" in rec or "gold_predicates" in rec):
        raise InputError(f"{where}: give either entity/attribute or gold_entities/gold_predicates, not both")
    if single:
        ent = rec["entity"]
        if ent is not None and (not isinstance(ent, str) or not ent.strip()):
            raise InputError(f"{where}: entity must be a KB entity name or null, got {ent!r}")
        if ent is not None and attr is None:
            raise InputError(f"{where}: entity {ent!r} needs an attribute (one of the schema's) to say what is asked")
        alts = _str_list(rec.get("alternatives") or [], "alternatives", where)
        ents = ((ent,) if ent else ()) + tuple(a for a in alts if a != ent)
        preds = schema.attributes[attr].predicates if attr else ()
    else:
        if "gold_entities" not in rec or "gold_predicates" not in rec:
            missing = [k for k in ("gold_entities", "gold_predicates") if k not in rec]
            raise InputError(f"{where}: missing {', '.join(missing)}; a labelled record needs question, "
                             "gold_entities, gold_predicates (and in_kb), or question, entity, attribute")
        ents = _str_list(rec["gold_entities"], "gold_entities", where)
        preds = _str_list(rec["gold_predicates"], "gold_predicates", where)
    if in_kb and not (ents and preds):
        raise InputError(f"{where}: in_kb is true but no gold entity or predicate is given")
    return Label(id=str(rec.get("id") or default_id), question=q, gold_entities=ents, gold_predicates=tuple(preds),
                 in_kb=in_kb, attribute=attr, style=str(rec.get("style") or ""), note=str(rec.get("note") or ""),
                 group=str(rec.get("group") or ""), where=where)


def read_labels(path: str | Path, schema) -> list[Label]:
    """Every record of a labelled file, checked for form (not against the KB: see `check_labels`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no labelled question file {path}")
    labels, seen = [], {}
    with open(path, encoding="utf-8") as f:
        lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    for n, line in lines:
        where = f"{path}:{n}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.msg}); fix or remove the line") from exc
        label = parse_label(rec, schema, where, f"{path.stem}-{n}")
        if label.id in seen:
            raise InputError(f"{where}: id {label.id!r} already used on line {seen[label.id]}; ids must be unique")
        seen[label.id] = n
        labels.append(label)
    return labels


def _values(kb, entity: str, predicates) -> dict[str, list[str]]:
    facts = kb.get(entity) if kb.has_entity(entity) else {}
    return {p: facts[p] for p in predicates if facts.get(p)}


def item_from_label(label: Label, kb, split: str) -> TestItem:
    """A Label -> TestItem; the gold knowledge is the first answering gold entity's values under the gold
    predicates (what the answers suite compares against)."""
    ents = [e for e in label.gold_entities if kb.has_entity(e)]
    answering = [e for e in ents if _values(kb, e, label.gold_predicates)]
    in_kb = bool(answering) if label.in_kb is None else label.in_kb
    know = {answering[0]: _values(kb, answering[0], label.gold_predicates)} if in_kb and answering else {}
    ordered = answering + [e for e in ents if e not in answering]
    return TestItem(
        id=label.id, question=label.question, entity=ordered[0] if ordered else None, attribute=label.attribute,
        knowledge=know, kind="in_kb" if know else "no_knowledge", split=split,
        template=f"real/{label.style}" if label.style else "real", entity_kind=kb.kind(ordered[0]) if ordered else None,
        alternatives=tuple(ordered[1:]), gold_predicates=label.gold_predicates,
    )


def load_labelled(path: str | Path, kb, split: str | None = None, limit: int | None = None) -> list[TestItem]:
    """A labelled question file as test items of `split` (default: the file's stem)."""
    path = Path(path)
    labels = read_labels(path, kb.schema)[: limit or None]
    items = [item_from_label(lb, kb, split or path.stem) for lb in labels]
    lost = [lb.id for lb, it in zip(labels, items, strict=True) if lb.in_kb and it.should_refuse]
    if lost:
        log.warning("%s: %d question(s) labelled in_kb have no value under a gold predicate in this KB (%s); "
                    "they are scored as questions to refuse", path, len(lost), ", ".join(lost[:5]))
    return items


def missing_share(labels: list[Label], kb) -> float:
    """The share of labels naming gold entities none of which this KB has (a file labelled on another KB)."""
    named = [lb for lb in labels if lb.gold_entities]
    lost = [lb for lb in named if not any(kb.has_entity(e) for e in lb.gold_entities)]
    return len(lost) / len(named) if named else 0.0


def real_split_path(split: str) -> Path:
    """The shipped file of a real-style split, read through the package (works from a wheel)."""
    if split not in REAL_SPLITS:
        raise InputError(f"no real-style split {split!r}; choose from {', '.join(REAL_SPLITS)}")
    return Path(str(resources.files("ktune.eval") / "questions" / REAL_SPLITS[split]))


def load_real(kb, splits=tuple(REAL_SPLITS), limit: int | None = None) -> dict[str, list[TestItem]]:
    """{split: items} for the shipped real-style splits (a split whose file is missing is skipped, said once)."""
    out = {}
    for split in splits:
        path = real_split_path(split)
        if not path.is_file():
            log.warning("the real-style split %s is not installed (%s): skipped", split, path)
            continue
        share = missing_share(read_labels(path, kb.schema), kb)
        if share > REAL_MAX_MISSING:
            # Labelled against CMeKG: on another KB the gold entries do not exist and the scores would mislead.
            log.warning("the real-style split %s is labelled against CMeKG, and this KB lacks every gold entity of "
                        "%.0f%% of its questions: skipped", split, 100 * share)
            continue
        out[split] = load_labelled(path, kb, split, limit)
    return out


def load_test_items(data_dir, kb=None, splits=TEST_SPLITS, limit=None, real: bool = True,
                    real_limit: int | None | str = "same") -> dict[str, list[TestItem]]:
    """{split: items} for the dataset's test splits, plus the real-style splits when `real` and a KB is given
    (cut to `real_limit`, by default the same `limit`; pass None to evaluate them in full)."""
    out = {s: load_split(data_dir, s, limit) for s in splits} if data_dir is not None else {}
    if real and kb is not None:
        out.update(load_real(kb, limit=limit if real_limit == "same" else real_limit))
    return out
