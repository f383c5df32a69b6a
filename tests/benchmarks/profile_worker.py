"""Profile a real gunicorn worker with cProfile (pytest does not collect it).

In-process profiles (profile_post.py) leave out what a worker does around the app; this wraps the
app served by gunicorn and writes each worker's profile when it exits. The file is both the app
module and gunicorn's config (for the exit hook):

    PYTHONPATH=tests/benchmarks SCREENING_DATABASE=/tmp/prof/p.db .venv/bin/gunicorn -w 1 \\
        -b 127.0.0.1:8799 -c tests/benchmarks/profile_worker.py profile_worker:app
    # drive it (wrk, or run.py's scripts), stop it with Ctrl-C, then read the profile:
    .venv/bin/python -m pstats /tmp/profile-worker-<pid>.out     # then: sort cumulative, stats 40

The README's "Goals missed" paragraph reads such a profile of 1,000 check-only POSTs.
"""
import cProfile

profiler = cProfile.Profile()
_inner = None


def app(environ, start_response):
    """The app, built in the worker on its first request, with the profiler on while it answers
    (the body is read out inside)."""
    global _inner
    if _inner is None:
        from screening import create_app
        _inner = create_app()
    profiler.enable()
    try:
        return list(_inner(environ, start_response))
    finally:
        profiler.disable()


def worker_exit(server, worker):
    """gunicorn hook: save the profile of the module the worker served (not this config's copy)."""
    import profile_worker
    profile_worker.profiler.dump_stats(f"/tmp/profile-worker-{worker.pid}.out")
