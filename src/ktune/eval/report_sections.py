"""report.md sections for the answers, few-shot and H2 suites (and their plots)."""

from __future__ import annotations

from pathlib import Path

from ktune.eval.metrics import fmt_prop


def fmt_mean(m: dict | None, digits: int = 2) -> str:
    if not m or m.get("mean") is None:
        return "– (n=0)"
    lo, hi = m["ci95"]
    return f"{m['mean']:.{digits}f} [{lo:.{digits}f}–{hi:.{digits}f}] (n={m['n']})"


def answers_lines(a: dict) -> list[str]:
    out = ["## Answers: grounding and refusals", ""]
    if a.get("skipped"):
        return out + [f"Skipped: {a['skipped']}", ""]
    out += ["Knowledge recall: share of the gold entry's values the answer states (bootstrap 95% CI; a refusal on "
            "an answerable item counts 0); lists capped: the same with a field of more than 10 values complete once 10 "
            "are stated (a listing then gives the count and the provenance line has them all). Value fidelity: share of the values an answer states that are verbatim "
            "values of the knowledge (ktune.pipeline.claims reads the sentences). Unsupported-claim rate: answers "
            "relating a KB entity, drug or value to the entity that the knowledge used does not contain; a term "
            "only the question contains is not support (Wilson 95% CI; a hallucination proxy). Predicate as value: "
            "answers listing a predicate name among the values. Other field: answers stating a value of the knowledge under "
            "a field that does not hold it (X可用于恶心 when 恶心 is a 不良反应). Dropped: answers where the claim check removed a "
            "sentence. `(no check)`: the model's raw body of the same run read the same way.", ""]
    for split in ("test_seen", "test_unseen", "test_no_knowledge", "real_dev", "real_test", "all_test"):
        rows = [(n, per[split]) for n, per in a.get("systems", {}).items() if split in per]
        if not rows:
            continue
        out += [f"### {split}", "", "| system | knowledge recall | recall, lists capped | value fidelity | unsupported-claim rate | "
                "predicate as value | other field | dropped | refusal correctness | refusal recall |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for name, s in rows:
            listed = fmt_mean(s["knowledge_recall_listed"]) if s.get("knowledge_recall_listed") else "–"
            out.append(f"| {name} | {fmt_mean(s['knowledge_recall'])} | {listed} | {fmt_prop(s['value_fidelity'])} | "
                       f"{fmt_prop(s['unsupported_claim_rate'])} | {fmt_prop(s['predicate_as_value_rate'])} | "
                       f"{_rate(s, 'other_field_rate')} | {fmt_prop(s['dropped_claim_rate'])} | {fmt_prop(s['refusal_correctness'])} | "
                       f"{fmt_prop(s['refusal_recall'])} |")
            raw = s.get("without_claim_check")
            if raw:
                out.append(f"| {name} (no check) | {fmt_mean(raw['knowledge_recall'])} | – | "
                           f"{fmt_prop(raw['value_fidelity'])} | {fmt_prop(raw['unsupported_claim_rate'])} | "
                           f"{fmt_prop(raw['predicate_as_value_rate'])} | {_rate(raw, 'other_field_rate')} | – | – | – |")
        out.append("")
    return out


def premise_lines(p: dict) -> list[str]:
    """The premise suite: false affirmations and false denials per system, with Wilson 95% CIs."""
    out = ["## Premise questions: affirmed only when the KB lists the term", "",
           f"{p.get('n_items')} questions ({p.get('split')} split of the adversarial premise set, "
           f"{p.get('n_absent')} with the term absent from the entity's values). False affirmation: the answer "
           "affirms an absent term; false denial: it does not affirm a present one.", "",
           "| system | false affirmations (absent) | false denials (present) | premise detected |", "|---|---|---|---|"]
    for name, s in p.get("systems", {}).items():
        out.append(f"| {name} | {fmt_prop(s['false_affirmation'])} | {fmt_prop(s['false_denial'])} | "
                   f"{fmt_prop(s['detected'])} |")
    return out + [""]


def fewshot_lines(fs: dict) -> list[str]:
    out = ["## Few-shot: retrieval accuracy against training size", "",
           f"Schedule: {fs.get('schedule')}; paper: 80.7% retrieval at 200 training instances (7B models).", "",
           "| training records | steps | test_seen retrieval | test_unseen retrieval (unseen entities) | "
           "test_no_knowledge refusal recall |", "|---|---|---|---|---|"]
    for n, p in fs.get("points", {}).items():
        seen = p.get("test_seen", {}).get("retrieval_accuracy")
        unseen = p.get("test_unseen", {}).get("retrieval_accuracy")
        ref = p.get("test_no_knowledge", {}).get("refusal", {}).get("recall")
        out.append(f"| {n} | {p.get('steps', '')} | {fmt_prop(seen) if seen else '–'} | "
                   f"{fmt_prop(unseen) if unseen else '–'} | {fmt_prop(ref) if ref else '–'} |")
    return out + ["", "![few-shot curve](fewshot.png)", ""]


def h2_lines(h: dict) -> list[str]:
    out = ["## H2: helpfulness and harmlessness", ""]
    judge = h.get("judge", {})
    if judge.get("skipped"):
        out += [f"LLM judge: {judge['skipped']}.", ""]
    elif judge:
        out += [f"LLM judge `{judge.get('judge_model')}`, rubric {judge.get('rubric_version')}, "
                f"{judge.get('n_items')} items, {judge.get('unparsable', 0)} unparsable verdicts (excluded).", "",
                "| system | helpfulness (1-5) | harmlessness (1-5) |", "|---|---|---|"]
        for s, dims in judge.get("absolute", {}).items():
            out.append(f"| {s} | {fmt_mean(dims.get('helpfulness'))} | {fmt_mean(dims.get('harmlessness'))} |")
        out += ["", "| pair, dimension | outcome shares |", "|---|---|"]
        for k, wins in judge.get("pairwise", {}).items():
            out.append(f"| {k} | " + "; ".join(f"{w}: {fmt_prop(p)}" for w, p in wins.items()) + " |")
        out.append("")
    experts = h.get("experts")
    if experts:
        out += [f"Experts: {', '.join(experts['raters'])} (rubric {experts.get('rubric_version')}).", "",
                "| system | helpfulness (1-5) | harmlessness (1-5) |", "|---|---|---|"]
        for s, dims in experts.get("means", {}).items():
            out.append(f"| {s} | {fmt_mean(dims.get('helpfulness'))} | {fmt_mean(dims.get('harmlessness'))} |")
        out += ["", "Inter-rater agreement: " + "; ".join(
            f"{d}: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in e.items())
            for d, e in experts.get("agreement", {}).items()), ""]
    return out


def render(suite: str, data: dict, out_dir: Path) -> tuple[list[str], dict[str, Path]]:
    """(markdown lines, {name: png path}) for one suite's metrics."""
    if suite == "answers":
        return answers_lines(data), {}
    if suite == "fewshot":
        from ktune.eval.fewshot import plot_fewshot

        png = plot_fewshot(data, Path(out_dir) / "fewshot.png")
        return fewshot_lines(data), ({"fewshot_png": png} if png else {})
    if suite == "h2":
        return h2_lines(data), {}
    if suite == "premise":
        return premise_lines(data), {}
    return [], {}


def _rate(stats: dict, key: str) -> str:
    """A rate that metrics written before it was measured lack."""
    return fmt_prop(stats[key]) if key in stats else "–"
