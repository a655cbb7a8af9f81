"""A local OpenAI-compatible stub for tests: a handler that answers JSON, a server, and a /v1/completions stub
that plays a served ktune run (tests/pipeline/conftest.py's `stub` fixture)."""

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def chat_reply(text: str) -> dict:
    """A chat completion whose first choice says `text`."""
    return {"id": "stub", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}


class ChatStub(BaseHTTPRequestHandler):
    """Subclasses answer each POST with `reply(body) -> (status, JSON object)` (self.path, self.headers at hand)."""

    def reply(self, body: dict) -> tuple[int, object]:
        raise NotImplementedError

    def do_POST(self):  # noqa: N802 (http.server API)
        status, obj = self.reply(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serving(handler: type[ChatStub]) -> Iterator[str]:
    """The stub on a free loopback port while the block runs; yields its base URL (no /v1)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class CompletionsStub(ChatStub):
    """Answers /v1/completions as a served run would: a query prompt gets `constrained[question]` when a grammar
    was sent, `free[question]` otherwise ("无", no query, for a question in neither), then a stray line the stop
    string must cut; an answer prompt gets `body`. Records every request as {"path", "body", "auth"} in `seen`."""

    seen: list = []
    free: dict = {}  # question -> free query text
    constrained: dict = {}  # question -> text returned when a grammar is sent
    body = "急性中耳炎的药物治疗包括阿莫西林。"

    def reply(self, body):
        cls = type(self)
        cls.seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        texts = []
        for prompt in body["prompt"]:
            if prompt.endswith("回答："):
                texts.append(cls.body + "\n")
                continue
            if prompt.endswith("|"):  # the attribute after a given entity (QueryStage.free_attributes)
                texts.append("就诊科室\n")
                continue
            question = prompt.split("\n", 1)[0].removeprefix("问题：")
            grammar = body.get("grammar") or body.get("structured_outputs", {}).get("grammar")
            texts.append((cls.constrained if grammar else cls.free).get(question, "无") + "\n多余")
        return 200, {"id": "c", "object": "text_completion", "created": 0, "model": body["model"],
                     "choices": [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(texts)]}
