"""The web dashboard in a real headless Chromium (Debian's ``chromium`` driven by
Playwright), for tests/integration/test_dashboard_browser.py and bench/dashboard_paint.py.

``playwright install`` cannot download browsers here: Playwright launches the system
browser by its path (``CHROMIUM``; scripts/system_packages.sh installs it).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Debian's chromium (scripts/system_packages.sh).
CHROMIUM = "/usr/bin/chromium"


def chromium_path() -> str | None:
    """The system Chromium, if installed."""
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    return shutil.which("chromium")


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium (``playwright.sync_api.Browser``)."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise RuntimeError("no chromium: run scripts/system_packages.sh (Debian's chromium)")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=path, args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@dataclass
class ConsoleLog:
    """What a page logged as errors: console errors and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Any, label: str) -> None:
        page.on(
            "console",
            lambda m: (
                self.errors.append(f"{label}: console.{m.type}: {m.text}")
                if m.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda e: self.errors.append(f"{label}: pageerror: {e}"))


def sign_in(page: Any, base: str, key: str, hash_: str = "#/orders") -> None:
    """Open the dashboard at ``base`` and sign in with ``key`` (waits for the form)."""
    page.goto(f"{base}/{hash_}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
