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
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--seed", type=int, default=DataConfig.seed, help="build seed (default %(default)s)")
    p.add_argument(
        "--size",
        type=int,
        default=DataConfig.train_size,
        help="train records (default %(default)s; dev, test_seen, test_unseen scale to 10%%, test_no_knowledge to 3%%)",
    )
    p.add_argument(
        "--teacher", metavar="URL", help="OpenAI-compatible endpoint that rewrites questions/answers"
    )
    p.add_argument("--teacher-model", metavar="NAME", help="model name sent to the teacher endpoint")
    p.add_argument("--no-exports", action="store_true", help="skip the TRL / LLaMA-Factory exports")
    add_kb_option(p)
    add_json_option(p)
    p.set_defaults(func=_build)


def _build(args) -> int:
    from ktune.data.build import build_dataset
    from ktune.data.config import DataConfig
    from ktune.kb.base import require_nonempty

    config = DataConfig.scaled(
        args.size,
        seed=args.seed,
        teacher_url=args.teacher,
        teacher_model=args.teacher_model,
        exports=not args.no_exports,
        progress=not args.json,
    )
    with open_kb(args) as kb:
        require_nonempty(kb)
        report = build_dataset(kb, args.out, config)
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
