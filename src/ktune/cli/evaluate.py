"""`ktune eval`: retrieval / answers / few-shot suites vs BM25, dense and rule baselines; H2 export and import."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from ktune.cli.common import (
    add_backend_options,
    add_json_option,
    add_kb_option,
    emit_json,
    make_backend,
    open_kb,
)

log = logging.getLogger(__name__)

ITEMS_HELP = """labelled questions (--items FILE.jsonl), one JSON object per line:
  {"question": "我爸腰间盘突出好几年了怎么办", "gold_entities": ["腰椎间盘突出症"],
   "gold_predicates": ["治疗", "药物治疗", "相关药物", "辅助治疗", "手术治疗"], "in_kb": true}
  {"question": "失眠吃什么药好", "gold_entities": [], "gold_predicates": [], "in_kb": false}
  gold_entities: every KB entity whose facts answer the question (e.g. all products of a generic drug);
  gold_predicates: the raw KB predicates that answer it; in_kb: whether the KB answers it (read from the
  KB when left out). Or the single-query form, the attribute standing for the predicates it gathers:
  {"question": "二甲双胍有什么副作用", "entity": "盐酸二甲双胍片", "attribute": "不良反应"}
  Optional: id, attribute, style, note, alternatives (single-query form). A malformed line stops with
  FILE:LINE and the reason. Scoring: retrieval is right when the looked-up entity is a gold entity and the
  fetched facts include a gold predicate (whatever attribute fetched them); entity is right when the
  looked-up entity is a gold entity; refusal recall is over in_kb=false questions.
Check labels against the KB: python -m ktune.eval.realstyle check FILE.jsonl"""


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run against BM25, dense and rule baselines (report.md, metrics.json)",
                       description="Every system on the same test items; per-item rows under OUT/predictions, "
                                   "report.md, metrics.json and PNG plots in OUT (default RUN/eval). With --data: the "
                                   "dataset's test splits plus the shipped real-style splits (real_dev, real_test). "
                                   "With --items: your own labelled questions instead.",
                       epilog=ITEMS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_options(p)
    add_kb_option(p)
    add_backend_options(p)  # the run's systems (model, model-free, the answers suite) on a completions server
    add_json_option(p)
    p.set_defaults(func=run_eval)
    _add_h2_parsers(p)


def _add_options(p) -> None:
    d = eval_defaults()
    p.add_argument("--config", metavar="FILE",
                   help="JSON or YAML settings (an `eval:` section or top level), named as the flags below "
                        "(data, run, suite, systems, limit, no_real, ...); flags override the file")
    p.add_argument("--run", metavar="RUN", help="knowledge-tuned run folder (without it: baselines only)")
    p.add_argument("--data", metavar="DIR", help="dataset folder from `ktune data build`")
    p.add_argument("--suite", choices=suite_choices(),
                   help=f"default {d['suite']}; premise: the adversarial premise set "
                        "(ktune/eval/data/premise.jsonl; no --data needed)")
    p.add_argument("--premise-split", choices=PREMISE_SPLITS, help=f"premise set split (default {d['premise_split']})")
    p.add_argument("--no-claim-check", action="store_true", default=None,
                   help="premise suite: the run's model answers premise questions itself (the before-figure)")
    p.add_argument("--out", metavar="DIR", help="report folder (default: RUN/eval)")
    p.add_argument("--limit", type=int, metavar="N", help="first N items of each test split")
    p.add_argument("--systems", metavar="LIST",
                   help=f"comma-separated subset of {','.join(d['systems'])} (default: all)")
    p.add_argument("--predictions", metavar="FILE", action="append",
                   help="score a `ktune predict` JSONL file as one more system (repeatable)")
    p.add_argument("--baseline-run", metavar="RUN", help="instruction-tuned run for the answers suite")
    p.add_argument("--quantize", choices=("none", "int8", "auto"),
                   help=f"the run's answer decode steps (as `ktune ask --quantize`; default {d['quantize']}): "
                        "int8 changes answers only, stage 1 stays fp32")
    p.add_argument("--items", metavar="FILE.jsonl", action="append",
                   help="labelled questions to score every system on, instead of the dataset (repeatable; "
                        "format below)")
    p.add_argument("--no-real", action="store_true", default=None,
                   help="skip the shipped real-style splits (real_dev, real_test)")
    p.add_argument("--judge-url", help="OpenAI-compatible server for the H2 judge, e.g. http://localhost:8000/v1")
    p.add_argument("--judge-model", help="model name the judge server serves")
    p.add_argument("--fewshot-sizes", metavar="LIST", help="comma-separated training sizes (default: all subsets)")
    p.add_argument("--fewshot-max-steps", type=int, metavar="N",
                   help=f"step cap per few-shot run (default {d['fewshot_max_steps']})")
    p.add_argument("--fewshot-max-minutes", type=float, metavar="M",
                   help=f"training time cap per few-shot run (default {d['fewshot_max_minutes']})")
    p.add_argument("--base", metavar="MODEL", help="base model for few-shot runs (default: the run's)")


def _add_h2_parsers(p) -> None:
    hsub = p.add_subparsers(dest="eval_command", metavar="{h2-export,h2-import}")
    ex = hsub.add_parser("h2-export", help="blinded CSV + printable HTML of answers for medical experts, with a key")
    ex.add_argument("--answers", required=True, metavar="DIR", help="eval folder holding answers/ (answers suite)")
    ex.add_argument("--out", required=True, metavar="DIR")
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--max-items", type=int, metavar="N", help="at most N questions")
    add_json_option(ex)
    ex.set_defaults(func=run_h2_export)
    im = hsub.add_parser("h2-import", help="import experts' filled CSVs: means with 95%% CIs and agreement")
    im.add_argument("--key", required=True, metavar="FILE", help="h2_key.json written by h2-export")
    im.add_argument("scores", nargs="+", metavar="CSV", help="one filled h2_items.csv per rater (named after them)")
    im.add_argument("--out", metavar="DIR", help="merge into DIR/metrics.json and DIR/report.md")
    add_json_option(im)
    im.set_defaults(func=run_h2_import)


PREMISE_SPLITS = ("dev", "test", "all")


def suite_choices() -> tuple[str, ...]:
    from ktune.eval.suites import SUITES

    return (*SUITES[:-1], "premise", SUITES[-1])


def eval_defaults() -> dict:
    """Every `ktune eval` setting (its flag, without dashes) and its default, read from the code that uses it."""
    import inspect

    from ktune.eval.fewshot import run_fewshot_suite
    from ktune.eval.premise import run_premise_suite
    from ktune.eval.suites import EvalConfig

    cfg = {f.name: f.default for f in dataclasses.fields(EvalConfig)}
    fewshot = inspect.signature(run_fewshot_suite).parameters
    premise = inspect.signature(run_premise_suite).parameters
    return {"run": None, "data": None, "suite": cfg["suite"], "premise_split": premise["split"].default,
            "no_claim_check": not premise["claim_check"].default, "out": None, "limit": cfg["limit"],
            "systems": cfg["systems"], "predictions": [], "baseline_run": None, "items": [],
            "no_real": not cfg["real"], "quantize": cfg["quantize"], "judge_url": None, "judge_model": None,
            "fewshot_sizes": None,
            "fewshot_max_steps": fewshot["max_steps"].default,
            "fewshot_max_minutes": fewshot["max_minutes"].default, "base": None, "kb": None, "schema": None}


def apply_settings(args) -> None:
    """Defaults <- --config FILE <- flags, written back onto `args` (a flag left out is None there)."""
    from ktune.config_file import file_settings, kind_of

    defaults = eval_defaults()
    kinds = {k: kind_of(v) for k, v in defaults.items()}
    kinds.update(limit=(int, type(None)), systems=(str, list), fewshot_sizes=(str, list, type(None)))
    choices = {"suite": suite_choices(), "premise_split": PREMISE_SPLITS, "quantize": ("none", "int8", "auto")}
    values = file_settings(args.config, "eval", kinds, "ktune eval", choices) if args.config else {}
    for key, default in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, values.get(key, default))


def _split_list(value: str | list | tuple | None) -> list[str] | None:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()] or None
    return [t.strip() for t in value.split(",") if t.strip()] if value else None


def run_eval(args) -> int:
    from ktune.errors import ConfigError
    from ktune.eval.report import format_results_table, write_report
    from ktune.eval.suites import ALL_SYSTEMS, EvalConfig, retrieval_metrics

    apply_settings(args)
    if args.suite == "premise":
        return _premise(args)
    if not args.data and not args.items:
        raise ConfigError("ktune eval needs --data DIR (a dataset folder from `ktune data build`) "
                          "or --items FILE.jsonl (labelled questions; see `ktune eval --help`)")
    cfg = EvalConfig(args.data, args.run, args.out, suite=args.suite,
                     systems=tuple(_split_list(args.systems) or ALL_SYSTEMS), predictions=tuple(args.predictions),
                     baseline_run=args.baseline_run, limit=args.limit, real=not args.no_real,
                     items=tuple(args.items), progress=not args.json, backend=make_backend(args),
                     quantize=args.quantize)
    kb = open_kb(args)
    results = {}
    if cfg.suite in ("retrieval", "all"):
        results["retrieval"] = retrieval_metrics(kb, cfg, write_report=False)
    if cfg.suite in ("answers", "all"):
        results.update(_answers_and_h2(kb, cfg, args))
    if cfg.suite in ("fewshot", "all"):
        results["fewshot"] = _fewshot(kb, cfg, args)
    files = write_report(results, cfg.out_dir)
    if args.json:
        emit_json({"out": str(cfg.out_dir), "files": {k: str(v) for k, v in files.items()}, **_summary(results)})
        return 0
    if "retrieval" in results:
        print(format_results_table(results["retrieval"]))
    h2 = results.get("h2", {}).get("judge", {})
    if h2.get("skipped"):
        print(f"H2: {h2['skipped']}")
    print(f"report: {files['report']}\nmetrics: {files['metrics']}")
    return 0


def _premise(args) -> int:
    from pathlib import Path

    from ktune.errors import ConfigError
    from ktune.eval.premise import run_premise_suite
    from ktune.eval.report import write_report

    if not args.out and not args.run:
        raise ConfigError("say where to write the report: give --out DIR (or --run RUN to write into the run)")
    if args.backend != "local":
        raise ConfigError("the premise suite runs the run's model in this process; --backend openai applies to "
                          "the retrieval and answers suites")
    out = Path(args.out) if args.out else Path(args.run) / "eval"
    metrics = run_premise_suite(open_kb(args), args.run, out, split=args.premise_split, limit=args.limit,
                                claim_check=not args.no_claim_check)
    files = write_report({"premise": metrics}, out)
    if args.json:
        emit_json({"out": str(out), "premise": metrics})
    else:
        from ktune.eval.report_sections import premise_lines

        print("\n".join(premise_lines(metrics)))
        print(f"report: {files['report']}\nmetrics: {files['metrics']}")
    return 0


def _answers_and_h2(kb, cfg, args) -> dict:
    from ktune.eval.answers import run_answers_suite
    from ktune.eval.h2 import JudgeConfig, load_answer_rows, run_judge

    answers = run_answers_suite(kb, cfg)
    judge_cfg = JudgeConfig(args.judge_url, args.judge_model)
    rows = load_answer_rows(cfg.out_dir / "answers") if answers["systems"] else {}
    return {"answers": answers, "h2": {"judge": run_judge(rows, judge_cfg)}}


def _fewshot(kb, cfg, args) -> dict:
    from ktune.errors import ConfigError
    from ktune.eval.fewshot import run_fewshot_suite
    from ktune.train import RunInfo, TrainConfig

    overrides = {}
    if cfg.run_dir:
        info = RunInfo.load(cfg.run_dir)
        known = set(TrainConfig.field_names()) - {"data", "out", "subset", "steps", "resume"}
        overrides = {k: v for k, v in (info.config or {}).items() if k in known}
        overrides.setdefault("base", info.base_model)
    if args.base:
        overrides["base"] = args.base
    if not overrides.get("base"):
        raise ConfigError("the few-shot suite needs a base model: pass --run RUN or --base MODEL")
    base_cfg = TrainConfig.from_sources(overrides=overrides)
    sizes = [int(s) for s in _split_list(args.fewshot_sizes) or []] or None
    return run_fewshot_suite(kb, cfg.data_dir, cfg.out_dir, base_cfg, sizes=sizes, limit=cfg.limit or 100,
                             max_steps=args.fewshot_max_steps, max_minutes=args.fewshot_max_minutes,
                             progress=cfg.progress, full_run=cfg.run_dir)


def _summary(results: dict) -> dict:
    """metrics without per-item rows (those are in the predictions files)."""
    out = dict(results)
    if "h2" in out and "rows" in out["h2"].get("judge", {}):
        out["h2"] = {**out["h2"], "judge": {k: v for k, v in out["h2"]["judge"].items() if k != "rows"}}
    return out


def run_h2_export(args) -> int:
    from pathlib import Path

    from ktune.errors import InputError
    from ktune.eval.h2 import load_answer_rows
    from ktune.eval.h2_experts import export_items

    adir = Path(args.answers) / "answers" if (Path(args.answers) / "answers").is_dir() else Path(args.answers)
    rows = load_answer_rows(adir)
    if not rows:
        raise InputError(f"no answer rows under {adir}; run `ktune eval --suite answers` first")
    paths = export_items(rows, args.out, seed=args.seed, max_items=args.max_items)
    if args.json:
        emit_json({k: str(v) for k, v in paths.items()})
    else:
        print("\n".join(f"{k}: {v}" for k, v in paths.items()))
        print("give raters the CSV or the HTML sheet; keep the key file away from them")
    return 0


def run_h2_import(args) -> int:
    from ktune.eval.h2_experts import import_scores
    from ktune.eval.report import write_report

    result = import_scores(args.key, args.scores)
    if args.out:
        import json
        from pathlib import Path

        mpath = Path(args.out) / "metrics.json"
        prior = json.loads(mpath.read_text(encoding="utf-8")).get("h2", {}) if mpath.is_file() else {}
        write_report({"h2": {**prior, "experts": result}}, args.out)
    if args.json:
        emit_json(result)
    else:
        from ktune.eval.report_sections import h2_lines

        print("\n".join(h2_lines({"experts": result})))
    return 0
