"""Test items: the dataset's test splits (and optional human-written questions) in one typed record."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ktune.errors import InputError
from ktune.jsonl import read_jsonl

log = logging.getLogger(__name__)

TEST_SPLITS = ("test_seen", "test_unseen", "test_no_knowledge")
HUMAN_SPLIT = "human"
HUMAN_FILE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "human_questions.jsonl"


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
    alternatives: tuple[str, ...] = ()  # other KB entities that answer the question as well (human set)

    __test__ = False  # not a pytest class

    @property
    def should_refuse(self) -> bool:
        return self.kind == "no_knowledge" or not self.knowledge

    def accepts(self, entity: str | None) -> bool:
        """Whether looking up `entity` is the gold entity (or an accepted alternative)."""
        return entity is not None and (entity == self.entity or entity in self.alternatives)

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
    def from_record(cls, rec: dict, split: str = "") -> TestItem:
        try:
            return cls(
                id=str(rec["id"]),
                question=rec["question"],
                entity=rec.get("entity"),
                attribute=rec.get("attribute"),
                knowledge=rec.get("knowledge") or {},
                kind=rec.get("kind") or ("in_kb" if rec.get("knowledge") else "no_knowledge"),
                split=rec.get("split") or split,
                template=str(rec.get("template") or ""),
                surface=rec.get("surface") or "",
                entity_kind=rec.get("entity_kind"),
                answer=rec.get("answer") or "",
            )
        except KeyError as exc:
            raise InputError(f"test record lacks field {exc}; expected the dataset contract's fields") from exc


def load_split(data_dir: str | Path, split: str, limit: int | None = None) -> list[TestItem]:
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise InputError(f"no split file {path}; build a dataset with `ktune data build --out {data_dir}`")
    recs = read_jsonl(path)[: limit or None]
    return [TestItem.from_record(r, split) for r in recs]


def load_human(kb, path: str | Path | None = None, limit: int | None = None) -> list[TestItem]:
    """Human-written questions `{"question","entity","attribute"}`; gold knowledge is looked up in `kb`."""
    path = Path(path) if path else HUMAN_FILE
    if not path.is_file():
        return []
    items = []
    for n, rec in enumerate(read_jsonl(path)[: limit or None]):
        ent, attr = rec.get("entity"), rec.get("attribute")
        know = {}
        if ent and attr and attr in kb.schema.attributes and kb.has_entity(ent):
            know = kb.acquire_knowledge(ent, attr)
        items.append(
            TestItem(
                id=str(rec.get("id", f"human-{n}")),
                question=rec["question"],
                entity=ent if ent and kb.has_entity(ent) else None,
                attribute=attr,
                knowledge=know,
                kind="in_kb" if know else "no_knowledge",
                split=HUMAN_SPLIT,
                template=f"human/{rec.get('style', '')}",
                surface=rec.get("surface") or "",
                entity_kind=kb.kind(ent) if ent else None,
                alternatives=tuple(a for a in rec.get("alternatives") or () if kb.has_entity(a)),
            )
        )
    return items


def load_test_items(data_dir, kb=None, splits=TEST_SPLITS, limit=None, human: bool = True) -> dict[str, list[TestItem]]:
    """{split: items} for the dataset's test splits, plus `human` when the fixture file exists."""
    out = {s: load_split(data_dir, s, limit) for s in splits}
    if human and kb is not None:
        items = load_human(kb, limit=limit)
        if items:
            out[HUMAN_SPLIT] = items
    return out
