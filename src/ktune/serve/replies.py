"""How a handler replies from a worker job: it awaits the job's result, or streams its events as server-sent
events (ktune's own `lookup` / `delta` / `done`, or OpenAI chat chunks); the job is cancelled when the client goes."""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import Request
from fastapi.responses import StreamingResponse

from ktune.serve import chat
from ktune.serve.api_errors import error_body, from_serve_error
from ktune.serve.worker import Cancelled, ServeError, Timeout

POLL_S = 0.25  # how often a waiting handler checks that its client is still connected


async def wait_for_result(job, request: Request):
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


def answer_json(result, about: dict) -> dict:
    return {"question": result.answer.question, **result.answer.to_json(), "run": about["run"],
            "finish_reason": result.finish_reason, "usage": chat.usage(result)}


def sse_response(events) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse_data(obj, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def ask_events(job, about):
    """ktune's own stream: `lookup` (query + knowledge, before the answer), `delta` (text), `done` (the answer
    record), or `error`."""
    async for kind, payload in _events(job):
        if kind == "lookup":
            yield _sse_data({**payload.to_json(), "question": payload.question, "run": about["run"]}, "lookup")
        elif kind == "delta":
            yield _sse_data({"text": payload}, "delta")
        elif kind == "done":
            yield _sse_data(answer_json(payload, about), "done")
        else:
            err = from_serve_error(payload)
            yield _sse_data(error_body(err.message, err.kind, err.code), "error")


async def chat_events(job, model, about, how, include_usage):
    """OpenAI chunks: role, content deltas (checked answer text), a last chunk with finish_reason and the `ktune`
    provenance, a usage chunk when asked for, then [DONE]."""
    cid = chat.completion_id()
    yield _sse_data(chat.chunk(cid, model, {"role": "assistant", "content": ""}))
    async for kind, payload in _events(job):
        if kind == "delta":
            yield _sse_data(chat.chunk(cid, model, {"content": payload}))
        elif kind == "done":
            ktune = {**answer_json(payload, about), "conversation": how}
            yield _sse_data(chat.chunk(cid, model, {}, payload.finish_reason, ktune=ktune))
            if include_usage:
                yield _sse_data({**chat.chunk(cid, model, {}), "choices": [], "usage": chat.usage(payload)})
        elif kind == "error":
            err = from_serve_error(payload)
            yield _sse_data(error_body(err.message, err.kind, err.code))
    yield "data: [DONE]\n\n"
