"""Benchmark of the staff side on a large database: dashboard pages and the CSV export.

Run by hand (pytest does not collect it):

    python tests/benchmarks/bench_staff.py                 # 1,000,000 submissions in a temp folder
    python tests/benchmarks/bench_staff.py --rows 100000 --db /tmp/bench.db --keep --purge

It fills a database with a realistic spread of services, outcomes, statuses, dates and names,
then times the real queries of screening/store/review.py (median of several runs, and the ratio to a
`SELECT 1` round trip timed in the same run), the real dashboard requests through a logged-in
test client, shows SQLite's query plan for each query, and measures the export's peak memory by
streaming the whole CSV through /staff/export.csv in a fresh process.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp

from screening import create_app
from screening.core import reading
from screening.store import accounts, review, second_factor
from screening.store import db as dbmod
from screening.store.sql import is_postgres
from screening.web import filters as webfilters

SERVICES = {"decontracting-back-massage": 40, "back-massage": 25, "decontracting-massage": 15,
            "back-and-neck-massage": 12, "deep-tissue-massage": 8}
OUTCOMES = {"proceed": 60, "tell_centre": 25, "consult_professional": 15}
FIRST = ("Maria Anna Laura Marta Julia Carla Sara Paula Núria Elena Montserrat Cristina Lucía Claudia "
         "Jordi Marc David Pau Joan Josep Albert Xavier Carlos Javier Daniel Sergi Oriol Pere Miquel Alex").split()
LAST = ("Garcia Martinez Lopez Sanchez Perez Gonzalez Rodriguez Fernandez Puig Vidal Ferrer Soler Serra "
        "Roca Font Pujol Valls Mas Coll Riera Sala Vila Costa Castells Torres Ruiz Moreno Navarro Romero "
        "Gil Molina Ortiz Ramos Blanco Prat Bosch Camps Martí Rovira Peña Muñoz").split()
RED_FLAGS = ("intense_pain", "persistent_pain", "recent_injury", "radiating_pain", "tingling_or_weakness",
             "spinal_condition", "fever", "skin_problem_in_area", "ongoing_diagnosis")
PASSWORD = "a long benchmark password"
DAYS = 730          # two years of submissions


def weighted(rng, table):
    return rng.choices(list(table), weights=list(table.values()))[0]


def answer_pool(rng, size=400):
    """A few hundred distinct answer sets (JSON), enough variety for realistic row sizes."""
    pool = []
    for _ in range(size):
        answers = {f: rng.choices(("no", "yes", "not_sure"), weights=(90, 7, 3))[0] for f in RED_FLAGS}
        answers |= {"pregnant": "no", "tension_areas": rng.sample(["thoracic", "shoulder_blades", "lumbar", "neck"],
                                                                  rng.randint(1, 3)),
                    "preferred_intensity": rng.choice(["light", "medium", "firm"]),
                    "notes": rng.choice(["", "", "Left shoulder is stiff after work.",
                                         "I sit at a desk all day and my lower back aches by evening."])}
        pool.append(json.dumps(answers, ensure_ascii=False))
    return pool


def contact_for(rng, name, i):
    """An e-mail address (70 %) or a Spanish mobile number written as people write them (30 %)."""
    if rng.random() < 0.7:
        return f"{name.lower().replace(' ', '.')}{i % 97}@example.org"
    digits = f"6{rng.randrange(10**8):08d}"
    return rng.choice((f"+34 {digits[:3]} {digits[3:6]} {digits[6:]}", digits,
                       f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"))


def status_for(rng, age_days):
    """Recent submissions are mostly new or being handled; older ones mostly closed."""
    if age_days < 30:
        return rng.choices(dbmod.STATUSES, weights=(40, 30, 20, 10))[0]
    return rng.choices(dbmod.STATUSES, weights=(1, 1, 18, 80))[0]


SUBMISSION_COLUMNS = ("reference", "nonce", "service", "outcome", "answers", "fired_rules", "suggestions",
                      "rules_version", "locale", "name", "contact", "consent_at", "created_at", "status", "decision",
                      "updated_at", "centre", "number", *dbmod.SEARCH_COLUMNS)
AUDIT_COLUMNS = ("at", "staff_id", "staff_email", "action", "submission_id", "reference", "detail", "centre")
AUDIT_PER_ROW = 0.5     # audit entries per stored screening (views, status changes)


def generate(rows: int, *, seed=1):
    """`rows` submissions (tuples in SUBMISSION_COLUMNS order), oldest first, with their search
    columns folded as store_screening folds them (db.search_columns); then the final numbers per
    centre as the last item, a dict."""
    rng = random.Random(seed)
    pool = answer_pool(rng)
    end = datetime.now(UTC)
    start = end - timedelta(days=DAYS)
    step = (end - start) / rows
    references: set[str] = set()
    numbers: dict[str, int] = {}         # each centre numbers its own screenings, as store_screening does
    for i in range(rows):
        while True:
            code = "".join(rng.choices(dbmod.REFERENCE_ALPHABET, k=dbmod.REFERENCE_LENGTH))
            reference = f"{code[:4]}-{code[4:]}"
            if reference not in references:
                references.add(reference)
                break
        created = (start + step * i).isoformat(timespec="microseconds")
        outcome = weighted(rng, OUTCOMES)
        fired = "[]" if outcome == "proceed" else json.dumps(
            [{"rule": "fever" if outcome == "consult_professional" else "pregnancy",
              "outcome": outcome, "not_sure": False, "cleared": False}])
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        contact = contact_for(rng, name, i)
        status = status_for(rng, (end - (start + step * i)).days)
        # most rows are the measured centre's; the rest another's, which every query skips
        centre = CENTRE if rng.random() < 0.9 else "other-centre"
        numbers[centre] = numbers.get(centre, 0) + 1
        search = dbmod.search_columns(name, contact, reference)
        yield (reference, f"bench-{i:09d}", weighted(rng, SERVICES), outcome, rng.choice(pool), fired,
               "[]", "bench", "en", name, contact, created, created, status,
               None if status == "new" else rng.choice(review.DECISIONS), None, centre, numbers[centre],
               *(search[c] for c in dbmod.SEARCH_COLUMNS))
    yield numbers


def generate_audit(rows: int, *, seed=2):
    """rows × AUDIT_PER_ROW audit entries (tuples in AUDIT_COLUMNS order) over the same two years,
    oldest first: staff opening screenings, and some status changes."""
    rng = random.Random(seed)
    count = int(rows * AUDIT_PER_ROW)
    end = datetime.now(UTC)
    start = end - timedelta(days=DAYS)
    step = (end - start) / max(count, 1)
    for i in range(count):
        centre = CENTRE if rng.random() < 0.9 else "other-centre"
        at = (start + step * i).isoformat(timespec="microseconds")
        if rng.random() < 0.7:
            yield (at, 1, "reception@centre.example", "view", rng.randrange(1, rows + 1), "ABCD-EFGH", None, centre)
        else:
            yield (at, 1, "reception@centre.example", "status", rng.randrange(1, rows + 1), "ABCD-EFGH",
                   "status: new -> reviewed", centre)


def fill(target: str | Path, rows: int, *, seed=1, batch=100_000) -> float:
    """Insert `rows` submissions (and their audit entries) into an SQLite file or a PostgreSQL
    database already migrated; return seconds."""
    if is_postgres(str(target)):
        return fill_postgres(str(target), rows, seed=seed)
    conn = dbmod.connect(target)
    columns = ", ".join(SUBMISSION_COLUMNS)
    sql = f"INSERT INTO submissions ({columns}) VALUES ({', '.join('?' * len(SUBMISSION_COLUMNS))})"  # noqa: S608
    audit_sql = (f"INSERT INTO audit_log ({', '.join(AUDIT_COLUMNS)})"  # noqa: S608
                 f" VALUES ({', '.join('?' * len(AUDIT_COLUMNS))})")
    t0 = time.perf_counter()
    # the search indexes are made once at the end from the stored rows (FTS5's rebuild), which is
    # much faster than their triggers row by row
    conn.execute("DROP TRIGGER IF EXISTS submissions_fts_insert")
    chunk: list = []
    done = 0

    def flush():
        with dbmod.immediate(conn):
            conn.conn.executemany(sql, chunk)
        chunk.clear()
        print(f"  {done:>9,} rows", end="\r", flush=True)

    for row in generate(rows, seed=seed):
        if isinstance(row, dict):
            numbers = row
            break
        chunk.append(row)
        done += 1
        if len(chunk) >= batch:
            flush()
    if chunk:
        flush()
    with dbmod.immediate(conn):
        conn.conn.executemany("INSERT INTO centre_numbers (centre, last) VALUES (?, ?) ON CONFLICT (centre)"
                              " DO UPDATE SET last = excluded.last", list(numbers.items()))
        conn.conn.executemany(audit_sql, generate_audit(rows, seed=seed + 1))
    with dbmod.immediate(conn):
        conn.create_search_indexes()        # the triggers again, and the FTS5 tables rebuilt
    seconds = time.perf_counter() - t0
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    print()
    return seconds


def fill_postgres(url: str, rows: int, *, seed=1) -> float:
    """The same rows as fill(), into a migrated PostgreSQL database: the tables' indexes dropped,
    the rows sent by COPY, the indexes made again, then VACUUM ANALYZE (the statistics and the
    visibility map that autovacuum would have made by the time a database holds a million rows)."""
    import psycopg

    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        indexes = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
                               " AND tablename IN ('submissions', 'audit_log')"
                               " AND indexname NOT LIKE '%_pkey'").fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        numbers: dict[str, int] = {}
        with conn.cursor() as cursor:
            with cursor.copy(f"COPY submissions ({', '.join(SUBMISSION_COLUMNS)}) FROM STDIN") as copy:
                for i, row in enumerate(generate(rows, seed=seed)):
                    if isinstance(row, dict):
                        numbers = row
                        break
                    copy.write_row(row)
                    if i % 100_000 == 0:
                        print(f"  {i:>9,} rows", end="\r", flush=True)
            with cursor.copy(f"COPY audit_log ({', '.join(AUDIT_COLUMNS)}) FROM STDIN") as copy:
                for row in generate_audit(rows, seed=seed + 1):
                    copy.write_row(row)
            cursor.executemany("INSERT INTO centre_numbers (centre, last) VALUES (%s, %s) ON CONFLICT (centre)"
                               " DO UPDATE SET last = excluded.last", list(numbers.items()))
        print(f"\n  rows sent in {time.perf_counter() - t0:.0f} s; indexing ...", flush=True)
        for _, ddl in indexes:
            conn.execute(ddl)
        conn.execute("VACUUM ANALYZE submissions")
        conn.execute("VACUUM ANALYZE audit_log")
    return time.perf_counter() - t0


CENTRE = "exemple-barcelona"     # the shipped centre: the app's default, whose staff the benchmark logs in as


def median_seconds(fn, runs, clock=time.perf_counter):
    """Median time of `runs` calls of fn() by `clock` (wall time, or time.process_time for the
    CPU this process spent, which hardly moves with the machine's load)."""
    times = []
    for _ in range(runs):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def captured_sql(conn, fn) -> list[str]:
    """The statements fn() ran on conn, with their parameters filled in (for EXPLAIN QUERY PLAN)."""
    statements: list[str] = []
    conn.conn.set_trace_callback(statements.append)
    try:
        fn()
    finally:
        conn.conn.set_trace_callback(None)
    return statements


def query_plan(conn, sql: str) -> list[str]:
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()]


def make_app(target: str | Path):
    """The app on an SQLite file or a postgresql:// URL (its pool of 8 connections)."""
    where = {"DATABASE_URL": str(target)} if is_postgres(str(target)) else {"DATABASE": str(target)}
    return create_app({"TESTING": True, **where, "SECRET_KEY": "bench-" + "k" * 40,
                       "WTF_CSRF_ENABLED": False})


def logged_in_client(app, target: str | Path | None = None):
    """A test client logged in through the real login form as a new staff member (an admin of the
    centre, who may read its audit trail)."""
    conn = dbmod.connect(str(target or app.config.get("DATABASE_URL") or app.config["DATABASE"]))
    email = f"bench{time.time_ns()}@centre.example"
    staff = accounts.create_staff(conn, email=email, password=PASSWORD, name="Bench", centre=CENTRE, role="admin")
    secret = pyotp.random_base32()       # admins must have a second factor (SCREENING_STAFF_2FA=admins)
    second_factor.enable(conn, staff, secret, second_factor.derive_key(app.config["SECRET_KEY"]))
    conn.close()
    client = app.test_client()
    response = client.post("/staff/login", data={"email": email, "password": PASSWORD})
    assert response.status_code == 302, response.status_code
    response = client.post(response.location, data={"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 302 and "/login" not in response.location, response.status_code
    return client


def bench_queries(path: Path, runs: int) -> None:
    """Time the real review.py queries and dashboard requests; print a table and the query plans."""
    conn = dbmod.connect(path)
    # the measured centre's rows (the staff see only theirs), through its (centre, created_at, id) index
    total = conn.execute("SELECT count(*) FROM submissions WHERE centre = ?", [CENTRE]).fetchone()[0]
    middle = conn.execute("SELECT created_at, number, id FROM submissions WHERE centre = ? ORDER BY created_at DESC,"
                          " id DESC LIMIT 1 OFFSET ?", [CENTRE, total // 2]).fetchone()
    deep = review.Cursor(*middle)
    last_month = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    cases = [
        ("first page, no filter", review.Filters(), None),
        ("outcome=consult_professional", review.Filters(outcome="consult_professional"), None),
        ("status=new", review.Filters(status="new"), None),
        ("service=deep-tissue-massage", review.Filters(service="deep-tissue-massage"), None),
        ("outcome + status=new", review.Filters(outcome="tell_centre", status="new"), None),
        ("date range (last 30 days)", review.Filters(date_from=last_month), None),
        (f"deep page (row {total // 2:,})", review.Filters(), deep),
        ("search name 'garcia'", review.Filters(q="garcia"), None),
        ("search reference", review.Filters(q=conn.execute(
            "SELECT reference FROM submissions WHERE centre = ? LIMIT 1 OFFSET 1234", [CENTRE]).fetchone()[0]), None),
        ("search name, no match", review.Filters(q="Zzyzx"), None),
    ]
    baseline = median_seconds(lambda: conn.execute("SELECT 1").fetchone(), max(runs, 200))
    print(f"\nBaseline SELECT 1 round trip: {baseline * 1e6:.1f} µs (median)\n")
    print(f"{'query (review.py)':<34} {'median ms':>10} {'× SELECT 1':>11}  rows")
    plans = {}
    for label, filters, before in cases:
        page = review.list_page(conn, filters, before=before, centre=CENTRE)
        seconds = median_seconds(lambda f=filters, b=before: review.list_page(conn, f, before=b, centre=CENTRE), runs)
        print(f"{label:<34} {seconds * 1e3:>10.2f} {seconds / baseline:>11.0f}  {len(page.rows)}")
        plans[label] = captured_sql(conn, lambda f=filters, b=before: review.list_page(conn, f, before=b,
                                                                                    centre=CENTRE))
    seconds = median_seconds(lambda: review.attention_counts(conn, centre=CENTRE), runs)
    print(f"{'attention_counts (dashboard head)':<34} {seconds * 1e3:>10.2f} {seconds / baseline:>11.0f}")
    plans["attention_counts"] = captured_sql(conn, lambda: review.attention_counts(conn, centre=CENTRE))

    app = make_app(path)
    client = logged_in_client(app)
    # baseline: a page that renders a template without touching the submissions
    http = [("GET / (public index, baseline)", "/"), ("GET /staff/", "/staff/"),
            ("GET /staff/?outcome=consult_professional", "/staff/?outcome=consult_professional"),
            ("GET /staff/?status=new&service=back-massage", "/staff/?status=new&service=back-massage"),
            # a search is posted, then shown at a URL naming it by its id (issue 16)
            ("GET /staff/?search=… ('garcia')", client.post("/staff/", data={"q": "garcia"}).headers["Location"])]
    print(f"\n{'request (test client, logged in)':<44} {'median ms':>10} {'× GET /':>10}")
    health = None
    for label, url in http:
        assert client.get(url).status_code == 200, url
        seconds = median_seconds(lambda u=url: client.get(u).close(), runs)
        health = health or seconds
        print(f"{label:<44} {seconds * 1e3:>10.2f} {seconds / health:>10.1f}")

    print("\nEXPLAIN QUERY PLAN (the statements list_page / attention_counts ran):")
    for label, statements in plans.items():
        print(f"- {label}")
        for sql in statements:
            if sql.lstrip().upper().startswith("SELECT"):
                print("    " + " | ".join(query_plan(conn, sql)))
    conn.close()


def both(fn, runs) -> tuple[float, float]:
    """(median wall ms, median CPU ms) of fn()."""
    return median_seconds(fn, runs) * 1e3, median_seconds(fn, runs, time.process_time) * 1e3


def search_samples(conn) -> dict[str, str]:
    """Searches a receptionist would type, taken from the stored rows: a reference, a name without
    its accent and in lower case, the first letters of a name, an e-mail address, part of a phone
    number, and nothing."""
    phone = conn.execute("SELECT contact FROM submissions WHERE centre = ? AND contact NOT LIKE '%@%'"
                         " ORDER BY id LIMIT 1 OFFSET 777", [CENTRE]).fetchone()[0]
    digits = "".join(ch for ch in phone if ch.isdigit())
    return {"reference": conn.execute("SELECT reference FROM submissions WHERE centre = ? ORDER BY id"
                                      " LIMIT 1 OFFSET 1234", [CENTRE]).fetchone()[0],
            "name": "garcia", "accent": "nuria pena", "short prefix": "pe", "email": conn.execute(
                "SELECT contact FROM submissions WHERE centre = ? AND contact LIKE '%@%' ORDER BY id"
                " LIMIT 1 OFFSET 4321", [CENTRE]).fetchone()[0],
            "phone": f"{digits[:3]} {digits[3:6]} {digits[6:]}", "no match": "Zzyzx"}


def timings(fn, runs: int) -> tuple[float, float, float]:
    """(p50 wall ms, p99 wall ms, median CPU ms of this process) over `runs` calls of fn(), after
    one call to warm up. The p99 of n runs is the value below which 99 % of them fall (with 50
    runs: the worst but one)."""
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    wall.sort()
    p99 = wall[min(len(wall) - 1, int(len(wall) * 0.99))]
    return statistics.median(wall) * 1e3, p99 * 1e3, statistics.median(cpu) * 1e3


def measure(target: str | Path, runs: int) -> list[tuple[str, float, float, float]]:
    """(label, p50 wall ms, p99 wall ms, median CPU ms) of every dashboard query of review.py, the
    attention counts and the audit page, then of each whole staff request (through a logged-in test
    client: the app's session check, audit row and template included), at the rows stored in
    `target` (an SQLite file or a postgresql:// URL). On PostgreSQL the CPU is this process's only
    (the server's is not counted): read the wall time."""
    conn = dbmod.connect(str(target))
    # the measured centre's rows (the staff see only theirs), through its (centre, created_at, id) index
    total = conn.execute("SELECT count(*) FROM submissions WHERE centre = ?", [CENTRE]).fetchone()[0]
    middle = conn.execute("SELECT created_at, number, id FROM submissions WHERE centre = ? ORDER BY created_at DESC,"
                          " id DESC LIMIT 1 OFFSET ?", [CENTRE, total // 2]).fetchone()
    last_month = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    params = [("first page", {}), ("outcome", {"outcome": "consult_professional"}), ("status", {"status": "new"}),
              ("service", {"service": "deep-tissue-massage"}),
              ("outcome + status", {"outcome": "tell_centre", "status": "new"}),
              ("last 30 days", {"from": last_month}),
              (f"deep page (row {total // 2:,})", {"before": review.Cursor(*middle).token()})]
    params += [(f"search {kind} {q!r}", {"q": q}) for kind, q in search_samples(conn).items()]
    out: list[tuple[str, float, float, float]] = []
    services = set(SERVICES)
    for label, args in params:
        filters, errors = webfilters.parse_filters(args, services)
        before, _after, page_errors = webfilters.parse_page(args)
        assert not errors and not page_errors, (errors, page_errors)
        out.append((f"query, {label}", *timings(lambda f=filters, b=before: review.list_page(
            conn, f, before=b, centre=CENTRE), runs)))
    out.append(("query, attention counts", *timings(lambda: review.attention_counts(conn, centre=CENTRE), runs)))
    out.append(("query, audit page", *timings(lambda: review.list_audit(conn, centre=CENTRE), runs)))
    conn.close()
    app = make_app(target)
    client = logged_in_client(app, target)
    from urllib.parse import urlencode
    for label, args in params:
        url = "/staff/?" + urlencode(args)
        assert client.get(url).status_code == 200, url
        out.append((f"GET /staff/, {label}", *timings(lambda u=url: client.get(u).close(), runs)))
    assert client.get("/staff/audit").status_code == 200
    out.append(("GET /staff/audit", *timings(lambda: client.get("/staff/audit").close(), runs)))
    if is_postgres(str(target)):
        from screening.store import engine_postgres
        engine_postgres.close_pools(str(target))
    return out


def run_export_child(path: Path, mode: str) -> dict:
    """The export figures of `export_child` from a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--export-child", str(path), "--mode", mode],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def rss_kib() -> int:
    """The process's resident memory now (Linux), in KiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def export_child(path: str, mode: str) -> None:
    """In a fresh process: stream the whole CSV (through the endpoint, or straight from
    review.export_rows with mode "rows"), sampling resident memory; print JSON figures."""
    app = make_app(Path(path))
    client = logged_in_client(app)      # argon2 takes ~64 MiB at login: measure RSS after it
    rss_start = peak = rss_kib()
    if mode == "traced":
        tracemalloc.start()
    t0 = time.perf_counter()
    size = lines = 0
    if mode == "rows":
        words = reading.ExportWords(app.extensions["screening.rules"], "ca", "Europe/Madrid", {}, {}, {})
        for row in review.export_rows(lambda: dbmod.connect(path), review.Filters(), words, centre=CENTRE):
            lines += 1
            size += sum(map(len, row))
            if lines % 10_000 == 0:
                peak = max(peak, rss_kib())
        lines += 1      # the header, to count like the CSV
        status = 200
    else:
        response = client.get("/staff/export.csv")
        status = response.status_code
        for chunk in response.response:
            data = chunk if isinstance(chunk, bytes) else chunk.encode()
            size += len(data)
            lines += data.count(b"\n")
            if lines % 10_000 == 0:
                peak = max(peak, rss_kib())
        response.close()
    seconds = time.perf_counter() - t0
    traced_peak = tracemalloc.get_traced_memory()[1] if mode == "traced" else None
    print(json.dumps({"status": status, "bytes": size, "lines": lines, "seconds": seconds,
                      "rss_start_kib": rss_start, "rss_peak_kib": max(peak, rss_kib()),
                      "traced_peak": traced_peak}))


def bench_export(path: Path) -> None:
    """Run the export in fresh processes: through the endpoint (time and resident memory), again
    under tracemalloc (Python heap peak), and review.export_rows alone (the cost without HTTP)."""
    print("\nExport of the whole table (fresh process each):")
    labels = {"plain": "GET /staff/export.csv", "traced": "same, under tracemalloc",
              "rows": "review.export_rows alone"}
    for mode, label in labels.items():
        f = run_export_child(path, mode)
        line = (f"  {label:<24} {f['lines'] - 1:>9,} rows {f['bytes'] / 2**20:>6,.0f} MiB {f['seconds']:>7.1f} s"
                f"   RSS {f['rss_start_kib'] / 1024:.0f} MiB at start, peak {f['rss_peak_kib'] / 1024:.0f} MiB")
        if f["traced_peak"] is not None:
            line += f"; Python heap peak {f['traced_peak'] / 2**20:.1f} MiB"
        print(line)


def bench_purge(path: Path) -> None:
    """Time retention.purge for a day's worth of old rows (a daily cron) and then for a whole year
    (the first run on an old database), with the longest write transaction (how long the public
    side would wait for the lock). Destructive: it deletes those rows."""
    from screening.store import retention

    original = dbmod.immediate
    holds: list[float] = []

    @contextmanager
    def timed(db):
        t0 = time.perf_counter()
        with original(db) as inner:
            yield inner
        holds.append(time.perf_counter() - t0)

    conn = dbmod.connect(path)
    print("\nPurge (batches of short transactions, secure_delete on, then wal_checkpoint(TRUNCATE)):")
    dbmod.immediate = timed
    try:
        for days in (DAYS - 1, 365):
            holds.clear()
            t0 = time.perf_counter()
            deleted = retention.purge(conn, days)
            seconds = time.perf_counter() - t0
            wal = Path(f"{path}-wal")
            print(f"  older than {days:>3} days: {deleted:>9,} rows deleted in {seconds:6.1f} s, "
                  f"{len(holds)} transactions, longest {max(holds) * 1e3:.0f} ms; "
                  f"WAL afterwards {wal.stat().st_size if wal.exists() else 0:,} bytes")
    finally:
        dbmod.immediate = original
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9, help="runs per timing (the median is shown)")
    parser.add_argument("--db", help="database file (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the database file afterwards")
    parser.add_argument("--reuse", action="store_true", help="use the --db file as it is, do not fill it")
    parser.add_argument("--purge", action="store_true", help="time retention.purge at the end (deletes rows)")
    parser.add_argument("--skip-export", action="store_true", help="do not run the export")
    parser.add_argument("--export-child", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="plain", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        export_child(args.export_child, args.mode)
        return

    folder = tempfile.TemporaryDirectory(prefix="screening-bench-")
    path = Path(args.db) if args.db else Path(folder.name) / "bench.db"
    try:
        make_app(path)      # creates the schema
        if not args.reuse:
            print(f"Filling {path} with {args.rows:,} submissions...")
            seconds = fill(path, args.rows)
            print(f"Inserted {args.rows:,} rows in {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s); "
                  f"file {os.path.getsize(path) / 2**20:,.0f} MiB")
        conn = dbmod.connect(path)
        print(f"SQLite {'.'.join(map(str, conn.sqlite_version))},"
              f" {conn.execute('SELECT count(*) FROM submissions').fetchone()[0]:,} submissions, no ANALYZE")
        conn.close()
        bench_queries(path, args.runs)
        if not args.skip_export:
            bench_export(path)
        if args.purge:
            bench_purge(path)
    finally:
        if args.db and not args.keep and not args.reuse:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        folder.cleanup()


if __name__ == "__main__":
    main()
