"""`rationalyst serve` under concurrent clients (issue 13): requests gathered into shared engine calls
against one request at a time.

Starts the server in this process (uvicorn on a free loopback port) with the default model, and
drives it with the openai client: ``--requests`` chat requests of ``--max-tokens`` tokens, ``--clients``
at once, first with ``max_batch=1`` (one request per engine call, as before batching; on hf one request
decoding at a time) and then batched (on hf: requests join the running decode loop as they arrive);
prints requests/s and the median and 90th-percentile latency of each, and ``ratio: X``.
With ``--guided`` the requests go to ``rationalyst-guided`` (the implicit step search, 2 steps of 12
tokens, rationales of 8) instead: one lockstep search per gathered batch against one request at a time.

    OMP_NUM_THREADS=2 python benchmarks/serve_throughput.py [--requests 48] [--clients 8] [--max-tokens 24] [--guided]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import uvicorn
from openai import OpenAI

from rationalyst.lm import load_model
from rationalyst.lm.builtin import DEFAULT_LM
from rationalyst.serve.app import create_app
from rationalyst.serve.engine import ServerLimits
from rationalyst.search.chat import GuidedSearch
from rationalyst.search.pool import ModelPool
from rationalyst.search.solve import SolveConfig

QUESTIONS = [
    "What is 12 plus 30?", "Name a primary colour.", "How many legs does a spider have?", "What is the capital of France?",
    "Give a word that rhymes with cat.", "What is 7 times 8?", "Which planet is closest to the sun?", "Say hello in Spanish.",
]


def serve(model, limits: ServerLimits, guided: bool) -> tuple[uvicorn.Server, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    search = None
    if guided:
        pool = ModelPool()
        pool.add(model)
        config = SolveConfig(agent=model.name, method="implicit",
                             search={"max_steps": 2, "max_step_tokens": 12, "max_rationale_tokens": 8})
        search = GuidedSearch(config, pool)
    app = create_app({model.name: model}, guided=search, limits=limits)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, port


def drive(port: int, requests: int, clients: int, max_tokens: int, model: str) -> dict:
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=600)

    def one(i: int) -> float:
        start = time.perf_counter()
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            max_tokens=max_tokens, temperature=0.7, seed=i,
        )
        return time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = sorted(pool.map(one, range(requests)))
    seconds = time.perf_counter() - start
    return {"per_s": requests / seconds, "p50": statistics.median(latencies), "p90": latencies[int(0.9 * len(latencies)) - 1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_LM)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--guided", action="store_true", help="drive rationalyst-guided instead of the plain model")
    args = parser.parse_args()
    model = load_model(args.model, batch_size=max(8, args.clients))
    name = "rationalyst-guided" if args.guided else model.name
    results = {}
    for label, limits in [("one at a time", ServerLimits(max_batch=1)), ("batched", ServerLimits())]:
        server, port = serve(model, limits, args.guided)
        drive(port, args.clients, args.clients, args.max_tokens, name)  # warm up
        r = results[label] = drive(port, args.requests, args.clients, args.max_tokens, name)
        server.should_exit = True
        print(f"{label:>13}: {r['per_s']:.2f} requests/s, latency p50 {r['p50']:.2f} s, p90 {r['p90']:.2f} s", flush=True)
    print(f"ratio: {results['batched']['per_s'] / results['one at a time']['per_s']:.2f}")


if __name__ == "__main__":
    main()
