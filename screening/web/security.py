"""Headers on every response and error pages that never leak a traceback (HTML or JSON)."""
from __future__ import annotations

import logging
import traceback

from flask import abort, current_app, jsonify, make_response, render_template, request
from flask.globals import request_ctx
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from ..store import db
from .database import target

log = logging.getLogger(__name__)

CSP = ("default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'; img-src 'self' data:")


def wants_json() -> bool:
    """API routes answer errors in JSON; everything else gets an HTML page."""
    return request.path.startswith("/api/")


def set_headers(response):
    """Security headers on every response, errors included (RELIABILITY.md point 19). A view may
    set its own CSP, Referrer-Policy or Permissions-Policy; the others are always ours. The
    response's header names are read once (each setdefault would scan them all again)."""
    h = response.headers
    present = {name.lower() for name, _value in h.items()}
    headers = list(ALWAYS)
    if not request.path.startswith("/static/"):
        # answers, results and staff pages must never sit in a shared or browser cache
        headers += NEVER_CACHED
    if current_app.config.get("HSTS"):
        headers.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    for name, value in headers:
        if name.lower() in present:
            h[name] = value
        else:
            h.add(name, value)
    for name, value in DEFAULTS:
        if name.lower() not in present:
            h.add(name, value)
    return response


# same-origin, not no-referrer: Flask-WTF's referrer check on HTTPS needs it (point 14); the
# pages of e-mailed links, whose URL holds a token, set no-referrer themselves (web/links.py)
DEFAULTS = (("Content-Security-Policy", CSP), ("Referrer-Policy", "same-origin"),
            ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()"))
ALWAYS = (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"))
NEVER_CACHED = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]


def error_response(status: int, code: str, *, fields=None):
    """One error, as JSON for the API or as the error page otherwise (plain text when the request
    could not be routed at all, see refuse_unroutable_host)."""
    if wants_json():
        return jsonify({"error": code, "fields": fields or {}}), status
    if request_ctx.url_adapter is None:
        # no URL adapter (a Host header Werkzeug refuses): the page's links cannot be built
        return PLAIN_ERRORS.get(status, PLAIN_ERRORS[400]), status, {"Content-Type": "text/plain; charset=utf-8"}
    return render_template("error.html", status=status, code=code), status


PLAIN_ERRORS = {400: "400 Bad Request: the Host header of this request is not a valid host name.\n",
                500: "500 Internal Server Error\n"}


def refuse_unroutable_host():
    """A Host (or, behind SCREENING_PROXY_COUNT proxies, X-Forwarded-Host) that Werkzeug cannot
    read ('a..b', a 64-character label) leaves the request without a URL adapter: answer its 400
    before any other hook (CSRF, the language, the staff guard) runs into that."""
    if request_ctx.url_adapter is None and request.routing_exception is not None:
        raise request.routing_exception


def refuse_streamed_body_over_limit():
    """Werkzeug cuts a streamed (chunked) body at MAX_CONTENT_LENGTH instead of refusing it, so a
    truncated form could be read as the client's answers. Read it first and refuse it whole; the
    form parser then reads the cached bytes. A body of exactly the limit goes too."""
    limit = request.max_content_length
    if limit and request.content_length is not None and request.content_length > limit:
        abort(413)      # said too large up front: refused before any hook or view reads it
    if request.content_length is None and limit and request.environ.get("wsgi.input_terminated"):
        if len(request.get_data(cache=True)) >= limit:
            abort(413)


def refuse_unnamed_form_fields():
    """A multipart part whose name cannot be read (a CR in it) comes out of Werkzeug's parser with
    the name None, on which Flask-WTF's token search fails with a 500: refuse the form as bad."""
    if (request.method == "POST" and request.mimetype in FORM_TYPES    # a JSON body has no form to parse
            and any(not isinstance(key, str) for key in request.form)):
        abort(400)


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def init_app(app) -> None:
    """Register before CSRFProtect: its check parses the form, which must be whole by then."""
    app.before_request(refuse_unroutable_host)
    app.before_request(refuse_streamed_body_over_limit)
    app.before_request(refuse_unnamed_form_fields)
    app.after_request(set_headers)

    @app.errorhandler(CSRFError)
    def csrf_error(e):
        return error_response(400, "csrf")

    @app.errorhandler(db.StorageError)
    def storage_error(e):
        # the reason may name a file path, never answers; it goes to the log, not to the client
        fix = db.what_to_fix(target(current_app))
        log.error("storage failure: %s: %s%s", type(e).__name__, e, f"; {fix}" if fix else "")
        return error_response(503, "storage")

    def database_error(e):
        # any other query that meets a read-only, full, locked or missing database, or a database
        # server that cannot be reached (a login, a note...) is the same outage as a failed share:
        # a 503, never a 500. A bad statement stays a 500.
        return storage_error(e) if db.is_storage_failure(e) else unexpected(e)

    for error_class in db.DatabaseError:     # each engine's driver errors
        app.register_error_handler(error_class, database_error)

    @app.errorhandler(HTTPException)
    def http_error(e):
        codes = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type", 429: "too_many"}
        # make_response: the HTML branch of error_response gives (text, status), which has no headers
        response = make_response(error_response(e.code, codes.get(e.code, "http_error")))
        if e.code == 405 and getattr(e, "valid_methods", None):
            response.headers["Allow"] = ", ".join(e.valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected(e):
        # log the type and where, never the message or the body: built-in exceptions quote the value
        # they choke on (KeyError('...'), int('...')), and that value may be a health answer
        log.error("unexpected error on %s %s: %s\n%s", request.method, request.path, type(e).__name__,
                  "".join(traceback.format_tb(e.__traceback__)).rstrip())
        return error_response(500, "internal")
