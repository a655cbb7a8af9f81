"""`ktune data build`: the knowledge-tuning dataset from the KB (splits, few-shot subsets, exports, report)."""

from __future__ import annotations

from ktune.cli.common import add_json_option, add_kb_option, emit_json, open_kb


def add_parser(sub) -> None:
    from ktune.data.config import DataConfig

    data = sub.add_parser("data", help="the knowledge-tuning dataset: build")
    ds = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = ds.add_parser(
        "build",
        help="build train/dev/test splits, few-shot subsets and exports from the KB",
        description="Deterministic for a seed and a KB: the same inputs give byte-identical files. "
        "Writes DIR/{train,dev,test_seen,test_unseen,test_no_knowledge}.jsonl, DIR/fewshot/, DIR/exports/, "
        "DIR/manifest.json and DIR/report.{json,md}.",
    )
    p.add_argument("--config", metavar="FILE",
                   help="JSON or YAML settings (a `data:` section or top level): any DataConfig field (seed, "
                        "train_size, dev_size, alias_share, teacher_url, ...) plus out, size, kb, schema; "
                        "flags override the file")
    p.add_argument("--out", metavar="DIR", help="output folder (required, here or in --config)")
    p.add_argument("--seed", type=int, help=f"build seed (default {DataConfig.seed})")
    p.add_argument("--size", type=int, help=f"train records (default {DataConfig.train_size}; dev, test_seen, "
                                             "test_unseen scale to 10%%, test_no_knowledge to 3%%)")
    p.add_argument("--teacher", metavar="URL", help="OpenAI-compatible endpoint that rewrites questions/answers")
    p.add_argument("--teacher-model", metavar="NAME", help="model name sent to the teacher endpoint")
    p.add_argument("--no-exports", dest="exports", action="store_const", const=False,
                   help="skip the TRL / LLaMA-Factory exports")
    add_kb_option(p)
    add_json_option(p)
    p.set_defaults(func=_build)


def settings(args) -> dict:
    """Defaults <- --config FILE <- flags: the build's settings by DataConfig field name, plus out, size, kb
    and schema."""
    from ktune.config_file import file_settings, kind_of, kinds_of
    from ktune.data.config import DataConfig

    kinds = {**kinds_of(DataConfig, skip=("progress",)), "size": kind_of(0),
             **{k: kind_of(None) for k in ("out", "kb", "schema")}}
    values = file_settings(args.config, "data", kinds, "ktune data build") if args.config else {}
    flags = {"out": args.out, "seed": args.seed, "size": args.size, "teacher_url": args.teacher,
             "teacher_model": args.teacher_model, "exports": args.exports, "kb": args.kb, "schema": args.schema}
    if args.size is not None:
        values.pop("train_size", None)  # --size sets the train records, whatever the file said
    values.update({k: v for k, v in flags.items() if v is not None})
    return values


def _build(args) -> int:
    from ktune.data.build import build_dataset
    from ktune.data.config import DataConfig
    from ktune.errors import ConfigError
    from ktune.kb.base import require_nonempty

    values = settings(args)
    out = values.pop("out", None)
    if not out:
        raise ConfigError("say where to write the dataset: --out DIR (or `out` in --config FILE)")
    args.kb, args.schema = values.pop("kb", None), values.pop("schema", None)
    config = DataConfig.from_settings({**values, "progress": not args.json})
    with open_kb(args) as kb:
        require_nonempty(kb)
        report = build_dataset(kb, out, config)
    if args.json:
        emit_json(
            {
                k: report[k]
                for k in (
                    "out_dir",
                    "data_version",
                    "seconds",
                    "ok",
                    "counts",
                    "checks",
                    "entities",
                    "templates",
                    "teacher",
                )
            }
        )
    else:
        print(f"dataset {report['data_version']} in {report['out_dir']} ({report['seconds']}s)")
        for split, n in report["counts"].items():
            print(f"  {split:18s} {n}")
        for name, c in report["checks"].items():
            print(f"  check {name}: {'ok' if c['ok'] else 'FAILED'} ({c['violations']} of {c['checked']})")
    return 0 if report["ok"] else 1
