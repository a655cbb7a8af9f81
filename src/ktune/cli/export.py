"""`ktune export RUN --merge OUT`: write a merged full model (base + adapter) with its tokenizer and prompt format."""

from __future__ import annotations

from ktune.cli.common import add_json_option, emit_json


def add_parser(sub) -> None:
    from ktune.train.loading import DTYPES

    p = sub.add_parser("export", help="export a run as a merged full model")
    p.add_argument("run", help="run folder written by `ktune train`")
    p.add_argument("--merge", metavar="OUT", required=True, help="folder for the merged model (+ tokenizer, prompt format)")
    p.add_argument("--dtype", choices=DTYPES, help="weights dtype (default: the training dtype)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ktune.train.export import export_merged

    out = export_merged(args.run, args.merge, dtype=args.dtype, overwrite=args.overwrite)
    if args.json:
        emit_json({"run": args.run, "merged": str(out)})
    else:
        print(f"merged model: {out}")
    return 0
