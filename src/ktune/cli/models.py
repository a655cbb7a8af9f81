"""`ktune models`: prepare the packaged demo model (Gemma-3-270M) and list base models."""

from __future__ import annotations

from ktune.cli.common import add_json_option, emit_json


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="base models: prepare gemma3-270m, list")
    ms = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    q = ms.add_parser("prepare", help="convert a packaged GGUF once into a cached HF folder ($KTUNE_HOME/models/NAME)")
    q.add_argument("name", help="packaged model name, e.g. gemma3-270m")
    q.add_argument("--force", action="store_true", help="convert again even when prepared")
    add_json_option(q)
    q.set_defaults(func=_prepare)
    q = ms.add_parser("list", help="packaged models and whether they are prepared")
    add_json_option(q)
    q.set_defaults(func=_list)


def _prepare(args) -> int:
    from ktune.models import prepare

    path = prepare(args.name, force=args.force)
    if args.json:
        emit_json({"name": args.name, "path": str(path)})
    else:
        print(f"{args.name}: {path}  (use --base {args.name})")
    return 0


def _list(args) -> int:
    from ktune.models import list_models

    rows = list_models()
    if args.json:
        emit_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:<14} {'prepared' if r['prepared'] else 'not prepared':<13} {r['path']}")
    return 0
