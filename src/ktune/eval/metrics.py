"""Metric functions: proportions with Wilson 95% CIs, refusal precision/recall, answer grounding, agreement."""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Sequence

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n; (0.0, 1.0) when n == 0 (nothing is known)."""
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"wilson needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(k: int, n: int) -> dict:
    """A proportion as reported everywhere: value (None when n == 0), k, n and the Wilson 95% CI."""
    lo, hi = wilson(k, n)
    return {"value": (k / n) if n else None, "k": k, "n": n, "ci95": [lo, hi]}


def proportion_of(flags: Iterable[bool]) -> dict:
    flags = list(flags)
    return proportion(sum(1 for f in flags if f), len(flags))


def refusal_scores(should_refuse: Sequence[bool], refused: Sequence[bool]) -> dict:
    """Refusal precision (refusals that were right) and recall (right refusals made), as proportions."""
    if len(should_refuse) != len(refused):
        raise ValueError(f"refusal_scores needs equal lengths, got {len(should_refuse)} and {len(refused)}")
    tp = sum(1 for s, r in zip(should_refuse, refused, strict=True) if s and r)
    return {
        "precision": proportion(tp, sum(1 for r in refused if r)),
        "recall": proportion(tp, sum(1 for s in should_refuse if s)),
    }


def fmt_prop(p: dict, digits: int = 1) -> str:
    """`97.3% [95.1–98.6] (n=300)`; `– (n=0)` when nothing was measured."""
    if p.get("value") is None:
        return f"– (n={p.get('n', 0)})"
    lo, hi = p["ci95"]
    return f"{100 * p['value']:.{digits}f}% [{100 * lo:.{digits}f}–{100 * hi:.{digits}f}] (n={p['n']})"


# --- answer grounding ---------------------------------------------------------------------------
_SPACE = re.compile(r"\s+")


def _norm(text: str) -> str:
    from ktune.kb.linker import normalize

    return normalize(text)


def knowledge_values(knowledge: dict) -> list[str]:
    """The distinct values of a `{entity: {pred: [values]}}` dict, in order."""
    seen: dict[str, None] = {}
    for preds in (knowledge or {}).values():
        for values in preds.values():
            for v in values:
                if v and v.strip():
                    seen.setdefault(v.strip(), None)
    return list(seen)


def knowledge_recall(answer: str, knowledge: dict) -> float | None:
    """Share of the knowledge's values stated (normalized substring) in the answer; None without values."""
    values = knowledge_values(knowledge)
    if not values:
        return None
    body = _norm(answer)
    return sum(1 for v in values if _norm(v) in body) / len(values)


def knowledge_recall_listed(answer: str, knowledge: dict, cap: int) -> float | None:
    """Recall as an answer that lists at most `cap` values per field can have it: a field with more values counts
    as complete when `cap` of them are stated (the answer then gives the count and the provenance line has
    them all, as ktune's listings do), so summarising a 96-drug list is not read as missing 86 facts."""
    body, stated, wanted = _norm(answer), 0, 0
    for preds in (knowledge or {}).values():
        for values in preds.values():
            values = list(dict.fromkeys(v.strip() for v in values if v and v.strip()))
            if values:
                n = min(len(values), cap)
                wanted += n
                stated += min(n, sum(1 for v in values if _norm(v) in body))
    return stated / wanted if wanted else None


def unsupported_claims(answer: str, knowledge: dict, surfaces, names=()) -> list[str]:
    """KB surface forms an answer relates to the entity that the knowledge it used does not contain.

    `surfaces` is the linker's normalized surface set (entity names and aliases); mentions are found
    longest-first, so `阿莫西林胶囊` counts once. `names` are other names of the knowledge's entities (their
    KB aliases), which an answer may use. A term that only the question contains is not support: a question
    that states a false premise ("利福平可以治疗肝胆管结石吗") must not license the answer to repeat it.
    Sentences that say the KB does not list something (没有列出, 未记载, ...) relate nothing and are skipped.
    A hallucination proxy, not proof.
    """
    from ktune.pipeline.claim_spans import split_sentences
    from ktune.pipeline.claims import negated

    support = _norm(json.dumps(knowledge or {}, ensure_ascii=False))
    allowed = {_norm(n) for n in names}
    out = []
    for sentence in split_sentences(answer, knowledge):
        if negated(sentence):
            continue
        out += [m for m in _mentions(_norm(sentence), surfaces) if m not in support and m not in allowed]
    return out


def answer_grounding(answer: str, knowledge: dict, question: str, kb, subject: str | None = None) -> dict:
    """What an answer body states, read by the claim check (ktune.pipeline.claims): values stated and how many
    are verbatim values of `knowledge`, predicate names listed as values, unsupported KB names, and the
    sentences the check would drop. Works on any system's text (the instruction baseline's too). `subject`:
    the entity the question is about; naming it (or an alias) relates nothing to it, so it is no claim.
    `other_field_values`: values of the knowledge stated under a field that does not hold them (the value is
    the KB's, the relation is not: "X可用于恶心" when 恶心 is one of X's 不良反应)."""
    from ktune.pipeline.claim_spans import aliases_of
    from ktune.pipeline.claims import OTHER_FIELD, check_answer

    check = check_answer(answer, knowledge, question, kb)
    subjects = set(knowledge or {}) | ({subject} if subject else set())
    names = [a for e in subjects for a in aliases_of(kb, e)] + sorted(subjects)
    return {
        "stated_values": sum(c.stated_values for c in check.all),
        "verbatim_values": sum(c.verbatim_values for c in check.all),
        "predicates_as_values": [p for c in check.all for p in c.predicates_as_values],
        "unsupported_claims": unsupported_claims(answer, knowledge, kb.linker.surfaces, names),
        "other_field_values": [t for c in check.dropped if c.reason == OTHER_FIELD for t in c.terms],
        "failing_sentences": [{"text": c.sentence, "reason": c.reason, "terms": list(c.terms)} for c in check.dropped],
    }


def _mentions(norm: str, surfaces, min_len: int = 2, max_len: int = 30) -> list[str]:
    out, i = [], 0
    while i < len(norm):
        for j in range(min(len(norm), i + max_len), i + min_len - 1, -1):
            if norm[i:j] in surfaces:
                out.append(norm[i:j])
                i = j
                break
        else:
            i += 1
    return out


# --- bootstrap and agreement --------------------------------------------------------------------
def bootstrap_mean(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean with a percentile bootstrap 95% CI; value None when there are no values."""
    vals = [float(v) for v in values]
    if not vals:
        return {"mean": None, "n": 0, "ci95": [None, None]}
    rng = random.Random(seed)
    n = len(vals)
    means = sorted(sum(vals[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    lo, hi = means[int(0.025 * (n_boot - 1))], means[int(0.975 * (n_boot - 1))]
    return {"mean": sum(vals) / n, "n": n, "ci95": [lo, hi]}


def cohen_kappa(a: Sequence, b: Sequence, weights: str | None = None) -> float | None:
    """Cohen's kappa for two raters; weights None (nominal) or 'quadratic' (ordinal numbers)."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa needs equal lengths, got {len(a)} and {len(b)}")
    if not a:
        return None
    cats = sorted(set(a) | set(b))
    idx = {c: i for i, c in enumerate(cats)}
    k, n = len(cats), len(a)
    if weights not in (None, "quadratic"):
        raise ValueError(f"weights must be None or 'quadratic', got {weights!r}")

    def w(i: int, j: int) -> float:
        if weights is None:
            return 0.0 if i == j else 1.0
        return ((float(cats[i]) - float(cats[j])) ** 2) if k > 1 else 0.0

    obs = [[0.0] * k for _ in range(k)]
    for x, y in zip(a, b, strict=True):
        obs[idx[x]][idx[y]] += 1 / n
    pa = [sum(row) for row in obs]
    pb = [sum(obs[i][j] for i in range(k)) for j in range(k)]
    do = sum(w(i, j) * obs[i][j] for i in range(k) for j in range(k))
    de = sum(w(i, j) * pa[i] * pb[j] for i in range(k) for j in range(k))
    return 1.0 if de == 0 else 1 - do / de


def krippendorff_alpha(ratings: Sequence[Sequence[float | None]], level: str = "interval") -> float | None:
    """Krippendorff's alpha; `ratings[rater][unit]`, None = missing; level 'interval' or 'nominal'."""
    if level not in ("interval", "nominal"):
        raise ValueError(f"level must be 'interval' or 'nominal', got {level!r}")
    units = [[r[u] for r in ratings if u < len(r) and r[u] is not None] for u in range(max(map(len, ratings), default=0))]
    units = [u for u in units if len(u) >= 2]
    if not units:
        return None

    def delta(x, y) -> float:
        return (float(x) - float(y)) ** 2 if level == "interval" else float(x != y)

    pooled = [v for u in units for v in u]
    n = len(pooled)
    do = sum(sum(delta(x, y) for i, x in enumerate(u) for j, y in enumerate(u) if i != j) / (len(u) - 1) for u in units)
    de = sum(delta(x, y) for i, x in enumerate(pooled) for j, y in enumerate(pooled) if i != j) / (n - 1)
    return 1.0 if de == 0 else 1 - do / de
