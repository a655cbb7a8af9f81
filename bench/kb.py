"""Benchmark the knowledge base: full CMeKG import time, get/link latency, and linking top-1 accuracy.

    .venv/bin/python bench/kb.py [--kb PATH | --cmekg-source PATH] [--n 1000] [--seed 0] [--json]

Without --kb it imports the full CMeKG into a temporary KB first (timing it), then benchmarks that KB.
Linking accuracy uses surface forms derived from CMeKG, each with its gold entity, in fixed proportions
(see MIX). A surface is *ambiguous* when more than one entity is an equally valid answer: an alias or
generic name shared by several entities, a case/width variant whose normalized form names several
entities, or a typo within one edit of another entity's surface. Ambiguous surfaces are excluded from
the gold set; the linker's accuracy on them (top-1 among the valid entities) is reported separately.
Unambiguous alias, generic and case/width surfaces exercise the dictionary tiers and the ranking; the
typo categories (names of >= 4 characters by default) exercise the pinyin and fuzzy tiers.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from ktune.kb import KnowledgeBase, normalize
from ktune.kb.aliases import DERIVED

# category -> share of the gold set
MIX = {"alias": 0.30, "generic": 0.20, "case_width": 0.15, "typo_substitution": 0.175, "typo_deletion": 0.175}
TYPO_MIN_LEN = 4  # one wrong character in a 2-3 character name leaves too little to recover


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kb", help="benchmark this KB instead of importing CMeKG into a temporary one")
    ap.add_argument("--cmekg-source", help="local cmekg.pkl or PyCMeKG-0.2.5.tar.gz (else the cache / pip)")
    ap.add_argument("--n", type=int, default=1000, help="look-ups and gold surfaces (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--show-errors", type=int, default=0, metavar="N", help="print N linking errors")
    ap.add_argument("--typo-min-len", type=int, default=TYPO_MIN_LEN, help="shortest name given a typo (default 4)")
    args = ap.parse_args(argv)
    out: dict = {"seed": args.seed, "typo_min_len": args.typo_min_len, "mix": MIX}
    with tempfile.TemporaryDirectory() as tmp:
        if args.kb:
            kb = KnowledgeBase.open(args.kb)
        else:
            kb = KnowledgeBase.open(Path(tmp) / "cmekg.sqlite", create=True)
            t0 = time.perf_counter()
            report = kb.import_cmekg(args.cmekg_source)
            out["import_s"] = round(time.perf_counter() - t0, 2)
            out["import_facts_written"] = report.facts_written
            out["import_cleaning"] = report.cleaning
        with kb:
            out.update(kb.store.counts())
            out["get"] = bench_get(kb, args.n, args.seed)
            gold, ambiguous = gold_surfaces(kb, args.n, args.seed, args.typo_min_len)
            out["link"] = bench_link(kb, gold)
            out["accuracy"] = accuracy(kb, gold, ambiguous, args.show_errors)
    if args.json:
        json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        print_table(out)
    return 0


# --- latency ------------------------------------------------------------------------------------
def _pcts(times: list[float]) -> dict:
    ms = sorted(t * 1000 for t in times)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 3),
        "max_ms": round(ms[-1], 3),
    }


def bench_get(kb: KnowledgeBase, n: int, seed: int) -> dict:
    """acquire_knowledge over n random (entity, attribute) pairs, attributes drawn from the entity's kind."""
    rng = random.Random(seed)
    ents = list(kb.store.iter_entities())
    pairs = []
    for name, kind in rng.sample(ents, n):
        attrs = kb.schema.attributes_for_kind(kind) or kb.schema.names
        pairs.append((name, rng.choice(attrs)))
    times, hits = [], 0
    for e, a in pairs:
        t = time.perf_counter()
        hits += bool(kb.acquire_knowledge(e, a))
        times.append(time.perf_counter() - t)
    return {"n": n, "non_empty": hits, **_pcts(times)}


def bench_link(kb: KnowledgeBase, gold: list[tuple[str, str, str]]) -> dict:
    """link() latency over the gold surfaces (all categories mixed), overall and per category."""
    t = time.perf_counter()
    kb.linker  # noqa: B018 - build the in-memory indexes once
    build = time.perf_counter() - t
    t = time.perf_counter()
    kb.link("肝胆管结石")  # first fuzzy + pinyin look-up builds the lazy indexes
    first = time.perf_counter() - t
    times: dict[str, list[float]] = defaultdict(list)
    for surface, _, cat in gold:
        t = time.perf_counter()
        kb.link(surface)
        times[cat].append(time.perf_counter() - t)
    every = [x for ts in times.values() for x in ts]
    return {
        "n": len(every),
        "linker_build_s": round(build, 3),
        "first_fuzzy_s": round(first, 3),
        **_pcts(every),
        "by_category_p50_ms": {c: _pcts(ts)["p50_ms"] for c, ts in times.items()},
    }


# --- gold surfaces ------------------------------------------------------------------------------
class _Index:
    """normalized surface -> entities it names (entity names and aliases together)."""

    def __init__(self, kb: KnowledgeBase):
        self.kinds = dict(kb.store.iter_entities())
        self.by_norm: dict[str, set[str]] = defaultdict(set)
        self.alias_rows = list(kb.store.iter_aliases())
        for name in self.kinds:
            self.by_norm[normalize(name)].add(name)
        for surface, entity, _ in self.alias_rows:
            self.by_norm[normalize(surface)].add(entity)
        self.surfaces = list(self.by_norm)
        chars = "".join(n for n in self.kinds)
        self.cjk = sorted({c for c in chars if "\u4e00" <= c <= "\u9fff"})

    def near(self, text: str) -> set[str]:
        """Entities with a surface within one edit of `text` (normalized)."""
        norm = normalize(text)
        hits = process.extract(norm, self.surfaces, scorer=Levenshtein.distance, score_cutoff=1, limit=None)
        return {e for s, _, _ in hits for e in self.by_norm[s]}


def gold_surfaces(kb: KnowledgeBase, n: int, seed: int, typo_min_len: int = TYPO_MIN_LEN):
    """(surface, gold entity, category) triples in MIX proportions; ambiguous ones apart with valid sets."""
    rng = random.Random(seed)
    idx = _Index(kb)
    gold, ambiguous = [], []
    makers = {
        "alias": _alias_candidates,
        "generic": _generic_candidates,
        "case_width": _case_width_candidates,
        "typo_substitution": _typo_candidates,
        "typo_deletion": _typo_candidates,
    }
    for cat, share in MIX.items():
        want = round(n * share) if cat != "typo_deletion" else n - len(gold)
        got = 0
        for surface, entity, valid in makers[cat](idx, rng, cat, typo_min_len):
            if valid == {entity}:
                gold.append((surface, entity, cat))
                got += 1
            elif len(ambiguous) < 4 * n:
                ambiguous.append((surface, valid, cat))
            if got >= want:
                break
    return gold, ambiguous


def _alias_candidates(idx: _Index, rng, _cat, _min_len):
    rows = sorted({(s, e) for s, e, p in idx.alias_rows if p != DERIVED})
    rng.shuffle(rows)
    for s, e in rows:
        yield s, e, idx.by_norm[normalize(s)]


def _generic_candidates(idx: _Index, rng, _cat, _min_len):
    rows = sorted({(s, e) for s, e, p in idx.alias_rows if p == DERIVED and idx.kinds.get(e) == "drug"})
    rng.shuffle(rows)
    for s, e in rows:
        yield s, e, idx.by_norm[normalize(s)]


def _case_width_candidates(idx: _Index, rng, _cat, _min_len):
    names = sorted(n for n in idx.kinds if any(c.isascii() and c.isalnum() for c in n))
    rng.shuffle(names)
    for i, name in enumerate(names):
        variant = name.swapcase() if i % 2 == 0 else _full_width(name)
        if variant == name:
            continue
        yield variant, name, idx.by_norm[normalize(variant)]


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _typo_candidates(idx: _Index, rng, cat, min_len):
    names = sorted(n for n in idx.kinds if len(n) >= min_len)
    rng.shuffle(names)
    for name in names:
        pos = [i for i, c in enumerate(name) if "\u4e00" <= c <= "\u9fff"]
        if not pos:
            continue
        i = rng.choice(pos)
        if cat == "typo_deletion":
            typo = name[:i] + name[i + 1 :]
        else:
            typo = name[:i] + rng.choice(idx.cjk) + name[i + 1 :]
        if normalize(typo) in idx.by_norm:  # the typo is itself a KB surface: not a typo any more
            continue
        yield typo, name, idx.near(typo) | {name}


# --- scoring ------------------------------------------------------------------------------------
def accuracy(kb: KnowledgeBase, gold, ambiguous, show_errors: int = 0) -> dict:
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    errors = []
    for surface, entity, cat in gold:
        links = kb.link(surface, k=1)
        ok = bool(links) and links[0].entity == entity
        per[cat][0] += ok
        per[cat][1] += 1
        if not ok and len(errors) < show_errors:
            errors.append((cat, surface, entity, links[0].entity if links else None))
    for e in errors:
        print("miss (category, surface, gold, top-1):", *e, file=sys.stderr)
    amb_ok = sum(bool(ls := kb.link(s, k=1)) and ls[0].entity in valid for s, valid, _ in ambiguous)
    amb_by_cat: dict[str, int] = defaultdict(int)
    for _, _, cat in ambiguous:
        amb_by_cat[cat] += 1
    total_ok = sum(v[0] for v in per.values())
    return {
        "gold": len(gold),
        "top1": round(total_ok / max(len(gold), 1), 4),
        "by_category": {c: {"n": n, "top1": round(ok / max(n, 1), 4)} for c, (ok, n) in per.items()},
        "ambiguous_excluded": len(ambiguous),
        "ambiguous_by_category": dict(amb_by_cat),
        "ambiguous_top1_in_valid_set": round(amb_ok / max(len(ambiguous), 1), 4),
    }


def print_table(out: dict) -> None:
    if "import_s" in out:
        print(f"full CMeKG import          {out['import_s']:>8.2f} s   (target <= 60 s)")
    print(f"KB                         {out['entities']} entities, {out['facts']} facts, {out['aliases']} aliases")
    g, lk, acc = out["get"], out["link"], out["accuracy"]
    print(f"acquire_knowledge (n={g['n']})  p50 {g['p50_ms']:.3f} ms  p95 {g['p95_ms']:.3f} ms   (target p50 <= 1 ms)")
    print(f"link (n={lk['n']})              p50 {lk['p50_ms']:.3f} ms  p95 {lk['p95_ms']:.3f} ms   (target p50 <= 5 ms)")
    print("  p50 by category (ms): " + ", ".join(f"{c} {v}" for c, v in lk["by_category_p50_ms"].items()))
    print(f"linker build {lk['linker_build_s']} s; first fuzzy look-up {lk['first_fuzzy_s']} s (builds the lazy indexes)")
    print(f"linking top-1 accuracy     {acc['top1']:.2%} on {acc['gold']} gold surfaces   (target >= 95%)")
    for cat, v in acc["by_category"].items():
        print(f"  {cat:<20} n={v['n']:<4} top-1 {v['top1']:.2%}")
    print(
        f"ambiguous surfaces excluded: {acc['ambiguous_excluded']} {acc['ambiguous_by_category']}; "
        f"top-1 within their valid entities {acc['ambiguous_top1_in_valid_set']:.2%}"
    )


if __name__ == "__main__":
    sys.exit(main())
