"""The inference worker: one thread owns the model, concurrent requests are micro-batched, and what each
client gets is exactly what it would get alone (a trained tiny run, real micro-batches, mixed requests)."""

import asyncio

import pytest

from ktune.serve.worker import Cancelled, InferenceWorker, ShuttingDown
from tests.serve.conftest import trained_questions
from tests.serve.worker_events import collect as _result


def _key(result):
    a = result.answer
    return (a.question, a.query, a.linked_entity, a.knowledge, a.answer, a.refused, a.refusal_reason,
            result.finish_reason, result.completion_tokens)


@pytest.fixture
def requests(trained):
    _, _, data = trained
    questions = trained_questions(data)
    # every question asked with and without an answer, so batches mix both kinds
    return [(q, with_answer) for q in questions for with_answer in (True, False)]


def test_concurrent_mixed_requests_get_exactly_the_sequential_answers(trained_qa, requests):
    async def scenario():
        worker = InferenceWorker(trained_qa, max_wait_s=0.2).start()
        sequential = []
        for q, with_answer in requests:
            sequential.append((await _result(worker.submit(q, with_answer=with_answer)))[0])
        jobs = [worker.submit(q, with_answer=with_answer) for q, with_answer in requests]
        concurrent = [r for r, _ in await asyncio.gather(*(_result(j) for j in jobs))]
        worker.shutdown()
        return sequential, concurrent

    sequential, concurrent = asyncio.run(scenario())
    assert max(r.batch_size for r in concurrent) > 1  # they really shared batches
    assert all(r.batch_size == 1 for r in sequential)
    assert any(not r.answer.refused and r.answer.answer for r in sequential)  # answers were generated
    assert [_key(r) for r in concurrent] == [_key(r) for r in sequential]
    for r, (_, with_answer) in zip(concurrent, requests, strict=True):
        assert (r.answer.answer is not None) == with_answer


def test_worker_answers_match_ask_batch(trained_qa, requests):
    async def scenario():
        worker = InferenceWorker(trained_qa, max_wait_s=0.2).start()
        jobs = [worker.submit(q, with_answer=True) for q, w in requests if w]
        out = [r for r, _ in await asyncio.gather(*(_result(j) for j in jobs))]
        worker.shutdown()
        return out

    served = asyncio.run(scenario())
    direct = trained_qa.ask_batch([q for q, w in requests if w])
    assert [r.answer.answer for r in served] == [a.answer for a in direct]


def test_streamed_sentences_concatenate_to_the_final_answer(trained_qa, requests):
    async def scenario():
        worker = InferenceWorker(trained_qa, max_wait_s=0.2).start()
        jobs = [worker.submit(q, stream=True) for q, w in requests if w]
        out = await asyncio.gather(*(_result(j) for j in jobs))
        worker.shutdown()
        return out

    streamed = asyncio.run(scenario())
    for result, deltas in streamed:
        assert "".join(deltas) == result.answer.answer
    answered = [(r, d) for r, d in streamed if not r.answer.refused]
    assert answered and all(d[-1].endswith(r.answer.answer.splitlines()[-1]) for r, d in answered)  # provenance last


def test_max_answer_tokens_caps_the_answer_body(trained_qa, requests):
    async def scenario():
        worker = InferenceWorker(trained_qa).start()
        fulls = [(await _result(worker.submit(q)))[0] for q, w in requests if w]
        full = max(fulls, key=lambda r: r.completion_tokens)  # the longest generated body
        capped, _ = await _result(worker.submit(full.answer.question, max_answer_tokens=3))
        worker.shutdown()
        return full, capped

    full, capped = asyncio.run(scenario())
    assert full.completion_tokens > 3 and full.finish_reason == "stop"
    assert capped.completion_tokens == 3 and capped.finish_reason == "length"
    # the model's bodies (the claim check may replace both with the same listing of the facts)
    body = capped.answer.raw_answer
    assert full.answer.raw_answer.startswith(body) and len(body) < len(full.answer.raw_answer)


def test_cancelled_queued_job_is_never_run_and_shutdown_fails_the_queue(trained_qa, requests):
    async def scenario():
        worker = InferenceWorker(trained_qa, max_wait_s=0.0)  # not started: jobs stay queued
        cancelled = worker.submit(requests[0][0])
        queued = worker.submit(requests[1][0])
        cancelled.cancel()
        worker.start()
        outcomes = []
        for job in (cancelled, queued):
            try:
                outcomes.append(await _result(job))
            except Exception as exc:  # noqa: BLE001 -- the outcome is what the test checks
                outcomes.append(exc)
        late = worker.submit(requests[2][0])
        worker.shutdown(grace_s=0)
        try:
            await _result(late)
        except ShuttingDown as exc:
            outcomes.append(exc)
        with pytest.raises(ShuttingDown):
            worker.submit(requests[3][0])
        return worker, outcomes

    worker, outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[0], Cancelled)
    assert not isinstance(outcomes[1], Exception)
    assert isinstance(outcomes[2], ShuttingDown)
    assert worker.served == 1


def test_a_client_cannot_raise_the_answer_token_cap(trained_qa, requests):
    async def scenario():
        worker = InferenceWorker(trained_qa)
        job = worker.submit(requests[0][0], max_answer_tokens=10**9)
        return job.max_answer_tokens

    assert asyncio.run(scenario()) == trained_qa.config.max_answer_tokens
