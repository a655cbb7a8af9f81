"""A field a search-box fragment names in the KB's own words ("哮喘 并发症", "宝宝用量"): the attribute asked.

A small model sometimes writes another attribute than the one the question spells out (哮喘 并发症 -> 多发人群).
The words read here are not a hand-written cue list: they are the schema's own names for each attribute (the
canonical name and the raw CMeKG predicates it gathers, 常见症状 also as 症状, 药物相互作用 as 相互作用), found as whole words (jieba
boundaries: 体检|查出 names no 检查) outside the entity's name. The model's attribute gives way only when the
question names exactly one attribute, that attribute is a field of the entity's kind, and it is of another
intent than the model's (治疗方案 and 药物治疗 are one intent: no change). A field of another kind stands for its
intent's field of this kind (the schema's fallback: 功效, a herb's field, asked of a drug, "金匮肾气丸的功效与作用", is
its 适应症). A question naming two fields is left to the multi-part rule (ktune.pipeline.parts).
"""

from __future__ import annotations

from ktune.kb.linker import normalize

MIN_WORD = 2
# Words a field's name may be written without: 常见症状 as 症状, 药物相互作用 as 相互作用 (the shorter word is read
# only where no field's own name is it: 药物治疗's 治疗 stays 治疗方案's).
_DROPPED_PREFIXES = ("常见", "药物")


def _words(schema) -> tuple[tuple[str, str], ...]:
    """(word, attribute) pairs, longest word first: each attribute's name and raw predicates."""
    pairs: dict[str, str] = {}
    for attr in schema.attributes.values():
        for word in (attr.name, *attr.predicates):
            if "_" in word:  # 诊断依据_临床表现: a CMeKG field path, never written by users
                continue
            for w in (word, word[2:] if word.startswith(_DROPPED_PREFIXES) else ""):
                if len(w) >= MIN_WORD:
                    pairs.setdefault(normalize(w), attr.name)
    return tuple(sorted(pairs.items(), key=lambda p: -len(p[0])))


def stated_attributes(question: str, names: tuple[str, ...], schema) -> set[str]:
    """The attributes whose KB words the question writes as whole words, outside the `names` it also writes."""
    import jieba

    norm = normalize(question)
    for name in sorted({normalize(n) for n in names if n}, key=len, reverse=True):
        norm = norm.replace(name, "\u3000")  # a name's own characters (症状性癫痫) name no field
    bounds = {0, len(norm)}
    for _, start, end in jieba.tokenize(norm):
        bounds.update((start, end))
    found, taken = set(), set()
    for word, attr in _words(schema):
        at = norm.find(word)
        while at >= 0:
            span = set(range(at, at + len(word)))
            if at in bounds and at + len(word) in bounds and not span & taken:
                found.add(attr)
                taken |= span
            at = norm.find(word, at + 1)
    return found


def stated_attribute(question: str, names: tuple[str, ...], kind: str, model_attribute: str, schema) -> str | None:
    """The attribute the question names, when it should replace the model's (see the module doc), else None."""
    stated = stated_attributes(question, names, schema)
    if len(stated) != 1:
        return None
    (attr,) = stated
    own = schema.attributes_for_kind(kind)
    if attr not in own:
        attr = next((f for f in schema.attribute(attr).fallback if f in own), None)
    if attr is None or attr == model_attribute:
        return None
    if model_attribute in schema.intent(attr) or attr in schema.intent(model_attribute):
        return None
    return attr
