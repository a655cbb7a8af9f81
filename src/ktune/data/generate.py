"""Record generation: in-KB questions, refusals for absent entities and for attributes an entity lacks."""

from __future__ import annotations

import json
import logging
import random
import re
from collections import defaultdict
from pathlib import Path

from ktune.data.answers import AnswerWriter
from ktune.data.dataset import DatasetRecord
from ktune.data.questions import QuestionBank
from ktune.data.splits import EntityPools, allocate, entity_pools
from ktune.data.surfaces import SurfaceIndex
from ktune.kb.linker import normalize
from ktune.prompt import knowledge_json

log = logging.getLogger(__name__)
ABSENT_PATH = Path(__file__).with_name("absent_terms.json")
RESOLVED = ("exact", "normalized", "generic", "normalized_alias", "alias", "variant", "modifier")
_NEAR_SUFFIXES = ("症", "病", "综合征", "检查", "感染", "疾病", "片", "胶囊", "注射液")


def predicates_by_entity(kb) -> dict[str, set[str]]:
    fast = getattr(kb.store, "predicates_by_entity", None)
    if fast is not None:
        return fast()
    out: dict[str, set[str]] = defaultdict(set)
    for e, p, _ in kb.store.iter_facts():
        out[e].add(p)
    return out


def mentioned_entities(linker, text: str, own: str | None = None) -> set[str]:
    """KB entities whose name or alias occurs (longest match) in `text`.

    With `own` (the record's surface form), matches overlapping it are accidental (和 + 血清… -> 和血) and skipped.
    """
    norm = normalize(text)
    spans = []
    if own and (key := normalize(own)):
        start = norm.find(key)
        while start >= 0:
            spans.append((start, start + len(key)))
            start = norm.find(key, start + 1)
    out: set[str] = set()
    for i, j, s in linker.find_mentions(text):
        if any(i < b and a < j for a, b in spans):
            continue
        out.update(linker.by_norm.get(s, ()))
        out.update(e for e, _ in linker.by_alias_norm.get(s, ()))
    return out


def absent_terms(kb, seed: int, path: Path = ABSENT_PATH) -> dict[str, list[tuple[str, str]]]:
    """Real medical terms the KB cannot resolve, split into {"train": [(term, kind)], "test": [...]}.

    The curated list (absent_terms.json) plus frequent symptom values that are not KB entities.
    """
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    terms = {kind: list(ts) for kind, ts in raw["terms"].items()}
    if raw.get("mine"):
        curated = {t for ts in terms.values() for t in ts}
        terms["symptom"] = [t for t in mine_symptoms(kb, raw["mine"]) if t not in curated]
    out: dict[str, list[tuple[str, str]]] = {"train": [], "test": [], "symptoms": []}
    for group in sorted(terms):
        kind = "disease" if group == "symptom" else group
        keep = [t for t in terms[group] if _absent(kb, t)]
        if group == "symptom":
            keep = keep[: raw["mine"]["top"]]
        random.Random(f"{seed}:absent:{group}").shuffle(keep)
        n_test = round(len(keep) * 0.35)
        out["test"] += [(t, kind) for t in keep[:n_test]]
        out["train"] += [(t, kind) for t in keep[n_test:]]
        if group == "symptom":
            out["symptoms"] = [(t, kind) for t in sorted(keep[n_test:])]
    return out


def mine_symptoms(kb, spec: dict) -> list[str]:
    """Frequent values of the symptom predicates, most frequent first (checked for absence later)."""
    preds, pattern = set(spec["predicates"]), re.compile(spec["pattern"])
    counts: dict[str, int] = defaultdict(int)
    for _, pred, value in kb.store.iter_facts():
        if pred in preds and pattern.match(value) and not value.endswith("等"):
            counts[value] += 1
    ranked = sorted((v for v, n in counts.items() if n >= spec["min_count"]), key=lambda v: (-counts[v], v))
    return ranked[: spec["top"] * 2]


def _absent(kb, term: str) -> bool:
    if kb.has_entity(term):
        return False
    for link in kb.link(term, 5):
        if link.method.startswith(RESOLVED) or link.entity in {term + s for s in _NEAR_SUFFIXES}:
            return False
    return True


class Generator:
    """Makes records for one build; keeps the set of questions used so no text repeats across splits."""

    def __init__(self, kb, config):
        self.kb, self.config = kb, config
        self.bank = QuestionBank.load(config.seed, config.heldout_fraction)
        self.bank.check_schema(kb.schema)
        self.writer = AnswerWriter(config.max_values)
        self.surfaces = SurfaceIndex(kb)
        self.absent = absent_terms(kb, config.seed)
        texts = self.bank.all_text() + [t for part in ("train", "test") for t, _ in self.absent[part]]
        protected = set().union(*(mentioned_entities(kb.linker, t) for t in texts))
        self.pools: EntityPools = entity_pools(kb, predicates_by_entity(kb), protected, config)
        self.bank.symptoms = [t for t, _ in self.absent["symptoms"] if len(t) <= 4]
        self.used: set[str] = set()
        self.skipped = 0  # no unused question after several draws
        self.swallowed = 0  # questions redrawn because the context glued onto the name formed another name
        self.too_long = 0  # pairs skipped for knowledge longer than max_knowledge_chars

    # --- one record ---------------------------------------------------------------------------
    def _style(self, rng: random.Random) -> str:
        r = rng.random()
        if r < self.config.vignette_share:
            return "vignette"
        return "search" if r < self.config.vignette_share + self.config.search_share else "core"

    def _question(self, attribute, kind, heldout, rng, surface_of) -> tuple | None:
        style = self._style(rng)
        for _ in range(8):
            template = self.bank.pick(attribute, kind, heldout, style, rng)
            surface = surface_of()
            question = self.bank.render(template, surface, kind, rng)
            key = normalize(question)
            if key not in self.used and not self._swallowed(question, surface):
                self.used.add(key)
                return question, template.id, surface
        self.skipped += 1
        return None

    def _swallowed(self, question: str, surface: str) -> bool:
        """True when the words around the surface form a longer KB name (轻度 + 高血压 = 轻度高血压)."""
        own = normalize(surface)
        for _, _, s in self.kb.linker.find_mentions(question):
            if own in s and s != own:
                self.swallowed += 1
                return True
        return False

    def in_kb(self, split: str, entity: str, attribute: str, heldout: bool | None, rng) -> DatasetRecord | None:
        kind = self.pools.kinds[entity]
        knowledge = self.kb.acquire_knowledge(entity, attribute)
        if len(knowledge_json(knowledge)) > self.config.max_knowledge_chars:
            self.too_long += 1
            return None
        got = self._entity_question(entity, attribute, kind, heldout, rng)
        if got is None:
            return None
        question, tid, surface = got
        answer = self.writer.answer(entity, attribute, kind, surface, knowledge, rng)
        return DatasetRecord("", question, entity, attribute, knowledge, answer, "in_kb", split, tid, surface, kind)

    def _entity_question(self, entity: str, attribute: str, kind: str, heldout: bool | None, rng):
        """(question, template id, surface) asking `attribute` of `entity` by one of its surface forms, or None."""
        cfg = self.config
        return self._question(attribute, kind, heldout, rng, lambda: self.surfaces.choose(
            entity, cfg.alias_share, rng, cfg.typo_share, cfg.modifier_share)[0])

    def lacking(self, split: str, entity: str, attribute: str, heldout: bool | None, rng) -> DatasetRecord | None:
        kind = self.pools.kinds[entity]
        got = self._entity_question(entity, attribute, kind, heldout, rng)
        if got is None:
            return None
        question, tid, surface = got
        answer = self.writer.refuse_lacking(entity, attribute, rng)
        return DatasetRecord("", question, entity, attribute, {}, answer, "no_knowledge", split, tid, surface, kind)

    def absent_record(self, split: str, term: str, kind: str, heldout: bool | None, rng) -> DatasetRecord | None:
        attribute = rng.choice(self.kb.schema.attributes_for_kind(kind))
        got = self._question(attribute, kind, heldout, rng, lambda: term)
        if got is None:
            return None
        question, tid, surface = got
        answer = self.writer.refuse_absent(surface, rng)
        return DatasetRecord("", question, None, attribute, {}, answer, "no_knowledge", split, tid, surface, kind)

    # --- many records -------------------------------------------------------------------------
    def stratified(
        self, split: str, entities: list[str], total: int, per_pair: int, heldout, rng
    ) -> list[DatasetRecord]:
        """`total` in-KB records over `entities`, an even share per (attribute, entity kind), capped by the KB."""
        out: list[DatasetRecord] = []
        for _ in range(3):  # top up what duplicate questions cost
            if len(out) >= total:
                break
            out += self._stratified_once(split, entities, total - len(out), per_pair, heldout, rng)
        return out

    def _stratified_once(self, split, entities, total, per_pair, heldout, rng) -> list[DatasetRecord]:
        by_key: dict[tuple[str, str], list[str]] = defaultdict(list)  # (attribute, entity kind) -> entities
        for e in entities:
            for a in self.pools.attrs[e]:
                by_key[a, self.pools.kinds[e]].append(e)
        quota = allocate(total, {k: len(es) * per_pair for k, es in by_key.items()})
        out = []
        for key in sorted(by_key):
            pool = list(by_key[key])
            rng.shuffle(pool)
            order = [e for _ in range(per_pair) for e in pool][: quota[key]]
            out += [r for e in order if (r := self.in_kb(split, e, key[0], heldout, rng))]
        return out

    def lacking_records(self, split: str, entities: list[str], n: int, heldout, rng) -> list[DatasetRecord]:
        by_attr: dict[str, list[str]] = defaultdict(list)
        for e in entities:
            for a in self.pools.lacking.get(e, ()):
                by_attr[a].append(e)
        quota = allocate(n, {a: len(es) for a, es in by_attr.items()})
        out = []
        for attr in sorted(by_attr):
            for e in rng.sample(by_attr[attr], quota[attr]):
                if r := self.lacking(split, e, attr, heldout, rng):
                    out.append(r)
        return out

    def absent_records(self, split: str, terms: list[tuple[str, str]], n: int, heldout, rng) -> list[DatasetRecord]:
        out = []
        if not terms:
            return out
        for i in range(n):
            term, kind = terms[i % len(terms)] if i < len(terms) else rng.choice(terms)
            if r := self.absent_record(split, term, kind, heldout, rng):
                out.append(r)
        return out
