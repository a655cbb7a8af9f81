"""One inference worker per model: a thread that owns the `KnowledgeTunedQA` and micro-batches requests.

Why one thread: the model is one mutable object (its KV caches, and until the pipeline stops swapping it, its
LM head during stage 1), so two requests must never run on it at once; and on a CPU one batch of 16 costs
little more than one question, so requests that arrive together are answered together.

The worker takes the first queued job, then collects more for at most `max_wait` seconds or until
`max_batch`, and runs stages 1-2 for all of them (`ask_batch(with_answer=False)`). Lookup-only jobs get their
result at once; the others are answered in one generation (`KnowledgeTunedQA.complete`), each with its own
token cap, their text streamed as the claim check settles it (clause by clause, see ktune.serve.stream). The event loop only enqueues and awaits: it never runs the
model, so /health answers at once under any load.

A job stops counting when its client disconnects (`cancel()`), when its time budget runs out, or when the
server shuts down; such jobs are dropped before their batch starts, and a generation whose jobs have all
stopped is ended at the next token (`GenerationStopped`).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, replace

from ktune.errors import KtuneError
from ktune.pipeline.qa import Answer, validate_question
from ktune.serve.stream import AnswerStreamer, GenerationStopped, RowStream

log = logging.getLogger("ktune.serve.worker")


# How a streamed answer is sent: each verified clause of the sentence being written (a listing value by value),
# or only complete sentences. Both send only checked text, and the final answer is the same.
STREAM_BY = ("clause", "sentence")


class ServeError(KtuneError):
    """A request the worker could not serve; `status` and `code` become the HTTP error."""

    status = 500
    code = "internal_error"
    kind = "server_error"


class QueueFull(ServeError):
    status, code, kind = 503, "queue_full", "server_error"


class ShuttingDown(ServeError):
    status, code, kind = 503, "shutting_down", "server_error"


class Timeout(ServeError):
    status, code, kind = 504, "timeout", "server_error"


class Cancelled(ServeError):
    status, code, kind = 499, "cancelled", "server_error"


@dataclass(frozen=True)
class Result:
    """A finished job: the pipeline's Answer plus what an API reports about the generation."""

    answer: Answer
    finish_reason: str  # "stop" or "length" (the answer reached its token cap)
    prompt_tokens: int  # the query prompt, plus the answer prompt when an answer was generated
    completion_tokens: int  # answer tokens generated (0 for refusals and lookups)
    queued_s: float  # time from submit to the start of its batch
    batch_size: int  # how many jobs shared its batch


class Job:
    """One question from one client. Events go to `events` (an asyncio queue of the submitting loop):
    ("lookup", Answer without text), ("delta", text), then ("done", Result) or ("error", ServeError)."""

    def __init__(self, question: str, with_answer: bool, max_answer_tokens: int | None, timeout_s: float,
                 loop: asyncio.AbstractEventLoop, stream: bool):
        self.question = question
        self.with_answer = with_answer
        self.max_answer_tokens = max_answer_tokens
        self.stream = stream
        self.submitted = time.monotonic()
        self.deadline = self.submitted + timeout_s
        self.events: asyncio.Queue = asyncio.Queue()
        self._loop = loop
        self._cancelled = threading.Event()
        self.sent = ""  # answer text streamed so far (worker thread only)

    def cancel(self) -> None:
        """The client is gone: drop the job if still queued, stop its share of the batch otherwise."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def stop_reason(self, shutting_down: bool) -> ServeError | None:
        if self.cancelled:
            return Cancelled("the client disconnected")
        if time.monotonic() > self.deadline:
            return Timeout("the request ran out of its time budget before it was answered; retry, or ask with "
                           "a larger budget (--request-timeout)")
        if shutting_down:
            return ShuttingDown("the server is shutting down; retry on another instance")
        return None

    def emit(self, kind: str, payload) -> None:
        try:
            self._loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass


class InferenceWorker:
    """Owns `qa`; `submit()` from the event loop, results arrive on the job's event queue."""

    def __init__(self, qa, *, max_batch: int | None = None, max_wait_s: float = 0.005, max_queue: int = 256,
                 request_timeout_s: float = 120.0, stream_by: str = "clause"):
        if stream_by not in STREAM_BY:
            raise ValueError(f"stream_by {stream_by!r} is not one of {', '.join(STREAM_BY)}")
        self.qa = qa
        self.stream_by = stream_by
        self.max_batch = max_batch or qa.config.batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.request_timeout_s = request_timeout_s
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._closing = threading.Event()
        self._abort_at: float | None = None  # monotonic time after which the running batch is ended
        self._in_flight = 0
        self._thread = threading.Thread(target=self._loop, name="ktune-inference", daemon=True)
        self.batches = 0  # batches run (stats for /health)
        self.served = 0  # jobs answered

    # --- event-loop side ----------------------------------------------------------------------
    def start(self) -> InferenceWorker:
        self._thread.start()
        return self

    @property
    def started(self) -> bool:
        return self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def submit(self, question, *, with_answer: bool = True, max_answer_tokens: int | None = None,
               timeout_s: float | None = None, stream: bool = False) -> Job:
        """Validate and enqueue (InputError for a bad question, QueueFull / ShuttingDown when not accepted).
        `max_answer_tokens` lowers the pipeline's max_answer_tokens for this answer (it cannot raise it)."""
        text = validate_question(question, self.qa.config.max_question_chars)
        if self.closing:
            raise ShuttingDown("the server is shutting down; retry on another instance")
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} questions are waiting (the limit is {self.max_queue}); retry shortly")
        budget = min(timeout_s or self.request_timeout_s, self.request_timeout_s)
        if max_answer_tokens is not None:  # a client may lower the pipeline's cap, never raise it
            max_answer_tokens = min(max_answer_tokens, self.qa.config.max_answer_tokens)
        job = Job(text, with_answer, max_answer_tokens, budget, asyncio.get_running_loop(), stream)
        self._queue.put(job)
        return job

    def shutdown(self, grace_s: float = 5.0) -> None:
        """Stop taking jobs, fail the queued ones now, end the running batch after `grace_s`."""
        if self.closing:
            return
        log.info("shutting down: %d queued jobs cancelled, the running batch (%d jobs) gets %.0f s",
                 self._queue.qsize(), self._in_flight, grace_s)
        self._abort_at = time.monotonic() + grace_s
        self._closing.set()
        self._fail_queued(None)  # now, not after the running batch
        self._queue.put(None)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # --- worker thread ------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None or self.closing:
                self._fail_queued(first)
                return
            batch = [first]
            until = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get(timeout=max(until - time.monotonic(), 0))
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # seen again at the top of the loop, after this batch
                    break
                batch.append(job)
            self._run(batch)

    def _fail_queued(self, first: Job | None) -> None:
        pending = [first] if first is not None else []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                pending.append(job)
        for job in pending:
            job.emit("error", ShuttingDown("the server is shutting down; retry on another instance"))

    def _aborting(self) -> bool:
        return self._abort_at is not None and time.monotonic() > self._abort_at

    def _run(self, batch: list[Job]) -> None:
        live = []
        for job in batch:
            reason = job.stop_reason(self.closing)
            if reason is not None:
                job.emit("error", reason)
            else:
                live.append(job)
        if not live:
            return
        started = time.monotonic()
        self._in_flight = len(live)
        try:
            self._answer(live, started)
        except GenerationStopped:
            for job in live:
                job.emit("error", job.stop_reason(True) or ShuttingDown("the server is shutting down"))
        except Exception as exc:  # one bad batch must not take the server down; its clients get a 500
            log.exception("inference batch of %d failed", len(live))
            for job in live:
                job.emit("error", ServeError(f"inference failed: {type(exc).__name__}: {exc}"))
        finally:
            self._in_flight = 0
            self.batches += 1

    def _answer(self, jobs: list[Job], started: float) -> None:
        # one KB snapshot for the whole batch, lookup to answer: its answers carry one KB version, and a
        # `ktune kb import` committing meanwhile is seen by the next batch (its indexes rebuilt, see KnowledgeBase)
        with self.qa.snapshot():
            self._answer_in_snapshot(jobs, started)

    def _answer_in_snapshot(self, jobs: list[Job], started: float) -> None:
        qa = self.qa
        looked = qa.ask_batch([j.question for j in jobs], with_answer=False)
        answering = []
        for job, answer in zip(jobs, looked, strict=True):
            if job.with_answer:
                job.emit("lookup", answer)
                answering.append((job, answer))
            else:
                result = self._result(job, answer, started, len(jobs), None)
                self.served += 1  # counted before the client can see it (a reader must never see it missing)
                job.emit("done", result)
        answering = [(j, a) for j, a in answering if not self._drop(j)]
        if not answering:
            return
        rows: dict[int, RowStream] = {}

        def streamer_factory(indices, questions, knowledges):
            streams = []
            for i, question, knowledge in zip(indices, questions, knowledges, strict=True):
                job = answering[i][0]
                cap = job.max_answer_tokens or qa.config.max_answer_tokens
                answer = qa.answer_stage.stream(question, knowledge, clauses=self.stream_by == "clause") if job.stream else None
                rows[i] = RowStream(answer, cap, self._sink(job) if job.stream else None)
                streams.append(rows[i])
            return AnswerStreamer(qa.decoder.tokenizer, qa.decoder.end_ids, qa.decoder.pad_id, streams,
                                  should_stop=lambda: self._aborting() or all(j.stop_reason(False) for j, _ in answering))

        # a backend that cannot stream (a remote server's completion comes back whole): a streamed request gets
        # the checked answer as one delta below
        factory = streamer_factory if qa.backend.streams_answers else None
        done = qa.complete([a for _, a in answering], [j.max_answer_tokens for j, _ in answering], factory)
        for i, ((job, _), answer) in enumerate(zip(answering, done, strict=True)):
            reason = job.stop_reason(False)
            if reason is not None:
                job.emit("error", reason)
                continue
            if job.stream:
                rest = answer.answer[len(job.sent):] if answer.answer.startswith(job.sent) else None
                if rest is None:  # cannot happen (AnswerStream settles only what stays); the final event has the truth
                    log.warning("streamed text is not a prefix of the final answer for %r", job.question)
                elif rest:
                    job.emit("delta", rest)
            result = self._result(job, answer, started, len(jobs), rows.get(i))
            self.served += 1
            job.emit("done", result)

    def _drop(self, job: Job) -> bool:
        reason = job.stop_reason(False)
        if reason is not None:
            job.emit("error", reason)
        return reason is not None

    @staticmethod
    def _sink(job: Job):
        def send(text: str) -> None:
            job.sent += text
            job.emit("delta", text)
        return send

    def _result(self, job: Job, answer: Answer, started: float, batch_size: int, row: RowStream | None) -> Result:
        fmt, tok = self.qa.fmt, self.qa.decoder.tokenizer
        # no tokenizer here with a remote backend: its server counts the tokens, usage reports 0
        prompt_tokens = len(fmt.encode_prompt(tok, fmt.query_prompt(job.question))) if tok is not None else 0
        if row is not None:
            prompt_tokens += len(fmt.encode_prompt(tok, fmt.answer_prompt(job.question, answer.knowledge)))
        return Result(
            answer=replace(answer, question=job.question),
            finish_reason="length" if row is not None and row.capped else "stop",
            prompt_tokens=prompt_tokens,
            completion_tokens=len(row.tokens) if row is not None else 0,
            queued_s=started - job.submitted,
            batch_size=batch_size,
        )
