"""Profile the client's POSTs in-process with pyinstrument (pytest does not collect it).

    .venv/bin/python tests/benchmarks/profile_post.py [check|shared|evaluate] [--count 2000]

CSRF is on, as in production: each POST carries the session cookie and token of a real GET.
Prints pyinstrument's call tree (time per function, most expensive first).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from pyinstrument import Profiler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import all_no  # noqa: E402
from helpers_server import hidden_value  # noqa: E402

from screening import create_app  # noqa: E402

SLUG = "decontracting-back-massage"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("route", choices=["check", "shared", "evaluate"], nargs="?", default="check")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--all", action="store_true", help="show library frames too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATABASE": str(Path(tmp) / "p.db"), "SECRET_KEY": "p" * 40,
                          "SHARE_LIMIT_PER_HOUR": 100_000})   # all from one address: count, never refuse
        client = app.test_client()
        token = hidden_value(client.get(f"/screening/{SLUG}").get_data(as_text=True), "csrf_token")

        def once(i):
            if args.route == "evaluate":
                return client.post("/api/v1/evaluate", json={"service": SLUG, "answers": all_no(
                    tension_areas=["thoracic"])})
            data = all_no(csrf_token=token, share="no")
            if args.route == "shared":
                data |= {"share": "yes", "name": f"Ana {i}", "contact": "ana@example.org", "consent": "yes",
                         "nonce": f"profile-nonce-{i:012d}"}
            return client.post(f"/screening/{SLUG}", data=data)

        for i in range(50):     # warm-up
            assert once(-i - 1).status_code == 200
        profiler = Profiler(interval=0.0002)
        t0 = time.perf_counter()
        with profiler:
            for i in range(args.count):
                once(i)
        seconds = time.perf_counter() - t0
        print(f"{args.route}: {seconds / args.count * 1e3:.2f} ms per POST (under the profiler)")
        print(profiler.output_text(unicode=True, color=False, show_all="--all" in sys.argv))


if __name__ == "__main__":
    main()
