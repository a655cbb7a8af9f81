"""One client for OpenAI-compatible endpoints: /v1/chat/completions (the dataset teacher, the H2 judge) and raw-prompt
/v1/completions (the pipeline's `openai` generation backend, ktune.pipeline.backend).

Built on the official `openai` package (retries with backoff on connection errors, timeouts, 408/429/5xx; the
`ml` extra installs it). A URL may name the server (`http://host:8000`), its API root (`.../v1`) or the endpoint
itself (`.../v1/chat/completions`). The API key is sent only when given: `OPENAI_API_KEY` is never read, so a
key meant for one service is not sent to another.
"""

from __future__ import annotations

from ktune.errors import ConfigError, KtuneError

COMPLETIONS = "/chat/completions"
NO_KEY = "EMPTY"  # what keyless OpenAI-compatible servers (vLLM, ktune serve without --api-key) are sent


class ChatError(KtuneError):
    """The endpoint failed after all retries, or answered without a message."""


def api_root(url: str) -> str:
    """The API root the `openai` client appends `/chat/completions` to: `.../v1` for any of the three forms."""
    root = url.strip().rstrip("/")
    if root.endswith(COMPLETIONS):
        return root[: -len(COMPLETIONS)]
    return root if root.endswith("/v1") else root + "/v1"


class ChatClient:
    """`complete(messages)` -> the first choice's text. `hint` names the flags to check in error messages."""

    def __init__(self, url: str, model: str, *, api_key: str | None = None, timeout: float = 60.0,
                 retries: int = 3, temperature: float | None = None, hint: str = "the endpoint URL and model"):
        try:
            from openai import OpenAI
        except ImportError as exc:
            raise ConfigError("talking to an OpenAI-compatible endpoint needs the `openai` package: "
                              "pip install 'ktune[ml]' (or pip install openai)") from exc
        self.endpoint = api_root(url) + COMPLETIONS
        self.model, self.retries, self.temperature, self.hint = model, retries, temperature, hint
        self._client = OpenAI(base_url=api_root(url), api_key=api_key or NO_KEY, timeout=timeout,
                              max_retries=retries)

    def complete(self, messages: list[dict]) -> str:
        import openai

        extra = {} if self.temperature is None else {"temperature": self.temperature}
        try:
            response = self._client.chat.completions.create(model=self.model, messages=messages, **extra)
        except openai.OpenAIError as exc:
            raise ChatError(f"{self.endpoint} (model {self.model!r}) failed ({self.retries} retries allowed): "
                            f"{type(exc).__name__}: {exc}; check {self.hint}") from exc
        choices = getattr(response, "choices", None) or [None]
        message = getattr(choices[0], "message", None)
        if message is None:
            raise ChatError(f"{self.endpoint} (model {self.model!r}) returned no choices[0].message; "
                            f"check {self.hint}")
        return str(message.content or "")  # no text (a refusal, a tool call): the caller rejects an empty reply

    def complete_text(self, prompts: list[str], max_tokens: int, stop: list[str] | None = None,
                      extra_body: dict | None = None) -> list[str]:
        """Raw-prompt completions (/v1/completions), one text per prompt in order, all prompts in one request;
        `extra_body`: server-specific fields (a grammar) sent in the JSON body as they are."""
        import openai

        extra = {} if self.temperature is None else {"temperature": self.temperature}
        endpoint = api_root(self.endpoint) + "/completions"
        try:
            response = self._client.completions.create(model=self.model, prompt=prompts, max_tokens=max_tokens,
                                                       stop=stop, extra_body=extra_body, **extra)
        except openai.OpenAIError as exc:
            raise ChatError(f"{endpoint} (model {self.model!r}) failed ({self.retries} retries allowed): "
                            f"{type(exc).__name__}: {exc}; check {self.hint}") from exc
        choices = sorted(getattr(response, "choices", None) or [], key=lambda c: c.index)
        if len(choices) != len(prompts):
            raise ChatError(f"{endpoint} (model {self.model!r}) returned {len(choices)} choices for {len(prompts)} "
                            f"prompts; check {self.hint}")
        return [str(c.text or "") for c in choices]
