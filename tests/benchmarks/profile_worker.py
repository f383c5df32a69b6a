"""Profile a real gunicorn worker with cProfile (pytest does not collect it).

In-process profiles (profile_post.py) leave out what a worker does around the app; this wraps the
app served by gunicorn and writes each worker's profile when it exits. The file is both the app
module and gunicorn's config (for the exit hook):

    PYTHONPATH=tests/benchmarks SCREENING_DATABASE=/tmp/prof/p.db .venv/bin/gunicorn -w 1 \\
        -b 127.0.0.1:8799 -c tests/benchmarks/profile_worker.py profile_worker:app
    .venv/bin/python tests/benchmarks/profile_worker.py drive 8799 1100 check     # or shared; or wrk
    # stop it with `kill -TERM <gunicorn pid>` (the worker then writes its profile), then read it:
    .venv/bin/python -m pstats /tmp/profile-worker-<pid>.out     # then: sort cumulative, stats 40
    .venv/bin/python tests/benchmarks/profile_worker.py /tmp/profile-worker-<pid>.out   # the shares

The first PROFILE_WARMUP requests (100) are not profiled: they load templates and build each page's
static parts once.

The README's "Goals missed" paragraph reads such a profile of 1,000 check-only POSTs.
"""
import cProfile
import os
import sys

profiler = cProfile.Profile()
_inner = None
# requests answered before the profile starts: the first ones load templates and build the parts
# of each page once (web/parts.py), which a worker that runs for hours does not pay per request
WARMUP = int(os.environ.get("PROFILE_WARMUP", "100"))
_served = [0]


def app(environ, start_response):
    """The app, built in the worker on its first request, with the profiler on while it answers
    (the body is read out inside), after the first WARMUP requests."""
    global _inner
    if _inner is None:
        from screening import create_app
        _inner = create_app()
    _served[0] += 1
    if _served[0] <= WARMUP:
        return list(_inner(environ, start_response))
    profiler.enable()
    try:
        return list(_inner(environ, start_response))
    finally:
        profiler.disable()


def worker_exit(server, worker):
    """gunicorn hook: save the profile of the module the worker served (not this config's copy)."""
    import profile_worker
    profile_worker.profiler.dump_stats(f"/tmp/profile-worker-{worker.pid}.out")


# what the README's profile reads: the share of the whole request (wsgi_app) each part takes
SHARES = {
    "result or questionnaire template (web/parts.py page)": ("parts.py", "page"),
    "templates rendered whole (render_template; before web/parts.py)": ("flask/templating.py", "render_template"),
    "binding the form (WTForms)": ("wtforms/form.py", "__call__"),
    "Flask's before-request hooks (CSRF check, language, staff guard)": ("flask/app.py", "preprocess_request"),
    "Flask's after-request hooks (headers, language cookie, session)": ("flask/app.py", "process_response"),
    "request context (session opened)": ("flask/ctx.py", "push"),
    "signing the result's copy (itsdangerous)": ("itsdangerous/serializer.py", "dumps"),
    "rule engine (normalize + evaluate)": ("screening/core/engine.py", ("normalize", "evaluate")),
    "storing a shared screening (store_screening)": ("screening/store/db.py", "store_screening"),
}


def shares(path: str) -> None:
    """Print each part's share of the requests in a saved profile."""
    import pstats
    stats = pstats.Stats(path).stats
    total = sum(v[3] for (file, _line, name), v in stats.items() if name == "wsgi_app" and "flask/app.py" in file)
    print(f"{'part':<70} {'share':>6}")
    for label, (file_part, names) in SHARES.items():
        names = names if isinstance(names, tuple) else (names,)
        spent = sum(v[3] for (file, _line, name), v in stats.items() if file_part in file and name in names)
        print(f"{label:<70} {spent / total * 100:5.1f}%")


def drive(port: int, count: int, route: str = "check") -> None:
    """Send `count` check-only (or shared) POSTs of the first service to the worker, as one client
    with a session cookie and a CSRF token from a real GET, over one kept-alive connection."""
    import http.client
    import re
    import urllib.parse
    slug = "decontracting-back-massage"
    connection = http.client.HTTPConnection("127.0.0.1", port)
    connection.request("GET", f"/screening/{slug}")
    response = connection.getresponse()
    page = response.read().decode()
    cookie = response.getheader("Set-Cookie").split(";")[0]
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    answers = {flag: "no" for flag in ("intense_pain", "persistent_pain", "recent_injury", "radiating_pain",
                                       "tingling_or_weakness", "spinal_condition", "fever", "skin_problem_in_area",
                                       "ongoing_diagnosis", "pregnant")}
    answers.update(tension_areas="thoracic", preferred_intensity="medium", notes="", share="no", csrf_token=token)
    for i in range(count):
        if route == "shared":
            answers.update(share="yes", name=f"Ana {i}", contact="ana@example.org", consent="yes",
                           nonce=f"profile-nonce-{i:012d}")
        connection.request("POST", f"/screening/{slug}", body=urllib.parse.urlencode(answers),
                           headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status


if __name__ == "__main__":
    if sys.argv[1] == "drive":        # profile_worker.py drive PORT COUNT [check|shared]
        drive(int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:])
    else:                             # profile_worker.py /tmp/profile-worker-<pid>.out
        shares(sys.argv[1])
