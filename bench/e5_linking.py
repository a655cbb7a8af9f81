"""Would e5 similarity resolve the names people write? multilingual-e5-small (the dense baseline's model) as an
entity resolver, on names whose answer is known: the lay-name list (心梗 -> 心肌梗死; each target an entity of the
KB) and terms CMeKG lacks, which must not be resolved (乳腺结节 is not 乳腺结核).

    .venv/bin/python bench/e5_linking.py [--kb PATH] [--json]

Prints, per set, top-1 accuracy (nearest of all entity names by cosine) and the similarities of the top hits, so
a threshold can be read off: a resolver is usable only where the right answers score above the absent terms.
The entity embeddings are the dense baseline's (cached under $KTUNE_HOME/cache/dense per KB version).
"""

from __future__ import annotations

import argparse
import json
import statistics

from ktune.eval.baselines.dense import DenseRetriever, _embed
from ktune.kb import KnowledgeBase
from ktune.kb.linker import LAY_NAMES_PATH

# Conditions and complaints people ask about that CMeKG has no entry for (checked: none links to a KB name).
ABSENT = ["乳腺结节", "肺结节", "舌炎", "骨痛", "里急后重", "牙龈出血", "熬夜", "手麻", "腿抽筋", "掉头发",
          "富贵包", "颈纹", "湿气重", "上火"]


def main() -> None:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kb", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    kb = KnowledgeBase.open(args.kb)
    names, matrix = DenseRetriever(kb).entity_embeddings()
    matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    index = {n: i for i, n in enumerate(names)}
    lay = json.loads(LAY_NAMES_PATH.read_text(encoding="utf-8"))["names"]
    pairs = [(s, t) for s, t in sorted(lay.items()) if t in index]
    absent = [t for t in ABSENT if not kb.link(t, 1) or kb.link(t, 1)[0].method in ("fuzzy", "pinyin")]
    q = _embed([s for s, _ in pairs] + absent, "query")
    sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ matrix.T
    top = sims.argmax(axis=1)
    right = [bool(names[top[i]] == t) for i, (_, t) in enumerate(pairs)]
    lay_top = [float(sims[i].max()) for i in range(len(pairs))]
    absent_top = [float(sims[len(pairs) + k].max()) for k in range(len(absent))]
    result = {
        "lay_names": {"n": len(pairs), "top1": sum(right) / len(pairs),
                      "top_sim_right_median": statistics.median(s for s, r in zip(lay_top, right, strict=True) if r)},
        "absent_terms": {"n": len(absent), "top_sim_median": statistics.median(absent_top), "top_sim_max": max(absent_top),
                         "nearest": {t: names[top[len(pairs) + k]] for k, t in enumerate(absent)}},
    }
    # the best a threshold can do: accept a top-1 hit only above it
    cut = max(absent_top)
    result["lay_names"]["top1_above_every_absent_term"] = sum(
        r and s > cut for s, r in zip(lay_top, right, strict=True)) / len(pairs)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
        return
    ln, ab = result["lay_names"], result["absent_terms"]
    print(f"lay names (n={ln['n']}): e5 top-1 {ln['top1']:.1%}, median top similarity when right "
          f"{ln['top_sim_right_median']:.3f}; right and above every absent term: {ln['top1_above_every_absent_term']:.1%}")
    print(f"absent terms (n={ab['n']}): median top similarity {ab['top_sim_median']:.3f}, max {ab['top_sim_max']:.3f}")
    for t, n in ab["nearest"].items():
        print(f"  {t} -> {n}")


if __name__ == "__main__":
    main()
