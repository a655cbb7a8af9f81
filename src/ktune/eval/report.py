"""Report writers: metrics.json, report.md (tables with n and 95% CIs, paper figures alongside) and PNG plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ktune.eval.metrics import fmt_prop
from ktune.paths import atomic_write_text

log = logging.getLogger(__name__)

# What the paper reports (Wang et al., arXiv 2309.04175), on their cMedKnowQA test set with LLaMA/Bloom-7B.
PAPER = {"entity_accuracy": 0.867, "retrieval_accuracy": 0.714, "bm25_retrieval": 0.55, "dense_retrieval": 0.026,
         "fewshot_200": 0.807}
SPLIT_ORDER = ("test_seen", "test_unseen", "test_no_knowledge", "real_dev", "real_test", "all_test")
TARGETS = [  # (split, metric, threshold, label): the targets for the CPU demo run
    ("test_seen", "entity_accuracy", 0.97, "entity accuracy >= 97% on test_seen"),
    ("test_seen", "retrieval_accuracy", 0.95, "retrieval accuracy >= 95% on test_seen"),
    ("test_unseen", "retrieval_accuracy", 0.90, "retrieval accuracy >= 90% on test_unseen"),
    ("test_no_knowledge", "refusal_recall", 0.95, "refusal recall >= 95% on test_no_knowledge"),
    ("real_test", "retrieval_accuracy", 0.90, "retrieval accuracy >= 90% on real_test (real-style questions)"),
    ("real_test", "entity_accuracy", 0.93, "entity accuracy >= 93% on real_test"),
    ("real_test", "refusal_recall", 0.95, "refusal recall >= 95% on real_test"),
]


def pct(p: dict | None) -> str:
    if not p or p.get("value") is None:
        return "–"
    return f"{100 * p['value']:.1f}"


def _metric(split_metrics: dict, name: str) -> dict | None:
    if name.startswith("refusal_"):
        return split_metrics.get("refusal", {}).get(name.split("_", 1)[1])
    return split_metrics.get(name)


def format_results_table(metrics: dict) -> str:
    """The terminal table: system x (seen entity/retrieval, unseen retrieval, refusal recall, invalid)."""
    m = metrics.get("retrieval", metrics)
    if m.get("items"):
        return _items_table(m)
    cols = [("test_seen", "entity_accuracy", "seen ent"), ("test_seen", "retrieval_accuracy", "seen retr"),
            ("test_unseen", "retrieval_accuracy", "unseen retr"), ("real_test", "retrieval_accuracy", "real retr"),
            ("test_no_knowledge", "refusal_recall", "refusal rec"), ("real_test", "refusal_recall", "real refusal"),
            ("all_test", "invalid_query_rate", "invalid")]
    cols = [c for c in cols if any(c[0] in s for s in m.get("systems", {}).values())]
    width = max([len(n) for n in m.get("systems", {})] + [36])
    lines = [f"{'system':<{width}} " + " ".join(f"{c[2]:>11}" for c in cols)]
    for name, per in m.get("systems", {}).items():
        lines.append(f"{name:<{width}} " + " ".join(f"{pct(_metric(per.get(s, {}), k)):>11}" for s, k, _ in cols))
    paper = {"seen ent": PAPER["entity_accuracy"], "seen retr": PAPER["retrieval_accuracy"]}
    lines.append(f"{'paper: knowledge-tuned 7B (reported)':<{width}} "
                 + " ".join(f"{(f'{100 * paper[c[2]]:.1f}' if c[2] in paper else ''):>11}" for c in cols))
    lines.append(f"{'paper: BM25 (reported)':<{width}} "
                 + " ".join(f"{('~55' if c[2] == 'seen retr' else ''):>11}" for c in cols))
    ns = ", ".join(f"{s}={n}" for s, n in m.get("splits", {}).items())
    lines.append(f"(percent; n per split: {ns}; 95% Wilson CIs in report.md)")
    return "\n".join(lines)


def _items_table(m: dict) -> str:
    """`ktune eval --items`: per labelled file, entity / retrieval accuracy, refusal recall and invalid queries."""
    width = max([len(n) for n in m.get("systems", {})] + [24])
    lines = []
    for split, n in m.get("splits", {}).items():
        lines.append(f"{split} (n={n}; " + ", ".join(f"{k}={v}" for k, v in _answerable(m, split).items()) + ")")
        lines.append(f"{'system':<{width}} " + " ".join(f"{h:>12}" for h in ("entity", "retrieval", "refusal rec",
                                                                             "invalid")))
        for name, per in m.get("systems", {}).items():
            s = per.get(split, {})
            cells = [_metric(s, k) for k in ("entity_accuracy", "retrieval_accuracy", "refusal_recall",
                                             "invalid_query_rate")]
            lines.append(f"{name:<{width}} " + " ".join(f"{pct(c):>12}" for c in cells))
        lines.append("")
    lines.append("(percent; 95% Wilson CIs in report.md)")
    return "\n".join(lines)


def _answerable(m: dict, split: str) -> dict:
    per = next(iter(m.get("systems", {}).values()), {}).get(split, {})
    ret, ref = per.get("retrieval_accuracy") or {}, per.get("refusal", {}).get("recall") or {}
    return {"answerable": ret.get("n", "?"), "to refuse": ref.get("n", "?")}


def retrieval_markdown(m: dict) -> list[str]:
    out = ["## Retrieval: question -> KB entry", "",
           f"KB version `{m.get('kb_version', '')[:16]}`; dataset `{m.get('dataset', {}).get('data_version', '?')}`; "
           "each cell: value [95% Wilson CI] (n).", ""]
    out += [f"> **Warning:** {w}" for w in m.get("warnings", [])] + ([""] if m.get("warnings") else [])
    for split in [*SPLIT_ORDER, *(s for s in m.get("splits", {}) if s not in SPLIT_ORDER)]:
        rows = [(n, per[split]) for n, per in m.get("systems", {}).items() if split in per]
        if not rows:
            continue
        out += [f"### {split}", "", "| system | entity acc. | attribute acc. | retrieval acc. | invalid queries | "
                "off-KB queries | refusal precision | refusal recall |", "|---|---|---|---|---|---|---|---|"]
        for name, s in rows:
            off_kb = s.get("off_kb_query_rate")
            cells = [fmt_prop(s["entity_accuracy"]), fmt_prop(s["attribute_accuracy"]), fmt_prop(s["retrieval_accuracy"]),
                     fmt_prop(s["invalid_query_rate"]), fmt_prop(off_kb) if off_kb else "–",
                     fmt_prop(s["refusal"]["precision"]), fmt_prop(s["refusal"]["recall"])]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["*Invalid queries*: a query naming no KB key (entity neither a KB name nor alias, or an attribute outside "
            "the schema) that the system still acted on, linking it to a KB entity by a guess. *Off-KB queries*: "
            "every final query naming no KB key, acted on or refused as not in the KB (right for questions about "
            "things the KB lacks).", ""]
    out += ["### Systems", ""] + [f"- **{n}**: {note} ({m.get('timings_s', {}).get(n, '?')} s)"
                                  for n, note in m.get("notes", {}).items()] + [""]
    out += ["Paper (arXiv 2309.04175, 7B models, their own test set): entity accuracy 86.7%, retrieval accuracy "
            "71.4%, BM25 retrieval about 55%, dense retrieval 2.6%. Not the same test items: context only.", ""]
    return out + targets_markdown(m) + errors_markdown(m)


def targets_markdown(m: dict) -> list[str]:
    model = next((n for n in m.get("systems", {}) if n.startswith("knowledge-tuned") and "free" not in n), None)
    if model is None:
        return []
    out = [f"### Targets ({model})", ""]
    for split, name, thr, label in TARGETS:
        p = _metric(m["systems"][model].get(split, {}), name)
        val = None if not p else p.get("value")
        status = "not measured" if val is None else ("met" if val >= thr else "MISSED")
        out.append(f"- {label}: {status} ({fmt_prop(p) if p else '–'})")
    inv = m["systems"][model].get("all_test", {}).get("invalid_query_rate")
    off_kb = m["systems"][model].get("all_test", {}).get("off_kb_query_rate")
    out.append(f"- 0% invalid queries with constraints on: {'met' if inv and inv['k'] == 0 else 'MISSED'} "
               f"({fmt_prop(inv) if inv else '–'}; off-KB queries, all refused or acted on: "
               f"{fmt_prop(off_kb) if off_kb else '–'})")
    return out + [""]


def errors_markdown(m: dict, top: int = 10) -> list[str]:
    """Where each system misses: the worst groups by attribute, surface form and template (misses only)."""
    out = ["## Error analysis", "", "Retrieval accuracy on answerable items pooled over the test splits, for the "
           f"groups with misses (worst {top} per table).", ""]
    for name, per in m.get("systems", {}).items():
        errs = per.get("errors", {})
        for key, title in (("by_attribute", "attribute"), ("by_surface_type", "surface form"), ("by_template", "template"),
                           ("real_test_by_style", "real_test question style"),
                           ("real_test_by_attribute", "real_test intent")):
            groups = list(errs.get(key, {}).items())
            missed = [(k, v) for k, v in groups if v["value"] is not None and v["k"] < v["n"]]
            worst = sorted(missed, key=lambda kv: (kv[1]["value"], -kv[1]["n"]))[:top]
            if not groups:
                continue
            if not worst:
                out += [f"**{name}, by {title}**: no misses in {len(groups)} groups.", ""]
                continue
            out += [f"**{name}, by {title}** ({len(missed)} of {len(groups)} groups with misses)", "",
                    f"| {title} | retrieval acc. | misses |", "|---|---|---|"]
            out += [f"| {k} | {fmt_prop(v)} | {v['n'] - v['k']} |" for k, v in worst] + [""]
    return out


def plot_retrieval(m: dict, path: Path) -> Path | None:
    """Grouped bars: retrieval accuracy per system and split, with 95% CI whiskers."""
    systems = list(m.get("systems", {}))
    wanted = list(m.get("splits", {})) if m.get("items") else ["test_seen", "test_unseen", "real_test"]
    splits = [s for s in wanted if any(s in m["systems"][n] for n in systems)]
    if not systems or not splits:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(systems)), 4))
    width = 0.8 / len(splits)
    for j, split in enumerate(splits):
        vals, lo, hi = [], [], []
        for n in systems:
            p = m["systems"][n].get(split, {}).get("retrieval_accuracy") or {"value": None, "ci95": [0, 0]}
            v = p["value"] or 0.0
            vals.append(v)
            lo.append(max(0.0, v - p["ci95"][0]) if p["value"] is not None else 0)
            hi.append(max(0.0, p["ci95"][1] - v) if p["value"] is not None else 0)
        xs = [i + j * width for i in range(len(systems))]
        n_items = m.get("splits", {}).get(split, "?")
        ax.bar(xs, vals, width, yerr=[lo, hi], capsize=3, label=f"{split} (n={n_items})")
    ax.axhline(PAPER["retrieval_accuracy"], color="gray", ls="--", lw=1, label="paper: 71.4%")
    ax.set_xticks([i + width * (len(splits) - 1) / 2 for i in range(len(systems))])
    ax.set_xticklabels(systems, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("retrieval accuracy (95% Wilson CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """Merge `results` ({suite: metrics}) into out_dir/metrics.json and rewrite report.md and the plots."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mpath = out_dir / "metrics.json"
    merged = {}
    if mpath.is_file():
        try:
            merged = json.loads(mpath.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            log.warning("%s is not valid JSON; rewriting it", mpath)
    merged.update(results)
    atomic_write_text(mpath, json.dumps(merged, ensure_ascii=False, indent=2))
    files = {"metrics": mpath, "report": out_dir / "report.md"}
    md = ["# ktune evaluation report", ""]
    if "retrieval" in merged:
        md += ["```", format_results_table(merged["retrieval"]), "```", ""] + retrieval_markdown(merged["retrieval"])
        png = plot_retrieval(merged["retrieval"], out_dir / "retrieval.png")
        if png:
            files["retrieval_png"] = png
            md += ["![retrieval accuracy](retrieval.png)", ""]
    for suite in ("answers", "premise", "fewshot", "h2"):
        if suite in merged:
            from ktune.eval import report_sections

            lines, pngs = report_sections.render(suite, merged[suite], out_dir)
            md += lines
            files.update(pngs)
    atomic_write_text(files["report"], "\n".join(md) + "\n")
    return files
