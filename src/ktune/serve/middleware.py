"""ASGI middleware of the server (pure ASGI: no buffering of streamed responses, disconnects still seen)."""

from __future__ import annotations

import json
import logging
import time
import uuid

from starlette.exceptions import HTTPException

from ktune.serve.api_errors import APIError, error_response

access_log = logging.getLogger("ktune.serve.access")


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
