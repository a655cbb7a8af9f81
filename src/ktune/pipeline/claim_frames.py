"""The sentence frames an answer is read against: every frame the answer step is trained on
(`ktune/data/answer_bank.json`) and the sentences ktune writes itself, as connective text and as patterns over a
sentence skeleton (ktune.pipeline.claims)."""

from __future__ import annotations

import json
import re
from functools import lru_cache

import regex

from ktune.data.answers import BANK_PATH
from ktune.pipeline.claim_spans import split_sentences

LIST_GLUE = set("、；;，,和及与或等 。！？!?")

# Connective text of the sentences ktune writes itself (listing, premise verdicts), beside the answer bank.
OWN_FRAMES = (
    "根据知识库，{name}的{pred}：{vals}。",
    "根据知识库，{name}的{pred}包括：{vals}。",
    "根据知识库，{name}的{pred}包括{vals}，共{n}项（完整列表见相关知识）。",
    "知识库中{name}的{pred}：{vals}。",
    "知识库中{name}的{pred}包括{vals}，共{n}项（完整列表见相关知识）。",
    "知识库中{name}的{pred}没有列出“{term}”。",
)
# A field named and its values after a plain copula: states exactly the facts the listing states (the values must
# be that field's, see claims._frame_match). The model writes these as often as the trained wording.
COPULAS = ("：", "有", "有：", "为", "为：", "是", "包括", "包括：", "主要有", "主要包括")
COPULA_FRAMES = tuple(f"{{name}}的{{pred}}{c}{{vals}}。" for c in COPULAS)


# --- connective text ---------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"\{[a-z]+\}")


ATTRIBUTION = "根据知识库，"


@lru_cache(maxsize=1)
def _frames() -> tuple[tuple[str, str | None], ...]:
    """Every sentence frame the answer step is trained on, ktune's own sentences and the copula frames, each with
    the attribute it states (None: any). Frames also hold with or without the sentence-initial 根据知识库， and,
    where they name their attribute (X的适应症：…), with any predicate of the knowledge in its place."""
    bank = json.loads(BANK_PATH.read_text(encoding="utf-8"))
    frames: set[tuple[str, str | None]] = {(f, None) for f in OWN_FRAMES + COPULA_FRAMES}

    def walk(node, attribute: str | None) -> None:
        if isinstance(node, str):
            for sentence in split_sentences(node):  # the check works sentence by sentence
                frames.add((sentence, attribute))
                if sentence.startswith(ATTRIBUTION):
                    frames.add((sentence[len(ATTRIBUTION):], attribute))
                if attribute and attribute in sentence:
                    frames.add((sentence.replace(attribute, "{pred}"), None))
        elif isinstance(node, list):
            for x in node:
                walk(x, attribute)
        elif isinstance(node, dict):
            for k, x in node.items():
                if k != "version":
                    walk(x, None)

    for attribute, frame_list in bank.get("frames", {}).items():
        walk(frame_list, attribute)
    walk({k: v for k, v in bank.items() if k != "frames"}, None)
    # 根据知识库， states no fact: a frame that states values holds with it as without it
    frames |= {(ATTRIBUTION + f, a) for f, a in list(frames) if "{vals}" in f and not f.startswith(ATTRIBUTION)}
    return tuple(sorted(frames, key=lambda f: (f[0], f[1] or "")))


@lru_cache(maxsize=1)
def connective_pieces() -> tuple[str, ...]:
    """Literal text of every frame (the words between placeholders)."""
    pieces = {p for f, _ in _frames() for p in _PLACEHOLDER.split(f) if p}
    return tuple(sorted(pieces, key=lambda p: (-len(p), p)))


# {surface} is what the user wrote ("您问的“{surface}”在知识库中对应{entity}"): it relates nothing to the
# entity, so any span may fill it, the question's own words included (\x03)
_SLOT = {"{vals}": "\x01", "{name}": "\x02", "{entity}": "\x02", "{surface}": "[\x01\x02\x03]",
         "{pred}": "(?P<pred>[^\x01\x02]{1,40}?)", "{n}": "[0-9]+", "{term}": "[^”]+"}


@lru_cache(maxsize=1)
def frame_patterns() -> tuple[tuple[re.Pattern, str | None], ...]:
    """Every trained frame as a pattern over a sentence skeleton (value runs -> \x01, names -> \x02), with
    the attribute the frame states (None: any)."""
    out = []
    for frame, attribute in _frames():
        # a value run absorbs a 等 that follows it (see _skeleton), so frames do too
        parts = re.split(r"(\{[a-z]+\})", frame.replace("{vals}等", "{vals}"))
        out.append((re.compile("".join(_SLOT.get(p, re.escape(p)) for p in parts if p)), attribute))
    return tuple(out)


@lru_cache(maxsize=256)
def prefix_patterns(predicates: frozenset[str], attributes: frozenset[str]) -> tuple[regex.Pattern, ...]:
    """The frames a knowledge with these predicate and attribute names can be stated in, for telling whether a
    sentence still being written can become one: `regex` patterns (partial matching) with {pred} spelled out as
    the knowledge's own predicate names, as `_frame_match` requires of a whole sentence (the `regex` module's
    partial matching mishandles lazy repeats, so none is used)."""
    names = "|".join(regex.escape(p) for p in sorted(predicates, key=len, reverse=True))
    slots = {**_SLOT, "{pred}": f"(?:{names})(?:和(?:{names}))*" if names else "(?!)"}
    out = []
    for frame, attribute in _frames():
        if attribute is None or attribute in attributes:
            parts = re.split(r"(\{[a-z]+\})", frame.replace("{vals}等", "{vals}"))
            out.append(regex.compile("".join(slots.get(p, regex.escape(p)) for p in parts if p)))
    return tuple(out)


@lru_cache(maxsize=1)
def _connective_text() -> str:
    return "\u0000".join(connective_pieces())


def is_connective(text: str) -> bool:
    """True when `text` is list glue or lies inside one trained frame's connective text."""
    t = text.strip()
    return not t or set(t) <= LIST_GLUE or t in _connective_text()


def residue(text: str) -> list[str]:
    """The parts of `text` no connective fragment (>= 2 characters) explains: the claim's own words."""
    lit, out, cur, i = _connective_text(), [], "", 0
    while i < len(text):
        j = i + 2
        best = 0
        while j <= len(text) and text[i:j] in lit:
            best = j
            j += 1
        if best:
            if cur:
                out.append(cur)
                cur = ""
            i = best
        else:
            cur += text[i]
            i += 1
    if cur:
        out.append(cur)
    return [r for r in (x.strip("".join(LIST_GLUE) + "。！？!?：:“”\"") for x in out) if r]


