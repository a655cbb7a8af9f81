"""`ktune serve`: the knowledge-tuned QA pipeline over HTTP (FastAPI + uvicorn)."""

from __future__ import annotations

import logging

log = logging.getLogger("ktune.serve")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a run over HTTP: /v1/ask, /v1/predict, OpenAI-compatible /v1/chat/completions",
        description="Loads the run and the KB once, then serves JSON answers with provenance. "
        "Bind to 127.0.0.1 unless a proxy in front adds authentication.",
    )
    p.add_argument("--run", required=True, help="run folder written by `ktune train` (e.g. runs/demo)")
    p.add_argument("--kb", metavar="PATH", help="KB file (default: $KTUNE_KB or $KTUNE_HOME/kb/cmekg.sqlite)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=run)


def run(args) -> int:
    import uvicorn

    from ktune.kb import KnowledgeBase
    from ktune.pipeline import KnowledgeTunedQA
    from ktune.serve.app import create_app

    kb = KnowledgeBase.open(args.kb)
    qa = KnowledgeTunedQA.from_pretrained(args.run, kb=kb)
    log.info("serving %s with KB %s (version %s) on http://%s:%d", args.run, kb.store.path, kb.version, args.host, args.port)
    uvicorn.run(create_app(qa), host=args.host, port=args.port, log_level="info")
    return 0
