"""What the read commands (``export``, ``scorecard``) share: the answer comes from the API
when ``TRUSTSHIP_API_URL`` is set (as the buyer), else it is computed from the database
directly; an error answer is printed and becomes the exit code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from backend.core.settings import Settings

#: An HTTP status and the JSON body that goes with it.
Answer = tuple[int, dict[str, Any]]


def api_get(settings: Settings, path: str, *, timeout: float) -> Answer:
    """``GET path`` on the API at ``TRUSTSHIP_API_URL`` with the buyer's key."""
    import httpx

    assert settings.TRUSTSHIP_API_URL is not None
    key = settings.api_key_of("buyer", "dev-buyer")
    r = httpx.get(
        settings.TRUSTSHIP_API_URL.rstrip("/") + path, headers={"X-API-Key": key}, timeout=timeout
    )
    return r.status_code, r.json()


def read(
    settings: Settings, path: str, from_database: Callable[[], Answer], *, timeout: float
) -> tuple[int, dict[str, Any]]:
    """The exit code so far and the body: 0 and the answer, from the API at ``path`` or
    from ``from_database()``; or, for an error answer (printed), 1 when it is a 404 and 2
    otherwise."""
    if settings.TRUSTSHIP_API_URL:
        status, body = api_get(settings, path, timeout=timeout)
    else:
        status, body = from_database()
    if status != 200:
        typer.secho(f"error: {body.get('message', body)}", fg=typer.colors.RED, err=True)
        return (1 if status == 404 else 2), body
    return 0, body
