"""A local OpenAI-compatible /v1/chat/completions stub for tests: a handler that answers JSON, and a server."""

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
