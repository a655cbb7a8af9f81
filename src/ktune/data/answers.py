"""Answer writer: fluent Chinese from the retrieved values plus the provenance line, and refusals."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from ktune.kb.linker import normalize
from ktune.prompt import provenance_line

BANK_PATH = Path(__file__).with_name("answer_bank.json")
_TAG = re.compile(r"<[^>]*>|\[[^\]]{0,8}\]")
_TRAIL = "。；;，,、 "
MEDICATION_KINDS = {"drug", "herb", "formula"}
USAGE_ATTRS = {
    "用法用量",
    "不良反应",
    "禁忌",
    "注意事项",
    "药物相互作用",
    "适应症",
    "功效",
    "毒性",
    "成份",
    "药物分类",
    "性味",
}
TREATMENT_ATTRS = {"治疗方案", "药物治疗"}
SENTENCE_CAP = 5


def clean_value(value: str) -> str:
    """Strip markup (<sup>[药典]</sup>), spaces and trailing punctuation from one KB value."""
    return _TAG.sub("", value).strip().strip(_TRAIL).strip()


def display_values(values: list[str], max_values: int, skip: set[str] | None = None) -> tuple[str, list[str]]:
    """(joined text, values shown): deduplicated, capped with 等, sentences joined by ；, phrases by 、."""
    shown, seen = [], set(skip or ())
    for v in map(clean_value, values):
        if v and v not in seen:
            seen.add(v)
            shown.append(v)
    sentences = any(len(v) > 14 or "，" in v or "," in v for v in shown)
    cap = SENTENCE_CAP if sentences else max_values
    more = len(shown) > cap
    shown = shown[:cap]
    text = ("；" if sentences else "、").join(shown)
    if more and not text.endswith("等"):
        text += "等"
    return text, shown


def sections(knowledge: dict, max_values: int) -> list[tuple[str, str, list[str]]]:
    """[(predicate, joined values, values shown)] in KB order; a value shown under one predicate is not repeated."""
    out, done = [], set()
    for facts in knowledge.values():
        for pred, values in facts.items():
            text, shown = display_values(values, max_values, done)
            done.update(shown)
            if text:
                out.append((pred, text, shown))
    return out


class AnswerWriter:
    def __init__(self, max_values: int = 10, path: str | Path | None = None):
        self.bank = json.loads(Path(path or BANK_PATH).read_text(encoding="utf-8"))
        self.max_values = max_values

    def answer(
        self, entity: str, attribute: str, kind: str, surface: str, knowledge: dict, rng: random.Random
    ) -> str:
        """Answer body (values in KB order, capped) + a safety sentence where relevant + the provenance line."""
        parts = []
        if normalize(surface) != normalize(entity):
            parts.append(rng.choice(self.bank["alias_intro"]).format(surface=surface, entity=entity))
        for i, (pred, vals, _) in enumerate(sections(knowledge, self.max_values)):
            frame = rng.choice(self.bank["frames"][attribute] if i == 0 else self.bank["more"])
            parts.append(frame.format(name=entity, vals=vals, pred=pred))
        safety = self._safety(attribute, kind, rng)
        if safety:
            parts.append(safety)
        return "".join(parts) + "\n" + provenance_line(knowledge)

    def shown_values(self, knowledge: dict) -> list[str]:
        """The values an answer built from `knowledge` states (what a rewrite must keep)."""
        return [v for _, _, shown in sections(knowledge, self.max_values) for v in shown]

    def _safety(self, attribute: str, kind: str, rng: random.Random) -> str:
        safety = self.bank["safety"]
        if kind in MEDICATION_KINDS:
            if attribute in USAGE_ATTRS:
                return rng.choice(safety["medication"])
            return rng.choice(safety["reference"]) if rng.random() < 0.5 else ""
        if attribute in TREATMENT_ATTRS:
            return rng.choice(safety["treatment"])
        return rng.choice(safety["general"]) if rng.random() < 0.5 else ""

    def refuse_absent(self, surface: str, rng: random.Random) -> str:
        return rng.choice(self.bank["refuse_absent"]).format(surface=surface)

    def refuse_lacking(self, entity: str, attribute: str, rng: random.Random) -> str:
        return rng.choice(self.bank["refuse_lacking"]).format(entity=entity, attribute=attribute)
