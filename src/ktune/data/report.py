"""Dataset report: counts by split, attribute, entity kind and template, and the leakage / gold checks."""

from __future__ import annotations

from collections import Counter

from ktune.data.dataset import DatasetRecord
from ktune.data.generate import mentioned_entities
from ktune.kb.linker import normalize

TEST_SPLITS = ("test_seen", "test_unseen", "test_no_knowledge")


def make_report(kb, gen, splits: dict[str, list[DatasetRecord]], config, teacher_stats=None) -> dict:
    counts = {name: _counts(records) for name, records in splits.items()}
    checks = {
        "test_questions_not_in_train": _no_test_in_train(splits),
        "heldout_templates_only_in_tests": _heldout_templates(splits, gen.bank.heldout),
        "unseen_entities_not_in_train": _unseen_not_trained(splits, gen.pools),
        "unseen_names_not_in_train_questions": _unseen_not_mentioned(splits, gen, kb),
        "gold_knowledge_matches_kb": _gold(kb, splits),
        "absent_test_terms_not_in_train": _absent_disjoint(splits),
    }
    train_entities = {r.entity for r in splits["train"] if r.entity}
    return {
        "kb_version": kb.version,
        "schema_version": kb.schema.version,
        "question_bank_version": gen.bank.version,
        "seed": config.seed,
        "ok": all(c["ok"] for c in checks.values()),
        "checks": checks,
        "counts": {name: c["total"] for name, c in counts.items()},
        "by_split": counts,
        "entities": {
            "train_distinct": len(train_entities),
            "unseen_held_out": len(gen.pools.unseen),
            "absent_terms": {k: len(v) for k, v in gen.absent.items()},
        },
        "templates": {
            "attributes": len(gen.bank.templates),
            "total": sum(len(t) for t in gen.bank.templates.values()),
            "heldout": len(gen.bank.heldout),
            "min_phrasings_per_attribute": min(gen.bank.phrasings(a) for a in gen.bank.templates),
        },
        "skipped_duplicate_questions": gen.skipped,
        "skipped_long_knowledge": gen.too_long,
        "redrawn_glued_names": gen.swallowed,
        "teacher": teacher_stats,
    }


def _counts(records: list[DatasetRecord]) -> dict:
    style = Counter(r.template.split("/")[1][0] for r in records)
    return {
        "total": len(records),
        "by_kind": dict(sorted(Counter(r.kind for r in records).items())),
        "by_attribute": dict(sorted(Counter(r.attribute or "-" for r in records).items())),
        "by_entity_kind": dict(sorted(Counter(r.entity_kind for r in records).items())),
        "by_style": {"core": style["c"], "search": style["s"], "vignette": style["v"]},
        "surface_not_canonical": sum(
            r.entity is not None and r.surface != r.entity for r in records
        ),
        "distinct_templates": len({r.template for r in records}),
        "by_template": dict(sorted(Counter(r.template for r in records).items())),
    }


def _check(violations: list, checked: int) -> dict:
    return {
        "ok": not violations,
        "checked": checked,
        "violations": len(violations),
        "examples": violations[:5],
    }


def _no_test_in_train(splits) -> dict:
    train = {normalize(r.question) for r in splits["train"]}
    others = [r for name in ("dev", *TEST_SPLITS) for r in splits[name]]
    return _check([r.id for r in others if normalize(r.question) in train], len(others))


def _heldout_templates(splits, heldout: set[str]) -> dict:
    base = lambda r: r.template.split("+", 1)[0]  # noqa: E731  (teacher rewrites add +teacher)
    bad = [r.id for r in splits["train"] if base(r) in heldout]
    tests = [r for name in TEST_SPLITS for r in splits[name]]
    bad += [r.id for r in tests if base(r) not in heldout]
    return _check(bad, len(splits["train"]) + len(tests))


def _unseen_not_trained(splits, pools) -> dict:
    trained = {r.entity for name in ("train", "dev") for r in splits[name] if r.entity}
    unseen = sorted({r.entity for r in splits["test_unseen"]})
    family = sorted({m for e in unseen for m in pools.groups[pools.group_of[e]]})
    return _check([e for e in family if e in trained], len(family))


def _unseen_not_mentioned(splits, gen, kb) -> dict:
    unseen = gen.pools.unseen
    records = splits["train"] + splits["dev"]
    bad = [r.id for r in records if mentioned_entities(kb.linker, r.question, r.surface) & unseen]
    return _check(bad, len(records))


def _gold(kb, splits) -> dict:
    bad, n = [], 0
    for records in splits.values():
        for r in records:
            n += 1
            if r.kind == "in_kb":
                fresh = kb.acquire_knowledge(r.entity, r.attribute)
                if not r.knowledge or r.knowledge != fresh:
                    bad.append(r.id)
            elif (
                r.knowledge != {}
                or (r.entity is None and kb.has_entity(r.surface))
                or (r.entity is not None and kb.acquire_knowledge(r.entity, r.attribute, fallback=True) != {})
            ):
                bad.append(r.id)
    return _check(bad, n)


def _absent_disjoint(splits) -> dict:
    train = {r.surface for name in ("train", "dev") for r in splits[name] if r.entity is None}
    test = [r for r in splits["test_no_knowledge"] if r.entity is None]
    return _check([r.id for r in test if r.surface in train], len(test))


def render_markdown(report: dict) -> str:
    lines = [
        "# ktune dataset report",
        "",
        f"KB `{report['kb_version']}`, schema `{report['schema_version']}`, question bank "
        f"`{report['question_bank_version']}`, seed {report['seed']}, data `{report.get('data_version', '')}`.",
        "",
        "| split | total | in_kb | no_knowledge | core | search | vignette | non-canonical surface | templates |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in report["by_split"].items():
        k, s = c["by_kind"], c["by_style"]
        lines.append(
            f"| {name} | {c['total']} | {k.get('in_kb', 0)} | {k.get('no_knowledge', 0)} | {s['core']} | "
            f"{s['search']} | {s['vignette']} | {c['surface_not_canonical']} | {c['distinct_templates']} |"
        )
    lines += ["", "## Checks", "", "| check | ok | checked | violations |", "|---|---|---|---|"]
    for name, c in report["checks"].items():
        lines.append(f"| {name} | {'yes' if c['ok'] else 'NO'} | {c['checked']} | {c['violations']} |")
    lines += _breakdown(report, "Records by attribute", "by_attribute", "attribute")
    lines += _breakdown(report, "Records by entity kind", "by_entity_kind", "kind")
    t = report["templates"]
    lines += [
        "",
        f"Templates: {t['total']} over {t['attributes']} attributes ({t['heldout']} held out for the tests; "
        f"at least {t['min_phrasings_per_attribute']} phrasings per attribute). Per-template counts: report.json.",
        "",
    ]
    if report.get("teacher"):
        lines += ["## Teacher rewrites", "", "```", str(report["teacher"]), "```", ""]
    return "\n".join(lines)


def _breakdown(report: dict, title: str, key: str, label: str) -> list[str]:
    names = list(report["by_split"])
    values = sorted({v for c in report["by_split"].values() for v in c[key]})
    lines = [
        "",
        f"## {title}",
        "",
        f"| {label} | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for v in values:
        lines.append(
            f"| {v} | " + " | ".join(str(report["by_split"][n][key].get(v, 0)) for n in names) + " |"
        )
    return lines


def render_card(report: dict, attribution: str) -> str:
    """DIR/README.md: what the files are, how they were made, and where the knowledge comes from."""
    counts = ", ".join(f"{k} {v}" for k, v in report["counts"].items())
    return "\n".join(
        [
            "# ktune knowledge-tuning dataset",
            "",
            f"Built by `ktune data build` (seed {report['seed']}) from KB `{report['kb_version']}` "
            f"(schema `{report['schema_version']}`); data version `{report.get('data_version', '')}`.",
            f"Records: {counts}. Checks: {'all passed' if report['ok'] else 'SOME FAILED, see report.md'}.",
            "",
            "Each JSONL record: `id`, `question`, `entity` (canonical KB name, null when the KB lacks the entity),",
            "`attribute`, `knowledge` (exactly `acquire_knowledge(entity, attribute)`, {} for refusals), `answer`",
            "(ending with `相关知识：{...}` for in_kb), `kind` (in_kb | no_knowledge), `split`, `template`, `surface`,",
            "`entity_kind`. Query-step target: `entity|attribute`, or `无` when entity is null.",
            "",
            "- test_seen: entities trained on, held-out templates; test_unseen: entities (and every entity sharing",
            "  an alias with them) never in train/dev, held-out templates; test_no_knowledge: terms the KB lacks",
            "  (disjoint from the trained ones) and KB entities asked an attribute they lack.",
            "- fewshot/train_N.jsonl: nested prefixes of one seeded shuffle of train.",
            "- exports/trl: prompt-completion JSONL per step (query, answer, instruction) and split, plus",
            "  conversational `messages/` copies; exports/llamafactory: alpaca JSON + dataset_info.json.",
            "",
            "Questions and answers are generated from templates (src/ktune/data/question_bank.json,",
            "answer_bank.json) and the KB's values; they are not medical advice.",
            "",
            f"Knowledge source: {attribution or 'see the KB metadata'}",
            "",
        ]
    )
