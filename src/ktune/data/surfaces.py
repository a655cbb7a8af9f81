"""Entity surface forms for questions: canonical name, KB aliases, generic names, case/width variants.

A surface is used only when it links back to its entity (`kb.link(surface)[0].entity == entity`), so the
gold label of a question that names the entity that way is right by construction.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict

from ktune.kb.linker import LAY_NAME, normalize
from ktune.kb.variants import loose_key

_JUNK = re.compile(r"[：:《》<>\[\]【】=]|通用名称|英文名称")
_ASCII = re.compile(r"[A-Za-z]")
_LATIN_ONLY = re.compile(r"^[A-Za-z0-9 .,'()\-]+$")
# Words people put around a condition's name (see ktune.kb.linker's modifier tier), as they write them.
MODIFIER_PREFIXES = ("轻度", "轻微", "严重的", "早期", "反复", "小儿", "宝宝", "孩子", "老人", "老年人", "孕妇", "孕期",
                     "产后", "术后", "成人")
MODIFIER_SUFFIXES = ("患者",)


class SurfaceIndex:
    """Checked surface forms per entity, computed on demand and cached."""

    def __init__(self, kb):
        self.kb = kb
        self.aliases: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for surface, entity, pred in kb.store.iter_aliases():
            self.aliases[entity].append((surface, pred))
        for surface, rows in kb.linker.by_alias.items():  # the linker's lay names (心梗 -> 心肌梗死)
            for entity, pred in rows:
                if pred == LAY_NAME:
                    self.aliases[entity].append((surface, pred))
        self._cache: dict[str, list[tuple[str, str]]] = {}
        self._homophones: dict[str, list[str]] | None = None

    def forms(self, entity: str) -> list[tuple[str, str]]:
        """[(surface, source)] with the canonical name first; source: name | alias:<pred> | generic | variant."""
        if entity not in self._cache:
            self._cache[entity] = self._compute(entity)
        return self._cache[entity]

    def _compute(self, entity: str) -> list[tuple[str, str]]:
        out = [(entity, "name")]
        seen = {entity}
        cands = [
            (s, "generic" if p == "derived:generic" else f"alias:{p}")
            for s, p in sorted(set(self.aliases[entity]))
        ]
        cands += [(v, "variant") for v in variants(entity) + suffix_variants(entity)]
        for surface, source in cands:
            if surface in seen or not _usable(surface, source):
                continue
            seen.add(surface)
            links = self.kb.link(surface, 1)
            if links and links[0].entity == entity:
                out.append((surface, source))
        return out

    def typo(self, entity: str, rng: random.Random) -> str | None:
        """The name with one character swapped for a homophone (阿莫西林 -> 阿莫西淋), if it still links back."""
        if self._homophones is None:
            self._homophones = _homophone_table(self.kb.linker.surfaces)
        positions = [i for i, ch in enumerate(entity) if ch in self._homophones]
        for i in rng.sample(positions, min(3, len(positions))):
            cands = [c for c in self._homophones[entity[i]] if c != entity[i]]
            if not cands:
                continue
            typo = entity[:i] + rng.choice(cands) + entity[i + 1 :]
            links = self.kb.link(typo, 1)
            if links and links[0].entity == entity and links[0].method in ("pinyin", "fuzzy"):
                return typo
        return None

    def with_modifier(self, entity: str, surface: str, rng: random.Random) -> str | None:
        """`surface` with a modifier word around it (轻度脂肪肝, 脂肪肝患者), if that still links back to `entity`."""
        text = surface + rng.choice(MODIFIER_SUFFIXES) if rng.random() < 0.15 else rng.choice(MODIFIER_PREFIXES) + surface
        links = self.kb.link(text, 1)
        return text if links and links[0].entity == entity else None

    def choose(
        self, entity: str, alias_share: float, rng: random.Random, typo_share: float = 0.0, modifier_share: float = 0.0
    ) -> tuple[str, str]:
        if typo_share and rng.random() < typo_share and (typo := self.typo(entity, rng)):
            return typo, "typo"
        if modifier_share and rng.random() < modifier_share and self.kb.kind(entity) == "disease":
            surface = self._plain(entity, alias_share, rng)[0]
            if modified := self.with_modifier(entity, surface, rng):
                return modified, "modifier"
        return self._plain(entity, alias_share, rng)

    def _plain(self, entity: str, alias_share: float, rng: random.Random) -> tuple[str, str]:
        forms = self.forms(entity)
        if len(forms) == 1 or rng.random() >= alias_share:
            return forms[0]
        others = forms[1:]
        latin = [f for f in others if _LATIN_ONLY.match(f[0])]
        chinese = [f for f in others if f not in latin]
        if chinese and (not latin or rng.random() < 0.9):
            return rng.choice(chinese)
        return rng.choice(latin) if rng.random() < 0.3 else forms[0]  # Latin names: rarer in real questions

    def group_surfaces(self, entity: str) -> set[str]:
        """Normalized name and every alias of an entity (checked or not): what leakage checks look for."""
        return {normalize(entity)} | {normalize(s) for s, _ in self.aliases[entity]}


def _homophone_table(surfaces) -> dict[str, list[str]]:
    """Chinese character -> the characters of KB names that share its toneless pinyin (sorted)."""
    from pypinyin import lazy_pinyin

    chars = sorted({ch for s in surfaces for ch in s if "\u4e00" <= ch <= "\u9fff"})
    by_sound: dict[str, list[str]] = defaultdict(list)
    for ch, sound in zip(chars, lazy_pinyin(chars), strict=True):
        by_sound[sound].append(ch)
    return {
        ch: by_sound[sound]
        for ch, sound in zip(chars, lazy_pinyin(chars), strict=True)
        if len(by_sound[sound]) > 1
    }


def _usable(surface: str, source: str) -> bool:
    if len(surface) < 2 or len(surface) > 24 or _JUNK.search(surface):
        return False
    if _LATIN_ONLY.match(surface):
        return len(surface) >= 4 and source != "generic"
    return True


def suffix_variants(name: str) -> list[str]:
    """The name as people shorten it: without a trailing 病/症/综合征/感染 or without 性 (腰椎间盘突出症 -> 腰椎间盘突出,
    过敏性鼻炎 -> 过敏鼻炎); kept only when it links back (checked by the caller)."""
    out = []
    if (short := loose_key(name)) != name and len(short) >= 2 and "性" not in name:
        out.append(short)
    if "性" in name and len(name) >= 4:
        out.append(name.replace("性", "", 1))
    return out


def variants(name: str) -> list[str]:
    """Case and full-width variants of names with Latin letters or digits: 维生素B1片 -> 维生素b1片, 维生素Ｂ1片."""
    if not _ASCII.search(name):
        return []
    out = [name.lower(), name.upper()]
    out.append("".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in name))
    return [v for v in dict.fromkeys(out) if v != name]
