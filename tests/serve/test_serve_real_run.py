"""The worker on a real knowledge-tuned Gemma run and the full CMeKG KB (slow; skipped without them):
concurrent mixed requests get exactly the sequential answers, streamed text adds up to the answer, and a
follow-up chat turn is asked about the entity of the earlier turn.

KTUNE_SERVE_RUN (default: runs/demo of this checkout) and KTUNE_FULL_KB (default: the default KB under
~/.local/share/ktune) choose them."""

import asyncio
import json
import os
from pathlib import Path

import pytest

from ktune.serve.worker import InferenceWorker
from tests.conftest import FIXTURES
from tests.serve.worker_events import collect as _result

pytestmark = pytest.mark.slow
RUN = Path(os.environ.get("KTUNE_SERVE_RUN", Path(__file__).resolve().parents[2] / "runs" / "demo"))
KB = Path(os.environ.get("KTUNE_FULL_KB", Path.home() / ".local" / "share" / "ktune" / "kb" / "cmekg.sqlite"))


@pytest.fixture(scope="module")
def real_qa():
    if not (RUN / "adapter").exists() or not KB.exists():
        pytest.skip(f"needs a trained run at {RUN} (KTUNE_SERVE_RUN) and the CMeKG KB at {KB} (KTUNE_FULL_KB)")
    import torch

    from ktune.kb import KnowledgeBase
    from ktune.pipeline import KnowledgeTunedQA

    torch.set_num_threads(1)  # one thread copes best with a machine shared with other work
    # answers capped at 48 tokens: the identity check needs generated text, not long text
    return KnowledgeTunedQA.from_pretrained(RUN, kb=KnowledgeBase.open(KB), max_answer_tokens=48)


def _questions() -> list[str]:
    rows = [json.loads(x) for x in (FIXTURES / "human_questions.jsonl").read_text("utf-8").splitlines() if x.strip()]
    answerable = [r["question"] for r in rows if r["entity"] is not None][:4]
    return answerable + [r["question"] for r in rows if r["entity"] is None][:2]




def test_real_run_concurrent_mixed_answers_equal_sequential_and_streams_add_up(real_qa):
    requests = [(q, i % 2 == 0) for i, q in enumerate(_questions())]  # every other one with an answer

    async def scenario():
        worker = InferenceWorker(real_qa, max_wait_s=0.5).start()
        sequential = [(await _result(worker.submit(q, with_answer=w)))[0] for q, w in requests]
        jobs = [worker.submit(q, with_answer=w, stream=w) for q, w in requests]
        concurrent = await asyncio.gather(*(_result(j) for j in jobs))
        worker.shutdown()
        return sequential, concurrent

    sequential, concurrent = asyncio.run(scenario())
    assert max(r.batch_size for r, _ in concurrent) > 1
    key = lambda r: (r.answer.query, r.answer.linked_entity, r.answer.knowledge, r.answer.answer)  # noqa: E731
    assert [key(r) for r, _ in concurrent] == [key(r) for r in sequential]
    for (result, deltas), (_, with_answer) in zip(concurrent, requests, strict=True):
        if with_answer:
            assert "".join(deltas) == result.answer.answer


def test_real_kb_follow_up_is_asked_about_the_earlier_entity():
    if not KB.exists():
        pytest.skip(f"needs the CMeKG KB at {KB} (KTUNE_FULL_KB)")
    from ktune.kb import KnowledgeBase
    from ktune.serve.chat import ChatMessage, conversation_question

    messages = [ChatMessage(role="user", content="我女儿5岁，确诊急性中耳炎。"),
                ChatMessage(role="assistant", content="好的。"),
                ChatMessage(role="user", content="应该用什么药？")]
    with KnowledgeBase.open(KB) as kb:
        question, how = conversation_question(messages, kb, 10)
    assert question == "急性中耳炎，应该用什么药？" and how["context_from_turn"] == 0
