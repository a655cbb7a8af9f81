"""Small helpers shared by subcommands: --json output and common options."""

from __future__ import annotations

import json
import sys

from ktune.paths import DEFAULT_KB_HELP


def add_kb_option(p) -> None:
    p.add_argument("--kb", metavar="PATH", help=f"knowledge base file or postgresql:// URL (default: {DEFAULT_KB_HELP})")
    p.add_argument("--schema", metavar="FILE", help="attribute schema JSON (default: the shipped CMeKG schema)")


def add_json_option(p) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")


def emit_json(obj) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def open_kb(args, create: bool = False):
    from ktune.kb import KnowledgeBase

    return KnowledgeBase.open(args.kb, schema=args.schema, create=create)
