"""FastAPI app: `/v1/ask`, `/v1/predict`, OpenAI-compatible `/v1/chat/completions`, KB look-ups, the web app.

Every answer carries its provenance (query, linked entity, knowledge used, KB version) and refusals are
explicit. The OpenAI-compatible route lets tools that already speak that API use ktune as is; the provenance
travels in the message text (`相关知识：...`) and in a `ktune` field of the response (and of the last chunk
when streaming).

All model work goes through one `InferenceWorker` (ktune.serve.worker): handlers only validate, enqueue and
await, so the event loop stays free. Errors are OpenAI error objects, `{"error": {"message", "type",
"param", "code"}}`, on every route. The routes under /v1 are in ktune.serve.routes, how handlers reply from a
worker job in ktune.serve.replies, the error objects in ktune.serve.api_errors and the middleware in
ktune.serve.middleware.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from ktune.serve.api_errors import install_error_handlers
from ktune.serve.middleware import AccessLog, BodyLimit
from ktune.serve.routes import h2_routes, v1_routes
from ktune.serve.worker import InferenceWorker

log = logging.getLogger("ktune.serve")

STATIC = Path(__file__).parent / "static"


@dataclass
class ServeSettings:
    """Limits and identity of one server (`ktune serve` flags)."""

    run: str = "ktune"  # the run folder, named by /health, /v1/models and every answer
    api_key: str | None = None  # bearer token required on /v1/* when set
    max_body_bytes: int = 1_000_000
    max_batch_questions: int = 64  # questions in one /v1/predict request
    max_messages: int = 64  # messages in one chat request
    request_timeout_s: float = 120.0
    max_wait_ms: float = 5.0  # how long the worker waits to fill a batch
    max_queue: int = 256  # questions waiting; more get 503
    shutdown_grace_s: float = 5.0
    h2_dir: str | None = None  # an `ktune eval h2-export` folder: the expert rating page at /h2
    stream_by: str = "clause"  # streamed answers: each verified clause, or only whole checked sentences

    @property
    def model_id(self) -> str:
        return Path(self.run).name or "ktune"


def create_app(qa, settings: ServeSettings | None = None, worker: InferenceWorker | None = None) -> FastAPI:
    """`qa` is a loaded `KnowledgeTunedQA` (heavy loading happens before the app starts). The worker is started
    with the app and stopped (queued work cancelled) when it shuts down."""
    settings = settings or ServeSettings()
    worker = worker or InferenceWorker(qa, max_wait_s=settings.max_wait_ms / 1000, max_queue=settings.max_queue,
                                       request_timeout_s=settings.request_timeout_s, stream_by=settings.stream_by)
    kb = qa.kb
    qa.warm()  # the KB's indexes are built now, not by the first request (and again after each KB import)

    @asynccontextmanager
    async def lifespan(app):
        if not worker.started:
            worker.start()
        yield
        worker.shutdown(settings.shutdown_grace_s)
        await asyncio.to_thread(worker.join, settings.shutdown_grace_s + 1)

    # /docs would load Swagger UI from a CDN, which an offline deployment cannot reach; /openapi.json stays
    app = FastAPI(title="ktune", description="Knowledge-tuned medical QA with provenance", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.worker = worker
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLog)
    about = {"run": settings.run, "model": settings.model_id,
             "base_model": qa.run_info.base_model if qa.run_info else None,
             "generation": qa.backend.mode(qa.config)}  # which backend generates, the stage-1 mode in effect

    @app.get("/health")
    async def health():
        # kb_version: the version this process last read (it follows `ktune kb import` without restart)
        return {"status": "shutting_down" if worker.closing else "ok", **about, "kb_version": kb.current_version,
                "pid": os.getpid(), "queue_depth": worker.queue_depth, "in_flight": worker.in_flight,
                "max_batch": worker.max_batch, "batches": worker.batches, "served": worker.served,
                "auth": settings.api_key is not None}

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html")

    @app.get("/h2", include_in_schema=False)
    async def h2_page():
        return FileResponse(STATIC / "h2.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    v1 = v1_routes(qa, worker, settings, about)
    h2_routes(v1, settings.h2_dir)
    app.include_router(v1)
    return app

