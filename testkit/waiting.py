"""Polling until a condition holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(cond: Callable[[], object], timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``cond`` every ``interval`` seconds until it is true or ``timeout`` has passed;
    whether it holds (asked once more at the end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())


def wait_until(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.3) -> T:
    """The first true value of ``cond``, polled every ``interval`` seconds; raise
    AssertionError naming ``what`` if none comes within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not within {timeout:.0f} s")
