"""The alert stream (SSE) against a real uvicorn server: frames, heartbeat, resume, disconnect."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.api.context import ApiContext
from backend.api.parties import PartyRegistry
from backend.core.settings import Settings
from backend.domain.alert import AlertKind
from backend.domain.reading import StoredReading
from backend.oracle.rules import RulesEngine, write_outputs
from backend.store.models import AlertRow, OrderRow
from testkit.api_seed import T0, order_values
from tests.api.conftest import headers
from tests.api.uvicorn_thread import ServerThread


@pytest.fixture
def stream_ctx(
    settings: Settings, factory: sessionmaker[Session], parties: PartyRegistry
) -> ApiContext:
    with factory.begin() as s:
        a = {n: parties.by_name(n).address for n in ("buyer", "supplier", "arbiter", "stranger")}
        s.add(OrderRow(**order_values(1, a["buyer"], a["supplier"], a["arbiter"])))
        s.add(OrderRow(**order_values(2, a["stranger"], a["stranger"], a["stranger"])))
    return ApiContext(
        settings=settings,
        session_factory=factory,
        parties=parties,
        sse_poll_seconds=0.05,
        sse_heartbeat_seconds=0.3,
    )


def add_alert(factory: sessionmaker[Session], order_id: int, kind: str) -> int:
    with factory.begin() as s:
        row = AlertRow(
            order_id=order_id,
            kind=kind,
            severity="warning",
            message=kind,
            at=1,
            data={},
            created_at=time.time(),
        )
        s.add(row)
        s.flush()
        return row.id


def frames(lines: Iterator[str], n: int, timeout: float = 10.0) -> list[dict[str, str]]:
    """Read ``n`` SSE frames (blank-line separated); a comment line becomes ``comment``."""
    out: list[dict[str, str]] = []
    current: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    for line in lines:
        if time.monotonic() > deadline:
            break
        if line == "":
            if current:
                out.append(current)
                current = {}
                if len(out) == n:
                    return out
            continue
        if line.startswith(":"):
            current["comment"] = line[1:].strip()
            continue
        field, _, value = line.partition(":")
        current[field] = value.strip()
    raise AssertionError(f"got only {out} before the timeout")


def test_stream_delivers_visible_alerts_heartbeats_and_stops_on_disconnect(
    stream_ctx: ApiContext, factory: sessionmaker[Session]
) -> None:
    add_alert(factory, 1, "before_connect")  # not replayed without Last-Event-ID
    with ServerThread(stream_ctx) as srv, httpx.Client(base_url=srv.url, timeout=10) as client:
        with client.stream("GET", "/alerts/stream", headers=headers("buyer")) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = r.iter_lines()
            hello = frames(lines, 1)
            assert hello[0].get("retry") == "3000"
            other = add_alert(factory, 2, "strangers_alert")  # not the buyer's order
            mine = add_alert(factory, 1, "door_open")
            got = frames(lines, 1)[0]
            assert got["event"] == "alert" and got["id"] == str(mine)
            assert '"kind":"door_open"' in got["data"]
            assert other < mine  # the stranger's earlier alert was skipped, not delayed
            beat = frames(lines, 1)[0]
            assert beat == {"comment": "heartbeat"}
        # the client has gone: the server-side stream ends and the request is counted
        deadline = time.monotonic() + 5
        while stream_ctx.metrics.request_count("GET", "/alerts/stream", 200) == 0:
            assert time.monotonic() < deadline, "the stream did not stop after the disconnect"
            time.sleep(0.05)


def test_stream_resumes_after_last_event_id(
    stream_ctx: ApiContext, factory: sessionmaker[Session]
) -> None:
    first = add_alert(factory, 1, "one")
    second = add_alert(factory, 1, "two")
    with ServerThread(stream_ctx) as srv, httpx.Client(base_url=srv.url, timeout=10) as client:
        h = {**headers("supplier"), "Last-Event-ID": str(first)}
        with client.stream("GET", "/alerts/stream", headers=h) as r:
            got = frames(r.iter_lines(), 2)
            assert got[1]["id"] == str(second)
        denied = client.get("/alerts/stream", params={"order_id": 2}, headers=headers("buyer"))
        assert denied.status_code == 404
        assert client.get("/alerts/stream").status_code == 401


def test_server_shutdown_ends_open_streams(stream_ctx: ApiContext) -> None:
    srv = ServerThread(stream_ctx).__enter__()
    client = httpx.Client(base_url=srv.url, timeout=10)
    try:
        with client.stream("GET", "/alerts/stream", headers=headers("auditor")) as r:
            lines = r.iter_lines()
            frames(lines, 1)
            started = time.monotonic()
            srv.server.should_exit = True
            for _ in lines:  # drains until the server closes the stream
                pass
            assert time.monotonic() - started < 5
    finally:
        client.close()
        srv.thread.join(timeout=10)
    assert not srv.thread.is_alive()


def test_risk_warnings_come_on_the_stream_with_their_lead_time(
    stream_ctx: ApiContext, factory: sessionmaker[Session]
) -> None:
    """The risk model's alerts are alerts: what the oracle's rules raise reaches the stream."""
    rules = RulesEngine()
    device = "0x" + "ab" * 20
    with ServerThread(stream_ctx) as srv, httpx.Client(base_url=srv.url, timeout=10) as client:
        h = {**headers("buyer")}
        with client.stream("GET", "/alerts/stream", params={"order_id": 1}, headers=h) as r:
            lines = r.iter_lines()
            frames(lines, 1)  # retry + hello comment
            for i in range(40):  # 4.50 °C, then +20 c°C a minute from seq 12
                ts = T0 + 120 + 60 * i
                reading = StoredReading(
                    1, i, ts, 450 + 20 * max(0, i - 11), 500, 10, 50_000_000, 3_000_000, 0,
                    id=i + 1, device=device, received_at=float(ts),
                )  # fmt: skip
                with factory.begin() as s:
                    write_outputs(s, rules.evaluate(s, [reading]), now=ts)
            seen = []
            for frame in frames(lines, 6):
                if frame.get("event") != "alert":
                    continue
                body = json.loads(frame["data"])
                seen.append(body["kind"])
                if body["kind"] == AlertKind.RISK_BREACH:
                    assert body["data"]["lead_secs"] > 15 * 60
                    assert "reaches 8.00 °C" in body["message"]
                    break
            assert AlertKind.RISK_BREACH in seen, seen
