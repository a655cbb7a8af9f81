"""The real-style question sets: label checks against a KB and the dev/test split rule.

`python -m ktune.eval.realstyle check [FILE ...]` verifies every label of the shipped splits (or of the given
labelled files) against the KB (`--kb PATH`, default the configured one): each gold entity exists; an
in_kb item has a value under some gold predicate for some gold entity, and an out-of-KB item has none; gold
predicates are predicates the schema knows. Problems are printed with the item id and the exit status is 1.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections import Counter
from pathlib import Path

from ktune.eval.items import REAL_SPLITS, Label, read_labels, real_split_path
from ktune.paths import DEFAULT_KB_HELP

log = logging.getLogger(__name__)

DEV_SHARE = 40  # percent of groups in real_dev
HUMAN_PREFIX = "h"  # the 121 earlier human-style questions (ids h001..h121) all belong to real_dev


def split_of(label: Label) -> str:
    """real_dev or real_test: by a hash of the item's group (its entity, so one entity's questions stay in one
    split), except the earlier human-style questions, which are all dev."""
    if label.id.startswith(HUMAN_PREFIX) and label.id[1:].isdigit():
        return "real_dev"
    key = label.group or label.question
    return "real_dev" if int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 100 < DEV_SHARE else "real_test"


def known_predicates(schema) -> set[str]:
    return {p for a in schema.attributes.values() for p in a.predicates}


def check_labels(labels: list[Label], kb, *, require_in_kb: bool = False) -> list[str]:
    """Every disagreement between the labels and `kb`, as `id (file:line): problem` (a label without in_kb is
    one only when `require_in_kb`: the format lets the KB decide, the shipped splits state it)."""
    problems = []
    known = known_predicates(kb.schema)
    for lb in labels:
        tag = f"{lb.id} ({lb.where})" if lb.where else lb.id
        missing = [e for e in lb.gold_entities if not kb.has_entity(e)]
        if missing:
            problems.append(f"{tag}: gold entities not in the KB: {', '.join(missing)}")
        unknown = [p for p in lb.gold_predicates if p not in known]
        if unknown:
            problems.append(f"{tag}: gold predicates no schema attribute gathers: {', '.join(unknown)}")
        answering = [e for e in lb.gold_entities if kb.has_entity(e)
                     and any(kb.get(e).get(p) for p in lb.gold_predicates)]
        if lb.in_kb is None:
            if require_in_kb:
                problems.append(f"{tag}: in_kb is not given")
        elif lb.in_kb and not answering:
            problems.append(f"{tag}: labelled in_kb but no gold entity has a value under "
                            f"{'/'.join(lb.gold_predicates) or 'any gold predicate'}")
        elif not lb.in_kb and answering:
            problems.append(f"{tag}: labelled out of the KB but {answering[0]} has values under a gold predicate")
    return problems


def check_files(paths: list[Path], kb, *, shipped: bool = False) -> tuple[list[str], dict]:
    """Problems and counts over labelled files; `shipped` also checks the split rule and that no question or
    group is in both splits."""
    problems, stats, by_file = [], {}, {}
    for path in paths:
        labels = read_labels(path, kb.schema)
        by_file[path] = labels
        problems += check_labels(labels, kb, require_in_kb=shipped)
        stats[path.name] = {
            "n": len(labels), "in_kb": sum(bool(lb.in_kb) for lb in labels),
            "not_in_kb": sum(not lb.in_kb for lb in labels),
            "entities": len({e for lb in labels for e in lb.gold_entities}),
            "styles": dict(Counter(lb.style for lb in labels).most_common()),
        }
    if shipped:
        for split, fname in REAL_SPLITS.items():
            for path, labels in by_file.items():
                if path.name != fname:
                    continue
                problems += [f"{lb.id} ({lb.where}): the split rule puts it in {split_of(lb)}, not {split}"
                             for lb in labels if split_of(lb) != split]
        questions = Counter(lb.question for labels in by_file.values() for lb in labels)
        problems += [f"question {q!r} appears {n} times" for q, n in questions.items() if n > 1]
    return problems, stats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ktune.eval.realstyle", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="verify labels against the KB")
    c.add_argument("files", nargs="*", type=Path, help="labelled JSONL files (default: the shipped real-style splits)")
    c.add_argument("--kb", metavar="PATH", help=f"KB file (default: {DEFAULT_KB_HELP})")
    args = p.parse_args(argv)
    from ktune.errors import KtuneError
    from ktune.kb import KnowledgeBase

    try:
        paths = args.files or [real_split_path(s) for s in REAL_SPLITS]
        with KnowledgeBase.open(args.kb) as kb:
            problems, stats = check_files(paths, kb, shipped=not args.files)
    except KtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, s in stats.items():
        print(f"{name}: {s['n']} questions, {s['in_kb']} answerable from the KB, {s['not_in_kb']} not; "
              f"{s['entities']} gold entities; styles {s['styles']}")
    for line in problems:
        print(f"PROBLEM {line}")
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
