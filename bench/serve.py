"""Bounded load on `ktune serve` over loopback: requests/s, p50/p95 latency, errors and answer identity.

Starts a real server on a free loopback port, then for answers off (stages 1-2) and on (the full answer):
one client sending sequentially (the reference answers and the baseline throughput), then 1, 4, 16, 64
concurrent clients. Every concurrent answer is compared with the sequential one for the same question
(query, linked entity, knowledge, answer text). With answers on it also streams single-client requests and
reports the time to the first answer text (`/v1/ask` with `stream: true`, first `delta` event).

`--workers 1,2` runs the whole bench once per worker-process count (`ktune serve --workers N`, one run, one
table) so N processes can be compared with 1 on this machine; `--threads` is then the torch threads of each
process (default: the physical cores divided among the processes).

`--first-text N` compares ways an answer streams (`--first-text-modes`, default `ktune serve --stream-by
sentence` and `clause`; `clause-nostop` serves without stopping an answer at its first dropped sentence): one
server each, the same N questions streamed by a single client one after another; it prints the time to the
lookup, to the first answer text and to the whole answer, how often the first text came before the answer was
complete, how many final answers equal the first mode's and whether the deltas add up to them.

    python bench/serve.py --run runs/demo --questions tests/fixtures/human_questions.jsonl
    python bench/serve.py --run runs/demo --answers none --first-text 6    # only the streaming comparison
    python bench/serve.py --tiny bench/out/serve-tiny      # a tiny run trained here in seconds (as in the tests)
    python bench/serve.py --tiny bench/out/serve-tiny --workers 1,2 --answers off --clients 16,64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from ktune.paths import DEFAULT_KB_HELP

FIELDS = ("query", "linked_entity", "knowledge", "answer", "refused")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, workers: int = 1, *extra: str) -> tuple[subprocess.Popen, str, list[str]]:
    port = free_port()
    threads = args.threads or max(1, physical_cores() // workers)
    cmd = [sys.executable, "-m", "ktune", "-q", "serve", "--run", args.run, "--port", str(port),
           "--threads", str(threads), "--max-queue", "4096", "--request-timeout", "600", "--workers", str(workers),
           *extra]
    if args.kb:
        cmd += ["--kb", args.kb]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    if args.quantize:
        cmd += ["--quantize", args.quantize]
    proc = subprocess.Popen(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    pids: set[int] = set()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("server exited:\n" + "".join(lines))
        try:
            r = httpx.get(base + "/health", timeout=1)
            if r.status_code == 200:
                pids.add(r.json()["pid"])
                if len(pids) >= workers:  # every worker process answers (each loaded its model)
                    return proc, base, lines
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit("server did not start")


def tiny_run(root: Path) -> tuple[str, str, str]:
    """(run, KB, questions): the tests' tiny run (tests/fixtures/data_kb.jsonl, 200 steps), built once under root."""
    from ktune.data import DataConfig, build_dataset
    from ktune.kb import KnowledgeBase
    from ktune.train.tiny import build_tiny_run

    kb_path, data, run = root / "kb.sqlite", root / "data", root / "run"
    if not (run / "adapter").exists():
        root.mkdir(parents=True, exist_ok=True)
        with KnowledgeBase.open(kb_path, create=True) as kb:
            if not kb.stats().get("entities"):
                kb.import_file(Path(__file__).parents[1] / "tests" / "fixtures" / "data_kb.jsonl")
            build_dataset(kb, data, DataConfig.scaled(200, fewshot_sizes=(50,), progress=False))
        build_tiny_run(data, run, steps=200, answer_fraction=0.2)
    return str(run), str(kb_path), str(data / "test_seen.jsonl")


def read_questions(path: str, n: int) -> list[str]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["question"] for r in rows[:n]]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def one(client: httpx.AsyncClient, base: str, question: str, with_answer: bool):
    t0 = time.perf_counter()
    try:
        r = await client.post(base + "/v1/ask", json={"question": question, "with_answer": with_answer})
        ok = r.status_code == 200
        body = r.json() if ok else None
    except httpx.HTTPError:
        ok, body = False, None
    return time.perf_counter() - t0, ok, body


async def level(base, questions, with_answer, clients, total, reference=None):
    """`clients` concurrent clients sending `total` requests in all (question i % len)."""
    todo = list(range(total))
    latencies, errors, mismatches, bodies = [], 0, 0, {}

    async def client_loop(client):
        nonlocal errors, mismatches
        while todo:
            i = todo.pop(0)
            q = questions[i % len(questions)]
            dt, ok, body = await one(client, base, q, with_answer)
            latencies.append(dt)
            if not ok:
                errors += 1
                continue
            key = {k: body[k] for k in FIELDS}
            bodies[q] = key
            if reference is not None and reference.get(q) != key:
                mismatches += 1

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=900, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {"clients": clients, "requests": total, "rps": total / wall, "p50": pct(latencies, 0.5),
            "p95": pct(latencies, 0.95), "errors": errors, "mismatches": mismatches, "wall": wall}, bodies


async def first_text(base, questions, n) -> list[float]:
    """Single client, streamed: seconds to the first answer text (the first `delta` event)."""
    out = []
    async with httpx.AsyncClient(timeout=900) as client:
        for q in questions[:n]:
            t0 = time.perf_counter()
            async with client.stream("POST", base + "/v1/ask", json={"question": q, "stream": True}) as r:
                async for line in r.aiter_lines():
                    if line.startswith("event: delta"):
                        out.append(time.perf_counter() - t0)
                        break
    return out


def physical_cores() -> int:
    from ktune.threads import physical_cores as cores

    return cores()


async def streamed(client, base, question) -> dict:
    """One streamed /v1/ask: seconds to the lookup, the first delta and the done event; deltas and final answer."""
    t0 = time.perf_counter()
    out = {"question": question, "lookup": None, "first": None, "deltas": [], "answer": None, "error": None}
    event = None
    async with client.stream("POST", base + "/v1/ask", json={"question": question, "stream": True}) as r:
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
                now = time.perf_counter() - t0
                if event == "lookup":
                    out["lookup"] = now
                elif event == "delta":
                    out["first"] = out["first"] if out["first"] is not None else now
                    out["deltas"].append(data["text"])
                elif event == "done":
                    out.update(done=now, answer=data["answer"], refused=data["refused"])
                elif event == "error":
                    out["error"] = data
    return out


async def first_text_mode(base, questions) -> list[dict]:
    async with httpx.AsyncClient(timeout=900) as client:
        await streamed(client, base, questions[0])  # warm-up: stage-1 head, grammar, alias index
        return [await streamed(client, base, q) for q in questions]


def first_text_compare(args) -> list[dict]:
    """The streaming modes of `--first-text-modes` (`ktune serve --stream-by sentence|clause`; a `-nostop` mode
    serves with `stop_at_failed_sentence` off, the answer policy before stage 3 stopped at a dropped
    sentence): one server each, the same questions streamed one after another."""
    questions = read_questions(args.questions, args.first_text)
    runs = {}
    for mode in args.first_text_modes:
        by, _, policy = mode.partition("-")
        extra = ["--stream-by", by]
        if policy == "nostop":
            config = Path(tempfile.mkdtemp()) / "pipeline.json"
            config.write_text(json.dumps({"stop_at_failed_sentence": False}), encoding="utf-8")
            extra += ["--config", str(config)]
        proc, base, _ = start_server(args, 1, *extra)
        try:
            runs[mode] = asyncio.run(first_text_mode(base, questions))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        print(f"first text, {mode}: done", flush=True)
    first = [a["answer"] for a in runs[args.first_text_modes[0]]]
    rows = []
    for mode, got in runs.items():
        answered = [g for g in got if g["error"] is None and not g["refused"]]
        firsts = [g["first"] for g in answered]
        early = sum(1 for g in answered if g["first"] < g["done"] - 0.05)  # text before the final event
        rows.append({"mode": mode, "answered": len(answered), "requests": len(got),
                     "errors": sum(1 for g in got if g["error"] is not None),
                     "lookup_p50": pct([g["lookup"] for g in answered], 0.5),
                     "first_p50": pct(firsts, 0.5), "first_p95": pct(firsts, 0.95), "first_max": max(firsts, default=float("nan")),
                     "done_p50": pct([g["done"] for g in answered], 0.5), "early": early,
                     "adds_up": all("".join(g["deltas"]) == g["answer"] for g in got if g["error"] is None),
                     "same_final_answers": sum(a == b["answer"] for a, b in zip(first, got, strict=True)),
                     "per_question": [{k: g[k] for k in ("question", "lookup", "first", "done")} for g in got]})
    return rows


def first_text_table(rows) -> str:
    out = ["| stream by | answered | lookup p50 s | first text p50 s | p95 s | max s | whole answer p50 s | "
           "first text before the end | deltas add up | final answers as the first mode's |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['mode']} | {r['answered']}/{r['requests']} | {r['lookup_p50']:.2f} | {r['first_p50']:.2f} | "
                   f"{r['first_p95']:.2f} | {r['first_max']:.2f} | {r['done_p50']:.2f} | {r['early']} | "
                   f"{'yes' if r['adds_up'] else 'NO'} | {r['same_final_answers']}/{r['requests']} |")
    return "\n".join(out)


async def bench(args, base) -> list[dict]:
    questions = read_questions(args.questions, args.n_questions)
    await level(base, questions[:2], False, 1, 2)  # warm-up: the stage-1 head and grammar are built on first use
    rows = []
    for with_answer in [m == "on" for m in args.answers.split(",")]:
        seq, reference = await level(base, questions, with_answer, 1, len(questions))
        rows.append({"answers": with_answer, "mode": "sequential", **seq})
        print(f"answers {'on ' if with_answer else 'off'}: sequential {seq['rps']:.2f} req/s", flush=True)
        for c in args.clients:
            total = max(c, args.total)
            row, _ = await level(base, questions, with_answer, c, total, reference)
            rows.append({"answers": with_answer, "mode": f"{c} clients", **row, "vs_sequential": row["rps"] / seq["rps"]})
            print(f"  {c:>3} clients: {row['rps']:.2f} req/s, errors {row['errors']}, mismatches {row['mismatches']}",
                  flush=True)
        if with_answer and args.ttft:
            ttft = await first_text(base, questions, args.ttft)
            rows.append({"answers": True, "mode": "stream, 1 client", "first_text_p50": pct(ttft, 0.5),
                         "first_text_p95": pct(ttft, 0.95), "requests": len(ttft)})
    return rows


def table(rows) -> str:
    out = ["| workers | answers | load | requests | req/s | x sequential | x 1 worker | p50 s | p95 s | errors | different answers |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    one = {(r["answers"], r["mode"]): r["rps"] for r in rows if r["workers"] == 1 and "rps" in r}
    for r in rows:
        if "first_text_p50" in r:
            out.append(f"| {r['workers']} | on | {r['mode']} | {r['requests']} | first answer text p50 "
                       f"{r['first_text_p50']:.2f} s, p95 {r['first_text_p95']:.2f} s | | | | | | |")
            continue
        ratio = f"{r['vs_sequential']:.2f}" if "vs_sequential" in r else "1.00"
        base = one.get((r["answers"], r["mode"]))
        vs_one = f"{r['rps'] / base:.2f}" if base else ""
        out.append(f"| {r['workers']} | {'on' if r['answers'] else 'off'} | {r['mode']} | {r['requests']} | "
                   f"{r['rps']:.2f} | {ratio} | {vs_one} | {r['p50']:.2f} | {r['p95']:.2f} | {r['errors']} | "
                   f"{r['mismatches']} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="run folder (or --tiny)")
    ap.add_argument("--tiny", metavar="DIR", help="build (once) and serve the tests' tiny run under DIR")
    ap.add_argument("--kb", help=f"KB path (default: {DEFAULT_KB_HELP})")
    ap.add_argument("--questions", default="tests/fixtures/human_questions.jsonl", help="JSONL with a question field")
    ap.add_argument("--n-questions", type=int, default=16, help="distinct questions (the sequential reference)")
    ap.add_argument("--clients", default="1,4,16,64", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--total", type=int, default=16, help="requests per load level (at least one per client)")
    ap.add_argument("--answers", default="off,on", help="off (stages 1-2 only), on (full answers), or both")
    ap.add_argument("--ttft", type=int, default=8, help="streamed single-client requests for the first-text latency")
    ap.add_argument("--threads", type=int, help="torch threads of each server process (default: the physical cores "
                    "divided among the worker processes)")
    ap.add_argument("--workers", default="1", type=lambda s: [int(x) for x in s.split(",")],
                    help="worker-process counts to compare, e.g. 1,2 (`ktune serve --workers N`, one server each)")
    ap.add_argument("--first-text", type=int, default=0, metavar="N",
                    help="also compare streaming modes on N streamed questions (one more server per mode)")
    ap.add_argument("--first-text-modes", default="sentence,clause", type=lambda s: s.split(","),
                    help="modes for --first-text: sentence, clause, and the same with -nostop (stage 3 not stopped "
                    "at the first dropped sentence), e.g. clause-nostop,clause")
    ap.add_argument("--batch-size", type=int, help="the worker's largest batch (default: the pipeline's, 16)")
    ap.add_argument("--quantize", choices=("none", "int8", "auto"),
                    help="the servers' --quantize (default: ktune serve's, none)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    if args.tiny:
        args.run, args.kb, args.questions = tiny_run(Path(args.tiny))
    elif not args.run:
        ap.error("give --run RUN or --tiny DIR")
    rows, compared, health = [], [], {}
    if args.answers not in ("", "none"):
        for workers in args.workers:
            print(f"--- {workers} worker process(es)", flush=True)
            proc, base, lines = start_server(args, workers)
            try:
                rows += [{"workers": workers, **row} for row in asyncio.run(bench(args, base))]
                health = httpx.get(base + "/health", timeout=30).json()
            finally:
                proc.terminate()
                proc.wait(timeout=60)
        print(f"\nrun {args.run}, KB {health['kb_version']}, threads per process {args.threads or 'cores / workers'}")
        print(table(rows))
    if args.first_text:
        compared = first_text_compare(args)
        load = os.getloadavg()
        print(f"\nstreamed answers, 1 client, {args.first_text} questions, run {args.run}, threads {args.threads}, "
              f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
        print(first_text_table(compared))
    if args.json:
        Path(args.json).write_text(json.dumps({"load": rows, "first_text": compared}, indent=2, ensure_ascii=False),
                                   encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
