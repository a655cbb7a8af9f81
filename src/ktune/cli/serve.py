"""`ktune serve`: the knowledge-tuned QA pipeline over HTTP (FastAPI + uvicorn), a web app at `/`."""

from __future__ import annotations

import ipaddress
import logging
import os

from ktune.cli.ask import add_pipeline_options, load_pipeline, pipeline_config
from ktune.errors import ConfigError

log = logging.getLogger("ktune.serve")

LOOPBACK_NAMES = ("localhost",)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a run over HTTP: web app, /v1/ask, /v1/predict, OpenAI-compatible /v1/chat/completions",
        description="Loads the run and the KB once; one inference worker micro-batches all requests. "
        "Binding to a non-loopback address requires --api-key (or $KTUNE_API_KEY).",
    )
    add_pipeline_options(p)
    p.add_argument("--batch-size", type=int, help="most questions the worker answers in one model batch (default 16)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("KTUNE_API_KEY"),
                   help="bearer token required on /v1/* (default: $KTUNE_API_KEY)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long the worker waits to fill a batch (default 5)")
    p.add_argument("--max-queue", type=int, default=256, help="questions waiting before requests get 503 (default 256)")
    p.add_argument("--request-timeout", type=float, default=120.0, help="seconds one request may take (default 120)")
    p.add_argument("--max-body", type=int, default=1_000_000, help="largest request body in bytes (default 1 MB)")
    p.add_argument("--max-batch-questions", type=int, default=64, help="questions in one /v1/predict call (default 64)")
    p.add_argument("--max-messages", type=int, default=64, help="messages in one chat request (default 64)")
    p.add_argument("--shutdown-grace", type=float, default=5.0,
                   help="seconds the running batch may finish after SIGTERM; queued requests get 503 at once")
    p.add_argument("--stream-by", choices=("clause", "sentence"), default="clause",
                   help="streamed answers send each clause once the claim check verified it (a listing value by "
                   "value), or only whole checked sentences; the final answer is the same (default clause)")
    p.add_argument("--h2", metavar="DIR", help="serve the expert rating page /h2 for this `ktune eval h2-export` "
                   "folder (ratings in DIR/h2_ratings.sqlite)")
    p.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_settings(args):
    from ktune.serve.app import ServeSettings

    for name in ("max_wait_ms", "request_timeout", "max_body", "max_batch_questions", "max_messages", "max_queue"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not args.api_key and not is_loopback(args.host):
        raise ConfigError(f"binding to {args.host} exposes the server beyond this machine: set --api-key or "
                          "$KTUNE_API_KEY (clients then send 'Authorization: Bearer <key>'), or bind to 127.0.0.1")
    return ServeSettings(run=str(args.run), api_key=args.api_key or None, max_body_bytes=args.max_body,
                         max_batch_questions=args.max_batch_questions, max_messages=args.max_messages,
                         request_timeout_s=args.request_timeout, max_wait_ms=args.max_wait_ms,
                         max_queue=args.max_queue, shutdown_grace_s=args.shutdown_grace, h2_dir=args.h2,
                         stream_by=args.stream_by)


def run(args) -> int:
    import uvicorn

    from ktune.serve.app import create_app

    settings = serve_settings(args)  # bad flags fail before the slow model load
    config = pipeline_config(args)  # --threads among them: from_pretrained sets torch's threads
    qa = load_pipeline(args, config)
    app = create_app(qa, settings)
    worker = app.state.worker

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            # queued requests get 503 now; the running batch has --shutdown-grace seconds
            worker.shutdown(settings.shutdown_grace_s)
            super().handle_exit(sig, frame)

    log.info("serving %s (KB version %s) on http://%s:%d%s", args.run, qa.kb_version, args.host, args.port,
             "" if settings.api_key else " without an API key")
    server = Server(uvicorn.Config(app, host=args.host, port=args.port, log_config=None, access_log=False,
                                   timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 2))
    server.run()
    return 0
