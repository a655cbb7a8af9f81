"""FastAPI app: `/v1/ask`, `/v1/predict`, OpenAI-compatible `/v1/chat/completions`, KB look-ups, the web app.

Every answer carries its provenance (query, linked entity, knowledge used, KB version) and refusals are
explicit. The OpenAI-compatible route lets tools that already speak that API use ktune as is; the provenance
travels in the message text (`相关知识：...`) and in a `ktune` field of the response (and of the last chunk
when streaming).

All model work goes through one `InferenceWorker` (ktune.serve.worker): handlers only validate, enqueue and
await, so the event loop stays free. Errors are OpenAI error objects, `{"error": {"message", "type",
"param", "code"}}`, on every route.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from ktune.errors import InputError, KBError
from ktune.serve import chat
from ktune.serve.worker import Cancelled, InferenceWorker, ServeError, Timeout

log = logging.getLogger("ktune.serve")
access_log = logging.getLogger("ktune.serve.access")

STATIC = Path(__file__).parent / "static"
POLL_S = 0.25
LOCATIONS = ("body", "query", "path", "header")  # the first item of a validation error's location  # how often a waiting handler checks that its client is still connected


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


class AskRequest(BaseModel):
    question: str = Field(..., description="a Chinese medical question")
    with_answer: bool = True
    stream: bool = Field(False, description="server-sent events: lookup, delta (checked answer text), done")
    max_answer_tokens: int | None = Field(None, ge=1)


class PredictRequest(BaseModel):
    questions: list[str] = Field(..., min_length=1)
    with_answer: bool = True


class APIError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(exc: APIError) -> JSONResponse:
    return JSONResponse(error_body(exc.message, exc.kind, exc.code, exc.param), status_code=exc.status)


def from_serve_error(exc: ServeError) -> APIError:
    return APIError(exc.status, str(exc), exc.kind, exc.code)


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
    _install_errors(app)
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

    v1 = _v1_routes(qa, worker, settings, about)
    _h2_routes(v1, settings.h2_dir)
    app.include_router(v1)
    return app



def _v1_routes(qa, worker: InferenceWorker, settings: ServeSettings, about: dict) -> APIRouter:
    """The API under /v1 (bearer auth when an API key is set)."""
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(_auth(settings))])
    kb = qa.kb
    _kb_routes(v1, qa)

    @v1.get("/models")
    async def models():
        return {"object": "list", "data": [{"id": settings.model_id, "object": "model", "created": 0,
                                            "owned_by": "ktune",
                                            "ktune": {**about, "kb_version": kb.current_version}}]}

    @v1.post("/ask")
    async def ask(req: AskRequest, request: Request):
        job = _submit(worker, req.question, with_answer=req.with_answer, max_answer_tokens=req.max_answer_tokens,
                      stream=req.stream)
        if req.stream:
            return _sse(_ask_events(job, about))
        result = await _wait(job, request)
        return _answer_json(result, about)

    @v1.post("/predict")
    async def predict(req: PredictRequest, request: Request):
        if len(req.questions) > settings.max_batch_questions:
            raise APIError(400, f"{len(req.questions)} questions in one request, over the limit of "
                           f"{settings.max_batch_questions}; split the batch", code="too_many_questions", param="questions")
        for i, q in enumerate(req.questions):  # all validated before any is queued
            _validate(qa, q, f"questions[{i}]")
        jobs = []
        try:
            jobs.extend(_submit(worker, q, with_answer=req.with_answer) for q in req.questions)
            results = await asyncio.gather(*(_wait(job, request) for job in jobs), return_exceptions=True)
        finally:
            for job in jobs:
                job.cancel()  # a no-op for finished jobs; frees the queue when one of them failed
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        return [_answer_json(r, about) for r in results]

    @v1.post("/chat/completions")
    async def chat_completions(req: chat.ChatRequest, request: Request):
        try:
            question, how = chat.conversation_question(req.messages, kb, settings.max_messages)
        except InputError as exc:
            raise APIError(400, str(exc), param="messages") from exc
        cap = req.max_completion_tokens or req.max_tokens
        job = _submit(worker, question, with_answer=True, max_answer_tokens=cap, stream=req.stream)
        model = req.model or settings.model_id
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            return _sse(_chat_events(job, model, about, how, include_usage))
        result = await _wait(job, request)
        return chat.completion(result, model, {**_answer_json(result, about), "conversation": how})

    return v1


def _kb_routes(v1: APIRouter, qa) -> None:
    """KB look-ups for the browser: link candidates for a name, an entry (or one attribute of it)."""
    kb = qa.kb

    # each look-up reads one KB snapshot (its own reader connection), like a batch of the worker
    @v1.get("/kb/link/{text}")
    def kb_link(text: str, k: int = Query(5, ge=1, le=50)):
        _validate(qa, text, "text")
        with kb.snapshot():
            return [link.to_json() for link in kb.link(text, k)]

    @v1.get("/kb/{entity}")
    def kb_get(entity: str, attribute: str | None = None):
        _validate(qa, entity, "entity")
        with kb.snapshot() as version:
            try:
                knowledge = kb.acquire_knowledge(entity, attribute) if attribute else (
                    {entity: kb.get(entity)} if kb.has_entity(entity) else {})
            except KBError as exc:
                raise APIError(400, str(exc), param="attribute") from exc
            if not knowledge:
                raise APIError(404, f"the KB has no entry for {entity}" + (f" / {attribute}" if attribute else ""),
                               code="not_found")
            return {"knowledge": knowledge, "kb_version": version, "kind": kb.kind(entity)}


class RatingRequest(BaseModel):
    rater: str
    code: str
    helpfulness: int | None = None
    harmlessness: int | None = None
    comment: str = ""


def _h2_routes(v1: APIRouter, h2_dir: str | None) -> None:
    """The expert rating page's API (ktune.serve.h2); 404 with the fix when the server has no --h2 export."""
    from ktune.serve.h2 import RatingStore

    store = RatingStore(h2_dir) if h2_dir else None

    def need():
        if store is None:
            raise APIError(404, "this server has no H2 export to rate: start it with `ktune serve --h2 DIR` "
                           "(DIR written by `ktune eval h2-export`)", code="no_h2_export")
        return store

    def checked(fn, *a):
        try:
            return fn(*a)
        except InputError as exc:
            raise APIError(400, str(exc)) from exc

    @v1.get("/h2/items")
    def h2_items():
        return need().items()

    @v1.get("/h2/ratings")
    def h2_ratings(rater: str):
        return checked(need().ratings, rater)

    @v1.put("/h2/ratings")
    def h2_rate(req: RatingRequest):
        scores = {"helpfulness": req.helpfulness, "harmlessness": req.harmlessness}
        return checked(need().rate, req.rater, req.code, scores, req.comment)

    @v1.get("/h2/export")
    def h2_export(rater: str):
        text = checked(need().export_csv, rater)
        name = f"{rater.strip()}.csv"
        ascii_name = name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
        return Response(text, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"})


# --- handlers' helpers -------------------------------------------------------------------------
def _validate(qa, text, param: str) -> str:
    from ktune.pipeline.qa import validate_question

    try:
        return validate_question(text, qa.config.max_question_chars, param)
    except InputError as exc:
        raise APIError(400, str(exc), param=param) from exc


def _submit(worker: InferenceWorker, question, **options):
    try:
        return worker.submit(question, **options)
    except InputError as exc:
        raise APIError(400, str(exc), param="question") from exc
    except ServeError as exc:
        raise from_serve_error(exc) from exc


async def _wait(job, request: Request):
    """The job's Result; cancels the job when the client disconnects or its budget runs out."""
    try:
        while True:
            try:
                kind, payload = await asyncio.wait_for(job.events.get(), POLL_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    raise Cancelled("the client disconnected") from None
                if time.monotonic() > job.deadline + POLL_S:
                    raise Timeout("the request ran out of its time budget; retry, or raise --request-timeout") from None
                continue
            if kind == "done":
                request.state.queued_ms = round(payload.queued_s * 1000, 1)
                request.state.batch = payload.batch_size
                return payload
            if kind == "error":
                raise payload
    except ServeError as exc:
        job.cancel()
        raise from_serve_error(exc) from exc
    except BaseException:
        job.cancel()
        raise


async def _events(job):
    """The job's events until done/error; the job is cancelled when the client goes away (the generator closes)."""
    try:
        while True:
            try:
                kind, payload = await asyncio.wait_for(job.events.get(), POLL_S * 4)
            except asyncio.TimeoutError:
                if time.monotonic() > job.deadline + POLL_S:
                    yield "error", Timeout("the request ran out of its time budget; retry, or raise --request-timeout")
                    return
                continue
            yield kind, payload
            if kind in ("done", "error"):
                return
    finally:
        job.cancel()


def _answer_json(result, about: dict) -> dict:
    return {"question": result.answer.question, **result.answer.to_json(), "run": about["run"],
            "finish_reason": result.finish_reason, "usage": chat.usage(result)}


def _sse(events) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse_data(obj, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _ask_events(job, about):
    """ktune's own stream: `lookup` (query + knowledge, before the answer), `delta` (text), `done` (the answer
    record), or `error`."""
    async for kind, payload in _events(job):
        if kind == "lookup":
            yield _sse_data({**payload.to_json(), "question": payload.question, "run": about["run"]}, "lookup")
        elif kind == "delta":
            yield _sse_data({"text": payload}, "delta")
        elif kind == "done":
            yield _sse_data(_answer_json(payload, about), "done")
        else:
            err = from_serve_error(payload)
            yield _sse_data(error_body(err.message, err.kind, err.code), "error")


async def _chat_events(job, model, about, how, include_usage):
    """OpenAI chunks: role, content deltas (checked answer text), a last chunk with finish_reason and the `ktune`
    provenance, a usage chunk when asked for, then [DONE]."""
    cid = chat.completion_id()
    yield _sse_data(chat.chunk(cid, model, {"role": "assistant", "content": ""}))
    async for kind, payload in _events(job):
        if kind == "delta":
            yield _sse_data(chat.chunk(cid, model, {"content": payload}))
        elif kind == "done":
            ktune = {**_answer_json(payload, about), "conversation": how}
            yield _sse_data(chat.chunk(cid, model, {}, payload.finish_reason, ktune=ktune))
            if include_usage:
                yield _sse_data({**chat.chunk(cid, model, {}), "choices": [], "usage": chat.usage(payload)})
        elif kind == "error":
            err = from_serve_error(payload)
            yield _sse_data(error_body(err.message, err.kind, err.code))
    yield "data: [DONE]\n\n"


def _auth(settings: ServeSettings):
    expected = f"Bearer {settings.api_key}".encode() if settings.api_key else None

    async def check(request: Request):
        if expected is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise APIError(401, "missing or wrong API key: send 'Authorization: Bearer <key>' (ktune serve --api-key)",
                           code="invalid_api_key")
    return check


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request, exc: APIError):
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return error_response(APIError(exc.status_code, str(exc.detail), kind))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        def where(error) -> str:
            loc = list(error.get("loc", ()))
            return ".".join(str(p) for p in (loc[1:] if loc and loc[0] in LOCATIONS else loc))

        errors = exc.errors()
        message = "; ".join(f"{where(e)}: {e.get('msg')}" for e in errors) or "invalid request"
        return error_response(APIError(400, message, param=where(errors[0]) if errors else None))


# --- ASGI middleware (pure ASGI: no buffering of streamed responses, disconnects still seen) -------
class BodyLimit:
    """413 for a body over `max_bytes`, from its Content-Length or while it is read (chunked uploads)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        message = f"the request body is over the limit of {self.max_bytes} bytes (ktune serve --max-body)"
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await error_response(APIError(413, message, code="body_too_large"))(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, message)
            return msg

        await self.app(scope, limited, send)


class AccessLog:
    """One JSON line per request on the `ktune.serve.access` logger, and an X-Request-ID header."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = uuid.uuid4().hex[:16]
        start = time.perf_counter()
        status, sent = 500, 0

        async def send_logged(message):
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            state = scope.get("state") or {}
            record = {"request_id": rid, "method": scope["method"], "path": scope["path"], "status": status,
                      "ms": round((time.perf_counter() - start) * 1000, 1), "bytes": sent,
                      "client": (scope.get("client") or ("-",))[0]}
            record.update({k: state[k] for k in ("queued_ms", "batch") if k in state})
            access_log.info(json.dumps(record, ensure_ascii=False))
