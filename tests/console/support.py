"""Driving the console in Debian's chromium through Playwright (its own browser download
is not used), and where the screenshots go."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM = os.environ.get("SWC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The issue's bound for a threshold crossing to show on an open page.
LIVE_TIMEOUT_MS = 2000
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def artifacts_dir() -> Path:
    """SWC_TEST_ARTIFACTS, else tests/artifacts/console (ignored by git)."""
    base = os.environ.get("SWC_TEST_ARTIFACTS")
    path = Path(base) if base else Path(__file__).resolve().parents[1] / "artifacts" / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_console(browser, url: str, key: str, lang: str = "en", viewport=None, path: str = ""):
    """A new browser context signed in with ``key`` (sessionStorage) in ``lang``; returns
    the page once the console has drawn its first view."""
    context = browser.new_context(viewport=viewport or DESKTOP, locale="en-US")
    context.add_init_script(
        f"sessionStorage.setItem('swc.key', {key!r}); localStorage.setItem('swc.lang', {lang!r});"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # type: ignore[attr-defined]
    page.goto(f"{url}/{path}")
    page.wait_for_selector("#view[data-ready='true']", timeout=30000)
    return page
