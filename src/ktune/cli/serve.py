"""`ktune serve`: the knowledge-tuned QA pipeline over HTTP (FastAPI + uvicorn), a web app at `/`."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import sys

from ktune.cli.ask import add_pipeline_options, pipeline_config
from ktune.errors import ConfigError, KtuneError

log = logging.getLogger("ktune.serve")

LOOPBACK_NAMES = ("localhost",)
WORKER_ARGS_ENV = "KTUNE_SERVE_WORKER_ARGS"  # the parsed flags, for the worker processes of --workers N
HEALTHCHECK_S = 10  # a worker process that does not answer the supervisor's ping in this long is restarted (and
# a dead one is noticed within it)


def add_parser(sub) -> None:
    from ktune.pipeline.config import PipelineConfig

    p = sub.add_parser(
        "serve",
        help="serve a run over HTTP: web app, /v1/ask, /v1/predict, OpenAI-compatible /v1/chat/completions",
        description="Loads the run and the KB once; one inference worker micro-batches all requests. "
        "With --workers N, N processes serve one port, each with its own model and worker. The KB is opened "
        "read-only; a `ktune kb import` while serving is picked up by the next batch, without restart. "
        "Binding to a non-loopback address requires --api-key (or $KTUNE_API_KEY).",
    )
    add_pipeline_options(p)
    p.add_argument("--batch-size", type=int, help=f"most questions the worker answers in one model batch (default {PipelineConfig.batch_size})")
    p.add_argument("--workers", type=int, default=1,
                   help="serving processes on the port, each loading its own copy of the model (default %(default)s); "
                   "--threads auto divides the physical cores among them")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port to bind (default %(default)s)")
    p.add_argument("--api-key", default=os.environ.get("KTUNE_API_KEY"),
                   help="bearer token required on /v1/* (default: $KTUNE_API_KEY)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long the worker waits to fill a batch (default %(default)s)")
    p.add_argument("--max-queue", type=int, default=256, help="questions waiting before requests get 503 (default %(default)s)")
    p.add_argument("--request-timeout", type=float, default=120.0, help="seconds one request may take (default %(default)s)")
    p.add_argument("--max-body", type=int, default=1_000_000, help="largest request body in bytes (default %(default)s)")
    p.add_argument("--max-batch-questions", type=int, default=64, help="questions in one /v1/predict call (default %(default)s)")
    p.add_argument("--max-messages", type=int, default=64, help="messages in one chat request (default %(default)s)")
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


def open_serving_kb(args):
    """The KB, read-only: serving processes never write it (imports go through `ktune kb import`)."""
    from ktune.kb import KnowledgeBase

    return KnowledgeBase.open(args.kb, schema=args.schema, read_only=True)


def load_serving_pipeline(args, config):
    from ktune.pipeline import KnowledgeTunedQA

    return KnowledgeTunedQA.from_pretrained(args.run, kb=open_serving_kb(args), config=config)


def run(args) -> int:
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1:
        return run_workers(args)
    import uvicorn

    from ktune.serve.app import create_app

    settings = serve_settings(args)  # bad flags fail before the slow model load
    config = pipeline_config(args)  # --threads among them: from_pretrained sets torch's threads
    qa = load_serving_pipeline(args, config)
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


# --- --workers N ---------------------------------------------------------------------------------
# uvicorn's supervisor: this process binds the port and starts N worker processes (spawned, not forked: each
# imports torch and loads the model itself, so no process inherits another's threads or model); it restarts a
# worker that dies, stops all when one fails to start, and passes SIGTERM / SIGINT on. Each worker process is
# today's single server: its own model, inference worker thread and KB connections.
def run_workers(args) -> int:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from ktune.threads import parse_threads, resolve_threads

    settings = serve_settings(args)
    pipeline_config(args)  # bad pipeline flags fail here, once, not in every worker
    with open_serving_kb(args) as kb:  # a missing or unreadable KB too
        version = kb.version
    if not isinstance(parse_threads(args.threads), int):
        args.threads = str(resolve_threads(args.threads, processes=args.workers))
    flags = {k: v for k, v in vars(args).items() if k != "func"}
    os.environ[WORKER_ARGS_ENV] = json.dumps(flags)  # inherited by the spawned workers
    config = uvicorn.Config("ktune.cli.serve:worker_app", factory=True, host=args.host, port=args.port,
                            workers=args.workers, log_config=None, access_log=False,
                            timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 2,
                            timeout_worker_healthcheck=HEALTHCHECK_S)
    log.info("serving %s (KB version %s) on http://%s:%d with %d worker processes, %s torch threads each%s",
             args.run, version, args.host, args.port, args.workers, args.threads,
             "" if settings.api_key else ", without an API key")
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    failed = [p.pid for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
    if failed:
        log.error("worker process(es) %s failed to start (see their log above); the server stopped", failed)
        return 1
    return 0


def worker_app():
    """One worker process of `--workers N` (a uvicorn app factory): load the pipeline, return the app."""
    import argparse

    from uvicorn.config import STARTUP_FAILURE

    from ktune.serve.app import create_app

    args = argparse.Namespace(**json.loads(os.environ[WORKER_ARGS_ENV]))
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        settings = serve_settings(args)
        qa = load_serving_pipeline(args, pipeline_config(args))
        app = create_app(qa, settings)
    except Exception as exc:  # the same failure would repeat on every restart: stop the server instead
        log.error("worker process %d could not start: %s: %s", os.getpid(), type(exc).__name__, exc,
                  exc_info=not isinstance(exc, KtuneError))
        sys.exit(STARTUP_FAILURE)
    _fail_queued_on_signal(app.state.worker, settings.shutdown_grace_s)
    log.info("worker process %d ready: %s, KB version %s", os.getpid(), args.run, qa.kb_version)
    return app


def _fail_queued_on_signal(worker, grace_s: float) -> None:
    """As the single server does: on SIGTERM / SIGINT queued requests get 503 at once and the running batch
    has `grace_s`, then uvicorn's own handler (installed before the factory runs) shuts the server down."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        uvicorn_handler = signal.getsignal(sig)
        if not callable(uvicorn_handler):
            continue

        def handler(signum, frame, then=uvicorn_handler):
            worker.shutdown(grace_s)
            then(signum, frame)

        signal.signal(sig, handler)
