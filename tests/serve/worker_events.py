"""Reading an inference-worker job's events in tests: the streamed deltas, then the result or the error."""


async def collect(job):
    """(result, deltas) once the job is done; its error raised."""
    deltas = []
    while True:
        kind, payload = await job.events.get()
        if kind == "delta":
            deltas.append(payload)
        elif kind == "done":
            return payload, deltas
        elif kind == "error":
            raise payload
