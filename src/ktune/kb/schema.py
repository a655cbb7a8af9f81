"""The attribute schema: the closed set of question attributes and the raw predicates each gathers.

A data file (`schema.json` ships for CMeKG); users pass their own with `--schema FILE`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ktune.errors import KBError, UnknownAttributeError

DEFAULT_SCHEMA_PATH = Path(__file__).with_name("schema.json")
_FIX = f"fix it following the shipped {DEFAULT_SCHEMA_PATH.name}, or omit --schema to use the shipped one"


@dataclass(frozen=True)
class Attribute:
    name: str
    kinds: tuple[str, ...]
    predicates: tuple[str, ...]
    # attributes of the same intent, tried in order when this one has no value for an entity ("X怎么办" asked
    # as 治疗方案 of an entity whose treatment facts sit under 药物治疗)
    fallback: tuple[str, ...] = ()


@dataclass(frozen=True)
class Schema:
    version: str
    attributes: dict[str, Attribute]
    kind_rules: dict[str, tuple[str, ...]]  # kind -> any-of predicates, checked in file order
    alias_predicates: tuple[str, ...]
    not_queryable: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Schema:
        path = Path(path) if path else DEFAULT_SCHEMA_PATH
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise KBError(f"cannot read attribute schema {path}: {exc}; {_FIX}") from exc
        try:
            attrs = {
                name: Attribute(name, tuple(a["kinds"]), tuple(a["predicates"]), tuple(a.get("fallback", ())))
                for name, a in raw["attributes"].items()
            }
            schema = cls(
                version=str(raw["version"]),
                attributes=attrs,
                kind_rules={k: tuple(v["any_of"]) for k, v in raw.get("kinds", {}).items()},
                alias_predicates=tuple(raw.get("alias_predicates", [])),
                not_queryable={k: tuple(v) for k, v in raw.get("not_queryable", {}).items()},
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise KBError(f"attribute schema {path} is malformed (missing or wrong field {exc}); {_FIX}") from exc
        schema._validate(path)
        return schema

    def _validate(self, path) -> None:
        if not self.attributes:
            raise KBError(f"{path}: the schema defines no attributes; {_FIX}")
        kinds = set(self.kind_rules)
        hidden = {p for ps in self.not_queryable.values() for p in ps}
        seen: dict[str, str] = {}
        for a in self.attributes.values():
            if not a.predicates:
                raise KBError(f"{path}: attribute {a.name!r} gathers no predicates; list at least one")
            bad = [k for k in a.kinds if kinds and k not in kinds]
            if bad:
                raise KBError(f"{path}: attribute {a.name!r} names unknown kinds {bad}; valid kinds: {sorted(kinds)}")
            unknown = [f for f in a.fallback if f not in self.attributes or f == a.name]
            if unknown:
                raise KBError(f"{path}: attribute {a.name!r} falls back to {unknown}, not other attributes of the schema")
            for p in a.predicates:
                if p in seen:
                    raise KBError(f"{path}: predicate {p!r} is mapped twice ({seen[p]!r} and {a.name!r}); keep one")
                if p in hidden:
                    raise KBError(f"{path}: predicate {p!r} is mapped to {a.name!r} and listed as not queryable")
                seen[p] = a.name

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "kinds": {k: {"any_of": list(v)} for k, v in self.kind_rules.items()},
            "attributes": {
                a.name: {"kinds": list(a.kinds), "predicates": list(a.predicates)}
                | ({"fallback": list(a.fallback)} if a.fallback else {})
                for a in self.attributes.values()
            },
            "alias_predicates": list(self.alias_predicates),
            "not_queryable": {k: list(v) for k, v in self.not_queryable.items()},
        }

    # --- look-ups -----------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.attributes)

    def attribute(self, name: str) -> Attribute:
        try:
            return self.attributes[name]
        except KeyError:
            raise UnknownAttributeError(
                f"unknown attribute {name!r}; valid attributes: {', '.join(self.attributes)}"
            ) from None

    def intent(self, name: str) -> tuple[str, ...]:
        """The attribute and its fallbacks, in the order acquire_knowledge(..., fallback=True) tries them."""
        return (name, *self.attribute(name).fallback)

    def predicate_attribute(self) -> dict[str, str]:
        """raw predicate -> canonical attribute."""
        return {p: a.name for a in self.attributes.values() for p in a.predicates}

    def unmapped_predicates(self, predicate_counts: dict[str, int], min_facts: int = 20) -> list[str]:
        """Predicates with at least `min_facts` facts that are neither mapped nor listed as not queryable."""
        known = set(self.predicate_attribute()) | {p for ps in self.not_queryable.values() for p in ps}
        return sorted(p for p, n in predicate_counts.items() if n >= min_facts and p not in known)

    def classify(self, predicates) -> str:
        """Entity kind from the predicates it has: first matching rule in file order, else 'other'."""
        have = set(predicates)
        for kind, any_of in self.kind_rules.items():
            if have.intersection(any_of):
                return kind
        return "other"

    def attributes_for_kind(self, kind: str) -> list[str]:
        return [a.name for a in self.attributes.values() if kind in a.kinds]
