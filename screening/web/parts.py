"""Pages built from parts rendered once: what is the same for every client, and the client's own.

Most of a result page (the layout, the service panel, the centre's contact, every translated label)
is the same for every client of a centre, service, language and rules version; a blank
questionnaire and a service page are that entirely. `page()` renders a template's *static parts*
once, keeps them in memory, and per request renders only the template's *client blocks* (the
`{% block %}`s named in `dynamic`), joining the two. Both come from the same template: the static
parts are the template itself, rendered with each client block replaced by a mark, then cut at the
marks; a client block is the template's own block, rendered on its own.

Why this cannot show one client's data to another, or an old text:
- the static parts are rendered without any client value: every name in `client` (and the CSRF
  token, the request, the session and `g`) stands for an object that raises on any use, so a static
  part that would read one fails to build, on the first request, rather than being kept;
- they are keyed by everything else they can depend on: the template, which blocks are the
  client's, the page's path and script root (the route form `/...` or `/c/<centre>/...`, the centre
  and the service), the language, the rules version, the centre, whether there are several centres,
  and the caller's own `key` (such as which variant of a form);
- the client blocks are joined to the static parts, never searched and replaced: a client's text
  that looks like a mark is written as it is;
- tests/test_parts.py proves every page byte-for-byte equal to the plain render.

The store is bounded in bytes (MAX_BYTES; the least recently used go first), built on first use,
kept per app, and thread-safe.
"""
from __future__ import annotations

import re
import secrets
import sys
import threading
from collections import OrderedDict

from flask import before_render_template, current_app, request, template_rendered
from markupsafe import Markup

MAX_BYTES = 8 * 1024 * 1024      # per app (per worker); a page's static parts take 7 to 25 kB
_MARK = secrets.token_hex(8)     # the marks' secret part: no template text or value holds it
_SLOT = re.compile(f"\x00{_MARK}:(\\w+)\x00")
# what the static parts must never read besides the caller's client values
_NEVER_STATIC = ("csrf_token", "request", "session", "g")


class NotStatic(RuntimeError):
    """A static part read a value that belongs to one client (a template error, found on build)."""


class _ClientOnly:
    """Stands for a client's value while static parts are built: any use of it raises NotStatic."""

    __slots__ = ("_name",)
    __hash__ = None

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def _refuse(self, *args, **kwargs):
        raise NotStatic(f"a static part of the page reads the client's {object.__getattribute__(self, '_name')!r}")

    __getattr__ = __getitem__ = __call__ = __iter__ = __len__ = __contains__ = _refuse
    __str__ = __html__ = __bool__ = __eq__ = __lt__ = __int__ = __float__ = _refuse


def _size(pieces: tuple[str, ...]) -> int:
    """Bytes the pieces take in memory (a page with one character beyond Latin-1, such as a "✓",
    takes two or four bytes per character, not one)."""
    return sum(sys.getsizeof(piece) for piece in pieces)


class _Store:
    """Static parts by key, least recently used first, at most MAX_BYTES bytes of text in all."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.size = max_bytes, 0
        self.items: OrderedDict[tuple, tuple[str, ...]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            pieces = self.items.get(key)
            if pieces is not None:
                self.items.move_to_end(key)
            return pieces

    def put(self, key, pieces: tuple[str, ...]) -> None:
        cost = _size(pieces)
        if cost > self.max_bytes:
            return
        with self.lock:
            old = self.items.pop(key, None)
            self.size += cost - (_size(old) if old else 0)
            self.items[key] = pieces
            while self.size > self.max_bytes:
                _, dropped = self.items.popitem(last=False)
                self.size -= _size(dropped)


def _store(app) -> _Store:
    store = app.extensions.get("screening.parts")
    if store is None:
        store = app.extensions.setdefault("screening.parts", _Store(MAX_BYTES))
    return store


def _skeleton(app, name: str, dynamic: tuple[str, ...]):
    """The template `name` with each client block replaced by its mark (compiled once per app)."""
    cache = app.extensions.setdefault("screening.parts_skeletons", {})
    skeleton = cache.get((name, dynamic))
    if skeleton is None:
        source = "{% extends " + repr(name) + " %}" + "".join(
            "{% block " + block + " %}{{ _part_mark(" + repr(block) + ") }}{% endblock %}" for block in dynamic)
        skeleton = cache[(name, dynamic)] = app.jinja_env.from_string(source)
    return skeleton


def _globals(app, template) -> dict:
    """The template's globals (the environment's: url_for, gettext, csrf_token...) as a dict."""
    kept = app.extensions.setdefault("screening.parts_globals", {})
    found = kept.get(template.name)
    if found is None or found[0] is not template:
        found = kept[template.name] = (template, dict(template.globals))
    return found[1]


def _mark(block: str) -> Markup:
    # a block name from the code and the hex mark: nothing to escape, and the mark must stay whole
    return Markup(f"\x00{_MARK}:{block}\x00")  # noqa: S704


def _build(app, template, dynamic: tuple[str, ...], static: dict, client: dict) -> tuple[str, ...]:
    """The static parts: [text, block name, text, block name, ..., text]. `static` includes the
    context processors' values; the client's, and what _NEVER_STATIC names, are replaced."""
    missing = [block for block in dynamic if block not in template.blocks]
    if missing:
        raise NotStatic(f"{template.name} has no block {missing}")
    context = {**static, **{name: _ClientOnly(name) for name in (*client, *_NEVER_STATIC)}, "_part_mark": _mark}
    return tuple(_SLOT.split(_skeleton(app, template.name, dynamic).render(context)))


def page(name: str, *, static: dict, client: dict, dynamic: tuple[str, ...], key: tuple = ()) -> str:
    """The template `name` rendered with static and client values, as render_template would, from
    static parts kept in memory and the `dynamic` blocks rendered now. Only the `dynamic` blocks
    may read `client` values, the CSRF token, the request or the session; `key` names whatever
    else the static parts depend on beyond what page() keys them by itself (see the module)."""
    app = current_app._get_current_object()
    template = app.jinja_env.get_template(name)
    # the context processors once: the language, the centre, the rule set (web/public.py); the
    # caller's values win over theirs, as in render_template
    helpers: dict = {}
    app.update_template_context(helpers)
    context = {**helpers, **static, **client}
    centre, ruleset = context.get("page_centre"), context.get("ruleset")
    full_key = (name, dynamic, key, request.script_root, request.path, context.get("locale"),
                getattr(ruleset, "version", None), getattr(centre, "slug", None), getattr(centre, "version", None),
                context.get("several_centres"), context.get("kept_days"))
    store = _store(app)
    pieces = store.get(full_key)
    if pieces is None:
        pieces = _build(app, template, dynamic, {**helpers, **static}, client)
        store.put(full_key, pieces)
    if before_render_template.receivers:
        before_render_template.send(app, _async_wrapper=app.ensure_sync, template=template, context=context)
    rendered: dict[str, str] = {}
    # the template's globals as a plain dict made once: Jinja would copy its ChainMap per render
    jinja_context = template.new_context({**_globals(app, template), **context}, shared=True)
    out = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            out.append(piece)
            continue
        if piece not in rendered:
            rendered[piece] = "".join(template.blocks[piece](jinja_context))
        out.append(rendered[piece])
    html = "".join(out)
    if template_rendered.receivers:
        template_rendered.send(app, _async_wrapper=app.ensure_sync, template=template, context=context)
    return html
