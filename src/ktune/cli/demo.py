"""`ktune demo`: the main job on the embedded defaults (CMeKG in SQLite, Gemma-3-270M on CPU)."""

from __future__ import annotations

import logging

log = logging.getLogger("ktune.demo")

EXAMPLES = [("急性中耳炎", "药物治疗"), ("偏头痛", "临床表现"), ("盐酸二甲双胍片", "不良反应")]
LINK_EXAMPLES = ["二甲双胍", "尿素维e乳膏", "感冒", "急性中耳严"]


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the whole method on the embedded defaults (what `make demo` runs)")
    p.add_argument("--kb", metavar="PATH", help="KB file (default: $KTUNE_KB or $KTUNE_HOME/kb/cmekg.sqlite)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ktune.kb import KnowledgeBase

    with KnowledgeBase.open(args.kb, create=True) as kb:
        if kb.store.counts()["entities"] == 0:
            log.info("step 1/1: importing CMeKG into %s", kb.store.path)
            report = kb.import_cmekg(progress=True)
            log.info("imported %d entities in %.1fs, version %s", report.entities_after, report.seconds, report.version_after)
        else:
            log.info("knowledge base %s already holds CMeKG (version %s)", kb.store.path, kb.version)
        stats = kb.stats()
        print(f"\nKB {stats['path']}: {stats['entities']} entities, {stats['facts']} facts, version {stats['version']}")
        for entity, attribute in EXAMPLES:
            print(f"\nacquire_knowledge({entity!r}, {attribute!r}) ->")
            for pred, values in kb.acquire_knowledge(entity, attribute).get(entity, {}).items():
                print(f"  {pred}: {'、'.join(values[:12])}{' ...' if len(values) > 12 else ''}")
        print("\nentity linking:")
        for text in LINK_EXAMPLES:
            best = kb.link(text, 1)
            print(f"  {text} -> " + (f"{best[0].entity} ({best[0].method}, {best[0].score:.2f})" if best else "no match"))
    return 0
