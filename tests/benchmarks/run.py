"""Every benchmark of issue 8 in one command, printed as one table (pytest does not collect it).

    .venv/bin/python tests/benchmarks/run.py --quick     # about 2 minutes: short runs, 10^4 rows
    .venv/bin/python tests/benchmarks/run.py             # the README's table (about 10 minutes)
    .venv/bin/python tests/benchmarks/run.py --growth    # also 10^4/10^5/10^6 rows and 1/4/8 workers

What it measures, each figure next to a baseline taken in the same run (the machine is shared,
so only ratios travel):
- the client's routes under gunicorn (the same command line for the app and for a bare Flask
  "hello" app), driven by wrk over loopback: `POST /api/v1/evaluate`, `POST /screening/<slug>`
  checking only, and the same POST shared, each with a nonce never used before, so each one is a
  new row; the rows are counted afterwards. CSRF stays on: every POST carries a session cookie
  and a CSRF token fetched by a real GET of the form. Throughput, p50, p99 and errors;
- the disk's ceiling of durable commits (one tiny row per BEGIN IMMEDIATE / COMMIT) with the
  app's own connection (pysqlite3, WAL, synchronous=FULL), and store_submission alone;
- the engine alone (µs per evaluation over the full rule set), loading the rules, proving them
  (checker.check) and a whole create_app() as a worker pays it at boot;
- the staff side at the chosen number of rows, through bench_staff.py (queries, requests, export).

On both engines side by side (--engines, default sqlite,postgresql): PostgreSQL is a throwaway
cluster of tests/postgres_server.py (fsync on, shared_buffers 1 GB; or --pg-url, a server of your
own), and the same gunicorn command, app and wrk scripts run against it: check-only and shared
POSTs, then two app servers on the one database (1 and --workers workers each, half the connections
each, at once) -- contention on one 2-core box, not scale-out --, the durable commits, and the
staff queries and requests at --rows (filled by COPY, VACUUM ANALYZE), p50 and p99 wall time.

Everything is bounded: wrk runs for --duration seconds, servers are stopped in a `finally`, and
databases live in a temporary folder (or --cache, to keep a filled million-row file between runs).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import sqlite_utils

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]     # bench_staff, and tests/helpers_server

import bench_staff  # noqa: E402
from helpers_server import READY, Browser, app_folder, form_fields, stop  # noqa: E402

from screening.store import db as dbmod  # noqa: E402
from screening.store.sql import is_postgres  # noqa: E402

SLUG = "decontracting-back-massage"
FORM = f"/screening/{SLUG}"
ANSWERS = {"intense_pain": "no", "persistent_pain": "no", "recent_injury": "no", "radiating_pain": "no",
           "tingling_or_weakness": "no", "spinal_condition": "no", "fever": "no", "skin_problem_in_area": "no",
           "ongoing_diagnosis": "no", "pregnant": "no", "tension_areas": "thoracic",
           "preferred_intensity": "medium", "notes": ""}
HELLO_APP = '''
from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello():
    return "hello"
'''
GUNICORN_CONF = f'''
def post_worker_init(worker):
    worker.log.info("{READY} %s", worker.pid)
'''
# what every wrk script ends with: one machine-readable line with the figures
WRK_DONE = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.connect, e.read, e.write, e.status, e.timeout))
end
'''
GOALS = {"evaluate": 0.75, "check": 0.5, "shared": 0.35}
P99_GOAL_MS = 50.0


def log(message: str) -> None:
    """Progress on stderr, so that stdout holds the table."""
    print(message, file=sys.stderr, flush=True)


def load() -> str:
    """The load average now, to print next to the figures (the machine is shared)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- servers -------------------------------------------------------------------------------------

@contextmanager
def gunicorn(folder: Path, app: str, *, workers: int, worker_args: list[str], env: dict[str, str]):
    """Start gunicorn on `app` with the given workers; yield its URL once every worker has loaded
    the app; always stop the whole process group."""
    conf = folder / "bench_gunicorn.conf.py"
    conf.write_text(GUNICORN_CONF)
    log_path = folder / f"gunicorn-{time.monotonic_ns()}.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("SCREENING_")}
    child_env.update({"PYTHONPATH": str(folder), "PYTHONUNBUFFERED": "1", **env})
    command = [sys.executable, "-m", "gunicorn", "--config", str(conf), "--workers", str(workers),
               "--bind", "127.0.0.1:0", "--log-level", "info", "--error-logfile", "-", "--timeout", "30",
               "--graceful-timeout", "5", "--no-control-socket", *worker_args, app]
    with open(log_path, "wb") as out:
        process = subprocess.Popen(command, cwd=folder, env=child_env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            text = log_path.read_text(errors="replace")
            port = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            if port and text.count(READY) >= workers:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{text}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port.group(1)}", log_path, process.pid
    finally:
        stop(process)


def _process_stats():
    """(pid, the fields of /proc/<pid>/stat after the command name) of every process alive now."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            yield int(stat.parent.name), stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue


def cpu_seconds(group: int) -> float:
    """User + system CPU seconds used so far by the processes of a process group (gunicorn's
    arbiter and workers). Unlike throughput, CPU per request hardly moves with the machine's load."""
    ticks = sum(int(fields[11]) + int(fields[12]) for _pid, fields in _process_stats()
                if int(fields[2]) == group)          # field 5 of stat: the process group
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int | None) -> float:
    """CPU seconds of a PostgreSQL server: its postmaster (with the backends it has reaped, which
    count in its children's time) and the processes it runs now. 0 when unknown."""
    if not root:
        return 0.0
    ticks = 0
    for pid, fields in _process_stats():
        if pid == root:
            ticks += sum(int(f) for f in fields[11:15])      # utime, stime, cutime, cstime
        elif int(fields[1]) == root:                         # field 4 of stat: the parent
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


# the throwaway PostgreSQL server's postmaster, whose CPU the routes' figures add (None: not known)
POSTMASTER: list[int | None] = [None]


def wrk(url: str, script: str, *, duration: float, connections: int, threads: int, folder: Path,
        group: int | None = None, db: bool = False) -> dict:
    """Run wrk with a Lua script; return its figures (requests/s, p50, p99, errors, and the
    server's CPU milliseconds per request when its process group is given)."""
    cpu0 = cpu_seconds(group) if group else 0.0
    db0 = tree_cpu_seconds(POSTMASTER[0]) if db else 0.0
    path = folder / f"wrk-{time.monotonic_ns()}.lua"
    # a tag of its own per wrk run: the shared script's nonces never repeat those of an earlier run
    path.write_text(script.replace("@TAG@", secrets.token_hex(4)) + WRK_DONE)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s",
                          "-s", str(path), url], capture_output=True, text=True, timeout=duration + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no figures:\n{out.stdout}\n{out.stderr}")
    figures = json.loads(line[6:])
    figures["rps"] = figures["requests"] / figures["seconds"]
    figures["errors"] = sum(figures[k] for k in ("connect", "read", "write", "status", "timeout"))
    if group:
        figures["cpu_ms"] = (cpu_seconds(group) - cpu0) / max(figures["requests"], 1) * 1e3
    if db and POSTMASTER[0]:
        figures["db_cpu_ms"] = (tree_cpu_seconds(POSTMASTER[0]) - db0) / max(figures["requests"], 1) * 1e3
    return figures


def lua_string(text: str) -> str:
    """A Lua string literal holding `text`."""
    return json.dumps(text)     # JSON's escapes are valid in Lua for the ASCII we send


def prepared_sessions(url: str, count: int) -> list[tuple[str, dict]]:
    """`count` visitors who each GET the form like a browser: (their Cookie header, the form's
    fields with its CSRF token and nonce)."""
    sessions = []
    for i in range(count):
        browser = Browser(url)
        page = browser.get(FORM)
        assert page.status == 200, page.status
        cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
        sessions.append((cookie, form_fields(page.text, {**ANSWERS, "name": f"Bench Client {i}",
                                                         "contact": f"bench{i}@example.org"})))
    return sessions


def scripts(url: str, run_id: str) -> dict[str, str]:
    """The wrk Lua scripts for each route, with real session cookies and CSRF tokens."""
    from urllib.parse import urlencode

    evaluate = json.dumps({"service": SLUG, "answers": {**ANSWERS, "tension_areas": ["thoracic"]}})
    cookie, fields = prepared_sessions(url, 1)[0]
    check = urlencode({**fields, "share": "no"}, doseq=True)
    # shared: 16 visitors, round robin; each POST gets a nonce never used before, and a name of its own
    # (the same screening again from the same person would be found "already sent"), so each is a new row
    visitors = prepared_sessions(url, 16)
    bodies = []
    for cookie_i, fields_i in visitors:
        body = urlencode({**{k: v for k, v in fields_i.items() if k not in ("nonce", "name")}, "share": "yes",
                          "consent": "yes"}, doseq=True)
        bodies.append(f"{{{lua_string(cookie_i)}, {lua_string(body)}}}")
    return {
        "hello": "wrk.method = 'GET'\n",
        "evaluate": (f"wrk.method = 'POST'\nwrk.path = '/api/v1/evaluate'\nwrk.body = {lua_string(evaluate)}\n"
                     "wrk.headers['Content-Type'] = 'application/json'\n"),
        "check": (f"wrk.method = 'POST'\nwrk.path = '{FORM}'\nwrk.body = {lua_string(check)}\n"
                  "wrk.headers['Content-Type'] = 'application/x-www-form-urlencoded'\n"
                  f"wrk.headers['Cookie'] = {lua_string(cookie)}\n"),
        "shared": f'''
local visitors = {{{", ".join(bodies)}}}
local counter, id = 0, 0
setup = function(thread) id = id + 1; thread:set("id", id) end
init = function(args) id = wrk.thread:get("id") end
request = function()
  counter = counter + 1
  local v = visitors[(counter % #visitors) + 1]
  local nonce = string.format("{run_id}-@TAG@-%d-%09d", id, counter)
  return wrk.format("POST", "{FORM}", {{["Content-Type"] = "application/x-www-form-urlencoded",
    ["Cookie"] = v[1]}}, v[2] .. "&nonce=" .. nonce .. "&name=Bench+" .. nonce)
end
''',
    }


def app_env(database: str | Path) -> dict[str, str]:
    """The app's settings for a database: an SQLite file or a postgresql:// URL. Every wrk
    connection comes from 127.0.0.1: the per-address share limit is set to its highest value, so
    that its counting is paid for (as in production) but no share is refused."""
    where = ({"SCREENING_DATABASE_URL": str(database)} if is_postgres(str(database))
             else {"SCREENING_DATABASE": str(database)})
    return {**where, "SCREENING_SECRET_KEY": "bench-" + "k" * 58, "SCREENING_SHARE_LIMIT_PER_HOUR": "100000"}


def bench_routes(folder: Path, database: str | Path, *, workers: int, worker_args: list[str], duration: float,
                 rounds: int, connections: int, routes: tuple[str, ...] = ("evaluate", "check", "shared")) -> dict:
    """Each route against the bare Flask app under the same gunicorn command, rounds interleaved;
    return the median figures per route, the ratios, and the shared rows counted afterwards.
    `database`: an SQLite file or a postgresql:// URL."""
    (folder / "bench_hello.py").write_text(HELLO_APP)
    env = app_env(database)
    run_id = "bench" + secrets.token_hex(6)
    results: dict[str, list[dict]] = {k: [] for k in ("hello", *routes)}
    kw = {"workers": workers, "worker_args": worker_args}
    with gunicorn(folder, "bench_hello:app", env={}, **kw) as (hello_url, _, hello_pid), \
            gunicorn(folder, "screening:create_app()", env=env, **kw) as (app_url, app_log, app_pid):
        lua = scripts(app_url, run_id)
        for name in results:     # warm-up: every worker imports lazily on its first requests
            wrk(hello_url if name == "hello" else app_url, lua[name], duration=1, connections=connections,
                threads=2, folder=folder)
        rows_before = count_rows(database, run_id)
        for r in range(rounds):
            for name in results:
                figures = wrk(hello_url if name == "hello" else app_url, lua[name], duration=duration,
                              connections=connections, threads=2, folder=folder,
                              group=hello_pid if name == "hello" else app_pid,
                              db=is_postgres(str(database)) and name != "hello")
                figures["load"] = load()
                results[name].append(figures)
                log(f"  round {r + 1} {name:<9} {figures['rps']:>8.0f}/s p50 {figures['p50_ms']:.1f} ms "
                    f"p99 {figures['p99_ms']:.1f} ms errors {figures['errors']} CPU {figures['cpu_ms']:.2f} ms/request "
                    f"(load {figures['load']})")
        problems = [x for x in app_log.read_text(errors="replace").splitlines()
                    if "Traceback" in x or "ERROR" in x or "WORKER TIMEOUT" in x]
    summary = {name: {k: statistics.median(f.get(k, 0.0) for f in runs)
                      for k in ("rps", "p50_ms", "p99_ms", "cpu_ms", "db_cpu_ms")}
               | {"errors": sum(f["errors"] for f in runs), "requests": sum(f["requests"] for f in runs),
                  "load": runs[-1]["load"]}
               for name, runs in results.items()}
    for name in routes:
        summary[name]["ratio"] = summary[name]["rps"] / summary["hello"]["rps"]
        summary[name]["cpu_ratio"] = summary["hello"]["cpu_ms"] / summary[name]["cpu_ms"]
    if "shared" in routes:
        # every shared POST answered 200 must be a row; wrk may stop counting a few in flight at the end
        summary["shared"]["rows"] = count_rows(database, run_id) - rows_before
        summary["shared"]["ok"] = summary["shared"]["requests"] - sum(f["status"] for f in results["shared"])
    summary["log_problems"] = problems[:5]
    return summary


def count_rows(database: str | Path, run_id: str) -> int:
    """Shared screenings stored by this run (their nonces start with the run's id)."""
    conn = dbmod.connect(str(database))
    try:
        return conn.execute("SELECT count(*) FROM submissions WHERE nonce LIKE ?", [run_id + "-%"]).fetchone()[0]
    finally:
        conn.close()


def bench_two_servers(folders: tuple[Path, Path], url: str, *, workers: int, worker_args: list[str],
                      duration: float, rounds: int, connections: int) -> dict:
    """Two gunicorn app servers (instance folders of their own, `workers` workers each) on one
    PostgreSQL database, each driven by its own wrk with half the connections at the same time:
    shared POSTs, each a new row. On this one 2-core box the servers, wrk and PostgreSQL share the
    same two cores: this measures what two servers cost each other through the database (row locks,
    advisory locks, commits), not scale-out. Requests/s is the sum, p99 the worse of the two."""
    import threading

    env = app_env(url)
    run_id = "bench" + secrets.token_hex(6)
    kw = {"workers": workers, "worker_args": worker_args, "env": env}
    runs = []
    with gunicorn(folders[0], "screening:create_app()", **kw) as (url_a, log_a, pid_a), \
            gunicorn(folders[1], "screening:create_app()", **kw) as (url_b, log_b, pid_b):
        servers = [(url_a, pid_a, scripts(url_a, run_id)["shared"]), (url_b, pid_b, scripts(url_b, run_id)["shared"])]
        for server_url, _, lua in servers:      # warm-up
            wrk(server_url, lua, duration=1, connections=connections // 2, threads=1, folder=folders[0])
        rows_before = count_rows(url, run_id)
        for r in range(rounds):
            figures: list[dict] = [{}, {}]

            def drive(i, server_url, pid, lua):
                figures[i] = wrk(server_url, lua, duration=duration, connections=connections // 2, threads=1,
                                 folder=folders[0], group=pid, db=i == 0)
            threads = [threading.Thread(target=drive, args=(i, *server)) for i, server in enumerate(servers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            requests = sum(f["requests"] for f in figures)
            run = {"rps": sum(f["rps"] for f in figures), "p50_ms": max(f["p50_ms"] for f in figures),
                   "p99_ms": max(f["p99_ms"] for f in figures), "errors": sum(f["errors"] for f in figures),
                   "status": sum(f["status"] for f in figures), "requests": requests,
                   "cpu_ms": sum(f["cpu_ms"] * f["requests"] for f in figures) / max(requests, 1),
                   # the server's CPU over the same seconds (measured around the first wrk), per request of both
                   "db_cpu_ms": figures[0].get("db_cpu_ms", 0.0) * figures[0]["requests"] / max(requests, 1),
                   "load": load()}
            runs.append(run)
            log(f"  round {r + 1} two servers x {workers} workers: {run['rps']:.0f}/s (sum) "
                f"p99 {run['p99_ms']:.1f} ms errors {run['errors']} CPU {run['cpu_ms']:.2f} ms/request")
        problems = [x for path in (log_a, log_b) for x in path.read_text(errors="replace").splitlines()
                    if "Traceback" in x or "ERROR" in x or "WORKER TIMEOUT" in x]
    summary = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms", "cpu_ms", "db_cpu_ms")}
    summary |= {"errors": sum(r["errors"] for r in runs), "requests": sum(r["requests"] for r in runs),
                "load": runs[-1]["load"], "log_problems": problems[:5]}
    summary["rows"] = count_rows(url, run_id) - rows_before
    summary["ok"] = summary["requests"] - sum(r["status"] for r in runs)
    return summary


# --- PostgreSQL --------------------------------------------------------------------------------------

# A throwaway server's settings for the benchmark: durable like production (the test harness runs
# with fsync off), and a buffer cache that holds the million-row table and its indexes, as a
# database server's would (a quarter of this box's memory would be more).
PG_SETTINGS = {"fsync": "on", "shared_buffers": "'1GB'", "effective_cache_size": "'4GB'",
               "max_wal_size": "'4GB'"}


@contextmanager
def postgres(url: str | None):
    """The URL of a PostgreSQL server for the benchmark: `url` when given (a server of your own,
    where the benchmark makes databases named bench_*), else a throwaway cluster of
    tests/postgres_server.py with PG_SETTINGS, stopped and deleted afterwards."""
    if url:
        yield url
        return
    import psycopg
    from postgres_server import postgres_cluster

    with postgres_cluster() as server:
        with psycopg.connect(server.url, autocommit=True) as conn:
            for name, value in PG_SETTINGS.items():
                conn.execute(f"ALTER SYSTEM SET {name} = {value}")
        server.restart("fast")
        POSTMASTER[0] = server.postmaster_pid()
        with psycopg.connect(server.url, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            fsync = conn.execute("SHOW fsync").fetchone()[0]
            buffers = conn.execute("SHOW shared_buffers").fetchone()[0]
        log(f"PostgreSQL {version} (throwaway cluster, fsync {fsync}, shared_buffers {buffers})")
        yield server.url


def pg_database(server_url: str, name: str, *, fresh: bool) -> str:
    """The URL of database `name` on the server, made empty first when `fresh`."""
    import postgres_server

    if fresh:
        postgres_server.drop_database(server_url, name)
    try:
        return postgres_server.create_database(server_url, name)
    except Exception as e:     # already there (a server of your own, kept between runs)
        if "already exists" not in str(e):
            raise
        return postgres_server.database_url(server_url, name)


# --- storage, engine, rules ------------------------------------------------------------------------

def bench_commits(target: str | Path, seconds: float) -> dict:
    """Durable commits per second on this disk with the app's connection settings (an SQLite file,
    or a PostgreSQL database with synchronous_commit on): a tiny row per transaction, then the real
    store_submission (its indexes, JSON, the nonce and resend look-ups and their locks)."""
    conn = dbmod.connect(str(target))
    dbmod.migrate(conn)
    postgres_db = is_postgres(str(target))
    conn.execute("CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v TEXT)" if postgres_db
                 else "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    out = {}
    deadline, n = time.perf_counter() + seconds, 0
    t0 = time.perf_counter()
    while time.perf_counter() < deadline:
        with dbmod.immediate(conn):
            conn.execute("INSERT INTO t (v) VALUES (?)", ["x" * 100])
        n += 1
    out["tiny"] = n / (time.perf_counter() - t0)
    record = {"service": SLUG, "outcome": "proceed", "answers": ANSWERS, "fired_rules": [], "suggestions": [],
              "rules_version": "bench", "locale": "en", "name": "Bench Client", "contact": "bench@example.org",
              "consent_at": dbmod.now()}
    deadline, n = time.perf_counter() + seconds, 0
    t0 = time.perf_counter()
    while time.perf_counter() < deadline:
        # a client each time: the same one again would only be found "already sent" (store_screening)
        dbmod.store_submission(conn, nonce=f"commit-bench-{n:012d}", record={**record, "name": f"Bench Client {n}"},
                               centre="exemple-barcelona")
        n += 1
    out["store"] = n / (time.perf_counter() - t0)
    if postgres_db:
        out["settings"] = (f"synchronous_commit {conn.execute('SHOW synchronous_commit').fetchone()[0]},"
                           f" fsync {conn.execute('SHOW fsync').fetchone()[0]}")
    else:
        out["settings"] = (f"journal {conn.execute('PRAGMA journal_mode').fetchone()[0]},"
                           f" synchronous {conn.execute('PRAGMA synchronous').fetchone()[0]}")
    conn.close()
    return out


def bench_engine(runs: int) -> dict:
    """µs per evaluation (normalized answers, every rule and suggestion) and per screen (normalize
    too), over varied answer sets for every service; then the cost of loading and proving rules/."""
    import random

    from screening.core import checker, engine
    from screening.core.rules import default_rules_dir, load_rules

    rs = load_rules(default_rules_dir())
    rng = random.Random(8)
    cases = []
    for _ in range(500):
        service = rng.choice(rs.services)
        raw = {k: rng.choices(("no", "yes", "not_sure"), weights=(80, 12, 8))[0] for k in ANSWERS
               if k not in ("tension_areas", "preferred_intensity", "notes", "pregnant")}
        raw |= {"pregnant": rng.choice(("no", "no", "yes")), "tension_areas": ["thoracic"],
                "preferred_intensity": "medium", "notes": ""}
        answers, errors = engine.normalize(rs, service, raw)
        if not errors:
            cases.append((service, raw, answers))

    def per_call(fn) -> float:
        # CPU time of this process: wall time on a shared machine mostly measures the neighbours
        times = []
        for _ in range(runs):
            t0 = time.process_time()
            for service, raw, answers in cases:
                fn(service, raw, answers)
            times.append((time.process_time() - t0) / len(cases))
        return statistics.median(times) * 1e6

    out = {"cases": len(cases), "rules": len(rs.rules), "suggestions": len(rs.suggestions),
           "evaluate_us": per_call(lambda s, raw, a: engine.evaluate(rs, s, a)),
           "screen_us": per_call(lambda s, raw, a: engine.screen(rs, s.slug, raw))}
    out["load_ms"] = statistics.median(_timed(lambda: load_rules(default_rules_dir())) for _ in range(5)) * 1e3
    out["prove_ms"] = statistics.median(_timed(lambda: checker.check(rs)) for _ in range(3)) * 1e3
    return out


def _timed(fn) -> float:
    """CPU seconds fn() took in this process."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def bench_boot(folder: Path, runs: int) -> float:
    """CPU milliseconds a fresh process needs to import the package and run create_app() (what
    every gunicorn worker pays at boot, the start-up proof of the rules included), median of
    `runs` fresh processes."""
    code = ("import time; from screening import create_app; "
            f"create_app({{'DATABASE': {str(folder / 'boot.db')!r}, 'SECRET_KEY': 'x' * 40}}); "
            "print(time.process_time())")
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                  timeout=300).stdout.strip().splitlines()[-1]) for _ in range(runs)]
    return statistics.median(times) * 1e3


# --- staff side --------------------------------------------------------------------------------------

def filled_database(folder: Path, rows: int, cache: Path | None, server_url: str | None = None) -> str:
    """A database with `rows` shared screenings (bench_staff.fill): an SQLite file, reused from
    --cache when there, or with `server_url` a PostgreSQL database bench_staff_<rows>, reused when
    it holds them (a server of your own, --pg-url)."""
    if server_url:
        url = pg_database(server_url, f"bench_staff_{rows}", fresh=False)
        conn = dbmod.connect(url)
        try:
            have = conn.execute("SELECT count(*) FROM submissions").fetchone()[0]
        except Exception:
            have = None
        finally:
            conn.close()
        if have is not None and have >= rows:
            return url
        if have is not None:
            url = pg_database(server_url, f"bench_staff_{rows}", fresh=True)
        app = bench_staff.make_app(url)     # migrates
        del app
        from screening.store import engine_postgres
        engine_postgres.close_pools(url)
        log(f"filling {rows:,} rows into PostgreSQL {url} ...")
        seconds = bench_staff.fill(url, rows)
        log(f"  filled, indexed and analysed in {seconds:.0f} s")
        return url
    path = (cache or folder) / f"staff-{rows}.db"
    if cache and path.exists():
        conn = dbmod.connect(path)
        dbmod.migrate(conn)      # a cached file from before a new migration gets it here
        conn.close()
        return str(path)
    bench_staff.make_app(path)
    log(f"filling {rows:,} rows into {path} ...")
    seconds = bench_staff.fill(path, rows)
    log(f"  filled in {seconds:.0f} s")
    return str(path)


# --- the table -----------------------------------------------------------------------------------------

def route_rows(label: str, routes: dict) -> list[list[str]]:
    """Table rows for one bench_routes result."""
    hello = routes["hello"]
    lines = [[f"{label}GET / bare Flask (baseline)", f"{hello['rps']:,.0f}/s", "1.00×",
              f"{hello['cpu_ms']:.2f} (1.00×)", f"{hello['p50_ms']:.1f} / {hello['p99_ms']:.1f}",
              str(hello["errors"]), "", hello["load"]]]
    names = {"evaluate": "POST /api/v1/evaluate", "check": f"POST {FORM} check only",
             "shared": f"POST {FORM} shared (new row each)"}
    for name, title in names.items():
        if name not in routes:
            continue
        r = routes[name]
        ratio_met = "met" if r["ratio"] >= GOALS[name] else "MISSED"
        p99_met = "met" if r["p99_ms"] < P99_GOAL_MS and r["errors"] == 0 else "MISSED"
        extra = f"; rows {r['rows']:,} for {r['ok']:,} OK" if name == "shared" else ""
        db_cpu = f" + PostgreSQL {r['db_cpu_ms']:.2f}" if r.get("db_cpu_ms") else ""
        lines.append([f"{label}{title}", f"{r['rps']:,.0f}/s", f"{r['ratio']:.2f}×",
                      f"{r['cpu_ms']:.2f} ({r['cpu_ratio']:.2f}×){db_cpu}", f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f}",
                      str(r["errors"]),
                      f"≥ {GOALS[name]}×: {ratio_met}; p99 < {P99_GOAL_MS:g} ms, no errors: {p99_met}{extra}",
                      r["load"]])
    return lines


def print_table(rows: list[list[str]]) -> None:
    """A Markdown table, ready for the README."""
    head = ["what", "figure", "ratio", "server CPU ms/request (hello ÷ this)", "p50 / p99 ms", "errors", "goal",
            "load"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        if len(row) == len(head) - 1:       # rows without a server CPU figure
            row = [*row[:3], "", *row[3:]]
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs and 10^4 rows, to try the harness")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 6, quick 2)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per route (default 2, quick 1)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--rows", type=int, help="stored screenings for the staff figures (default 10^6, quick 10^4)")
    parser.add_argument("--growth", action="store_true", help="also 10^4/10^5/10^6 rows and 1/4/8 workers")
    parser.add_argument("--package", help="serve this screening package folder instead (routes only), e.g. from "
                        "`git archive OLD screening | tar -x -C /tmp/before`")
    parser.add_argument("--cache", help="folder to keep filled databases in between runs")
    parser.add_argument("--only", default="routes,commits,engine,staff",
                        help="comma-separated parts to run: routes, commits, engine, staff")
    parser.add_argument("--engines", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql (default both, side by side in one table)")
    parser.add_argument("--pg-url", help="a PostgreSQL server of your own (databases bench_* are made there and "
                        "the filled one kept) instead of a throwaway cluster")
    args = parser.parse_args()
    engines = args.engines.split(",")
    duration = args.duration or (2 if args.quick else 6)
    rounds = args.rounds or (1 if args.quick else 2)
    rows = args.rows or (10_000 if args.quick else 1_000_000)
    parts = set(args.only.split(","))
    worker_args = ["--worker-class", "gthread", "--threads", "4"] if args.worker_class == "gthread" else []
    cache = Path(args.cache) if args.cache else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)

    table: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="screening-bench-") as tmp, ExitStack() as stack:
        folder = app_folder(Path(tmp))
        server_url = stack.enter_context(postgres(args.pg_url)) if "postgresql" in engines else None
        if args.package:        # serve another copy of the package (e.g. an older commit, for before/after)
            (folder / "screening").unlink()
            (folder / "screening").symlink_to(Path(args.package).resolve(), target_is_directory=True)
        version = sqlite_utils.Database(memory=True).sqlite_version
        log(f"SQLite {'.'.join(map(str, version))}, load {load()}")
        if "routes" in parts:
            log(f"routes: {args.workers} {args.worker_class} workers, {args.connections} connections, "
                f"{duration:g} s x {rounds} rounds")
            routes = None
            if "sqlite" in engines:
                database = folder / "routes.db"
                routes = bench_routes(folder, database, workers=args.workers, worker_args=worker_args,
                                      duration=duration, rounds=rounds, connections=args.connections)
                table += route_rows("SQLite: ", routes)
                if routes["log_problems"]:
                    log("server log problems: " + " | ".join(routes["log_problems"]))
            if server_url:
                # the same app, gunicorn command and wrk scripts; only the database differs
                url = pg_database(server_url, "bench_routes", fresh=True)
                pg_routes = bench_routes(folder, url, workers=args.workers, worker_args=worker_args,
                                         duration=duration, rounds=rounds, connections=args.connections,
                                         routes=("evaluate", "check", "shared"))
                table += route_rows("PostgreSQL: ", pg_routes)
                if pg_routes["log_problems"]:
                    log("server log problems: " + " | ".join(pg_routes["log_problems"]))
                (Path(tmp) / "second").mkdir(exist_ok=True)
                second = app_folder(Path(tmp) / "second")       # the second server's instance folder
                for per_server in (1, args.workers):
                    two = bench_two_servers((folder, second), url, workers=per_server, worker_args=worker_args,
                                            duration=duration, rounds=rounds, connections=args.connections)
                    table.append([f"PostgreSQL, two app servers × {per_server} worker{'s' * (per_server > 1)}: "
                                  f"POST {FORM} shared (contention on one 2-core box, not scale-out)",
                                  f"{two['rps']:,.0f}/s", f"{two['rps'] / pg_routes['shared']['rps']:.2f}× one server",
                                  f"{two['cpu_ms']:.2f}" + (f" + PostgreSQL {two['db_cpu_ms']:.2f}"
                                                            if two["db_cpu_ms"] else ""),
                                  f"{two['p50_ms']:.1f} / {two['p99_ms']:.1f}",
                                  str(two["errors"]), f"rows {two['rows']:,} for {two['ok']:,} OK", two["load"]])
                    if two["log_problems"]:
                        log("server log problems: " + " | ".join(two["log_problems"]))
        if "commits" in parts:
            for engine in engines:
                target = folder / "commits.db" if engine == "sqlite" else pg_database(server_url, "bench_commits",
                                                                                        fresh=True)
                c = bench_commits(target, 1 if args.quick else 3)
                name = "SQLite" if engine == "sqlite" else "PostgreSQL"
                table.append([f"{name}: durable commits, 1 tiny row each ({c['settings']})", f"{c['tiny']:,.0f}/s",
                              "", "", "", "", load()])
                table.append([f"{name}: store_submission alone, one connection", f"{c['store']:,.0f}/s",
                              f"{c['store'] / c['tiny']:.2f}× commits", "", "", "", load()])
        if "engine" in parts:
            e = bench_engine(5 if args.quick else 20)
            met = "met" if e["evaluate_us"] < 20 else "MISSED"
            table.append([f"engine.evaluate, {e['rules']} rules + {e['suggestions']} suggestions",
                          f"{e['evaluate_us']:.1f} µs", "", "", "", f"< 20 µs: {met}", load()])
            table.append(["engine.screen (normalize + evaluate)", f"{e['screen_us']:.1f} µs", "", "", "", "", load()])
            table.append(["load rules/ (load_rules)", f"{e['load_ms']:.1f} ms", "", "", "", "", load()])
            table.append(["prove rules/ (checker.check)", f"{e['prove_ms']:.0f} ms", "", "", "", "", load()])
            table.append(["worker boot: import + create_app(), CPU", f"{bench_boot(folder, 3):.0f} ms", "", "", "", "",
                          load()])
        if "staff" in parts:
            runs = 10 if args.quick else 50
            if "sqlite" in engines and not (args.growth and rows in (10_000, 100_000, 1_000_000)):
                table += staff_rows(folder, rows, cache, runs=runs, export=True, prefix="SQLite ")
            if server_url:
                table += staff_rows(folder, rows, cache, runs=runs, export=False, prefix="PostgreSQL ",
                                    server_url=server_url)
        if args.growth:
            for n in (10_000, 100_000, 1_000_000):
                path = filled_database(folder, n, cache)
                if "routes" in parts:
                    routes = bench_routes(folder, path, workers=args.workers, worker_args=worker_args,
                                          duration=duration, rounds=1, connections=args.connections)
                    table += route_rows(f"{n:.0e} rows: ", routes)
                if "staff" in parts:
                    table += staff_rows(folder, n, cache, runs=5, export=n >= 100_000, prefix=f"{n:.0e} rows: ")
            for workers in (1, 4, 8) if "routes" in parts else ():
                routes = bench_routes(folder, folder / f"w{workers}.db", workers=workers, worker_args=worker_args,
                                      duration=duration, rounds=1, connections=args.connections)
                table += route_rows(f"{workers} workers: ", routes)
    print()
    print(f"`run.py {' '.join(sys.argv[1:])}` — {args.workers} {args.worker_class} gunicorn workers, "
          f"wrk 2 threads × {args.connections} connections × {duration:g} s × {rounds} rounds (median); "
          f"load at the end {load()}")
    print()
    print_table(table)


STAFF_GOAL_MS = 30.0


def staff_rows(folder: Path, rows: int, cache: Path | None, *, runs: int, export: bool,
               prefix: str = "", server_url: str | None = None) -> list[list[str]]:
    """The staff figures (bench_staff.py) at `rows` stored screenings, as table rows; on PostgreSQL
    with `server_url`. Judged on the wall time's p50 per query or request (the issue's goal: under
    30 ms of wall time per request); p99 beside it."""
    target = filled_database(folder, rows, cache, server_url)
    figures = bench_staff.measure(target, runs)
    lines = [[f"{prefix}staff: {label}", f"{p50:.2f} / {p99:.2f} ms wall", "", f"{cpu:.2f}", "", "",
              f"p50 < {STAFF_GOAL_MS:g} ms: {'met' if p50 < STAFF_GOAL_MS else 'MISSED'}"
              + ("" if p99 < STAFF_GOAL_MS else "; p99 over"), load()] for label, p50, p99, cpu in figures]
    if export and not server_url:
        f = bench_staff.run_export_child(Path(target), "plain")
        lines.append([f"{prefix}staff: GET /staff/export.csv, {f['lines'] - 1:,} rows",
                      f"{f['seconds']:.1f} s", "", "", "",
                      f"RSS {f['rss_start_kib'] / 1024:.0f} MiB at start, peak {f['rss_peak_kib'] / 1024:.0f} MiB",
                      load()])
    return lines


if __name__ == "__main__":
    main()
