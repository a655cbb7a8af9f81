"""Which decode steps may run int8 (ktune.pipeline.quantize): the answer stage's, inside `int8_steps()`.

Stage 1 decides what is looked up, so it keeps fp32 arithmetic (int8 decode steps cost about a point of real_dev
retrieval); stage 3's values are copied from the knowledge and claim-checked, and its many decode steps are
where a single answer's time goes. A context variable, so concurrent requests on other threads are not affected.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_INT8_STEPS: ContextVar[bool] = ContextVar("ktune_int8_steps", default=False)


@contextmanager
def int8_steps() -> Iterator[None]:
    """Decode steps inside use the int8 weights of a quantized model (no effect on one that is not)."""
    token = _INT8_STEPS.set(True)
    try:
        yield
    finally:
        _INT8_STEPS.reset(token)


def int8_steps_on() -> bool:
    return _INT8_STEPS.get()
