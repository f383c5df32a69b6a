"""Real-browser helpers: the app on a real HTTP server in a thread, Debian's Chromium through Playwright,
axe-core for accessibility, and a client who fills the questionnaire by clicking its labels.

Chromium cannot be downloaded here (`playwright install` needs the internet), so the tests drive the
distribution's /usr/bin/chromium. CI installs it (.ci/run); elsewhere the tests are skipped with a
reason when it is missing, but never in CI (the `CI` variable is set), where that is a failure.
"""
from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path

import pyotp
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect
from werkzeug.serving import make_server

CHROMIUM = Path("/usr/bin/chromium")
# --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start. The rest keep the browser
# from calling home (updates, sync, field trials), which has no internet to reach and slows the start.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SMALL_PHONE = {"width": 320, "height": 640}   # also a 1280 px screen at 400 % zoom (WCAG 1.4.10 Reflow)
PHONE = {"width": 360, "height": 740}
LAPTOP = {"width": 1280, "height": 900}
WIDTHS = (SMALL_PHONE, PHONE, LAPTOP)
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BLOCKING_IMPACTS = {"serious", "critical"}
RED_FLAGS = ["intense_pain", "persistent_pain", "recent_injury", "radiating_pain", "tingling_or_weakness",
             "spinal_condition", "fever", "skin_problem_in_area", "ongoing_diagnosis"]

AXE_SCRIPT = Axe().axe_script   # the axe-core build that axe-playwright-python bundles


def require_chromium() -> None:
    """Skip with a reason when Chromium is missing on a developer's machine; fail in CI, where a
    silently skipped browser suite would hide every accessibility regression."""
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: install Debian's `chromium` package to run the browser tests"
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


@contextmanager
def live_server(app):
    """Serve `app` with werkzeug on 127.0.0.1 on a free port, in a daemon thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="browser-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def axe_violations(page) -> list[dict]:
    """Every axe-core violation of the WCAG 2.0/2.1/2.2 A and AA rules on the page as it is now."""
    if page.evaluate("typeof window.axe") == "undefined":   # once per page: the script is large
        page.evaluate(AXE_SCRIPT)
    options = {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]}
    return page.evaluate("options => axe.run(document, options)", options)["violations"]


def describe(violations: list[dict]) -> str:
    """A readable list of violations: rule, impact, help and the first offending elements."""
    lines = []
    for v in violations:
        targets = ", ".join(" ".join(n["target"]) if isinstance(n["target"], list) else str(n["target"])
                            for n in v["nodes"][:3])
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} [{len(v['nodes'])}x: {targets}]")
    return "\n".join(lines)


class ConsoleLog:
    """What the browser printed to its console (and uncaught page errors) while a page was open."""

    def __init__(self, page):
        self.messages: list[str] = []
        page.on("console", lambda m: self.messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.messages.append(f"pageerror: {e}"))

    def csp_errors(self) -> list[str]:
        """Console messages that report something blocked by the Content Security Policy."""
        return [m for m in self.messages if "content security policy" in m.lower()]


# --- a client filling the questionnaire --------------------------------------------------------

def choose(page, question: str, option: str) -> None:
    """Click the label of one answer, as a client with a mouse or a finger does."""
    page.click(f'label[for="{question}-{option}"]')


def answer_all_no(page, *, skip: tuple[str, ...] = ()) -> None:
    """Answer every red flag and `pregnant` with "No" (except `skip`), thoracic tension, medium pressure."""
    for question in [*RED_FLAGS, "pregnant"]:
        if question not in skip:
            choose(page, question, "no")
    choose(page, "tension_areas", "thoracic")
    choose(page, "preferred_intensity", "medium")


def share(page, name: str = "Ana Client", contact: str = "ana@example.org") -> None:
    """Choose to send the answers and fill the sharing details with the keyboard."""
    choose(page, "share", "yes")
    page.locator("#name").fill("")
    page.locator("#name").press_sequentially(name)
    page.locator("#contact").fill(contact)
    page.click('label[for="consent"]')


def submit(page) -> None:
    """Press the form's button and wait for the page the server answers with."""
    with page.expect_navigation():
        # "Check my answers", or "Check and send to the centre" once sharing is chosen
        page.get_by_role("button", name=re.compile(r"^Check (my answers|and send to the centre)$")).click()


def submit_any_language(page) -> None:
    """Press the questionnaire's one submit button, whatever language it is labelled in."""
    with page.expect_navigation():
        page.locator("form.questionnaire button[type=submit]").click()


def tab_to(page, selector: str, limit: int = 80) -> None:
    """Press Tab (and nothing else) until the element matching `selector` has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} never got the focus after {limit} presses of Tab")


def set_up_second_factor(page):
    """On the second factor's set-up page: read the key as an authenticator app would (the QR code
    is there too), type its code, and read the ten recovery codes shown once.
    Returns (the app's pyotp.TOTP, the recovery codes)."""
    expect(page.locator("[data-qr] svg")).to_be_visible()
    totp = pyotp.TOTP(page.locator("[data-setup-key]").inner_text().replace(" ", ""))
    page.fill("#code", totp.now())
    page.get_by_role("button", name="Turn on the second factor").click()
    expect(page.locator("[data-recovery-codes] li")).to_have_count(10)
    return totp, page.locator("[data-recovery-codes] li").all_inner_texts()
