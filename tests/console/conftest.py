"""A live stack for the console tests (PostgreSQL, Mosquitto, the consumer with the alert
engine, the API under uvicorn) and one headless chromium for the session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from ingest.api import create_app
from ingest.settings import Settings
from tests.api.support import ServerThread, alerting_starter, new_key
from tests.conftest import _missing
from tests.console.support import CHROMIUM_ARGS, chromium_path, open_console


@pytest.fixture(scope="session")
def browser():
    path = chromium_path()
    if path is None:
        _missing("chromium (apt-get install chromium fonts-noto-cjk)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def start_alerting(start_consumer):
    yield from alerting_starter(start_consumer)


@dataclass
class Stack:
    db: str
    url: str
    mqtt_url: str
    root: str
    viewer: str
    engineer: str


@pytest.fixture
def stack(db, broker, settings_for, start_alerting) -> Iterator[Stack]:
    """The consumer with the alert engine and the API (with the console) on a free port.
    Register sites before publishing: the engine reads the registry per batch."""
    settings = settings_for(database_url=db)
    start_alerting(settings, db)
    api_settings = Settings(_env_file=None, database_url=db, mqtt_url=broker.url)
    with ServerThread(create_app(api_settings)) as server:
        yield Stack(
            db=db,
            url=server.url,
            mqtt_url=broker.url,
            root=settings.topic_root,
            viewer=new_key(db, "viewer"),
            engineer=new_key(db, "engineer"),
        )


@pytest.fixture
def console(stack, browser):
    """Open signed-in console pages: ``console(key, lang="en", viewport=None, path="")``.
    Their browser contexts are closed before the stack stops (no stream left open)."""
    contexts = []

    def open_page(key: str, lang: str = "en", viewport=None, path: str = ""):
        page = open_console(browser, stack.url, key, lang, viewport, path)
        contexts.append(page.context)
        return page

    yield open_page
    for c in contexts:
        c.close()
