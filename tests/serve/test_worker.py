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


@pytest.mark.parametrize("stream_by", ["clause", "sentence"])
def test_streamed_text_builds_up_the_answer_that_is_not_streamed(trained_qa, requests, stream_by):
    questions = [q for q, w in requests if w]

    async def scenario():
        worker = InferenceWorker(trained_qa, max_wait_s=0.2, stream_by=stream_by).start()
        jobs = [worker.submit(q, stream=True) for q in questions]
        out = await asyncio.gather(*(_result(j) for j in jobs))
        worker.shutdown()
        return out

    streamed = asyncio.run(scenario())
    direct = trained_qa.ask_batch(questions)
    assert [r.answer.answer for r, _ in streamed] == [a.answer for a in direct]
    for result, deltas in streamed:
        # the worker sends the rest only when what it streamed is a prefix of the final answer
        assert "".join(deltas) == result.answer.answer
    answered = [(r, d) for r, d in streamed if not r.answer.refused]
    assert answered and all(d[-1].endswith(r.answer.answer.splitlines()[-1]) for r, d in answered)  # provenance last


def test_max_answer_tokens_caps_the_answer_body(trained, requests):
    from ktune.pipeline import KnowledgeTunedQA

    run, kb_path, _ = trained
    # the tiny model's bodies fail the claim check within a token or two: without the stop they run on to the cap
    qa = KnowledgeTunedQA.from_pretrained(run, kb=kb_path, max_answer_tokens=48, stop_at_failed_sentence=False)

    async def scenario():
        worker = InferenceWorker(qa).start()
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


class _Writes:
    """The tiny model made to write a given answer body after each answer prompt (real `generate`, real
    streamer): what the answer stage and the stream make of a body does not depend on the model."""

    def __init__(self, model, tok, bodies: dict[str, str], end_id: int):
        self._model, self._tok, self._end = model, tok, end_id
        # keyed by the question as the tokenizer writes it (the tiny one drops characters it lacks)
        self._bodies = {tok.decode(tok(q, add_special_tokens=False)["input_ids"], skip_special_tokens=True):
                        tok(b, add_special_tokens=False)["input_ids"]
                        for q, b in bodies.items()}

    def __getattr__(self, name):
        return getattr(self._model, name)

    def generate(self, input_ids, logits_processor=None, **kwargs):
        import torch
        from transformers import LogitsProcessorList

        prompts = self._tok.batch_decode(input_ids, skip_special_tokens=True)
        forced = [next(ids for q, ids in self._bodies.items() if q in p) + [self._end] for p in prompts]
        width = input_ids.shape[1]

        def force(ids, scores):
            step = ids.shape[1] - width
            out = torch.full_like(scores, float("-inf"))
            for row, seq in enumerate(forced):
                out[row, seq[min(step, len(seq) - 1)]] = 0.0
            return out

        processors = LogitsProcessorList([*(logits_processor or []), force])
        return self._model.generate(input_ids=input_ids, logits_processor=processors, **kwargs)


def test_clauses_stream_while_the_answer_is_written_and_add_up_to_the_unstreamed_answer(tiny_lm, mini_kb):
    from ktune.pipeline import KnowledgeTunedQA, PipelineConfig
    from ktune.pipeline.query import Query

    model, tok = tiny_lm
    bodies = {  # characters the tiny tokenizer writes; the first has a rewritten value, the last a predicate as value
        "急性中耳炎吃什么药？": "根据知识库，急性中耳炎的药物治疗：阿莫西林，头孢菌素，头孢类。急性中耳炎的药物治疗：镇痛药。",
        "急性中耳炎的药物治疗有哪些？": "根据知识库，急性中耳炎的药物治疗：阿莫西林，头孢菌素，镇痛药。",
        "中耳炎用什么药": "根据知识库，急性中耳炎的药物治疗：阿莫西林，相关药物。",
    }
    qa = KnowledgeTunedQA(model, tok, mini_kb, config=PipelineConfig(max_answer_tokens=64, answer_decoding="full"))
    qa.decoder.model = _Writes(model, tok, bodies, qa.decoder.end_ids[0])
    qa.query_stage.run = lambda questions, mode=None: [Query("急性中耳炎", "药物治疗", "急性中耳炎", 1.0, "exact")
                                                       for _ in questions]
    questions = list(bodies)
    direct = [a.answer for a in qa.ask_batch(questions)]

    async def scenario(stream_by):
        worker = InferenceWorker(qa, max_wait_s=0.2, stream_by=stream_by).start()
        jobs = [worker.submit(q, stream=True) for q in questions]
        out = await asyncio.gather(*(_result(j) for j in jobs))
        worker.shutdown()
        return out

    by_clause, by_sentence = asyncio.run(scenario("clause")), asyncio.run(scenario("sentence"))
    assert [r.answer.answer for r, _ in by_clause] == [r.answer.answer for r, _ in by_sentence] == direct
    assert all("".join(deltas) == r.answer.answer for r, deltas in by_clause + by_sentence)
    # the stream ends at 头孢类 (it begins no value): the head's 。 comes with the rest of the answer
    assert by_clause[0][1][:2] == ["根据知识库，急性中耳炎的药物治疗：阿莫西林", "，头孢菌素"]
    assert by_clause[0][1][2].startswith("。根据知识库，急性中耳炎的药物治疗：镇痛药。")
    assert by_sentence[0][1][0].startswith("根据知识库，急性中耳炎的药物治疗：阿莫西林，头孢菌素。")
    assert by_clause[2][1][0] == "根据知识库，急性中耳炎的药物治疗：阿莫西林"  # before the predicate-as-value came
    # the verified head, then what no kept sentence writes, listed from the knowledge
    assert direct[2].startswith("根据知识库，急性中耳炎的药物治疗：阿莫西林。根据知识库，急性中耳炎的药物治疗：头孢菌素、镇痛药。"
                                "根据知识库，急性中耳炎的相关药物：阿莫西林胶囊。\n")
