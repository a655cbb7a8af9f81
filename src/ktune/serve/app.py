"""FastAPI app: `POST /v1/ask`, `POST /v1/predict`, OpenAI-compatible `POST /v1/chat/completions`, KB look-ups.

Every answer carries its provenance (query, linked entity, knowledge used, KB version) and refusals are
explicit. The OpenAI-compatible route lets clinicians' tools that already speak that API use ktune as is;
the provenance travels in the message text (`相关知识：...`) and in a `ktune` field of the response.
"""

from __future__ import annotations

import time
import uuid

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from ktune.errors import InputError, KBError

MAX_BATCH = 64


class AskRequest(BaseModel):
    question: str = Field(..., description="a Chinese medical question")
    with_answer: bool = True


class PredictRequest(BaseModel):
    questions: list[str] = Field(..., min_length=1, max_length=MAX_BATCH)
    with_answer: bool = True


class ChatMessage(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(..., min_length=1)


def create_app(qa) -> FastAPI:
    """`qa` is a loaded `KnowledgeTunedQA` (heavy loading happens before the app starts)."""
    app = FastAPI(title="ktune", description="Knowledge-tuned medical QA with provenance")
    kb = qa.kb
    model_name = str(getattr(qa, "run_dir", "ktune"))

    @app.get("/health")
    def health():
        return {"status": "ok", "kb_version": kb.version, "run": model_name}

    @app.post("/v1/ask")
    def ask(req: AskRequest):
        return _answer_or_400(lambda: qa.ask_batch([req.question], with_answer=req.with_answer)[0].to_json())

    @app.post("/v1/predict")
    def predict(req: PredictRequest):
        return _answer_or_400(lambda: [a.to_json() for a in qa.ask_batch(req.questions, with_answer=req.with_answer)])

    @app.get("/v1/kb/{entity}")
    def kb_get(entity: str, attribute: str | None = None):
        try:
            knowledge = kb.acquire_knowledge(entity, attribute) if attribute else ({entity: kb.get(entity)} if kb.has_entity(entity) else {})
        except KBError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        if not knowledge:
            raise HTTPException(status_code=404, detail=f"the KB has no entry for {entity}" + (f" / {attribute}" if attribute else ""))
        return {"knowledge": knowledge, "kb_version": kb.version}

    @app.get("/v1/kb/link/{text}")
    def kb_link(text: str, k: int = 5):
        return [link.to_json() for link in kb.link(text, k)]

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "ktune"}]}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest):
        users = [m.content for m in req.messages if m.role == "user"]
        if not users:
            raise HTTPException(status_code=400, detail="no user message")
        result = _answer_or_400(lambda: qa.ask_batch([users[-1]])[0].to_json())
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model or model_name,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": result["answer"]}, "finish_reason": "stop"}
            ],
            "ktune": result,
        }

    return app


def _answer_or_400(fn):
    try:
        return fn()
    except InputError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
