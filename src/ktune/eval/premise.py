"""The adversarial premise set and its suite: yes/no questions whose premise the KB does or does not support.

Each item asks whether entity X relates to a term Y ("利福平片可以治疗肝胆管结石吗？"). Half the items take Y
from X's own values for the attribute (present); half take a real term that X's values do not contain
(absent): another entity's value for the same attribute, a sibling term that shares a head with one of X's
values (1型糖尿病 when X lists 2型糖尿病), or a famous wrong pair. An absent Y is kept only when no value of
X equals it, contains it, is contained in it or names the same KB entity, so the gold label never depends
on how generous a matching rule is. Items are generated deterministically from the KB and split dev/test by
entity (design on dev, report on test). The committed file `data/premise.jsonl` is this function's output
on the full CMeKG; `ktune eval --suite premise` scores a run on it.

Scoring: a system affirms when its premise verdict lists a value of the gold attribute that matches Y, or
(without a verdict: the model wrote the answer) when a sentence of the answer that does not say "not
listed" contains Y. False affirmation = affirming an absent Y (target 0); false denial = not affirming a
present one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from ktune.data.answers import clean_value
from ktune.eval.metrics import proportion, proportion_of
from ktune.jsonl import read_jsonl
from ktune.kb.linker import normalize
from ktune.paths import atomic_write_text

log = logging.getLogger(__name__)
DATA_PATH = Path(__file__).parent / "data" / "premise.jsonl"
VERSION = "ktune-premise-1"

# attribute -> (entity kind, question templates); {x} the entity, {y} the term
TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "适应症": ("drug", ("{x}可以治疗{y}吗？", "{x}能治{y}吗？", "{x}对{y}有效吗？", "{x}是治{y}的药吗？")),
    "不良反应": ("drug", ("{x}有{y}的副作用吗？", "吃{x}会{y}吗？", "{y}是{x}的不良反应吗？", "{x}会引起{y}吗？")),
    "成份": ("drug", ("{x}含有{y}吗？", "{y}是{x}的成分吗？", "{x}里有{y}成分吗？")),
    "禁忌": ("drug", ("{x}禁用于{y}吗？", "{x}的禁忌包括{y}吗？")),
    "临床表现": ("disease", ("{y}是{x}的症状吗？", "{x}会有{y}的症状吗？", "得了{x}会{y}吗？")),
    "并发症": ("disease", ("{x}会引起{y}吗？", "{y}是{x}的并发症吗？", "{x}会并发{y}吗？")),
    "药物治疗": ("disease", ("{x}可以用{y}治疗吗？", "{y}能治{x}吗？", "得了{x}可以吃{y}吗？")),
}
# Well-known wrong pairs (the method's motivating example first), kept when the KB does not list them.
FAMOUS = (
    ("利福平片", "适应症", "肝胆管结石", "利福平"),
    ("利福平片", "适应症", "糖尿病", "利福平"),
    ("利福平胶囊", "适应症", "肝胆管结石", None),
    ("盐酸二甲双胍片", "适应症", "高血压", "二甲双胍"),
    ("阿莫西林胶囊", "适应症", "病毒性感冒", "阿莫西林"),
    ("阿司匹林肠溶片", "适应症", "胃溃疡", "阿司匹林"),
    ("布洛芬缓释胶囊", "适应症", "细菌感染", "布洛芬"),
    ("头孢克肟胶囊", "适应症", "病毒感染", "头孢克肟"),
    ("感冒", "药物治疗", "阿莫西林", None),
    ("高血压", "临床表现", "黄疸", None),
)


def _h(*parts: str) -> str:
    return hashlib.sha256("\u0000".join(parts).encode("utf-8")).hexdigest()


def _usable(value: str, surfaces) -> str | None:
    """A value that reads as one term: 2-12 characters, no list punctuation, a KB name or alias."""
    v = clean_value(value)
    if not 2 <= len(v) <= 12 or any(ch in v for ch in "、，,；;。：:（）()/ "):
        return None
    return v if normalize(v) in surfaces else None


def _same_entity(kb, a: str, b: str, cache: dict = {}) -> bool:  # noqa: B006 - a per-KB memo of links
    from ktune.pipeline.premise import _same_entities

    def ents(text: str) -> set[str]:
        key = (kb.version, text)
        if key not in cache:
            cache[key] = _same_entities(kb, text)
        return cache[key]

    return bool(ents(a) & ents(b))


def related(kb, term: str, values: list[str]) -> bool:
    """True when any value equals the term, contains it, is contained in it or names the same KB entity."""
    t = normalize(term)
    for value in values:
        v = normalize(clean_value(value))
        if v and (v == t or t in v or v in t):
            return True
    return any(_same_entity(kb, term, clean_value(v)) for v in values if len(clean_value(v)) >= 2)


def _values(kb, entity: str, attribute: str) -> list[str]:
    return [v for preds in kb.acquire_knowledge(entity, attribute).values() for vals in preds.values() for v in vals]


def _contraindication_terms(kb, values: list[str]) -> list[str]:
    """KB terms written inside 禁忌 sentences (孕妇, 肝功能不全...): the Y of a 禁忌 question."""
    out = []
    for value in values:
        norm = normalize(value)
        for i, j, m in kb.linker.find_mentions(value):
            if 2 <= j - i <= 8 and m == norm[i:j] and m not in out:
                out.append(m)
    return out


def build_premise_set(kb, per_attribute: int = 30, seed: str = "0") -> list[dict]:
    """`per_attribute` present + `per_attribute` absent items for each attribute of TEMPLATES, + FAMOUS."""
    surfaces = kb.linker.surfaces
    items: list[dict] = []
    for attribute, (kind, templates) in TEMPLATES.items():
        entities = sorted((e for e in kb.entities(kind) if attribute in kb.attributes_of(e)),
                          key=lambda e: _h(seed, attribute, e))
        terms_of: dict[str, list[str]] = {}
        for e in entities[: per_attribute * 12]:
            vals = _values(kb, e, attribute)
            terms = _contraindication_terms(kb, vals) if attribute == "禁忌" else \
                [u for v in vals if (u := _usable(v, surfaces))]
            if terms:
                terms_of[e] = sorted(set(terms), key=lambda t: _h(seed, e, t))
        pool = sorted({t for ts in terms_of.values() for t in ts}, key=lambda t: _h(seed, attribute, t))
        present = absent = 0
        for n, (entity, terms) in enumerate(terms_of.items()):
            if present >= per_attribute and absent >= per_attribute:
                break
            template = templates[n % len(templates)]
            vals = _values(kb, entity, attribute)
            if present < per_attribute:
                items.append(_item(entity, attribute, terms[0], "value", True, template))
                present += 1
            if absent < per_attribute:
                y = _absent_term(kb, entity, vals, pool, terms, seed, sibling=n % 3 == 0)
                if y:
                    items.append(_item(entity, attribute, y[0], y[1], False, template))
                    absent += 1
    for entity, attribute, term, surface in FAMOUS:
        if not kb.has_entity(entity) or attribute not in kb.attributes_of(entity):
            continue
        if related(kb, term, _values(kb, entity, attribute)):
            log.warning("premise set: the KB lists %s for %s/%s; not a wrong pair here", term, entity, attribute)
            continue
        template = TEMPLATES[attribute][1][0]
        items.append(_item(entity, attribute, term, "famous", False, template, surface))
    for it in items:
        it["split"] = "dev" if int(_h(seed, "split", it["entity"]), 16) % 2 == 0 else "test"
    return items


def _absent_term(kb, entity, vals, pool, own, seed, sibling: bool) -> tuple[str, str] | None:
    """A real term X's values do not relate to: a sibling (shares a 2+ character head with one of X's values)
    when asked and one exists, else another entity's value."""
    ordered = sorted(pool, key=lambda t: _h(seed, entity, t))
    if sibling:
        heads = {normalize(t)[-2:] for t in own}
        for t in ordered:
            if normalize(t)[-2:] in heads and not related(kb, t, vals):
                return t, "sibling"
    for t in ordered[:200]:
        if not related(kb, t, vals):
            return t, "other_entity"
    return None


def _item(entity, attribute, term, source, present, template, surface=None) -> dict:
    question = template.format(x=surface or entity, y=term)
    return {"id": _h(VERSION, entity, attribute, term)[:12], "question": question, "entity": entity,
            "attribute": attribute, "term": term, "present": present, "source": source}


def write_premise_set(kb, path: Path = DATA_PATH, **kwargs) -> list[dict]:
    items = build_premise_set(kb, **kwargs)
    atomic_write_text(Path(path), "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items))
    return items


def load_premise_set(path: Path | None = None, split: str = "test") -> list[dict]:
    """The committed items of one split ("dev", "test" or "all")."""
    items = list(read_jsonl(Path(path or DATA_PATH)))
    return items if split == "all" else [it for it in items if it["split"] == split]


# --- scoring ------------------------------------------------------------------------------------
def affirms(item: dict, answer: dict, kb=None) -> bool:
    """Whether an answer (Answer.to_json()-like) affirms the relation between the item's entity and term.

    With a premise verdict: "listed" with a value of the gold attribute, or "listed" about the other side of
    the relation (stage 1 took the term as the entity: 伊芬能治鼻窦炎吗 -> 鼻窦炎's drugs list 伊芬), counted
    as affirming either way. Without one (the model wrote the answer): a sentence that does not say "not
    listed" names both the entity (a KB name or alias) and the term; an answer about the term alone
    (上呼吸道感染's symptoms for "上呼吸道感染是可塞风的不良反应吗") relates nothing to the entity.
    """
    from ktune.pipeline.claim_spans import aliases_of, split_sentences
    from ktune.pipeline.claims import negated
    from ktune.prompt import strip_provenance

    if answer.get("refused"):
        return False
    premise = answer.get("premise")
    if premise:
        if premise["verdict"] != "listed":
            return False
        if premise["entity"] != item["entity"]:
            return True
        preds = set(kb.schema.attribute(item["attribute"]).predicates) if kb is not None else None
        return any(preds is None or m["predicate"] in preds for m in premise["matches"])
    body = strip_provenance(answer.get("answer") or "")
    term = normalize(item["term"])
    names = {normalize(item["entity"])} | ({normalize(a) for a in aliases_of(kb, item["entity"])} if kb else set())
    for sentence in split_sentences(body):
        text = normalize(sentence)
        if not negated(sentence) and term in text and any(n and n in text.replace(term, "\u0000") for n in names):
            return True
    return False


def gold_query_answers(items: list[dict], kb) -> list[dict]:
    """The premise decision alone: entity and attribute given, term read off the question."""
    from ktune.pipeline.answer import premise_answer
    from ktune.pipeline.premise import PremiseQuery, decide_premise, detect_premise

    out = []
    for it in items:
        pq = detect_premise(it["question"], it["entity"], kb)
        if pq is None:
            out.append({"answer": "", "refused": False, "premise": None, "detected": False})
            continue
        pq = PremiseQuery(pq.relation, pq.entity, pq.term, (it["attribute"],))
        knowledge = kb.acquire_knowledge(it["entity"], it["attribute"])
        p = decide_premise(pq, knowledge, kb)
        out.append({"answer": premise_answer(p, knowledge, kb).text, "refused": False, "premise": p.to_json(),
                    "detected": True, "term_found": pq.term})
    return out


def score_premise(items: list[dict], answers: list[dict], kb) -> tuple[dict, list[dict]]:
    rows = []
    for it, a in zip(items, answers, strict=True):
        aff = affirms(it, a, kb)
        rows.append({**it, "answer": a.get("answer"), "refused": bool(a.get("refused")), "premise": a.get("premise"),
                     "linked_entity": a.get("linked_entity"), "detected": bool(a.get("premise")), "affirmed": aff,
                     "false_affirmation": aff and not it["present"], "false_denial": it["present"] and not aff})
    absent = [r for r in rows if not r["present"]]
    present = [r for r in rows if r["present"]]
    by_source = {s: proportion(sum(r["false_affirmation"] for r in absent if r["source"] == s),
                               sum(1 for r in absent if r["source"] == s))
                 for s in sorted({r["source"] for r in absent})}
    return {
        "n": len(rows),
        "false_affirmation": proportion_of(r["false_affirmation"] for r in absent),
        "false_denial": proportion_of(r["false_denial"] for r in present),
        "detected": proportion_of(r["detected"] for r in rows),
        "refused": proportion_of(r["refused"] for r in rows),
        "false_affirmation_by_source": by_source,
        "false_denial_by_attribute": {a: proportion_of(r["false_denial"] for r in present if r["attribute"] == a)
                                      for a in TEMPLATES},
    }, rows


def run_premise_suite(kb, run_dir=None, out_dir=None, split: str = "test", limit: int | None = None,
                      claim_check: bool = True, path: Path | None = None) -> dict:
    """The gold-query decision, and the run end to end when `run_dir` is given; rows under out_dir/premise/."""
    items = load_premise_set(path, split)
    if limit:
        # the first `limit` of each half, so a sample keeps absent and present balanced
        items = [it for it in items if it["present"]][:limit] + [it for it in items if not it["present"]][:limit]
    metrics = {"suite": "premise", "set": VERSION, "split": split, "n_items": len(items),
               "n_absent": sum(1 for it in items if not it["present"]), "kb_version": kb.version,
               "systems": {}, "timings_s": {}}
    systems = [("gold query (entity + attribute given)", lambda: gold_query_answers(items, kb))]
    if run_dir:
        name = "knowledge-tuned" + ("" if claim_check else " (no claim check)")
        systems.append((name, lambda: _pipeline_answers(items, kb, run_dir, claim_check)))
    for name, produce in systems:
        t0 = time.perf_counter()
        answers = produce()
        metrics["systems"][name], rows = score_premise(items, answers, kb)
        metrics["timings_s"][name] = round(time.perf_counter() - t0, 2)
        if out_dir is not None:
            from ktune.eval.retrieval import slug

            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
            atomic_write_text(Path(out_dir) / "premise" / f"{slug(name)}.jsonl", text)
    return metrics


def _pipeline_answers(items, kb, run_dir, claim_check: bool) -> list[dict]:
    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig

    qa = KnowledgeTunedQA.from_pretrained(run_dir, kb=kb, config=PipelineConfig(claim_check=claim_check))
    return [a.to_json() for a in qa.ask_batch([it["question"] for it in items])]
