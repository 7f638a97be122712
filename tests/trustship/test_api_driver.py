"""`trustship replay`'s API driver against a server that stops answering for a while.

The compose smoke test (scripts/compose_smoke.sh) kills the trustship container while a
replay's devices publish; the replay then polls the order's outcome from a server that
is still starting. A GET is retried on transport errors; a POST never is, since it may
have acted (created an order) before the connection broke.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from trustship.stack import DEV_API_KEYS, ApiDriver, ReplayError

QV = "0x" + "11" * 20


@dataclass
class FakeChain:
    chain_id: int = 31337


class FlakyServer:
    """Answers like `trustship serve`, except that the first ``down`` requests of the
    outcome poll (``GET /orders/7``) and every ``POST`` find nobody listening."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        path = request.url.path
        if path == "/deployment":
            body = {"chain_id": 31337, "contracts": {"QualityVerification": QV}, "token": None}
            return httpx.Response(200, json=body)
        if path == "/account":
            return httpx.Response(200, json={"party": {"address": QV}})
        if request.method == "POST":
            raise httpx.ConnectError("connection refused", request=request)
        if path == "/orders/7":
            if self.down > 0:
                self.down -= 1
                raise httpx.ConnectError("connection refused", request=request)
            body = {
                "state": "Settled",
                "settlement": {"buyer_amount": "1", "supplier_amount": "2"},
                "breached": False,
                "delivered_at": 100,
                "terms": {"delivery_deadline": 90},
            }
            return httpx.Response(200, json=body)
        return httpx.Response(404, json={"code": "not_found"})


def driver(server: FlakyServer) -> ApiDriver:
    d = ApiDriver(
        "http://trustship:8000",
        FakeChain(),  # type: ignore[arg-type]
        "mqtt://mosquitto:1883",
        DEV_API_KEYS,
        transport=httpx.MockTransport(server),
    )
    d.get_retry_s = 5.0
    return d


def test_the_outcome_poll_rides_out_a_server_that_is_restarting() -> None:
    server = FlakyServer(down=3)
    outcome = driver(server).outcome(7)
    assert (outcome.state, outcome.buyer_amount, outcome.supplier_amount) == ("Settled", 1, 2)
    assert outcome.late_s == 10
    assert server.calls.count("GET /orders/7") == 4  # three refused, then the answer


def test_a_get_gives_up_after_its_retry_window() -> None:
    server = FlakyServer(down=10**6)
    d = driver(server)
    d.get_retry_s = 1.0
    with pytest.raises(ReplayError, match="GET /orders/7 as buyer: no answer"):
        d.outcome(7)


def test_a_post_is_never_retried() -> None:
    server = FlakyServer(down=0)
    with pytest.raises(ReplayError, match="POST /orders/7/accept as supplier: no answer"):
        driver(server)._call("POST", "/orders/7/accept", "supplier")
    assert server.calls.count("POST /orders/7/accept") == 1
