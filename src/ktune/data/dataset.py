"""The dataset folder as typed records: `DatasetRecord` (one JSONL line of a split) and `Dataset` (a folder's splits
and manifest.json). Stage 1 writes it (ktune.data.build), training and evaluation read it; nobody else parses it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from ktune.errors import ConfigError
from ktune.jsonl import read_jsonl
from ktune.paths import atomic_write_text

SPLITS = ("train", "dev", "test_seen", "test_unseen", "test_no_knowledge")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DatasetRecord:
    """One knowledge-tuning record; the fields in the order a split file writes them."""

    id: str
    question: str
    entity: str | None  # the canonical KB entity the query names; None: no query (`无`)
    attribute: str | None  # the schema attribute asked
    knowledge: dict  # what acquire_knowledge(entity, attribute) returns ({} for a refusal)
    answer: str  # the answer-step target, with its provenance line
    kind: str  # in_kb | no_knowledge
    split: str
    template: str  # question template id (+teacher when the teacher rewrote the record)
    surface: str  # how the question names the entity
    entity_kind: str | None

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, obj: dict, split: str = "") -> DatasetRecord:
        """A record from its JSON object; only `question` is required (hand-written records may leave the rest
        out: no query, no knowledge, kind from the knowledge)."""
        if not isinstance(obj, dict) or not isinstance(obj.get("question"), str):
            raise ConfigError(f"a {split or 'dataset'} record needs a \"question\" string, got {str(obj)[:80]!r}")
        knowledge = obj.get("knowledge") or {}
        return cls(id=str(obj.get("id") or ""), question=obj["question"], entity=obj.get("entity"),
                   attribute=obj.get("attribute"), knowledge=knowledge, answer=obj.get("answer") or "",
                   kind=obj.get("kind") or ("in_kb" if knowledge else "no_knowledge"),
                   split=obj.get("split") or split, template=str(obj.get("template") or ""),
                   surface=obj.get("surface") or "", entity_kind=obj.get("entity_kind"))


@dataclass(frozen=True)
class Dataset:
    """A dataset folder written by `ktune data build`: DIR/{split}.jsonl, DIR/fewshot/train_N.jsonl, manifest.json."""

    root: Path
    manifest: dict = field(default_factory=dict)  # {} when the folder has no manifest.json

    @classmethod
    def load(cls, root: str | Path) -> Dataset:
        root = Path(root)
        if not root.is_dir():
            raise ConfigError(f"dataset folder {root} does not exist; build one with `ktune data build --out {root}`")
        path = root / MANIFEST
        if not path.is_file():
            return cls(root)
        try:
            return cls(root, json.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path} is not readable JSON ({exc}); rebuild the dataset with `ktune data build`") from exc

    @property
    def version(self) -> str | None:
        return self.manifest.get("data_version")

    def records(self, split: str = "train", subset: int | None = None, *, limit: int | None = None,
                empty_ok: bool = False) -> list[DatasetRecord]:
        """Records of one split; `subset` N (train) uses fewshot/train_N.jsonl when it exists, else the first N;
        `limit`: at most that many. An empty split is an error unless `empty_ok`."""
        path = self.root / f"{split}.jsonl"
        if split == "train" and subset and (self.root / "fewshot" / f"train_{subset}.jsonl").is_file():
            path, subset = self.root / "fewshot" / f"train_{subset}.jsonl", None
        if not path.is_file():
            raise ConfigError(f"{path} is missing; a dataset folder holds {', '.join(s + '.jsonl' for s in SPLITS)}")
        rows = read_jsonl(path)[: (subset or limit) or None]
        if not rows and not empty_ok:
            raise ConfigError(f"{path} holds no records")
        return [DatasetRecord.from_json(r, split) for r in rows]

    def fewshot_sizes(self) -> list[int]:
        """The N of every fewshot/train_N.jsonl, ascending."""
        names = (p.stem.removeprefix("train_") for p in (self.root / "fewshot").glob("train_*.jsonl"))
        return sorted(int(n) for n in names if n.isdigit())

    @staticmethod
    def save_split(path: Path, records: list[DatasetRecord]) -> str:
        """Write one split file (one JSON object per line, atomically); returns the sha256 of its text."""
        text = "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records)
        atomic_write_text(path, text)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @staticmethod
    def save_manifest(root: Path, manifest: dict) -> None:
        atomic_write_text(Path(root) / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
