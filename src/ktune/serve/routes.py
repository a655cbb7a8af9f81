"""The API routes under /v1: questions (ask, predict, OpenAI-compatible chat completions), KB look-ups for the
browser, and the expert rating page's API. Handlers only validate, enqueue and await (ktune.serve.replies)."""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ktune.errors import InputError, KBError
from ktune.serve import chat
from ktune.serve.api_errors import APIError, from_serve_error
from ktune.serve.replies import answer_json, ask_events, chat_events, sse_response, wait_for_result
from ktune.serve.worker import InferenceWorker, ServeError

if TYPE_CHECKING:
    from ktune.serve.app import ServeSettings


class AskRequest(BaseModel):
    question: str = Field(..., description="a Chinese medical question")
    with_answer: bool = True
    stream: bool = Field(False, description="server-sent events: lookup, delta (checked answer text), done")
    max_answer_tokens: int | None = Field(None, ge=1)


class PredictRequest(BaseModel):
    questions: list[str] = Field(..., min_length=1)
    with_answer: bool = True


def v1_routes(qa, worker: InferenceWorker, settings: ServeSettings, about: dict) -> APIRouter:
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
            return sse_response(ask_events(job, about))
        result = await wait_for_result(job, request)
        return answer_json(result, about)

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
            results = await asyncio.gather(*(wait_for_result(job, request) for job in jobs), return_exceptions=True)
        finally:
            for job in jobs:
                job.cancel()  # a no-op for finished jobs; frees the queue when one of them failed
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
        return [answer_json(r, about) for r in results]

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
            return sse_response(chat_events(job, model, about, how, include_usage))
        result = await wait_for_result(job, request)
        return chat.completion(result, model, {**answer_json(result, about), "conversation": how})

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


def h2_routes(v1: APIRouter, h2_dir: str | None) -> None:
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
