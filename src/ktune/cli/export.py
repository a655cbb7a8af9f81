"""`ktune export RUN --merge OUT` (a merged full model) or `--gguf OUT` (llama.cpp: base GGUF + LoRA adapter GGUF)."""

from __future__ import annotations

from ktune.cli.common import add_json_option, emit_json


def add_parser(sub) -> None:
    from ktune.train.loading import DTYPES

    p = sub.add_parser("export", help="export a run as a merged full model, or as GGUF files for llama.cpp")
    p.add_argument("run", help="run folder written by `ktune train`")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--merge", metavar="OUT", help="folder for the merged model (+ tokenizer, prompt format)")
    what.add_argument("--gguf", metavar="OUT", help="folder for llama.cpp: base.gguf (the packaged base model) + "
                      "adapter.gguf (the run's LoRA), e.g. llama-server -m OUT/base.gguf --lora OUT/adapter.gguf")
    p.add_argument("--dtype", choices=DTYPES, help="weights dtype of --merge (default: the training dtype)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.gguf:
        from ktune.train.gguf_export import export_gguf

        paths = export_gguf(args.run, args.gguf, overwrite=args.overwrite)
        if args.json:
            emit_json(paths)
        else:
            print(f"base model: {paths['base']}\nLoRA adapter: {paths['adapter']} ({paths['lora_tensors']} tensors)")
        return 0
    from ktune.train.export import export_merged

    out = export_merged(args.run, args.merge, dtype=args.dtype, overwrite=args.overwrite)
    if args.json:
        emit_json({"run": args.run, "merged": str(out)})
    else:
        print(f"merged model: {out}")
    return 0
