"""`ktune ask` / `ktune chat` / `ktune predict`: question -> KB query -> knowledge -> answer with provenance."""

from __future__ import annotations

import sys

from ktune.cli.common import (
    add_backend_options,
    add_json_option,
    add_kb_option,
    emit_json,
    make_backend,
    open_kb,
)

DEFAULT_RUN = "runs/demo"


def add_pipeline_options(p) -> None:
    from ktune.pipeline.config import QUANTIZE, QUERY_MODES, PipelineConfig
    from ktune.train.loading import DTYPES

    d = PipelineConfig()  # the defaults the help states
    p.add_argument("--run", default=DEFAULT_RUN, help=f"run folder written by `ktune train` (default: {DEFAULT_RUN})")
    add_kb_option(p)
    p.add_argument("--no-constrain", action="store_true",
                   help="free query generation + KB entity linking (same as --mode free)")
    p.add_argument("--mode", choices=QUERY_MODES, help=f"stage-1 decoding (default: {d.query_mode}; see ktune.pipeline.config)")
    p.add_argument("--num-beams", type=int, help=f"beams of the constrained search (default {d.num_beams})")
    p.add_argument("--max-chars", type=int, help=f"longest question accepted (default {d.max_question_chars} characters)")
    p.add_argument("--device", help=f"cpu or cuda (default {d.device})")
    p.add_argument("--dtype", choices=DTYPES, help=f"inference dtype (default: {d.dtype})")
    p.add_argument("--quantize", choices=QUANTIZE, help="int8: answer decode steps through int8 linears on the "
                   "CPU (1.3-1.6x faster single answers; an answer can then depend on which questions share "
                   "its batch); none: the weights as loaded; auto: int8 on a CPU with fp32 weights, else none "
                   f"(default {d.quantize})")
    p.add_argument("--threads", help="torch CPU threads: auto (default: the physical cores; $KTUNE_THREADS "
                   "overrides) or N")
    p.add_argument("--config", metavar="FILE", help="PipelineConfig JSON; flags override it")


def add_parser(sub) -> None:
    from ktune.pipeline.config import PipelineConfig

    p = sub.add_parser("ask", help="answer one question from the knowledge base, with provenance")
    p.add_argument("question", nargs="+", help="the question (words are joined with spaces)")
    add_pipeline_options(p)
    add_backend_options(p)
    add_json_option(p)
    p.set_defaults(func=run_ask)

    p = sub.add_parser("chat", help="interactive questions; shows query, knowledge and answer")
    add_pipeline_options(p)
    add_backend_options(p)
    p.set_defaults(func=run_chat)

    p = sub.add_parser("predict", help="answer a JSONL file of questions (resumable)")
    p.add_argument("--input", required=True, metavar="Q.jsonl", help='one JSON object per line with a "question"')
    p.add_argument("--output", required=True, metavar="P.jsonl", help="predictions (input fields passed through)")
    p.add_argument("--no-answer", action="store_true", help="stages 1-2 only: query and knowledge, answer null")
    p.add_argument("--batch-size", type=int, help=f"questions per model batch (default {PipelineConfig.batch_size})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_pipeline_options(p)
    add_backend_options(p)
    add_json_option(p)
    p.set_defaults(func=run_predict)


def pipeline_config(args):
    from ktune.pipeline.config import PipelineConfig

    overrides = {
        "query_mode": "free" if args.no_constrain else args.mode,
        "num_beams": args.num_beams,
        "max_question_chars": args.max_chars,
        "device": args.device,
        "dtype": args.dtype,
        "quantize": args.quantize,
        "batch_size": getattr(args, "batch_size", None),
        "threads": args.threads,
    }
    if args.config:
        return PipelineConfig.from_json_file(args.config, **overrides)
    return PipelineConfig(**{k: v for k, v in overrides.items() if v is not None})


def load_pipeline(args, config=None):
    from ktune.pipeline import KnowledgeTunedQA

    config = config or pipeline_config(args)
    return KnowledgeTunedQA.from_pretrained(args.run, kb=open_kb(args), config=config, backend=make_backend(args))


def format_answer(answer) -> str:
    """Human-readable: the query, the KB key it linked to, the knowledge, the answer."""
    entity, attribute = answer.query
    lines = [f"查询：{entity or '无'}|{attribute or '-'}"]
    if answer.linked_entity:
        lines.append(f"知识库条目：{answer.linked_entity}（{answer.link_method}, {answer.link_score:.2f}）")
    if answer.knowledge:
        from ktune.prompt import knowledge_json

        lines.append(f"知识：{knowledge_json(answer.knowledge)}")
    tag = f"（拒答：{answer.refusal_reason}）" if answer.refused else ""
    lines.append(f"回答{tag}：{answer.answer}")
    lines += citation_lines(answer)
    return "\n".join(lines)


def citation_lines(answer) -> list[str]:
    """Per-sentence citations, the premise verdict and the sentences the claim check removed."""
    out = []
    if getattr(answer, "premise", None):
        p = answer.premise.to_json()
        out.append(f"前提：{p['entity']} / {p['term']}：{'知识库列出' if p['verdict'] == 'listed' else '知识库未列出'}")
    for n, c in enumerate(getattr(answer, "sentences", ()), 1):
        facts = "；".join(f"{f.entity}/{f.predicate}/{f.value}" for f in c.facts) or "（不陈述知识）"
        out.append(f"  [{n}] {c.sentence} <- {facts}")
    for c in getattr(answer, "dropped_claims", ()):
        out.append(f"  已删除（{c.reason}：{'、'.join(c.terms)}）：{c.sentence}")
    return out


def run_ask(args) -> int:
    from ktune.pipeline.qa import validate_question

    config = pipeline_config(args)
    question = validate_question(" ".join(args.question), config.max_question_chars)  # before the slow load
    answer = load_pipeline(args, config).ask(question)
    if args.json:
        emit_json({"question": answer.question, **answer.to_json()})
    else:
        print(format_answer(answer))
    return 0


def run_chat(args) -> int:
    from ktune.errors import InputError

    qa = load_pipeline(args)
    print("ktune chat: type a medical question; an empty line or Ctrl-D quits.")
    while True:
        try:
            question = input("问题> ")
        except EOFError:
            print()
            return 0
        if not question.strip() or question.strip() in ("exit", "quit"):
            return 0
        try:
            print(format_answer(qa.ask(question)))
        except InputError as exc:
            print(f"ktune: {exc}", file=sys.stderr)


def run_predict(args) -> int:
    from ktune.pipeline.predict import predict_file, read_questions

    config = pipeline_config(args)
    read_questions(args.input, config.max_question_chars)  # bad input fails before the slow model load
    qa = load_pipeline(args, config)
    report = predict_file(qa, args.input, args.output, with_answer=not args.no_answer,
                          batch_size=args.batch_size, progress=not args.no_progress)
    if args.json:
        emit_json(report.to_json())
    else:
        print(f"{report.written} questions answered ({report.skipped_existing} already in {report.output}), "
              f"{report.refused} refused -> {report.output}")
    return 0
