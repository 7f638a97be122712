"""A bug answers 500 ``internal_error`` and leaves the keep-alive connection usable, on a
real uvicorn over a real socket (issue 8, finding 4: after a 500 the next request on
the same connection failed with "Server disconnected")."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from backend.api.context import ApiContext
from backend.api.parties import PartyRegistry
from backend.core.settings import Settings
from backend.store import make_engine, session_factory
from tests.api.uvicorn_thread import ServerThread


def test_after_a_500_the_same_connection_serves_the_next_request(
    settings: Settings, parties: PartyRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A database without tables: every read raises inside the route, as a bug would.
    engine = make_engine(f"sqlite:///{tmp_path / 'not-migrated.db'}")
    context = ApiContext(
        settings=settings, session_factory=session_factory(engine), parties=parties
    )
    try:
        with ServerThread(context) as server:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("GET", "/orders", headers={"X-API-Key": "dev-buyer"})
            first = conn.getresponse()
            body = json.loads(first.read())
            assert first.status == 500 and body["code"] == "internal_error", body
            assert first.getheader("connection", "").lower() != "close"
            sock = conn.sock
            assert sock is not None
            for _ in range(2):  # and again: the connection stays up
                conn.request("GET", "/metrics")
                after = conn.getresponse()
                text = after.read().decode()
                assert after.status == 200
                assert conn.sock is sock, "the server closed the keep-alive connection"
            assert (
                'trustship_api_requests_total{method="GET",route="/orders",status="500"} 1.0'
                in text.splitlines()
            ), text
            conn.close()
    finally:
        engine.dispose()
    assert "unhandled error on GET /orders" in caplog.text  # the traceback is logged
