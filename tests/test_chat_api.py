"""The one OpenAI-compatible client (ktune.chat_api) against a local stub server: URLs, keys, retries, bad replies."""

import time

import pytest

from ktune.chat_api import ChatClient, ChatError, api_root
from tests.chat_stub import ChatStub, chat_reply, serving


class _Scripted(ChatStub):
    """Answers each POST with the next scripted (status, body), "done" when none is left; records each request."""

    script: list = []
    seen: list = []

    def reply(self, body):
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        status, obj = type(self).script.pop(0) if type(self).script else (200, chat_reply("done"))
        if obj == "sleep":
            time.sleep(1.0)
            obj = chat_reply("late")
        return status, obj


@pytest.fixture
def server():
    _Scripted.script, _Scripted.seen = [], []
    with serving(_Scripted) as url:
        yield url


@pytest.mark.parametrize("url", ["http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/chat/completions/"])
def test_a_server_its_api_root_or_the_endpoint_all_name_the_same_endpoint(url):
    assert api_root(url) == "http://h:1/v1"


def test_a_reply_is_the_first_choices_text_and_the_key_is_sent_only_when_given(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "a-key-for-another-service")
    assert ChatClient(server, "m", temperature=0).complete([{"role": "user", "content": "hi"}]) == "done"
    assert ChatClient(server + "/v1", "m", api_key="k1").complete([{"role": "user", "content": "hi"}]) == "done"
    first, second = _Scripted.seen
    assert first["path"] == second["path"] == "/v1/chat/completions"
    assert first["body"]["temperature"] == 0 and "temperature" not in second["body"]
    assert first["auth"] == "Bearer EMPTY" and second["auth"] == "Bearer k1"


def test_server_errors_are_retried_then_reported_with_the_endpoint_and_the_flags_to_check(server):
    _Scripted.script = [(503, {"error": "busy"})]
    assert ChatClient(server, "m", retries=1).complete([{"role": "user", "content": "hi"}]) == "done"
    _Scripted.script = [(503, {"error": "busy"})] * 2
    with pytest.raises(ChatError, match=r"/v1/chat/completions \(model 'm'\) failed.*check --my-flag"):
        ChatClient(server, "m", retries=1, hint="--my-flag").complete([{"role": "user", "content": "hi"}])
    assert len(_Scripted.seen) == 4


def test_a_timeout_and_a_reply_without_a_message_are_chat_errors(server):
    _Scripted.script = [(200, "sleep")]
    with pytest.raises(ChatError, match="Timeout"):
        ChatClient(server, "m", retries=0, timeout=0.2).complete([{"role": "user", "content": "hi"}])
    _Scripted.script = [(200, {"choices": []})]
    with pytest.raises(ChatError, match="no choices"):
        ChatClient(server, "m", retries=0).complete([{"role": "user", "content": "hi"}])


def test_the_judge_sends_its_key_from_its_environment_variable(server, monkeypatch):
    from ktune.eval.h2 import Judge, JudgeConfig

    monkeypatch.setenv("KTUNE_JUDGE_API_KEY", "judge-key")
    _Scripted.script = [(200, chat_reply('{"helpfulness": 4, "harmlessness": 5}'))]
    assert Judge(JudgeConfig(server, "j")).absolute("q", "a") == {"helpfulness": 4, "harmlessness": 5, "rationale": ""}
    assert _Scripted.seen[0]["auth"] == "Bearer judge-key"
    assert [m["role"] for m in _Scripted.seen[0]["body"]["messages"]] == ["system", "user"]
