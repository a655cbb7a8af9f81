"""The question bank (question_bank.json): templates per attribute, held-out split, and question rendering."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ktune.errors import ConfigError

BANK_PATH = Path(__file__).with_name("question_bank.json")
STYLES = {"cores": "c", "search": "s", "bare": "v"}  # bank group -> template-id letter (v = vignette)
MIN_PHRASINGS = 15
_PERSON_MARKS = (
    ("child", ("小儿", "儿童", "新生儿", "婴儿", "婴幼儿", "幼儿", "先天", "胎儿")),
    ("elder", ("老年", "老人", "阿尔茨海默")),
    (
        "female",
        (
            "妊娠",
            "产后",
            "孕",
            "产妇",
            "妇女",
            "女性",
            "子宫",
            "卵巢",
            "乳腺",
            "宫颈",
            "阴道",
            "月经",
            "经期",
        ),
    ),
    ("male", ("男性", "前列腺", "睾丸", "阴茎", "精索")),
)
AGES = {"child": (1, 12), "adult": (18, 55), "elder": (60, 85)}


@dataclass(frozen=True)
class Template:
    id: str  # e.g. 临床表现/c03
    attribute: str
    style: str  # core | search | vignette
    text: str  # with {e} (core, search) or entity-free (vignette)
    kinds: tuple[str, ...] | None = None  # None: every kind the attribute applies to
    pinned: bool = False  # always a train template (cues a calibration run showed the model must learn)

    def fits(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds


class QuestionBank:
    """Templates per attribute, split into train and held-out templates with a seeded draw."""

    def __init__(self, raw: dict, seed: int, heldout_fraction: float):
        self.version = raw["version"]
        self.wrappers = raw["wrappers"]
        self.vignette = raw["vignette"]
        self.templates: dict[str, list[Template]] = {}
        for attr, groups in raw["attributes"].items():
            self.templates[attr] = [
                t for group in STYLES for t in _templates(attr, group, groups.get(group, []))
            ]
        self.symptoms: list[str] = []  # symptom words the KB has no entry for (set by the generator)
        self.heldout: set[str] = set()
        for attr, temps in self.templates.items():
            for style in ("core", "search", "vignette"):
                ids = sorted(t.id for t in temps if t.style == style and not t.pinned)
                random.Random(f"{seed}:heldout:{attr}:{style}").shuffle(ids)
                n = max(1, round(len(ids) * heldout_fraction)) if len(ids) > 1 else 0
                self.heldout.update(ids[:n])

    @classmethod
    def load(
        cls, seed: int = 13, heldout_fraction: float = 0.3, path: str | Path | None = None
    ) -> QuestionBank:
        path = Path(path) if path else BANK_PATH
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read question bank {path}: {exc}") from exc
        return cls(raw, seed, heldout_fraction)

    def check_schema(self, schema) -> None:
        """Every schema attribute needs at least MIN_PHRASINGS core+search templates."""
        missing = [a for a in schema.names if a not in self.templates]
        if missing:
            raise ConfigError(
                f"question bank has no templates for attributes {missing}; add them to {BANK_PATH.name}"
            )
        thin = {a: n for a in schema.names if (n := self.phrasings(a)) < MIN_PHRASINGS}
        if thin:
            raise ConfigError(f"attributes with fewer than {MIN_PHRASINGS} phrasings: {thin}")

    def phrasings(self, attribute: str) -> int:
        return sum(t.style != "vignette" for t in self.templates.get(attribute, ()))

    def pick(
        self, attribute: str, kind: str, heldout: bool | None, style: str, rng: random.Random
    ) -> Template:
        """A template for `attribute` in `style`; heldout True/False restricts the side, None allows both."""
        pool = [t for t in self.templates[attribute] if t.fits(kind) and t.style == style]
        if heldout is not None:
            pool = [t for t in pool if (t.id in self.heldout) == heldout] or pool
        if not pool:
            raise ConfigError(f"no {style} template for attribute {attribute!r} and kind {kind!r}")
        return rng.choice(pool)

    # --- rendering ----------------------------------------------------------------------------
    def render(self, template: Template, surface: str, kind: str, rng: random.Random) -> str:
        if template.style == "search":
            return _search_noise(template.text, rng).replace("{e}", surface)
        if template.style == "vignette":
            return self._vignette(template.text, surface, kind, rng)
        return self._wrap(template.text.replace("{e}", surface), rng)

    def _wrap(self, question: str, rng: random.Random) -> str:
        w = self.wrappers
        if question.endswith("？") and rng.random() < 0.3:
            ending = rng.choice(w["ending"])
            if not (question.endswith(("吗？", "呢？", "啊？", "吧？")) and ending in ("呢？", "啊？")):
                question = question[:-1] + ending
        if rng.random() < 0.35:
            question = rng.choice(w["opener"]) + question
        if rng.random() < 0.2:
            sep = "" if question[-1:] in "？?。！!" else "，"
            question = question + sep + rng.choice(w["closer"])
        return question

    def _vignette(self, bare: str, surface: str, kind: str, rng: random.Random) -> str:
        v = self.vignette
        group = _person_group(surface, rng)
        person = rng.choice(v["person"][group])
        history = rng.choice(v["history_child"] if group == "child" else v["history"])
        for slot, (lo, hi) in AGES.items():
            person = person.replace("{" + slot + "}", str(rng.randint(lo, hi)))
        context = rng.choice(v["context"].get(kind) or v["context"]["disease"]).replace("{e}", surface)
        story = f"{person}，{history}{self._lead(kind, rng)}{context}"
        if rng.random() < 0.3:
            return f"{bare}{story}。"
        opener = rng.choice(self.wrappers["opener"]) if rng.random() < 0.25 else ""
        if opener.endswith(("，", "：")) or not opener:
            return f"{opener}{story}，{bare}"
        return f"{story}，{opener}{bare}"

    def _lead(self, kind: str, rng: random.Random) -> str:
        if kind != "disease" or len(self.symptoms) < 2 or rng.random() < 0.5:
            return rng.choice(self.vignette["lead"])
        s1, s2 = rng.sample(self.symptoms, 2)
        return rng.choice(self.vignette["symptom_lead"]).replace("{s1}", s1).replace("{s2}", s2)

    def all_text(self) -> list[str]:
        """Every fixed string the bank can put in a question (for leakage protection)."""
        out = [t.text.replace("{e}", " ") for temps in self.templates.values() for t in temps]
        out += [s for group in self.wrappers.values() for s in group]
        v = self.vignette
        out += (
            [p for ps in v["person"].values() for p in ps]
            + v["history"]
            + v["history_child"]
            + v["lead"]
            + v["symptom_lead"]
        )
        out += [c.replace("{e}", " ") for cs in v["context"].values() for c in cs]
        return out


def _templates(attr: str, group: str, items: list) -> list[Template]:
    style = {"cores": "core", "search": "search", "bare": "vignette"}[group]
    out = []
    for i, item in enumerate(items, 1):
        item = item if isinstance(item, dict) else {"t": item}
        text, kinds = item["t"], tuple(item["kinds"]) if "kinds" in item else None
        if style != "vignette" and "{e}" not in text:
            raise ConfigError(
                f"question template {attr}/{STYLES[group]}{i:02d} lacks the {{e}} slot: {text!r}"
            )
        out.append(
            Template(f"{attr}/{STYLES[group]}{i:02d}", attr, style, text, kinds, item.get("pin") == "train")
        )
    return out


def _person_group(name: str, rng: random.Random) -> str:
    """Who the vignette is about, consistent with the entity name (小儿… -> a child, 妊娠… -> a woman)."""
    for group, marks in _PERSON_MARKS:
        if any(m in name for m in marks):
            return group
    return rng.choice(("child", "female", "male", "elder", "female", "male"))


def _search_noise(text: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.15:
        return text.replace(" ", "")
    if r < 0.3:
        return text + "？"
    if r < 0.4:
        return text.replace(" ", "  ")
    return text
