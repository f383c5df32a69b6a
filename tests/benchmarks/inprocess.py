"""CPU time per request of the client's routes, in-process through Flask's test client, next to a
bare Flask "hello" in the same process (pytest does not collect it).

    .venv/bin/python tests/benchmarks/inprocess.py [--count 2000]

CPU time (time.process_time) hardly moves with the machine's load, unlike wall time, so this is
the figure to compare before and after a change on a busy machine. It leaves out gunicorn and the
HTTP parsing (run.py has those). CSRF is on; shared POSTs each carry a new nonce (a new row).
"""
from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import all_no  # noqa: E402
from helpers_server import hidden_value  # noqa: E402

from screening import create_app  # noqa: E402

SLUG = "decontracting-back-massage"


def per_request_ms(fn, count: int, rounds: int = 3) -> float:
    """Median over `rounds` of the CPU milliseconds per call of fn(i)."""
    out = []
    for r in range(rounds):
        t0 = time.process_time()
        for i in range(count):
            fn(r * count + i)
        out.append((time.process_time() - t0) / count * 1e3)
    return statistics.median(out)


def calls_per_request(fn, count: int = 50) -> int:
    """Python function calls per call of fn(i), counted by cProfile: unlike time, the same on a busy
    machine as on a quiet one, so a change that saves work shows even when the CPU figures jitter."""
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(count):
        fn(2 * 10**9 + i)
    profiler.disable()
    return round(sum(row[1] for row in pstats.Stats(profiler).stats.values()) / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--only", help="run only the routes whose name contains this")
    args = parser.parse_args()
    logging.disable(logging.INFO)      # one "shared screening stored" line per POST would swamp the table
    hello = Flask("hello")
    hello.add_url_rule("/", "hello", lambda: "hello")
    hello_client = hello.test_client()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATABASE": str(Path(tmp) / "p.db"), "SECRET_KEY": "p" * 40,
                          "SHARE_LIMIT_PER_HOUR": 100_000})   # all from one address: count, never refuse
        client = app.test_client()
        api_client = app.test_client(use_cookies=False)    # as run.py's wrk: an API client sends no cookie
        token = hidden_value(client.get(f"/screening/{SLUG}").get_data(as_text=True), "csrf_token")
        evaluate_body = {"service": SLUG, "answers": all_no(tension_areas=["thoracic"])}

        def post(i, share):
            data = all_no(csrf_token=token, share="no")
            if share:
                data |= {"share": "yes", "name": f"Ana {i}", "contact": "ana@example.org", "consent": "yes",
                         "nonce": f"inprocess-nonce-{i:012d}"}
            response = client.post(f"/screening/{SLUG}", data=data)
            assert response.status_code == 200, response.status_code
            assert share == (b"data-reference" in response.data)

        routes = {
            "GET / bare Flask": lambda i: hello_client.get("/"),
            "POST /api/v1/evaluate": lambda i: api_client.post("/api/v1/evaluate", json=evaluate_body),
            f"GET /screening/{SLUG}": lambda i: client.get(f"/screening/{SLUG}"),
            f"POST /screening/{SLUG} check only": lambda i: post(i, False),
            f"POST /screening/{SLUG} shared": lambda i: post(i, True),
        }
        results = {}
        for name, fn in routes.items():
            if args.only and args.only not in name and name != "GET / bare Flask":
                continue
            for i in range(50):
                fn(10**9 + i)       # warm-up
            results[name] = per_request_ms(fn, args.count), calls_per_request(fn)
        base = results["GET / bare Flask"][0]
        for name, (ms, calls) in results.items():
            print(f"{name:<58} {ms:6.3f} ms CPU  {base / ms:5.2f}× hello  {calls:6d} Python calls")


if __name__ == "__main__":
    main()
