"""Errors of the HTTP API as OpenAI error objects, `{"error": {"message", "type", "param", "code"}}`, on every route."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ktune.serve.worker import ServeError

LOCATIONS = ("body", "query", "path", "header")  # the first item of a validation error's location


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


def install_error_handlers(app: FastAPI) -> None:
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
