"""`ktune kb ...`: import, inspect, query and export the knowledge base."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ktune.cli.common import add_json_option, add_kb_option, emit_json, open_kb


def add_parser(sub) -> None:
    kb = sub.add_parser("kb", help="the knowledge base: import, stats, get, link, export, delete")
    ks = kb.add_subparsers(dest="kb_command", metavar="ACTION", required=True)

    p = ks.add_parser(
        "import",
        help="import CMeKG or your own KB file (one transaction: all or nothing)",
        description="SOURCE is `cmekg` (downloads pycmekg==0.2.5 with pip, verifies sha256) or a file: "
        "JSON/JSONL records {\"中心词\": ..., predicate: [values]}, JSONL triples {entity, attribute, value}, "
        "or CSV with a head,relation,tail header. A malformed file stops with file:line: reason and "
        "changes nothing.",
    )
    p.add_argument("source", help="`cmekg` or a path")
    p.add_argument("--format", default="auto", choices=["auto", "records", "triples", "csv", "cmekg"])
    p.add_argument("--mode", default="upsert", choices=["upsert", "replace", "delete"],
                   help="upsert: given predicates replace stored ones; replace: the file becomes the whole KB; "
                   "delete: remove the listed entities (or just the listed predicates)")
    p.add_argument("--cmekg-source", metavar="PATH", help="local PyCMeKG-0.2.5.tar.gz or cmekg.pkl (offline)")
    _common(p)
    p.set_defaults(func=_import)

    p = ks.add_parser("stats", help="counts, kinds, version hash, schema coverage")
    _common(p)
    p.set_defaults(func=_stats)

    p = ks.add_parser("get", help="facts of ENTITY, or acquire_knowledge(ENTITY, ATTRIBUTE)")
    p.add_argument("entity")
    p.add_argument("attribute", nargs="?", help="a schema attribute such as 药物治疗 (see `ktune kb attributes`)")
    _common(p)
    p.set_defaults(func=_get)

    p = ks.add_parser("link", help="rank KB entities for a surface string (exact, alias, generic, fuzzy...)")
    p.add_argument("text")
    p.add_argument("-k", type=int, default=5, help="how many candidates")
    _common(p)
    p.set_defaults(func=_link)

    p = ks.add_parser("attributes", help="the attribute schema: attribute -> raw predicates")
    _common(p)
    p.set_defaults(func=_attributes)

    p = ks.add_parser("export", help="write the KB as cMeKG-style JSONL records (re-importable)")
    p.add_argument("-o", "--output", help="file, written atomically (default: JSONL on stdout)")
    _common(p)
    p.set_defaults(func=_export)

    p = ks.add_parser("delete", help="delete an entity, or some of its predicates")
    p.add_argument("entity")
    p.add_argument("predicates", nargs="*")
    _common(p)
    p.set_defaults(func=_delete)


def _common(p) -> None:
    add_kb_option(p)
    add_json_option(p)


def _import(args) -> int:
    with open_kb(args, create=True) as kb:
        if args.source == "cmekg":
            report = kb.import_cmekg(args.cmekg_source, mode=args.mode, progress=not args.json)
        else:
            report = kb.import_file(args.source, fmt=args.format, mode=args.mode, progress=not args.json)
        if args.json:
            emit_json(report.to_json())
        else:
            r = report
            print(f"imported {r.records} records from {r.source} in {r.seconds}s ({r.mode})")
            print(f"  facts written {r.facts_written}, deleted {r.facts_deleted}; entities {r.entities_before} -> {r.entities_after}")
            print(f"  cleaning: {r.cleaning or 'nothing to clean'}")
            print(f"  version {r.version_before} -> {r.version_after}  ({kb.store.path})")
    return 0


def _stats(args) -> int:
    with open_kb(args) as kb:
        s = kb.stats()
        if args.json:
            emit_json(s)
            return 0
        print(f"{s['path']}  version {s['version']}  schema {s['schema_version']}")
        print(f"entities {s['entities']}  facts {s['facts']}  aliases {s['aliases']}  predicates {s['predicates']}")
        print("kinds: " + ", ".join(f"{k} {n}" for k, n in s["kinds"].items()))
        unmapped = s["unmapped_predicates_20plus"]
        print(f"predicates with >=20 facts neither mapped nor listed as not queryable: {unmapped or 'none'}")
    return 0


def _get(args) -> int:
    with open_kb(args) as kb:
        if args.attribute:
            out = kb.acquire_knowledge(args.entity, args.attribute)
        else:
            facts = kb.get(args.entity)
            out = {args.entity: facts} if facts else {}
        if args.json:
            emit_json({"entity": args.entity, "attribute": args.attribute, "knowledge": out, "kb_version": kb.version})
        elif not out:
            hint = "" if kb.has_entity(args.entity) else f"; try `ktune kb link {args.entity}`"
            print(f"no entry for {args.entity}{' / ' + args.attribute if args.attribute else ''}{hint}")
            return 1
        else:
            for pred, values in out[args.entity].items():
                print(f"{pred}: {'、'.join(values)}")
    return 0


def _link(args) -> int:
    with open_kb(args) as kb:
        links = kb.link(args.text, args.k)
        if args.json:
            emit_json([link.to_json() for link in links])
        else:
            for link in links:
                print(f"{link.score:.3f}  {link.method:<20} {link.entity}")
            if not links:
                print("no match")
    return 0


def _attributes(args) -> int:
    with open_kb(args) as kb:
        schema = kb.schema
        if args.json:
            emit_json(schema.to_json())
            return 0
        for a in schema.attributes.values():
            print(f"{a.name} [{','.join(a.kinds)}]: {' '.join(a.predicates)}")
    return 0


def _export(args) -> int:
    with open_kb(args) as kb:
        if not args.output:
            for rec in kb.export():
                sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
            return 0
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        n = 0
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                for rec in kb.export():
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    n += 1
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        summary = {"output": str(out), "records": n, "version": kb.version}
        if args.json:
            emit_json(summary)
        else:
            print(f"wrote {n} records to {out} (KB version {kb.version})")
    return 0


def _delete(args) -> int:
    with open_kb(args) as kb:
        report = kb.delete(args.entity, args.predicates or None)
        if args.json:
            emit_json(report.to_json())
        else:
            print(f"deleted {report.facts_deleted} facts; version {report.version_before} -> {report.version_after}")
    return 0
